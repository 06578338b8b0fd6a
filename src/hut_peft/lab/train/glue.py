"""The GLUE recipe (the paper's Table 1): one method on one task, several seeds, on transformers' Trainer.

Flow: ``GlueRecipe`` (flags or a YAML file) → model + method from the registry → GLUE data (hub or a
local folder) → ``Trainer`` → metrics per epoch → ``results.json`` (written atomically, by rank 0 only).
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..heads import HEADS, SECOND
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
EMBEDDING_HEAD_MAX_LR = 1e-3  # default learning rates above this are lowered to it with the embedding head


@dataclass
class GlueRecipe:
    """One cell of Table 1: a method on a task, over seeds. ``None`` means "from the preset or method"."""

    task: str = field(metadata={"help": "GLUE task: cola, sst2, mrpc, qnli, rte, stsb, mnli, qqp."})
    method: str = field(default="hut", metadata={"help": "Method name from `hut-peft methods`."})
    model: Optional[str] = field(
        default=None, metadata={"help": "Hub id or folder; default: the embedded all-MiniLM-L6-v2 ('minilm')."}
    )
    data_dir: Optional[str] = field(
        default=None, metadata={"help": "Folder in the GLUE release layout; default: the hub (nyu-mll/glue)."}
    )
    head: str = field(
        default="auto", metadata={"help": "Classifier: 'cls' (the [CLS] cross-encoder, the paper's), 'embedding' "
                                          "(mean-pooled sentence embeddings), or 'auto': 'embedding' for "
                                          "sentence-transformers checkpoints, else 'cls'."}
    )
    output_dir: str = field(default="runs/glue", metadata={"help": "Where results.json and checkpoints go."})
    preset: Optional[str] = field(
        default=None, metadata={"help": "Hyper-parameters from the paper: 'paper' (Table 6) or 'paper-0.8m'."}
    )
    method_options: dict = field(
        default_factory=dict, metadata={"help": "Options for the method builder, e.g. '{r: 4}'."}
    )
    method_preset: Optional[str] = field(default=None, metadata={"help": "A named preset of the method."})
    learning_rate: Optional[float] = field(default=None, metadata={"help": "Default: preset, else the method's."})
    epochs: Optional[float] = field(default=None, metadata={"help": "Training epochs (default 3)."})
    batch_size: Optional[int] = field(default=None, metadata={"help": "Per-device batch size (default 16)."})
    max_length: Optional[int] = field(default=None, metadata={"help": "Max tokens per example (default 128)."})
    head_learning_rate: Optional[float] = field(
        default=None, metadata={"help": "Learning rate of the new task head (classifier); default: the method's. "
                                        "A fixed value gives every method the same head training."}
    )
    precision: str = field(
        default="auto", metadata={"help": "'auto' (bf16 autocast where the CPU or GPU computes bf16 natively, else "
                                          "fp32), 'bf16', 'fp16' (GPU) or 'fp32'. Parameters and optimizer state "
                                          "stay fp32."}
    )
    group_by_length: bool = field(
        default=True, metadata={"help": "Batch examples of similar length together (less padding, same epochs)."}
    )
    warmup_ratio: float = field(default=0.06, metadata={"help": "Linear warm-up share of the steps."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    seeds: str = field(default="0", metadata={"help": "Seeds, e.g. '0' or '0,1,2' or '0-4'."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Train on a seeded subset."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Evaluate on a seeded subset."})
    max_steps: int = field(default=-1, metadata={"help": "Stop after this many steps (overrides epochs)."})
    eval_every_epoch: bool = field(default=True, metadata={"help": "Evaluate after each epoch (best epoch too)."})
    save_checkpoints: bool = field(default=True, metadata={"help": "Save a checkpoint each epoch (for --resume)."})
    resume: bool = field(default=False, metadata={"help": "Skip finished seeds, continue from checkpoints."})
    save_adapter: bool = field(
        default=False, metadata={"help": "Save what the method trained (final weights; method.json + "
                                         "trainable.safetensors) to seed-N/adapter/, for `hut-peft weights`."}
    )
    logging_steps: int = field(default=50, metadata={"help": "Log the loss every N steps."})
    tags: dict = field(default_factory=dict, metadata={"help": "Labels kept in results.json (the sweep sets them)."})

    def __post_init__(self) -> None:
        from ..data.glue import GLUE_TASKS

        self.task = self.task.lower().replace("-", "")
        if self.task not in GLUE_TASKS:
            raise ValueError(f"--task {self.task!r} is not a GLUE task; choose from {', '.join(GLUE_TASKS)}.")
        parse_seeds(self.seeds)
        if self.head not in HEADS:
            raise ValueError(f"--head must be one of {', '.join(HEADS)}, got {self.head!r}.")
        for name in ("learning_rate", "epochs", "batch_size", "max_length", "max_train_samples"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {value}.")

    def resolved(self) -> dict[str, Any]:
        """The hyper-parameters actually used: explicit flags > preset > method defaults > recipe defaults.

        With the embedding head the default learning rate is capped at ``EMBEDDING_HEAD_MAX_LR`` and training
        runs 5 epochs: on RTE, HUT at its default 1e-2 (set for the [CLS] head) learns nothing through that head,
        and 1e-3 for 5 epochs learns (docs/glue.md has the measurements).
        """
        from ..heads import resolve_head
        from ..methods import get_method
        from ..models import DEFAULT_ENCODER, resolve_model
        from .common import resolve_precision
        from .presets import glue_preset

        method = get_method(self.method)
        head = resolve_head(self.head, resolve_model(self.model, default=DEFAULT_ENCODER).path)
        embedding = head == "embedding"
        lr = min(method.default_lr, EMBEDDING_HEAD_MAX_LR) if embedding else method.default_lr
        base: dict[str, Any] = {"head": head, "learning_rate": lr,
                                "epochs": 5 if embedding else 3, "batch_size": 16, "max_length": 128,
                                "warmup_ratio": self.warmup_ratio, "method_options": {},
                                "head_learning_rate": self.head_learning_rate,
                                "precision": resolve_precision(self.precision),
                                "group_by_length": self.group_by_length}
        if self.preset:
            base.update(glue_preset(self.preset, self.method, self.task))
        for name in ("learning_rate", "epochs", "batch_size", "max_length"):
            if getattr(self, name) is not None:
                base[name] = getattr(self, name)
        base["method_options"] = {**base["method_options"], **self.method_options}
        return base


def _tokenize(dataset, tokenizer, task, max_length: int, head: str):
    """``cls``: the pair packed into one sequence; ``embedding``: each sentence alone (the second with ``_b``)."""
    from ..data.glue import GLUE_TASKS

    spec = GLUE_TASKS[task]
    keys = [spec.sentence1_key] + ([spec.sentence2_key] if spec.sentence2_key else [])

    def encode(batch: dict[str, list]) -> dict[str, list]:
        if head == "cls":
            return tokenizer(*[batch[k] for k in keys], truncation=True, max_length=max_length)
        out = dict(tokenizer(batch[keys[0]], truncation=True, max_length=max_length))
        if len(keys) == 2:
            second = tokenizer(batch[keys[1]], truncation=True, max_length=max_length)
            out.update({k + SECOND: v for k, v in second.items()})
        return out

    keep = {"label"}
    encoded = dataset.map(encode, batched=True, remove_columns=[c for c in dataset.column_names if c not in keep],
                          desc=f"Tokenising {task}")
    # Tokens per example (both sentences): the length-grouped sampler's key and the throughput's count.
    return encoded.map(lambda row: {"length": len(row["input_ids"]) + len(row.get("input_ids" + SECOND) or [])})


def run_seed(recipe: GlueRecipe, seed: int, settings: dict[str, Any], seed_dir: Path) -> dict[str, Any]:
    """Train and evaluate one seed; return its metrics record."""
    import numpy as np
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, set_seed

    from ..data.glue import load_glue
    from ..heads import PairCollator
    from ..methods import apply_method, count_parameters
    from ..metrics.glue import compute_glue_metrics, preds_from_logits
    from ..models import DEFAULT_ENCODER, resolve_model

    set_seed(seed)
    source = resolve_model(recipe.model, default=DEFAULT_ENCODER)
    tokenizer = AutoTokenizer.from_pretrained(source.path, **source.kwargs())
    train = load_glue(recipe.task, recipe.data_dir, split="train", max_samples=recipe.max_train_samples, seed=seed)
    dev = load_glue(recipe.task, recipe.data_dir, split="validation", max_samples=recipe.max_eval_samples, seed=0)
    head = settings["head"]
    train = _tokenize(train, tokenizer, recipe.task, settings["max_length"], head)
    dev = _tokenize(dev, tokenizer, recipe.task, settings["max_length"], head)

    model = base_model(source, recipe.task, head)
    collator = DataCollatorWithPadding(tokenizer) if head == "cls" else PairCollator(tokenizer)
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model = apply_method(recipe.method, model, task_type="SEQ_CLS", preset=recipe.method_preset,
                         **settings["method_options"])
    trainable, total = count_parameters(model)

    def compute_metrics(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred
        logits = logits[0] if isinstance(logits, tuple) else logits
        return compute_glue_metrics(recipe.task, preds_from_logits(recipe.task, np.asarray(logits)), labels)

    args = training_arguments(
        seed_dir, seed, settings, recipe,
        per_device_eval_batch_size=max(32, settings["batch_size"]),
        warmup_steps=float(settings["warmup_ratio"]),  # transformers 5: a float < 1 is a ratio
        weight_decay=recipe.weight_decay,
        eval_strategy="epoch" if recipe.eval_every_epoch else "no",
        remove_unused_columns=head == "cls",  # the pair collator keeps what the embedding head reads
    )
    speed = throughput_callback(sum(train["length"]))
    optimizer = None
    if settings["head_learning_rate"] is not None:
        optimizer = head_optimizer(model, settings["learning_rate"], settings["head_learning_rate"],
                                   recipe.weight_decay)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=dev,
        data_collator=collator,
        compute_metrics=compute_metrics,
        callbacks=[speed],
        optimizers=(optimizer, None),
    )
    resume = recipe.resume and any(seed_dir.glob("checkpoint-*"))
    start = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=True if resume else None)
    per_epoch = epoch_metrics(trainer.state.log_history)
    final = trainer.evaluate()
    elapsed = time.perf_counter() - start
    if recipe.save_adapter:
        from ..methods.checkpoint import save_trainable

        # Under FSDP or ZeRO-3 each rank holds shards: every rank helps gather, rank 0 saves whole tensors.
        trained = whole_model(trainer, lambda: apply_method(recipe.method, base_model(source, recipe.task, head),
                                                            task_type="SEQ_CLS", preset=recipe.method_preset,
                                                            **settings["method_options"]))
        if trained is not None and trainer.is_world_process_zero():
            save_trainable(trained, seed_dir / "adapter")
    final_metrics = {k.removeprefix("eval_"): v for k, v in final.items() if not k.endswith(("runtime", "per_second"))}
    return {
        "seed": seed,
        "final": final_metrics,
        "per_epoch": per_epoch,
        "train_loss": train_out.training_loss,
        "train_steps": trainer.state.global_step,
        **speed.result(),
        "trainable_parameters": trainable,
        "total_parameters": total,
        "wall_time_s": elapsed,
        "_is_main": trainer.is_world_process_zero(),
    }


def base_model(source: Any, task: str, head: str) -> Any:
    """The recipe's model before a method is applied: the encoder under the [CLS] head or the embedding head.

    ``source`` is a resolved model (``models.resolve_model``). Also used by `hut-peft weights`, which rebuilds the
    base of a saved adapter to compare its merged weights with the untouched ones.
    """
    from transformers import AutoModel, AutoModelForSequenceClassification

    from ..data.glue import GLUE_TASKS
    from ..heads import EmbeddingClassifier

    spec = GLUE_TASKS[task]
    if head == "cls":
        return AutoModelForSequenceClassification.from_pretrained(
            source.path, num_labels=spec.num_labels,
            problem_type="regression" if spec.num_labels == 1 else "single_label_classification",
            **source.kwargs(),
        )
    return EmbeddingClassifier(AutoModel.from_pretrained(source.path, **source.kwargs()), spec.num_labels,
                               pair=spec.sentence2_key is not None)


def run_glue(recipe: GlueRecipe) -> dict[str, Any]:
    """Run every seed (skipping finished ones with ``resume``) and write ``results.json``."""
    from ..metrics.glue import PRIMARY_METRIC

    settings = recipe.resolved()
    out = Path(recipe.output_dir)
    key = PRIMARY_METRIC[recipe.task]
    started = time.perf_counter()

    def train_one(seed: int, seed_dir: Path) -> dict[str, Any]:
        record = run_seed(recipe, seed, settings, seed_dir)
        record["best"] = best_epoch(record, key)
        return record

    records, is_main = run_seeds(recipe.seeds, out, recipe.resume, train_one)
    if not is_main:
        return {}
    summary = {
        "final": {m: mean_std([r["final"].get(m) for r in records]) for m in records[0]["final"]
                  if isinstance(records[0]["final"][m], (int, float)) and m not in ("epoch", "loss")},
        "best": {m: mean_std([r["best"].get(m) for r in records]) for m in records[0]["best"]
                 if isinstance(records[0]["best"][m], (int, float)) and m not in ("epoch", "loss")},
    }
    return write_results(out, "glue", asdict(recipe), settings, records, summary, started, primary_metric=key)


def format_summary(results: dict[str, Any]) -> str:
    if not results:  # not the main process
        return ""
    key = results["primary_metric"]
    cfg = results["config"]
    head = results["settings"].get("head", "cls")
    lines = [f"GLUE {cfg['task']} · {cfg['method']} · {head} head · seeds {cfg['seeds']} · "
             f"{results['trainable_parameters']:,} trainable parameters"]
    for which in ("final", "best"):
        stats = results["summary"][which]
        parts = [f"{m} {s['mean']:.4f} ± {s['std']:.4f}" for m, s in stats.items()]
        lines.append(f"  {which:5s}: " + ", ".join(parts))
    lines.append(f"  headline ({key}, best epoch): {results['summary']['best'][key]['mean']:.4f}")
    lines.append(f"  results: {Path(cfg['output_dir']) / 'results.json'}  ({results['wall_time_s']:.0f} s)")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, GlueRecipe)


def run(args: argparse.Namespace) -> int:
    """Entry point of `hut-peft glue`."""
    results = run_glue(config_from_args(GlueRecipe, args))
    print(format_summary(results))
    return 0
