"""Figure 4's machinery: integrated gradients' completeness, the attribution shares, the paired statistics, the
figure files and `hut-peft explain` end to end on a tiny model."""

from __future__ import annotations

import json

import pytest

from squad_fixtures import CONTEXTS


def _example(question: str, answer: str, context: str = CONTEXTS[0]) -> dict:
    return {"id": "x", "question": question, "context": context,
            "answers": {"text": [answer], "answer_start": [context.index(answer)]}}


def test_integrated_gradients_sum_to_the_score_difference(tiny_qa_setup, minilm_tokenizer):
    """Completeness: Σ attributions = f(x) − f(baseline) up to the integral's error, which Captum reports."""
    from hut_peft.lab.attribution import explain_question
    from hut_peft.lab.explain import load_model

    model = load_model(None, str(tiny_qa_setup[0]))
    e = explain_question(model, minilm_tokenizer, _example("Which team won Super Bowl 50?", "Denver Broncos"), n_steps=32)
    assert abs(e.target) > 1e-3  # a real difference to explain
    assert sum(e.scores) == pytest.approx(e.target, abs=1e-3 * max(1.0, abs(e.target)))
    assert sum(e.scores) - e.target == pytest.approx(e.delta, abs=1e-4)
    assert [s for s, k in zip(e.scores, e.kinds) if k == "special"] == [0.0] * e.kinds.count("special")
    assert sum(e.shares.values()) == pytest.approx(1.0) and e.prediction in CONTEXTS[0]


def test_shares_split_the_attribution_by_where_it_falls():
    from hut_peft.lab.attribution import attribution_shares, content_words

    assert content_words("Which team won the Super Bowl?") == {"team", "won", "super", "bowl"}
    context = "the team Denver won it"
    kinds = ["special", "question", "question", "context", "context", "context", "context", "context", "special"]
    spans = [None, (0, 4), (5, 8), (0, 3), (4, 8), (9, 15), (16, 19), (20, 22), None]
    scores = [9.0, 1.0, -1.0, 1.0, -2.0, 3.0, 1.0, 1.0, 9.0]  # specials never count; signs do not matter
    shares = attribution_shares(kinds, spans, scores, context, "Which team won?", [(9, 15)])
    assert shares == pytest.approx({"answer": 0.3, "question_words_in_context": 0.3, "question": 0.2,
                                    "other_context": 0.2})


def _records(n: int, gap: float) -> list[dict]:
    records = []
    for i in range(n):
        for model, answer in (("hut", 0.2 + gap + 0.01 * i), ("lora", 0.2 + 0.01 * i)):
            records.append({"id": f"q{i}", "model": model, "exact_match": float(i % 2 == 0), "f1": 0.5,
                            "target": 1.0, "delta": 1e-4,
                            "shares": {"answer": answer + (0.1 if i % 2 == 0 else 0.0),
                                       "question_words_in_context": 0.1, "question": 0.2 + 0.001 * i}})
    return records


