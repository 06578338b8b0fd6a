"""Sweep planning and resumption, and report generation, on tiny fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hut_peft.lab.report.build import build_report
from hut_peft.lab.report.tables import collect, e2e_markdown, glue_markdown
from hut_peft.lab.sweep import plan, run_sweep


def _spec(model: Path, data: Path, out: Path) -> dict:
    return {
        "recipe": "glue",
        "output_dir": str(out),
        "tasks": ["rte"],
        "seeds": "0",
        "common": {"model": str(model), "data_dir": str(data), "epochs": 1, "batch_size": 8,
                   "save_checkpoints": False, "logging_steps": 5},
        "variants": ["hut", {"label": "hut-r1", "method": "hut", "table": "rank", "method_options": {"r": 1}}],
    }


def test_plan_expands_and_validates(tmp_path):
    cells = plan(_spec(Path("m"), Path("d"), tmp_path))
    assert [(c.table, c.task, c.label) for c in cells] == [("main", "rte", "hut"), ("rank", "rte", "hut-r1")]
    assert cells[1].fields["method_options"] == {"r": 1} and cells[1].fields["resume"] is True
    with pytest.raises(ValueError, match="'recipe' must be"):
        plan({"recipe": "nope", "variants": ["hut"]})
    with pytest.raises(ValueError, match="needs 'tasks'"):
        plan({"recipe": "glue", "variants": ["hut"]})
    with pytest.raises(ValueError, match="distinct 'label'"):
        plan({"recipe": "glue", "tasks": ["rte"], "variants": ["hut", "hut"]})


def test_sweep_resumes_and_report_is_written(tiny_glue_setup, tmp_path):
    model, data = tiny_glue_setup
    out = tmp_path / "runs"
    spec = _spec(model, data, out)
    first = run_sweep(spec)
    assert [status for _, status in first] == ["ran", "ran"]
    cell_file = out / "rank" / "rte" / "hut-r1" / "results.json"
    assert cell_file.is_file()
    assert [status for _, status in run_sweep(spec)] == ["done", "done"]  # nothing is trained twice
    cell_file.unlink()
    assert [status for _, status in run_sweep(spec, dry_run=True)] == ["done", "to run"]
    assert [status for _, status in run_sweep(spec)] == ["done", "ran"]

    report = tmp_path / "docs" / "RESULTS.md"
    text = build_report([str(out)], report, preamble="# Results\n\nSet-up here.")
    assert text.startswith("# Results")
    assert "### Table 1: ours" in text and "| hut |" in text
    assert "### Table 1: the paper (RoBERTa-large" in text and "| hut | 0.9M |" in text
    assert "Table 5 (rank r)" in text and "| hut-r1 |" in text
    assert report.read_text() == text
    png = report.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def _fake_glue(task: str, label: str, scores: list[float], params: int) -> dict:
    n = len(scores)
    mean = sum(scores) / n
    std = (sum((s - mean) ** 2 for s in scores) / (n - 1)) ** 0.5 if n > 1 else 0.0
    key = {"cola": "matthews_correlation", "stsb": "pearson"}.get(task, "accuracy")
    return {"recipe": "glue", "primary_metric": key, "trainable_parameters": params,
            "config": {"task": task, "method": label, "model": None, "tags": {}},
            "summary": {"best": {key: {"mean": mean, "std": std, "n": n}}}}


def test_glue_table_values_and_average():
    results = [_fake_glue("rte", "hut", [0.60, 0.70], 1000), _fake_glue("cola", "hut", [0.30, 0.30], 1000)]
    text = glue_markdown(results)
    # columns in the paper's order (CoLA before RTE); mean ± sample std × 100; Avg over the tasks run
    assert "| method | # trainable | CoLA | RTE | Avg. |" in text
    assert "| hut | 0.001M | 30.0 ± 0.0 | 65.0 ± 7.1 | 47.5 |" in text
    assert "| hut | 0.9M | 70.5 | 87.4 | 79.0 |" in text  # the paper's row, averaged over the same columns


def test_e2e_table_from_results(tmp_path):
    res = {"recipe": "e2e", "trainable_parameters": 1234, "config": {"method": "hut", "model": None, "tags": {}},
           "seeds": [{"eval_mrs": 10}],
           "summary": {"BLEU": {"mean": 0.5, "std": 0.0, "n": 1}, "NIST": {"mean": 6.0, "std": 0.0, "n": 1},
                       "METEOR": {"mean": 0.4, "std": 0.0, "n": 1}, "ROUGE_L": {"mean": 0.6, "std": 0.0, "n": 1},
                       "CIDEr": {"mean": 1.5, "std": 0.0, "n": 1}}}
    text = e2e_markdown([res])
    assert "| hut (10 MRs) | 0.001M | 50.0 | 6.00 | 40.0 | 60.0 | 1.50 |" in text
    assert "| hut | 0.45M | 70.4 | 8.86 | 46.7 | 72.1 | 2.54 |" in text
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "results.json").write_text(json.dumps(res))
    assert collect([tmp_path])[0]["_path"].endswith("results.json")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        collect([tmp_path / "missing"])


def test_measured_gflops_for_the_figure():
    from hut_peft.lab.report.tables import measured_gflops

    g = measured_gflops(["hut", "lora", "full", "not-a-method"], seq_len=16)
    assert set(g) == {"hut", "lora", "full"}
    assert g["hut"] < g["lora"] < g["full"]  # flop_counter counts matmuls: HUT adds none, LoRA two thin ones


def test_lr_grid_selects_on_the_first_seed_and_reuses_it(tiny_glue_setup, tmp_path):
    """Stage 1 runs each rate on seed 0; stage 2 runs the winner on every seed without retraining seed 0."""
    from hut_peft.lab.sweep import select_lr

    model, data = tiny_glue_setup
    out = tmp_path / "runs"
    spec = _spec(model, data, out)
    spec["seeds"] = "0,1"
    spec["variants"] = [{"label": "hut", "method": "hut", "lr_grid": [1e-3, 1e-1]},
                        {"label": "hut-fp32", "method": "hut", "lr_from": "hut", "precision": "fp32",
                         "table": "precision"}]
    listed = [(c.name, s) for c, s in run_sweep(spec, dry_run=True)]
    assert listed == [("main/rte/hut/lr=0.001", "to run"), ("main/rte/hut/lr=0.1", "to run"),
                      ("main/rte/hut", "waiting for its learning-rate grid"),
                      ("precision/rte/hut-fp32", "waiting for its learning-rate grid")]
    assert [s for _, s in run_sweep(spec)] == ["ran", "ran", "ran", "ran"]
    grid_cell = plan(spec)[0]
    selection = select_lr(grid_cell, out)
    scores = {lr: json.loads((out / "main" / "rte" / "hut" / f"lr={lr:g}" / "results.json").read_text())
              ["summary"]["best"]["accuracy"]["mean"] for lr in (1e-3, 1e-1)}
    assert selection["chosen"] == max(sorted(scores), key=scores.get)
    final = json.loads((out / "main" / "rte" / "hut" / "results.json").read_text())
    assert [r["seed"] for r in final["seeds"]] == [0, 1]
    assert final["settings"]["learning_rate"] == selection["chosen"]
    assert final["config"]["tags"]["lr_selection"]["chosen"] == selection["chosen"]
    probe = json.loads((out / "main" / "rte" / "hut" / f"lr={selection['chosen']:g}" / "seed-0" / "metrics.json")
                       .read_text())
    assert final["seeds"][0] == probe  # seed 0 is the grid's run, not a second training
    fp32 = json.loads((out / "precision" / "rte" / "hut-fp32" / "results.json").read_text())
    assert fp32["settings"]["learning_rate"] == selection["chosen"] and fp32["settings"]["precision"] == "fp32"
    assert all(r["train_tokens_per_s"] > 0 and r["train_tokens"] > 0 for r in final["seeds"])
    assert [s for _, s in run_sweep(spec)] == ["done"] * 4


def test_lr_grid_errors_name_the_variant():
    base = {"recipe": "glue", "tasks": ["rte"]}
    with pytest.raises(ValueError, match="'hut': lr_grid must be a list of positive numbers"):
        plan({**base, "variants": [{"label": "hut", "method": "hut", "lr_grid": [0.1, -1]}]})
    with pytest.raises(ValueError, match="at most one of lr_grid, lr_from, learning_rate"):
        plan({**base, "variants": [{"method": "hut", "lr_grid": [0.1], "learning_rate": 0.1}]})
    with pytest.raises(ValueError, match="lr_from 'lora' names no variant with an lr_grid"):
        plan({**base, "variants": [{"method": "hut", "lr_from": "lora"}]})


def test_keep_going_reports_a_failed_cell_and_runs_the_rest(tiny_glue_setup, tmp_path):
    model, data = tiny_glue_setup
    spec = _spec(model, data, tmp_path / "runs")
    spec["variants"] = [{"label": "broken", "method": "hut", "method_options": {"r": 0}}, "hut"]
    with pytest.raises(ValueError, match="r must be an integer >= 1"):
        run_sweep(spec)
    statuses = [status for _, status in run_sweep(spec, keep_going=True)]
    assert statuses[0].startswith("failed: ValueError: HUTConfig.r must be an integer >= 1") and statuses[1] == "ran"


def _fake_cell_result(folder: Path, lr: float, score: float, seeds=(0,)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps({
        "recipe": "glue", "primary_metric": "accuracy", "settings": {"learning_rate": lr},
        "summary": {"best": {"accuracy": {"mean": score, "std": 0.0, "n": len(seeds)}}},
        "seeds": [{"seed": s} for s in seeds]}))
    for s in seeds:
        (folder / f"seed-{s}").mkdir(exist_ok=True)
        (folder / f"seed-{s}" / "metrics.json").write_text("{}")


def test_grid_extends_past_an_edge_winner_and_clears_a_stale_cell(tmp_path):
    from hut_peft.lab.sweep import _beyond_edge, _clear, _stale, select_lr

    spec = {"recipe": "glue", "tasks": ["rte"], "seeds": "0,1",
            "variants": [{"label": "hut", "method": "hut", "lr_grid": [1e-3, 3e-3], "lr_grid_extend": 2}]}
    cell = plan(spec)[0]
    assert cell.extend == 2 and [p.label for p in cell.grid] == ["hut/lr=0.001", "hut/lr=0.003"]
    root = tmp_path
    _fake_cell_result(cell.grid[0].output_dir(root), 1e-3, 0.60)
    assert _beyond_edge(cell, root) is None  # the grid is not finished yet
    _fake_cell_result(cell.grid[1].output_dir(root), 3e-3, 0.70)
    assert _beyond_edge(cell, root) == 9e-3  # the top rate won: one grid step (×3) beyond it
    _fake_cell_result(cell.output_dir(root), 3e-3, 0.70, seeds=(0, 1))  # the cell, finished at 3e-3
    cell.grid.append(cell.probe(9e-3))
    _fake_cell_result(cell.grid[-1].output_dir(root), 9e-3, 0.75)
    selection = select_lr(cell, root)
    assert selection["chosen"] == 9e-3 and _stale(cell, root, selection)
    _clear(cell, root)
    assert not (cell.output_dir(root) / "results.json").exists() and not list(cell.output_dir(root).glob("seed-*"))
    assert all((p.output_dir(root) / "results.json").is_file() for p in cell.grid)  # the grid stays
    _fake_cell_result(cell.grid[0].output_dir(root), 1e-3, 0.99)  # now the bottom rate wins
    assert _beyond_edge(cell, root) == pytest.approx(1e-3 / 3, rel=1e-3)
    with pytest.raises(ValueError, match="lr_grid_extend must be an integer >= 0"):
        plan({**spec, "variants": [{"method": "hut", "lr_grid": [1e-3], "lr_grid_extend": 1}]})


def test_cell_lock_excludes_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from hut_peft.lab.sweep import LOCK_NAME, cell_lock

    folder = tmp_path / "cell"
    with cell_lock(folder) as mine:
        assert mine and (folder / LOCK_NAME).read_text() == f"{socket.gethostname()} {os.getpid()}"
        with cell_lock(folder) as again:  # a second sweep (here: the same process) is kept out
            assert not again
    assert not (folder / LOCK_NAME).exists()  # released
    (folder / LOCK_NAME).write_text(f"another-host {os.getpid()}")
    with cell_lock(folder) as mine:
        assert not mine  # another host's lock cannot be judged from here: respected
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / LOCK_NAME).write_text(f"{socket.gethostname()} {dead.pid}")
    with cell_lock(folder) as mine:
        assert mine  # its process is gone: taken over


def test_sweep_waits_for_a_cell_another_sweep_holds(tiny_glue_setup, tmp_path):
    """A locked cell is passed over, the rest runs, and the sweep comes back for it once the lock is gone."""
    import socket
    import subprocess
    import sys
    import threading

    from hut_peft.lab.sweep import LOCK_NAME

    model, data = tiny_glue_setup
    out = tmp_path / "runs"
    spec = _spec(model, data, out)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    lock = out / "main" / "rte" / "hut" / LOCK_NAME
    lock.parent.mkdir(parents=True)
    lock.write_text(f"{socket.gethostname()} {holder.pid}")
    other = out / "rank" / "rte" / "hut-r1" / "results.json"
    order = []

    def release_once_the_other_cell_is_done():
        while not other.is_file():
            threading.Event().wait(0.05)
        order.append("other finished first")
        holder.kill()
        holder.wait()

    watcher = threading.Thread(target=release_once_the_other_cell_is_done)
    watcher.start()
    try:
        statuses = [status for _, status in run_sweep(spec, poll_s=0.1)]
    finally:
        holder.kill()
        watcher.join(timeout=60)
    assert order == ["other finished first"] and statuses == ["ran", "ran"]
    assert not lock.exists()


def test_workers_share_a_sweep_and_run_each_cell_once(tiny_glue_setup, tmp_path):
    import argparse

    import yaml

    from hut_peft.lab.sweep import add_arguments, run

    model, data = tiny_glue_setup
    out = tmp_path / "runs"
    spec = _spec(model, data, out)
    spec["variants"].append({"label": "hut-r2", "method": "hut", "table": "rank", "method_options": {"r": 2}})
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(spec))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args([str(config), "--workers", "2"])) == 0
    logs = [(out / f"sweep-worker-{i}.log").read_text() for i in (0, 1)]
    started = sorted(line for log in logs for line in log.splitlines() if line.startswith("== "))
    assert started == ["== main/rte/hut", "== rank/rte/hut-r1", "== rank/rte/hut-r2"]  # each cell once
    for cell in ("main/rte/hut", "rank/rte/hut-r1", "rank/rte/hut-r2"):
        result = json.loads((out / cell / "results.json").read_text())
        assert result["config"]["tags"]["sweep_workers"] == 2
        assert result["environment"]["torch_threads"] == max(1, (__import__("os").cpu_count() or 1) // 2)
    with pytest.raises(ValueError, match="--workers must be >= 1"):
        run(parser.parse_args([str(config), "--workers", "0"]))


def _grid_won_at_its_top_edge(root, extend: int):
    """A 'hut' grid of 1e-3 and 3e-3, both finished, 3e-3 ahead; 'hut-long' takes its rate from it."""
    spec = {"recipe": "glue", "tasks": ["rte"], "seeds": "0",
            "variants": [{"label": "hut", "method": "hut", "lr_grid": [1e-3, 3e-3], "lr_grid_extend": extend},
                         {"label": "hut-long", "method": "hut", "lr_from": "hut", "table": "longer"}]}
    hut = plan(spec)[0]
    _fake_cell_result(hut.grid[0].output_dir(root), 1e-3, 0.60)
    _fake_cell_result(hut.grid[1].output_dir(root), 3e-3, 0.70)
    return hut


def test_lr_from_sees_a_grid_extended_after_the_pass_began(tmp_path):
    """A worker's long pass planned 'hut' with its first grid; another worker finished it and its extension."""
    from hut_peft.lab.sweep import _extend_finished, select_lr

    hut = _grid_won_at_its_top_edge(tmp_path, extend=2)
    assert select_lr(hut, tmp_path)["chosen"] == 3e-3  # what the stale plan would pick
    _fake_cell_result(hut.probe(9e-3).output_dir(tmp_path), 9e-3, 0.75)  # the other worker's extension
    _extend_finished(hut, tmp_path)
    assert [p.fields["learning_rate"] for p in hut.grid] == [1e-3, 3e-3, 9e-3, 2.7e-2]
    assert select_lr(hut, tmp_path) is None  # 2.7e-2 is not run yet: the dependent cell waits for it
    _fake_cell_result(hut.probe(2.7e-2).output_dir(tmp_path), 2.7e-2, 0.50)
    _extend_finished(hut, tmp_path)
    assert select_lr(hut, tmp_path)["chosen"] == 9e-3 and len(hut.grid) == 4


def test_extensions_stop_at_lr_grid_extend_even_when_the_winner_stays_at_the_edge(tmp_path):
    """A grid already extended lr_grid_extend times gets no further probe from a dependent cell's look at it."""
    from hut_peft.lab.sweep import _add_probe_past_edge, _extend_finished, select_lr

    hut = _grid_won_at_its_top_edge(tmp_path, extend=1)
    assert _add_probe_past_edge(hut, tmp_path)  # the pass's one extension: 9e-3
    _fake_cell_result(hut.probe(9e-3).output_dir(tmp_path), 9e-3, 0.80)  # wins at the new edge
    assert not _add_probe_past_edge(hut, tmp_path)
    _extend_finished(hut, tmp_path)  # what the dependent cell does later in the same pass
    assert [p.fields["learning_rate"] for p in hut.grid] == [1e-3, 3e-3, 9e-3]
    assert select_lr(hut, tmp_path)["chosen"] == 9e-3  # so the dependent cell can run
