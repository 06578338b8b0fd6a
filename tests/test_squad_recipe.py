"""The SQuAD recipe: run_qa's windows and labels, the post-processing round trip, and a tiny end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hut_peft.lab.methods import METHODS
from squad_fixtures import CONTEXTS, QUESTIONS


def _examples():
    import datasets

    rows = []
    for i, (c, question, answer) in enumerate(QUESTIONS):
        context = CONTEXTS[c]
        rows.append({"id": f"q{i}", "title": f"T{c}", "context": context, "question": "  " + question,
                     "answers": {"text": [answer], "answer_start": [context.index(answer)]}})
    return datasets.Dataset.from_list(rows)


def test_windows_overlap_and_labels_recover_every_gold_span(minilm_tokenizer):
    """Short windows force several per context; each window that holds the answer labels exactly its tokens."""
    from hut_peft.lab.train.squad import featurize

    examples = _examples()
    features = featurize(examples, minilm_tokenizer, max_length=48, doc_stride=16)
    assert len(features) > len(examples)  # long contexts became several windows
    assert max(features["length"]) <= 48
    gold = {e["id"]: (e["context"], e["answers"]["text"][0]) for e in examples}
    holding = set()
    for f in features:
        context, answer = gold[f["example_id"]]
        s, e = f["start_positions"], f["end_positions"]
        offsets = f["offset_mapping"]
        assert offsets[0] is None  # [CLS] and the question carry no context offsets
        if s == 0:  # this window does not hold the whole answer: both labels point at [CLS]
            assert e == 0
            continue
        assert context[offsets[s][0]:offsets[e][1]] == answer
        holding.add(f["example_id"])
    assert holding == set(gold)  # every question is answerable from at least one of its windows


def test_postprocess_round_trip_recovers_the_gold_answers(minilm_tokenizer):
    """Logits peaked at the labelled tokens give back the gold texts, EM 100, through the n-best search."""
    from hut_peft.lab.metrics.squad import squad_scores
    from hut_peft.lab.train.squad import featurize, postprocess, references

    examples = _examples()
    features = featurize(examples, minilm_tokenizer, max_length=48, doc_stride=16)
    width = max(features["length"]) + 5  # padded past every feature, as the Trainer pads with -100
    start, end = np.full((len(features), width), -100.0), np.full((len(features), width), -100.0)
    rng = np.random.default_rng(0)
    for i, f in enumerate(features):
        start[i, :f["length"]] = rng.normal(size=f["length"])
        end[i, :f["length"]] = rng.normal(size=f["length"])
        if f["start_positions"]:
            start[i, f["start_positions"]] = end[i, f["end_positions"]] = 10.0
        start[i, 0] = end[i, 0] = 50.0  # [CLS] scores highest but is not a context token: never chosen
    predictions = postprocess(examples, features, start, end, n_best=20, max_answer_length=30)
    assert predictions == {e["id"]: e["answers"]["text"][0] for e in examples}
    assert squad_scores(predictions, references(examples))["exact_match"] == 100.0
    # max_answer_length caps the span: a 4-token answer cannot be returned under a 2-token limit.
    short = postprocess(examples, features, start, end, n_best=20, max_answer_length=2)
    assert short["q4"] != "seven million square kilometres"


def test_recipe_end_to_end_writes_official_predictions(tiny_qa_setup, tmp_path, capsys):
    from hut_peft.cli import main
    from hut_peft.lab.data.squad import load_squad
    from hut_peft.lab.metrics.squad import squad_scores
    from hut_peft.lab.train.squad import references

    model, data = tiny_qa_setup
    out = tmp_path / "run"
    assert main(["squad", "--method", "hut", "--model", str(model), "--data-dir", str(data), "--output-dir",
                 str(out), "--epochs", "2", "--batch-size", "4", "--max-length", "64", "--doc-stride", "16",
                 "--logging-steps", "1", "--no-save-checkpoints", "--save-adapter", "--precision", "fp32"]) == 0
    assert "headline (f1, best epoch)" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["recipe"] == "squad" and results["primary_metric"] == "f1"
    assert "split by article" in results["data"]
    record = results["seeds"][0]
    assert len(record["per_epoch"]) == 2 and record["eval_questions"] == 6 and record["train_features"] > 6
    assert set(results["summary"]["best"]) == {"exact_match", "f1"}
    # The predictions file is the official layout and scores to the recipe's own final numbers.
    predictions = json.loads((out / "seed-0" / "predictions.json").read_text())
    gold = references(load_squad(data, "validation"))
    assert set(predictions) == set(gold) and all(isinstance(v, str) for v in predictions.values())
    assert squad_scores(predictions, gold)["f1"] == pytest.approx(record["final"]["f1"])
    saved = json.loads((out / "seed-0" / "adapter" / "method.json").read_text())
    assert saved["task_type"] == "QUESTION_ANS" and saved["trainable"] == results["trainable_parameters"]
    # The trained model, run over the features in order by hand, gives the recipe's own predictions: the Trainer
    # evaluated in order (with length-grouped batches it would not, and the logits would meet the wrong questions).
    import torch
    from transformers import AutoTokenizer

    from hut_peft.lab.explain import load_model
    from hut_peft.lab.train.squad import featurize, postprocess

    tokenizer = AutoTokenizer.from_pretrained(model)
    trained = load_model(str(out / "seed-0" / "adapter"), str(model))
    dev = load_squad(data, "validation")
    features = featurize(dev, tokenizer, 64, 16)
    start, end = np.full((len(features), 64), -100.0), np.full((len(features), 64), -100.0)
    with torch.no_grad():
        for i, f in enumerate(features):
            o = trained(**{k: torch.tensor([f[k]]) for k in ("input_ids", "attention_mask", "token_type_ids")})
            start[i, :f["length"]], end[i, :f["length"]] = o.start_logits[0].numpy(), o.end_logits[0].numpy()
    assert postprocess(dev, features, start, end) == predictions


def test_evaluation_runs_in_dataset_order_under_length_grouping(tmp_path):
    import datasets
    import torch
    from transformers import TrainingArguments

    from hut_peft.lab.train.squad import ordered_eval_trainer

    rows = datasets.Dataset.from_list([{"input_ids": list(range(1, 2 + (7 * i) % 23)), "length": 1 + (7 * i) % 23}
                                       for i in range(40)])
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=4, report_to=[], use_cpu=True,
                             train_sampling_strategy="group_by_length")
    trainer = ordered_eval_trainer(model=torch.nn.Linear(1, 1), args=args, eval_dataset=rows)
    assert list(iter(trainer._get_eval_sampler(rows))) == list(range(40))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_registry_method_trains_on_spans(tiny_qa_setup, method):
    """Every registry method that applies to a QA encoder (all but prefix tuning) trains there: the span head
    (peft's QUESTION_ANS task type: a copy of qa_outputs in modules_to_save; the hand-written methods train it
    directly) and the method's own parameters both change in one step on a window's span loss."""
    import torch

    from hut_peft.lab.methods import apply_method
    from hut_peft.lab.models import resolve_model
    from hut_peft.lab.train.squad import base_model

    torch.manual_seed(0)
    qa = base_model(resolve_model(str(tiny_qa_setup[0])))
    if method == "prefix":  # the one that does not apply: transformers 5 encoders take no past key values
        with pytest.raises(ValueError, match="cannot apply to BertForQuestionAnswering"):
            apply_method(method, qa, task_type="QUESTION_ANS")
        return
    model = apply_method(method, qa, task_type="QUESTION_ANS")
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    head = [n for n in trainable if "qa_outputs" in n]
    assert head and any("qa_outputs" not in n for n in trainable)
    if METHODS[method].source in ("peft", "paper"):  # peft's wrappers (HUT is a peft tuner)
        assert all("modules_to_save" in n for n in head)
    before = {n: p.detach().clone() for n, p in trainable.items()}
    batch = {"input_ids": torch.randint(5, 90, (2, 24)), "attention_mask": torch.ones(2, 24, dtype=torch.long),
             "start_positions": torch.tensor([3, 5]), "end_positions": torch.tensor([4, 9])}
    model.train()
    loss = model(**batch).loss
    loss.backward()
    torch.optim.SGD(list(trainable.values()), lr=1.0).step()
    changed = {n for n, p in trainable.items() if not torch.equal(p.detach(), before[n])}
    assert torch.isfinite(loss) and any("qa_outputs" in n for n in changed)
    assert any("qa_outputs" not in n for n in changed)


def test_sweep_plans_squad_cells_grids_first(tmp_path):
    from hut_peft.lab.sweep import run_sweep

    spec = {"recipe": "squad", "output_dir": str(tmp_path), "seeds": "0,1", "grids_first": True,
            "variants": [{"label": "hut", "method": "hut", "lr_grid": [1e-3, 1e-2]},
                         {"label": "lora", "method": "lora", "lr_grid": [1e-4, 1e-3]}]}
    names = [cell.name for cell, _ in run_sweep(spec, dry_run=True)]
    assert names[:4] == ["main/squad/hut/lr=0.001", "main/squad/hut/lr=0.01", "main/squad/lora/lr=0.0001",
                         "main/squad/lora/lr=0.001"]
    assert names[4:] == ["main/squad/hut", "main/squad/lora"]



def test_the_chosen_cell_keeps_the_grids_seed_0_answers(tmp_path):
    """Stage 2 reuses the grid's seed-0 run: its record and its official predictions file both come along."""
    from hut_peft.lab.sweep import Cell, _reuse_seed

    cell = Cell(table="main", task=None, label="hut", recipe="squad",
                fields={"seeds": "0,1", "learning_rate": 1e-2, "tags": {"label": "hut"}})
    probe = cell.probe(1e-2)
    seed_dir = probe.output_dir(tmp_path) / "seed-0"
    seed_dir.mkdir(parents=True)
    (seed_dir / "metrics.json").write_text('{"seed": 0}')
    (seed_dir / "predictions.json").write_text('{"q1": "Denver Broncos"}')
    _reuse_seed(probe, cell, tmp_path, 0)
    target = cell.output_dir(tmp_path) / "seed-0"
    assert json.loads((target / "predictions.json").read_text()) == {"q1": "Denver Broncos"}
    assert (target / "metrics.json").read_text() == '{"seed": 0}'


