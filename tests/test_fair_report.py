"""The fair reproduction's page: paired statistics against an independent formula, selection and tables."""

from __future__ import annotations

import math

import pytest

from hut_peft.lab.report.fair import DEV_SIZE, MAJORITY, fair_sections, glue_cells, paired, verdict_lines


def test_paired_matches_the_t_formula():
    from scipy import stats

    a, b = {0: 0.80, 1: 0.83, 2: 0.81}, {0: 0.78, 1: 0.80, 2: 0.80}
    out = paired(a, b)
    diffs = [0.02, 0.03, 0.01]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    t = mean / (sd / math.sqrt(3))
    assert out["mean"] == pytest.approx(mean) and out["sd"] == pytest.approx(sd)
    assert out["p"] == pytest.approx(2 * (1 - stats.t.cdf(t, 2)))  # two-sided, 2 degrees of freedom
    assert out["ci"] == pytest.approx(stats.t.ppf(0.975, 2) * sd / math.sqrt(3))
    # +2 points on every seed but with spread: t = 3.46 on 2 degrees of freedom, p = 0.074
    assert out["p"] == pytest.approx(0.074, abs=1e-3) and out["verdict"] == "not distinguishable at 3 seeds"


def test_paired_verdicts():
    noisy = paired({0: 0.80, 1: 0.70, 2: 0.90}, {0: 0.79, 1: 0.75, 2: 0.82})
    assert noisy["verdict"] == "not distinguishable at 3 seeds" and noisy["p"] > 0.05
    worse = paired({0: 0.70, 1: 0.71, 2: 0.72}, {0: 0.80, 1: 0.81, 2: 0.83})
    assert worse["verdict"] == "worse" and worse["mean"] < 0
    assert paired({0: 0.8}, {0: 0.7})["verdict"] == "not enough seeds"
    assert paired({0: 0.8, 1: 0.9}, {1: 0.7, 2: 0.6})["n"] == 1  # only common seeds are paired


def _cell(label: str, task: str, scores: dict[int, float], lr: float = 1e-3, grid_of: str | None = None) -> dict:
    key = {"cola": "matthews_correlation", "stsb": "pearson"}.get(task, "accuracy")
    vals = list(scores.values())
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    tags = {"label": label, "table": "main"}
    if grid_of:
        tags["lr_grid_of"] = grid_of
    else:
        tags["lr_selection"] = {"grid": {"lr=0.0003": 0.5, f"lr={lr:g}": scores[0]}, "chosen": lr, "seed": 0}
    return {"recipe": "glue", "primary_metric": key, "trainable_parameters": 1000,
            "config": {"task": task, "method": label, "tags": tags},
            "settings": {"learning_rate": lr, "epochs": 3, "precision": "bf16"},
            "summary": {"best": {key: {"mean": mean, "std": std, "n": len(vals)}}},
            "seeds": [{"seed": s, "best": {key: v}, "per_epoch": [{"epoch": 1.0, key: v - 0.01}, {"epoch": 2.0, key: v}],
                       "wall_time_s": 60.0, "train_tokens_per_s": 5000.0} for s, v in scores.items()]}


