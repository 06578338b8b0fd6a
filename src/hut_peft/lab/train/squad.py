"""The SQuAD v1.1 recipe (the paper's Section 4.4.3): extractive question answering, one method over seeds.

Flow, the shape of ``train/glue.py``: ``SquadRecipe`` (flags or a YAML file) → ``AutoModelForQuestionAnswering`` +
method from the registry (peft task type ``QUESTION_ANS``: the span head ``qa_outputs`` trains with every method)
→ SQuAD (hub or the official JSON, ``data/squad.py``) → features as transformers' ``run_qa.py`` example makes them
(sliding windows of ``max_length`` tokens with ``doc_stride`` overlap, offset mappings) → ``Trainer`` → n-best span
post-processing per question (``n_best`` 20, ``max_answer_length`` 30) → official EM / F1 (``metrics/squad.py``)
per epoch → ``results.json`` and ``seed-N/predictions.json`` (``{id: answer}``, the layout ``evaluate-v1.1.py``
reads).

Every feature, evaluation ones included, carries ``start_positions`` / ``end_positions`` (run_qa's training labels:
the gold span's tokens, or the [CLS] token where the window does not hold the answer), so the ``Trainer`` reports an
evaluation loss and calls ``compute_metrics``; its one change is to evaluate in dataset order
(``ordered_eval_trainer``).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..atomic import write_json_atomic
from .common import (
    add_dataclass_arguments,
    best_epoch,
    config_from_args,
    epoch_metrics,
    head_optimizer,
    mean_std,
    parse_seeds,
    run_seeds,
    throughput_callback,
    training_arguments,
    whole_model,
    write_results,
)

logger = logging.getLogger(__name__)
LABELS = ["start_positions", "end_positions"]
MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions", "length")


@dataclass
class SquadRecipe:
    """A method on SQuAD v1.1, over seeds. ``None`` means "the method's default" (learning rate)."""

    method: str = field(default="hut", metadata={"help": "Method name from `hut-peft methods`."})
    model: Optional[str] = field(
        default=None, metadata={"help": "Hub id or folder; default: the embedded all-MiniLM-L6-v2 ('minilm')."}
    )
    data_dir: Optional[str] = field(
        default=None, metadata={"help": "Folder with the official dev-v1.1.json (alone: split by article into "
                                        "train and eval halves, docs/squad.md; with train-v1.1.json: the official "
                                        "splits); default: the hub (rajpurkar/squad)."}
    )
    output_dir: str = field(default="runs/squad", metadata={"help": "Where results.json, predictions, checkpoints go."})
    method_options: dict = field(default_factory=dict, metadata={"help": "Options for the method, e.g. '{r: 4}'."})
    method_preset: Optional[str] = field(default=None, metadata={"help": "A named preset of the method."})
    learning_rate: Optional[float] = field(default=None, metadata={"help": "Default: the method's."})
    head_learning_rate: Optional[float] = field(
        default=None, metadata={"help": "Learning rate of the span head (qa_outputs); default: the method's. A fixed "
                                        "value gives every method the same head training."}
    )
    epochs: float = field(default=2.0, metadata={"help": "Training epochs."})
    batch_size: int = field(default=16, metadata={"help": "Per-device batch size (features)."})
    max_length: int = field(default=384, metadata={"help": "Tokens per window (run_qa's default)."})
    doc_stride: int = field(default=128, metadata={"help": "Overlap of consecutive windows of a long context."})
    n_best: int = field(default=20, metadata={"help": "Start and end candidates per window in post-processing."})
    max_answer_length: int = field(default=30, metadata={"help": "Longest answer span, in tokens."})
    precision: str = field(
        default="auto", metadata={"help": "'auto' (bf16 autocast where the CPU or GPU computes bf16 natively, else "
                                          "fp32), 'bf16', 'fp16' (GPU) or 'fp32'."}
    )
    group_by_length: bool = field(default=True, metadata={"help": "Batch features of similar length together."})
    warmup_ratio: float = field(default=0.06, metadata={"help": "Linear warm-up share of the steps."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    seeds: str = field(default="0", metadata={"help": "Seeds, e.g. '0' or '0,1,2' or '0-4'."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Train on a seeded subset of questions."})
    max_eval_samples: Optional[int] = field(
        default=None, metadata={"help": "Evaluate on a fixed (seed 0) subset of the questions."}
    )
    max_steps: int = field(default=-1, metadata={"help": "Stop after this many steps (overrides epochs)."})
    eval_every_epoch: bool = field(default=True, metadata={"help": "Evaluate after each epoch (best epoch too)."})
    save_checkpoints: bool = field(default=True, metadata={"help": "Save a checkpoint each epoch (for --resume)."})
    resume: bool = field(default=False, metadata={"help": "Skip finished seeds, continue from checkpoints."})
    save_adapter: bool = field(
        default=False, metadata={"help": "Save what the method trained (method.json + trainable.safetensors) to "
                                         "seed-N/adapter/, for `hut-peft explain`."}
    )
    logging_steps: int = field(default=50, metadata={"help": "Log the loss every N steps."})
    tags: dict = field(default_factory=dict, metadata={"help": "Labels kept in results.json (the sweep sets them)."})

    def __post_init__(self) -> None:
        parse_seeds(self.seeds)
        for name in ("learning_rate", "head_learning_rate", "epochs", "batch_size", "max_length", "doc_stride",
                     "n_best", "max_answer_length", "max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {value}.")
        if self.doc_stride >= self.max_length:
            raise ValueError(f"--doc-stride ({self.doc_stride}) must be below --max-length ({self.max_length}).")

    def resolved(self) -> dict[str, Any]:
        """The hyper-parameters actually used: explicit flags > the method's default learning rate."""
        from ..methods import get_method
        from .common import resolve_precision

        return {"learning_rate": self.learning_rate or get_method(self.method).default_lr,
                "head_learning_rate": self.head_learning_rate, "epochs": self.epochs, "batch_size": self.batch_size,
                "max_length": self.max_length, "doc_stride": self.doc_stride, "n_best": self.n_best,
                "max_answer_length": self.max_answer_length, "warmup_ratio": self.warmup_ratio,
                "method_options": dict(self.method_options), "precision": resolve_precision(self.precision),
                "group_by_length": self.group_by_length}