def _cell(root, label: str, f1s: list[float], lr: float, grid_of: str | None = None) -> None:
    seeds = [{"seed": i, "best": {"f1": f, "exact_match": f - 10}, "final": {"f1": f, "exact_match": f - 10},
              "per_epoch": [], "train_tokens_per_s": 900.0, "wall_time_s": 300.0, "train_questions": 2400,
              "train_features": 2500, "eval_questions": 1000} for i, f in enumerate(f1s)]
    tags = {"label": label, "table": "main", **({"lr_grid_of": grid_of} if grid_of else
                                                {"lr_selection": {"of": label, "seed": 0, "chosen": lr}})}
    summary = {w: {m: {"mean": sum(s["best"][m] for s in seeds) / len(seeds), "std": 1.0, "n": len(seeds)}
                   for m in ("exact_match", "f1")} for w in ("best", "final")}
    folder = root / "main" / "squad" / (f"{grid_of}/lr={lr:g}" if grid_of else label)
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({
        "recipe": "squad", "primary_metric": "f1", "data": "dev halves", "config": {"method": label, "tags": tags},
        "settings": {"learning_rate": lr, "max_length": 384, "doc_stride": 128, "epochs": 1, "batch_size": 8,
                     "precision": "bf16"},
        "seeds": seeds, "summary": summary, "trainable_parameters": 1000, "total_parameters": 10**6,
        "wall_time_s": 900.0}))