def test_sections_lead_with_verdicts_and_skip_grid_probes(tmp_path):
    results = [
        _cell("hut", "rte", {0: 0.60, 1: 0.61, 2: 0.62}),
        _cell("lora", "rte", {0: 0.57, 1: 0.58, 2: 0.59}),
        _cell("ia3", "rte", {0: 0.55, 1: 0.62, 2: 0.58}),
        _cell("full", "rte", {0: 0.50, 1: 0.51, 2: 0.52}),
        _cell("hut", "rte", {0: 0.50}, lr=3e-4, grid_of="hut"),  # grid probes: never rows
        _cell("hut", "rte", {0: 0.60}, lr=1e-3, grid_of="hut"),
        _cell("hut", "rte", {0: 0.40}, lr=0.1, grid_of="hut"),
    ]
    cells = glue_cells(results)
    assert set(cells) == {"hut", "lora", "ia3", "full"}
    lines = verdict_lines(cells)
    assert lines[0].startswith("- **HUT against LoRA**") and "better on 1 task. RTE +3.0 (better" in lines[0]
    assert "not distinguishable at 3 seeds" in lines[1]
    assert "not met. Full FT on RTE is below its target (51.0 < 56.0)" in lines[-1]
    # clearly above = more than 2 standard errors (6.0 points on RTE's 277 examples) above 52.7
    assert "Full FT on RTE is not clearly above the majority class (51.0, within 6.0 of 52.7)" in lines[-1]
    assert "LoRA on RTE is not clearly above" in lines[-1] and "HUT on RTE" not in lines[-1]  # 58.0 and 61.0
    assert lines[-1].endswith("The evidence: every rate tried, in the learning-rate table below.")
    text = fair_sections(results, tmp_path / "curves.png")
    assert text.startswith("## What was found")
    assert "| HUT | 0.001M | 61.0 ± 1.0 | 61.0 |" in text
    assert "| majority class | – | 52.7 | – |" in text
    assert "| HUT | 0.0003: 50.0, **0.001: 60.0**, 0.1: 40.0 |" in text  # every probe, the chosen rate in bold
    assert "| RTE | HUT − LoRA | 0: +3.0, 1: +3.0, 2: +3.0 |" in text
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_majority_constants_match_the_dev_sets(data_dir):
    from collections import Counter

    from hut_peft.lab.data.glue import load_glue

    for task in ("sst2", "mrpc", "rte", "cola", "stsb"):
        labels = list(load_glue(task, data_dir / "glue", split="validation")["label"])
        assert DEV_SIZE[task] == len(labels)
        if task not in ("cola", "stsb"):  # MCC and Pearson: 0 for a constant predictor
            assert MAJORITY[task] == pytest.approx(max(Counter(labels).values()) / len(labels), abs=5e-4)


def test_clear_margin_is_two_standard_errors_of_a_no_skill_predictor():
    import numpy as np
    from scipy import stats
    from sklearn.metrics import matthews_corrcoef

    from hut_peft.lab.report.fair import clear_margin

    n, m = DEV_SIZE["rte"], MAJORITY["rte"]  # accuracy: the binomial standard error at the majority rate
    assert clear_margin("rte") == pytest.approx(2 * stats.binom(n, m).std() / n, rel=1e-9)
    n = DEV_SIZE["stsb"]  # Pearson's r of independent samples: a Beta(n/2 - 1, n/2 - 1) on [-1, 1]
    null_r = stats.beta(n / 2 - 1, n / 2 - 1, loc=-1, scale=2)
    assert clear_margin("stsb") == pytest.approx(2 * null_r.std(), rel=1e-3)
    rng = np.random.default_rng(0)  # MCC of predictions independent of CoLA-like labels, simulated
    n = DEV_SIZE["cola"]
    labels = rng.random(n) < 0.69
    mccs = [matthews_corrcoef(labels, rng.random(n) < 0.5) for _ in range(2000)]
    assert clear_margin("cola") == pytest.approx(2 * np.std(mccs), rel=0.06)


def test_wall_time_counts_reused_seeds_once_and_parallel_workers_as_elapsed_share():
    from hut_peft.lab.report.fair import cost_lines

    def cell(table, walls, tags):
        return {"recipe": "glue", "config": {"tags": {"table": table, **tags}},
                "seeds": [{"seed": s, "wall_time_s": w} for s, w in enumerate(walls)]}

    alone = cell("main", [3600.0], {"lr_grid_of": "hut"})  # a grid probe, one worker
    final = cell("main", [3600.0, 1800.0, 1800.0],
                 {"label": "hut", "lr_selection": {"seed": 0, "of": "hut"}, "sweep_workers": 2})
    assert cost_lines([alone, final]) == [
        "- `glue/main`: 2.00 h of cell time, about 1.50 h elapsed (cells run by parallel sweep workers counted "
        "once per worker)"]
    assert cost_lines([alone]) == ["- `glue/main`: 1.00 h of cell time"]
    # A cell that takes another's rate (lr_from) ran its first seed itself: every seed counts, under its own label
    # or under the grid's label in another table (the weights table reruns "hut" at main's rate).
    borrowed = cell("precision", [1800.0, 1800.0], {"label": "hut-fp32", "lr_selection": {"seed": 0, "of": "hut"}})
    rerun = cell("weights", [1800.0], {"label": "hut", "lr_selection": {"seed": 0, "of": "hut"}})
    assert cost_lines([alone, borrowed, rerun])[1:] == ["- `glue/precision`: 1.00 h of cell time",
                                                        "- `glue/weights`: 0.50 h of cell time"]
    lora = cell("main", [1800.0], {"lr_grid_of": "lora"})  # a table of several methods: time per method beside
    assert cost_lines([alone, lora]) == ["- `glue/main`: 1.50 h of cell time", "  (HUT 1.00 h, LoRA 0.50 h)"]