# ------------------------------------------------------------------------------------------ pre-processing
def encode_windows(tokenizer: Any, questions: Sequence[str], contexts: Sequence[str], max_length: int,
                   doc_stride: int) -> Any:
    """run_qa's tokenisation: question and context as a pair (context first where the tokenizer pads on the left),
    the context cut into windows of ``max_length`` tokens overlapping by ``doc_stride``, with offsets; a
    ``BatchEncoding`` (``overflow_to_sample_mapping`` maps each window to its question)."""
    pad_on_right = tokenizer.padding_side == "right"
    questions = [q.lstrip() for q in questions]  # leading spaces waste window space
    return tokenizer(
        questions if pad_on_right else list(contexts),
        list(contexts) if pad_on_right else questions,
        truncation="only_second" if pad_on_right else "only_first",
        max_length=max_length, stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
    )


def prepare_features(examples: Mapping[str, list], tokenizer: Any, max_length: int, doc_stride: int) -> dict[str, list]:
    """run_qa's features of a batch of questions: one per window of the context, with labels and offsets.

    Each feature gets ``start_positions`` / ``end_positions`` (the tokens of the first gold answer, or the [CLS]
    index where this window does not hold it whole), ``example_id`` and ``offset_mapping`` (character offsets
    into the context for context tokens, ``None`` for the question and special tokens), and ``length``.
    """
    context_index = 1 if tokenizer.padding_side == "right" else 0
    encoded = encode_windows(tokenizer, examples["question"], examples["context"], max_length, doc_stride)
    sample_mapping = encoded.pop("overflow_to_sample_mapping")
    offset_mapping = encoded.pop("offset_mapping")
    out: dict[str, list] = {**encoded, "start_positions": [], "end_positions": [], "example_id": [],
                            "offset_mapping": [], "length": []}
    for i, offsets in enumerate(offset_mapping):
        input_ids = encoded["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
        sequence_ids = encoded.sequence_ids(i)
        sample = sample_mapping[i]
        answers = examples["answers"][sample]
        start = end = cls_index
        if answers["answer_start"]:
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            first = sequence_ids.index(context_index)
            last = len(sequence_ids) - 1 - sequence_ids[::-1].index(context_index)
            if offsets[first][0] <= start_char and offsets[last][1] >= end_char:
                start = first
                while start <= last and offsets[start][0] <= start_char:
                    start += 1
                start -= 1
                end = last
                while end >= first and offsets[end][1] >= end_char:
                    end -= 1
                end += 1
        out["start_positions"].append(start)
        out["end_positions"].append(end)
        out["example_id"].append(examples["id"][sample])
        out["offset_mapping"].append([o if s == context_index else None for o, s in zip(offsets, sequence_ids)])
        out["length"].append(len(input_ids))
    return out


def featurize(dataset: Any, tokenizer: Any, max_length: int, doc_stride: int) -> Any:
    """``prepare_features`` over a questions ``Dataset``: a features ``Dataset`` (several rows per long context)."""
    return dataset.map(lambda batch: prepare_features(batch, tokenizer, max_length, doc_stride), batched=True,
                       remove_columns=dataset.column_names, desc="Windows of SQuAD contexts")


def model_inputs(features: Any) -> Any:
    """The columns the model and the length-grouped sampler read (no ids, no offsets)."""
    return features.remove_columns([c for c in features.column_names if c not in MODEL_COLUMNS])


# ----------------------------------------------------------------------------------------- post-processing
def postprocess(examples: Any, features: Any, start_logits: Sequence, end_logits: Sequence, n_best: int = 20,
                max_answer_length: int = 30) -> dict[str, str]:
    """run_qa's n-best span selection: ``{question id: answer text}``.

    Per question, over all its windows: the ``n_best`` highest start and end logits of each window are paired;
    a pair counts when both tokens are context tokens of that window, the end is not before the start and the
    span has at most ``max_answer_length`` tokens; the pair with the highest start + end logit wins and its text is
    cut from the context by the offsets. A question with no valid pair gets "" (scored 0).

    ``start_logits`` / ``end_logits``: ``(n_features, length)``, in ``features`` order; rows may be padded (the
    Trainer pads with -100) past each feature's length.
    """
    by_example: dict[str, list[int]] = defaultdict(list)
    for i, example_id in enumerate(features["example_id"]):
        by_example[example_id].append(i)
    offsets_of = features["offset_mapping"]
    predictions: dict[str, str] = {}
    for example in examples:
        best_score, best_text = None, ""
        for i in by_example.get(example["id"], []):
            found = best_span(start_logits[i], end_logits[i], offsets_of[i], n_best, max_answer_length)
            if found is not None and (best_score is None or found[0] > best_score):
                best_score, best_text = found[0], example["context"][offsets_of[i][found[1]][0]:
                                                                     offsets_of[i][found[2]][1]]
        predictions[example["id"]] = best_text
    return predictions


def best_span(start_logits: Sequence[float], end_logits: Sequence[float], offsets: Sequence, n_best: int = 20,
              max_answer_length: int = 30) -> Optional[tuple[float, int, int]]:
    """The best valid span of one window, ``(start + end logit, start token, end token)``, or None (see
    ``postprocess``: context tokens only, end not before start, at most ``max_answer_length`` tokens)."""
    import numpy as np

    starts, ends = np.asarray(start_logits), np.asarray(end_logits)
    best = None
    for s in np.argsort(starts)[::-1][:n_best]:
        for e in np.argsort(ends)[::-1][:n_best]:
            if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                continue
            if e < s or e - s + 1 > max_answer_length:
                continue
            score = float(starts[s] + ends[e])
            if best is None or score > best[0]:
                best = (score, int(s), int(e))
    return best


def references(examples: Any) -> dict[str, list[str]]:
    """``{question id: gold answer texts}`` for ``metrics.squad.squad_scores``."""
    return {example["id"]: list(example["answers"]["text"]) for example in examples}


# --------------------------------------------------------------------------------------------- the recipe
def base_model(source: Any) -> Any:
    """The recipe's model before a method: the encoder with a new span head (``qa_outputs``, seeded init).

    ``source`` is a resolved model (``models.resolve_model``); `hut-peft explain` rebuilds saved models on it.
    """
    from transformers import AutoModelForQuestionAnswering

    return AutoModelForQuestionAnswering.from_pretrained(source.path, **source.kwargs())


def ordered_eval_trainer(**kwargs: Any) -> Any:
    """transformers' ``Trainer`` that evaluates the features in dataset order.

    ``postprocess`` pairs the i-th row of the predictions with the i-th feature. With ``group_by_length`` the stock
    Trainer (transformers 5) also draws evaluation batches through a seeded ``LengthGroupedSampler``, a shuffled
    order, which would pair logits with the wrong questions (F1 at chance); the evaluation features are sorted by
    length instead, so in-order batches pad little.
    """
    import torch
    from transformers import Trainer

    class OrderedEvalTrainer(Trainer):
        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            return torch.utils.data.SequentialSampler(eval_dataset)

    return OrderedEvalTrainer(**kwargs)


def run_seed(recipe: SquadRecipe, seed: int, settings: dict[str, Any], seed_dir: Path) -> dict[str, Any]:
    """Train and evaluate one seed; write its predictions; return its metrics record."""
    from transformers import AutoTokenizer, DataCollatorWithPadding, set_seed

    from ..data.squad import load_squad
    from ..methods import apply_method, count_parameters
    from ..metrics.squad import squad_scores
    from ..models import DEFAULT_ENCODER, resolve_model

    set_seed(seed)
    source = resolve_model(recipe.model, default=DEFAULT_ENCODER)
    tokenizer = AutoTokenizer.from_pretrained(source.path, **source.kwargs())
    train_examples = load_squad(recipe.data_dir, "train", max_samples=recipe.max_train_samples, seed=seed)
    dev_examples = load_squad(recipe.data_dir, "validation", max_samples=recipe.max_eval_samples, seed=0)
    train = featurize(train_examples, tokenizer, settings["max_length"], settings["doc_stride"])
    # Sorted by length: the Trainer evaluates in order, so each batch pads to similar lengths (post-processing
    # groups features by question id, in any order).
    dev = featurize(dev_examples, tokenizer, settings["max_length"], settings["doc_stride"]).sort("length")
    gold = references(dev_examples)

    def build() -> Any:
        return apply_method(recipe.method, base_model(source), task_type="QUESTION_ANS", preset=recipe.method_preset,
                            **settings["method_options"])

    model = build()
    trainable, total = count_parameters(model)
    latest: dict[str, dict[str, str]] = {}

    def compute_metrics(eval_pred) -> dict[str, float]:
        start_logits, end_logits = eval_pred.predictions[:2]
        latest["predictions"] = postprocess(dev_examples, dev, start_logits, end_logits, settings["n_best"],
                                            settings["max_answer_length"])
        scores = squad_scores(latest["predictions"], gold)
        return {"exact_match": scores["exact_match"], "f1": scores["f1"]}

    args = training_arguments(
        seed_dir, seed, settings, recipe,
        per_device_eval_batch_size=max(32, settings["batch_size"]),
        warmup_steps=float(settings["warmup_ratio"]),  # transformers 5: a float < 1 is a ratio
        weight_decay=recipe.weight_decay,
        eval_strategy="epoch" if recipe.eval_every_epoch else "no",
        label_names=LABELS,
    )
    speed = throughput_callback(sum(train["length"]))
    optimizer = None
    if settings["head_learning_rate"] is not None:
        optimizer = head_optimizer(model, settings["learning_rate"], settings["head_learning_rate"],
                                   recipe.weight_decay)
    trainer = ordered_eval_trainer(model=model, args=args, train_dataset=model_inputs(train),
                                   eval_dataset=model_inputs(dev), data_collator=DataCollatorWithPadding(tokenizer),
                                   compute_metrics=compute_metrics, callbacks=[speed], optimizers=(optimizer, None))
    resume = recipe.resume and any(seed_dir.glob("checkpoint-*"))
    start = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=True if resume else None)
    per_epoch = epoch_metrics(trainer.state.log_history)
    if per_epoch and per_epoch[-1].get("epoch") == trainer.state.epoch and "predictions" in latest:
        final = {f"eval_{k}": v for k, v in per_epoch[-1].items()}  # the last epoch's evaluation: the same model
    else:
        final = trainer.evaluate()
    elapsed = time.perf_counter() - start
    if trainer.is_world_process_zero():
        write_json_atomic(seed_dir / "predictions.json", latest["predictions"])
    if recipe.save_adapter:
        from ..methods.checkpoint import save_trainable

        trained = whole_model(trainer, build)
        if trained is not None and trainer.is_world_process_zero():
            save_trainable(trained, seed_dir / "adapter")
    return {
        "seed": seed,
        "final": {k.removeprefix("eval_"): v for k, v in final.items() if not k.endswith(("runtime", "per_second"))},
        "per_epoch": per_epoch,
        "train_loss": train_out.training_loss,
        "train_steps": trainer.state.global_step,
        "train_questions": len(train_examples),
        "train_features": len(train),
        "eval_questions": len(dev_examples),
        "eval_features": len(dev),
        "eval_time_s": speed.eval_s,
        **speed.result(),
        "trainable_parameters": trainable,
        "total_parameters": total,
        "wall_time_s": elapsed,
        "_is_main": trainer.is_world_process_zero(),
    }