def test_report_writes_the_squad_table_rates_and_verdicts(tmp_path):
    from hut_peft.lab.report.build import build_report

    _cell(tmp_path, "hut", [30.0, 32.0, 31.0], 1e-2)
    _cell(tmp_path, "lora", [20.0, 21.0, 22.0], 1e-3)
    _cell(tmp_path, "hut", [30.0], 1e-2, grid_of="hut")
    _cell(tmp_path, "hut", [25.0], 3e-3, grid_of="hut")
    text = build_report([str(tmp_path)], tmp_path / "R.md")
    assert "## SQuAD v1.1" in text and "- **SQuAD v1.1**" in text
    assert "HUT − LoRA +10.0 (better" in text  # F1 points, paired over the three seeds
    assert "| HUT | 0.001M | 0.01 | 3 | 21.0 ± 1.0 | 31.0 ± 1.0 | 900 |" in text
    assert "- HUT: 0.003: 25.0, **0.01: 30.0**" in text


def test_report_shows_the_squad_grid_before_any_cell_finishes(tmp_path):
    from hut_peft.lab.report.fair import squad_cells, squad_sections
    from hut_peft.lab.report.tables import collect

    _cell(tmp_path, "hut", [25.0], 3e-3, grid_of="hut")
    results = collect([tmp_path])
    text = "\n".join(squad_sections(results, squad_cells(results)))
    assert "No method has finished its seeds yet" in text and "- HUT: 0.003: 25.0" in text
    assert "### Learning-rate grids so far" in text


def test_report_carries_the_measured_claim_and_links_the_figure(tmp_path):
    from hut_peft.lab.report.fair import claim_section

    assert claim_section(tmp_path, tmp_path / "docs" / "R.md") == ""
    (tmp_path / "explain").mkdir()
    (tmp_path / "explain" / "claim.md").write_text("| share | ... |\n")
    (tmp_path / "explain" / "figure4.png").write_bytes(b"png")
    text = claim_section(tmp_path, tmp_path / "docs" / "R.md")
    assert "| share | ... |" in text and "(../explain/figure4.png)" in text and "(../explain/figure4.html)" in text