def test_side_tables_are_paired_against_the_main_cells_they_test():
    from hut_peft.lab.report.fair import side_lines

    longer = _cell("hut", "cola", {0: 0.21, 1: 0.22, 2: 0.20})
    longer["config"]["tags"].update(label="hut-2x-epochs", table="paper-epochs")
    longer["settings"]["epochs"] = 8
    fp32 = _cell("hut", "cola", {0: 0.150, 1: 0.160, 2: 0.170})
    fp32["config"]["tags"].update(label="hut-fp32", table="precision")
    fp32["settings"]["precision"] = "fp32"
    results = [longer, fp32, _cell("hut", "cola", {0: 0.15, 1: 0.16, 2: 0.17}),
               _cell("lora", "cola", {0: 0.20, 1: 0.23, 2: 0.21})]
    lines = side_lines(results)
    assert lines[0] == ("- **hut-fp32** (CoLA, in fp32 instead of bf16: 3 epochs, fp32): 16.0, 0.0 against HUT at "
                        "3 epochs in bf16 (16.0; not distinguishable at 3 seeds, p = 1.00).")
    # differences 6, 6, 3 points: t = 5.0 on 2 degrees of freedom, p = 0.04
    assert lines[1].startswith("- **hut-2x-epochs** (CoLA, with the paper's longer schedule: 8 epochs, bf16): 21.0, "
                               "+5.0 against HUT at 3 epochs in bf16 (16.0; better, p = 0.04); -0.3 against LoRA")


def test_curves_average_seeds_per_epoch_and_draw_the_longer_schedule_dashed(tmp_path, monkeypatch):
    import matplotlib.figure

    from hut_peft.lab.report.fair import _mean_curve, curves_figure

    main = _cell("hut", "cola", {0: 0.10, 1: 0.20, 2: 0.30})
    assert _mean_curve(main) == ([1, 2], [pytest.approx(19.0), pytest.approx(20.0)])  # (9+19+29)/3, (10+20+30)/3
    longer = _cell("hut", "cola", {0: 0.25, 1: 0.35})
    longer["config"]["tags"].update(label="hut-2x-epochs", table="paper-epochs")
    longer["settings"]["epochs"] = 8
    drawn = {}
    save = matplotlib.figure.Figure.savefig

    def keep_lines(fig, *args, **kwargs):
        drawn.update({line.get_label(): line for ax in fig.axes for line in ax.get_lines()})
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep_lines)
    curves_figure(glue_cells([main]), tmp_path / "c.png", longer=glue_cells([longer], "paper-epochs"))
    assert drawn["HUT"].get_linestyle() == "-" and drawn["HUT, 8 epochs"].get_linestyle() == "--"
    assert drawn["HUT"].get_color() == drawn["HUT, 8 epochs"].get_color()  # one colour per method
    assert list(drawn["HUT, 8 epochs"].get_ydata()) == [pytest.approx(29.0), pytest.approx(30.0)]


def test_small_p_values_keep_a_significant_digit():
    from hut_peft.lab.report.fair import _p_value

    assert _p_value(0.0683) == "p = 0.07" and _p_value(0.0021) == "p = 0.002" and _p_value(float("nan")) == "–"
    assert _p_value(0.0) == _p_value(4e-4) == "p < 0.001"  # identical differences on every seed give p = 0