def test_paired_claim_reports_direction_test_and_effect_size():
    from hut_peft.lab.explain import claim_markdown, paired_claim, pick_examples

    ids = [f"q{i}" for i in range(20)]
    claim = paired_claim(_records(20, 0.05), "hut", "lora", ids)
    answer = claim["shares"]["answer"]
    assert answer["rank_biserial"] == 1.0 and answer["share_of_questions_hut_higher"] == 1.0
    assert answer["median_difference"] == pytest.approx(0.05) and answer["p_value"] < 1e-3
    assert claim["shares"]["question_words_in_context"]["p_value"] == 1.0  # no difference at all
    # Within the questions both answer right (even ids) and both answer wrong (odd ids), the same gap, paired.
    outcome = claim["answer_share_by_outcome"]
    assert outcome["both_right"]["n"] == outcome["both_wrong"]["n"] == 10
    assert outcome["both_wrong"]["median_difference"] == pytest.approx(0.05) and outcome["both_wrong"]["rank_biserial"] == 1
    right_wrong = claim["correct_vs_wrong"]["lora"]
    assert (right_wrong["n_correct"], right_wrong["n_wrong"]) == (10, 10) and right_wrong["rank_biserial"] > 0.5
    markdown = claim_markdown(claim, "hut-peft explain ...")
    assert "| gold answer span |" in markdown and "| gold answer span, questions both answer wrong (10) |" in markdown
    assert pick_examples(_records(20, 0.05), "hut", "lora", ids, 3) == ["q0", "q2", "q4"]  # all right or all wrong
    # The rule: first only-HUT-right, first only-LoRA-right, first both-right, then round again.
    outcomes = {"q0": (0, 0), "q1": (1, 1), "q2": (0, 1), "q3": (1, 0), "q4": (0, 1), "q5": (1, 0), "q6": (1, 1)}
    records = [{"id": q, "model": m, "exact_match": float(o[i])} for q, o in outcomes.items()
               for i, m in enumerate(("hut", "lora"))]
    assert pick_examples(records, "hut", "lora", list(outcomes), 3) == ["q3", "q2", "q1"]
    assert pick_examples(records, "hut", "lora", list(outcomes), 5) == ["q3", "q2", "q1", "q5", "q4"]
    with pytest.raises(ValueError, match="only 2 questions"):
        paired_claim(_records(2, 0.05), "hut", "lora", ids)


def test_parse_models_errors_name_the_item():
    from hut_peft.lab.explain import parse_models

    assert parse_models(["hut=a", "base"]) == {"hut": "a", "base": None}
    with pytest.raises(ValueError, match="neither 'base' nor LABEL=ADAPTER_DIR"):
        parse_models(["hut"])
    with pytest.raises(ValueError, match="given twice"):
        parse_models(["hut=a", "hut=b"])


def test_explain_cli_writes_records_claim_and_figure(tiny_qa_setup, tmp_path, capsys):
    from hut_peft.cli import main
    from hut_peft.lab.explain import load_model
    from hut_peft.lab.methods import apply_method
    from hut_peft.lab.methods.checkpoint import save_trainable

    model_dir, data = tiny_qa_setup
    adapters = {}
    for method in ("hut", "lora"):
        trained = apply_method(method, load_model(None, str(model_dir)), task_type="QUESTION_ANS")
        adapters[method] = save_trainable(trained, tmp_path / method)
    out = tmp_path / "explain"
    args = ["explain", "--models", f"hut={adapters['hut']}", f"lora={adapters['lora']}", "base", "--model",
            str(model_dir), "--data-dir", str(data), "--sample", "6", "--n-steps", "4", "--output-dir", str(out),
            "--questions", "Bravo-3,Delta-4"]
    assert main(args[:3] + args[4:]) == 0  # HUT alone: its records, no claim yet
    assert len((out / "records.jsonl").read_text().splitlines()) == 6 and not (out / "claim.json").exists()
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 12 and {r["model"] for r in records} == {"hut", "lora"}  # base: in the figure only
    claim = json.loads((out / "claim.json").read_text())
    assert claim["questions"] == 6 and set(claim["shares"]) == {"answer", "question_words_in_context", "question"}
    # Untrained adapters leave W0 as it was (LoRA's B is zero, HUT's means start at one): correlation 1, no change.
    assert set(claim["weights"]) == {"hut", "lora"}
    assert all(set(by) == {"0"} for by in claim["weights"].values())
    assert all(w["pearson"] == pytest.approx(1.0) and w["rel_change"] < 1e-6
               for by in claim["weights"].values() for w in by.values())
    assert "Pearson(W0, W_new) 1.0000" in (out / "claim.md").read_text()
    assert (out / "figure4.png").stat().st_size > 1000
    page = (out / "figure4.html").read_text()
    assert page.count("<h3>") == 6 and "class='gold" in page
    capsys.readouterr()
    assert main(args) == 0  # resumed: nothing recomputed
    assert len((out / "records.jsonl").read_text().splitlines()) == 12