def run_squad(recipe: SquadRecipe) -> dict[str, Any]:
    """Run every seed (skipping finished ones with ``resume``) and write ``results.json``."""
    from ..data.squad import SQUAD, source_description

    settings = recipe.resolved()
    out = Path(recipe.output_dir)
    started = time.perf_counter()

    def train_one(seed: int, seed_dir: Path) -> dict[str, Any]:
        record = run_seed(recipe, seed, settings, seed_dir)
        record["best"] = best_epoch(record, SQUAD.metric)
        return record

    records, is_main = run_seeds(recipe.seeds, out, recipe.resume, train_one)
    if not is_main:
        return {}
    summary = {which: {m: mean_std([r[which].get(m) for r in records]) for m in SQUAD.metrics}
               for which in ("final", "best")}
    return write_results(out, "squad", asdict(recipe), settings, records, summary, started,
                         primary_metric=SQUAD.metric, data=source_description(recipe.data_dir))


def format_summary(results: dict[str, Any]) -> str:
    if not results:  # not the main process
        return ""
    cfg = results["config"]
    lines = [f"SQuAD v1.1 · {cfg['method']} · seeds {cfg['seeds']} · {results['trainable_parameters']:,} trainable "
             f"parameters · {results['data']}"]
    for which in ("final", "best"):
        stats = results["summary"][which]
        lines.append(f"  {which:5s}: " + ", ".join(f"{m} {s['mean']:.2f} ± {s['std']:.2f}" for m, s in stats.items()))
    lines.append(f"  headline (f1, best epoch): {results['summary']['best']['f1']['mean']:.2f}")
    lines.append(f"  results: {Path(cfg['output_dir']) / 'results.json'}  ({results['wall_time_s']:.0f} s); "
                 f"predictions: seed-N/predictions.json")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, SquadRecipe)


def run(args: argparse.Namespace) -> int:
    """Entry point of `hut-peft squad`."""
    results = run_squad(config_from_args(SquadRecipe, args))
    print(format_summary(results))
    return 0