def _e2e_cell(label: str, bleu: dict[int, float], lr: float = 1e-3, grid_of: str | None = None,
              train: bool = True) -> dict:
    tags = {"label": label, "table": "main"}
    if grid_of:
        tags["lr_grid_of"] = grid_of
    elif train:
        tags["lr_selection"] = {"grid": {f"lr={lr:g}": bleu[0]}, "chosen": lr, "seed": 0}
    vals = list(bleu.values())
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    summary = {m: {"mean": mean * k, "std": std * k, "n": len(vals)}
               for m, k in (("BLEU", 1), ("NIST", 12), ("METEOR", 0.6), ("ROUGE_L", 1.1), ("CIDEr", 3))}
    return {"recipe": "e2e", "trainable_parameters": 1000, "summary": summary,
            "config": {"method": label, "train": train, "tags": tags},
            "settings": {"learning_rate": lr},
            "seeds": [{"seed": s, "metrics": {"BLEU": v}, "train_time_s": 50.0, "decode_time_s": 10.0}
                      for s, v in bleu.items()]}


def test_e2e_sections_pair_bleu_over_seeds_and_show_every_rate(tmp_path):
    results = [
        _e2e_cell("zero-shot", {0: 0.20}, train=False),
        _e2e_cell("hut", {0: 0.60, 1: 0.62}, lr=1e-2),
        _e2e_cell("lora", {0: 0.58, 1: 0.61}, lr=1e-3),
        _e2e_cell("ia3", {0: 0.50, 1: 0.52}, lr=1e-2),
        _e2e_cell("hut", {0: 0.55}, lr=3e-3, grid_of="hut"),
        _e2e_cell("hut", {0: 0.60}, lr=1e-2, grid_of="hut"),
        _e2e_cell("hut", {0: 0.30}, lr=3e-2, grid_of="hut"),
    ]
    text = fair_sections(results, tmp_path / "curves.png")
    assert text.startswith("## What was found")
    # HUT − (IA)³: +10.0 on both seeds (no spread: p = 0, better); HUT − LoRA: +2.0 and +1.0, t = 3 on 1 d.f.
    assert "HUT − (IA)³ +10.0 (better, p < 0.001)" in text
    lora = paired({0: 0.60, 1: 0.62}, {0: 0.58, 1: 0.61})
    assert lora["verdict"] == "not distinguishable at 2 seeds" and lora["p"] == pytest.approx(0.205, abs=1e-3)
    assert "HUT − LoRA +1.5 (not distinguishable at 2 seeds, p = 0.20)" in text
    assert "| HUT − LoRA | 0: +2.0, 1: +1.0 | +1.5 (± 6.4) | 0.205 | not distinguishable at 2 seeds |" in text
    assert "- HUT: 0.003: 55.0, **0.01: 60.0**, 0.03: 30.0" in text  # grid probes: every rate, never a table row
    rows = [text.index(row) for row in ("| zero-shot | 0.001M | – | 1 |", "| (IA)³ | 0.001M |", "| HUT | 0.001M | 0.01 | 2 |")]
    assert rows == sorted(rows)  # the floor first, then the GLUE table's order
    assert "| HUT | 0.001M | 0.01 | 2 | 61.0 ± 1.4 |" in text
    assert "| (IA)³ | 0.001M | 0.01 | 2 | 51.0 ± 1.4 | 6.12 ± 0.17 |" in text
    assert not (tmp_path / "curves.png").exists()  # no GLUE cells, no GLUE figure


def test_parameter_counts_print_millions_and_a_plain_zero():
    from hut_peft.lab.report.tables import format_params

    assert [format_params(n) for n in (None, 0, 1234, 354_920_000)] == ["–", "0", "0.001M", "354.9M"]


def test_display_names_keep_a_variant_suffix_and_unknown_labels():
    from hut_peft.lab.report.tables import display_name

    assert display_name("padapter (3.0M)") == "PAdapter (3.0M)" and display_name("ia3") == "(IA)³"
    assert display_name("hut-2x-epochs") == "hut-2x-epochs" and display_name("prefix (PreLayer)") == "prefix (PreLayer)"