def test_a_sweep_cell_resolves_to_its_best_rates_adapter(tmp_path):
    from hut_peft.lab.explain import resolve_adapter

    for lr, f1 in ((1e-3, 20.0), (3e-3, 25.0), (1e-2, 25.0)):  # a tie: the smaller rate wins, as in the sweep
        folder = tmp_path / "hut" / f"lr={lr:g}"
        (folder / "seed-0" / "adapter").mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({"recipe": "squad", "primary_metric": "f1",
                                                         "settings": {"learning_rate": lr},
                                                         "summary": {"best": {"f1": {"mean": f1}}}}))
    assert resolve_adapter(str(tmp_path / "hut")) == str(tmp_path / "hut" / "lr=0.003" / "seed-0" / "adapter")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "method.json").write_text("{}")
    assert resolve_adapter(str(tmp_path / "adapter")) == str(tmp_path / "adapter")
    with pytest.raises(FileNotFoundError, match="neither an adapter"):
        resolve_adapter(str(tmp_path / "nothing"))


def _sweep_cell(root, method: str, model_dir, seeds: list[int]):
    """A sweep cell's layout: one grid run (seed 0's adapter) and the chosen cell's later seeds."""
    from hut_peft.lab.explain import load_model
    from hut_peft.lab.methods import apply_method
    from hut_peft.lab.methods.checkpoint import save_trainable

    cell = root / method
    grid = cell / "lr=0.01"
    grid.mkdir(parents=True)
    (grid / "results.json").write_text(json.dumps({"recipe": "squad", "primary_metric": "f1",
                                                   "settings": {"learning_rate": 0.01},
                                                   "summary": {"best": {"f1": {"mean": 30.0}}}}))
    for seed in seeds:
        trained = apply_method(method, load_model(None, str(model_dir), seed=seed), task_type="QUESTION_ANS")
        save_trainable(trained, (grid if seed == 0 else cell) / f"seed-{seed}" / "adapter")
    return cell


def test_explain_pairs_shares_averaged_over_training_seeds(tiny_qa_setup, tmp_path, capsys):
    from hut_peft.cli import main

    model_dir, data = tiny_qa_setup
    cells = {m: _sweep_cell(tmp_path, m, model_dir, [0, 1]) for m in ("hut", "lora")}
    out = tmp_path / "explain"
    args = ["explain", "--models", f"hut={cells['hut']}", f"lora={cells['lora']}", "--model", str(model_dir),
            "--data-dir", str(data), "--sample", "6", "--n-steps", "4", "--output-dir", str(out), "--seeds", "0,1"]
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert sorted({(r["model"], r["seed"]) for r in records}) == [("hut", 0), ("hut", 1), ("lora", 0), ("lora", 1)]
    assert len(records) == 24
    claim = json.loads((out / "claim.json").read_text())
    assert claim["seeds"] == [0, 1] and set(claim["per_seed"]) == {"0", "1"} and claim["questions"] == 6
    assert {label: set(by) for label, by in claim["weights"].items()} == {"hut": {"0", "1"}, "lora": {"0", "1"}}
    # The headline pairs each question's mean over the two seeds: recompute one share by hand.
    from hut_peft.lab.explain import seed_means

    means = {(r["id"], r["model"]): r for r in seed_means(records, [0, 1])}
    q = records[0]["id"]
    by_hand = sum(r["shares"]["answer"] for r in records if r["id"] == q and r["model"] == "hut") / 2
    assert means[(q, "hut")]["shares"]["answer"] == pytest.approx(by_hand)
    text = (out / "claim.md").read_text()
    assert "averaged over training seeds 0, 1" in text and "- seed 1: all: median" in text
    assert set(claim["per_seed"]["1"]) >= {"answer"} and "right (or wrong) when it is so on every seed" in text
    capsys.readouterr()
    assert main(args[:-1] + ["0,2"]) != 0  # a seed the sweep has not trained yet: named, nothing written
    err = capsys.readouterr().err
    assert "seed-2/adapter does not exist yet" in err and "has not finished" in err
    assert len((out / "records.jsonl").read_text().splitlines()) == 24


def test_seeds_of_a_single_adapter_folder_are_refused(tmp_path):
    from hut_peft.lab.explain import resolve_adapter

    (tmp_path / "method.json").write_text("{}")
    with pytest.raises(ValueError, match="one adapter \\(one training seed\\)"):
        resolve_adapter(str(tmp_path), seed=1)
