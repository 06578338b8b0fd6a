"""The E2E NLG recipe (the paper's Table 3): train a causal LM on (MR, reference) pairs, decode one output
per distinct MR with beam search, and score it with the challenge's official metrics.

Flow: ``E2ERecipe`` → model + method from the registry → E2E pairs → ``Trainer`` (loss on the reference
tokens only, label smoothing) → merge (no added latency) → ``generate`` per distinct MR → official-layout
files → BLEU, NIST, METEOR, ROUGE-L, CIDEr → ``results.json`` (atomic).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from .common import (
    add_dataclass_arguments,
    autocast,
    config_from_args,
    mean_std,
    parse_seeds,
    run_seeds,
    throughput_callback,
    training_arguments,
    whole_model,
    write_results,
)

logger = logging.getLogger(__name__)
SEPARATOR = " ||"  # between the linearised MR and the reference, as in the LoRA repository's E2E format


@dataclass
class E2ERecipe:
    """One row of Table 3: a method on E2E, over seeds. ``None`` means "from the preset or method"."""

    method: str = field(default="hut", metadata={"help": "Method name from `hut-peft methods`."})
    model: Optional[str] = field(
        default=None, metadata={"help": "Hub id or folder; default: the embedded SmolLM2-135M ('smollm2')."}
    )
    data_dir: Optional[str] = field(
        default=None, metadata={"help": "Folder with trainset.csv/devset.csv (or the LoRA repo's .txt files)."}
    )
    output_dir: str = field(default="runs/e2e", metadata={"help": "Where results.json, outputs, checkpoints go."})
    preset: Optional[str] = field(default=None, metadata={"help": "'paper' (Table 7) or 'lora-paper'."})
    method_options: dict = field(default_factory=dict, metadata={"help": "Method options, e.g. '{r: 4}'."})
    method_preset: Optional[str] = field(default=None, metadata={"help": "A named preset of the method."})
    learning_rate: Optional[float] = field(default=None, metadata={"help": "Default: preset, else the method's."})
    epochs: Optional[float] = field(default=None, metadata={"help": "Training epochs (default 1)."})
    batch_size: Optional[int] = field(default=None, metadata={"help": "Per-device batch size (default 4)."})
    warmup_steps: Optional[int] = field(default=None, metadata={"help": "Linear warm-up steps (default 0)."})
    weight_decay: Optional[float] = field(default=None, metadata={"help": "AdamW weight decay (default 0.01)."})
    label_smoothing: Optional[float] = field(default=None, metadata={"help": "Label smoothing (default 0.1)."})
    dropout: Optional[float] = field(default=None, metadata={"help": "Set the model's dropout (paper: 0.1)."})
    max_length: int = field(default=128, metadata={"help": "Max tokens of prompt + reference."})
    precision: str = field(
        default="auto", metadata={"help": "'auto' (bf16 autocast for training and decoding where the CPU or GPU "
                                          "computes bf16 natively, else fp32), 'bf16', 'fp16' (GPU) or 'fp32'."}
    )
    group_by_length: bool = field(
        default=True, metadata={"help": "Batch training pairs of similar length together (less padding)."}
    )
    seeds: str = field(default="0", metadata={"help": "Seeds, e.g. '0' or '0,1,2'."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Train on a seeded subset of pairs."})
    max_eval_mrs: Optional[int] = field(default=None, metadata={"help": "Decode only the first N distinct MRs."})
    eval_split: str = field(default="validation", metadata={"help": "'validation' or 'test'."})
    max_steps: int = field(default=-1, metadata={"help": "Stop after this many steps (overrides epochs)."})
    train: bool = field(default=True, metadata={"help": "--no-train decodes the base model (zero-shot)."})
    num_beams: Optional[int] = field(default=None, metadata={"help": "Beam size (default 10)."})
    length_penalty: Optional[float] = field(default=None, metadata={"help": "Beam length penalty (default 0.9)."})
    no_repeat_ngram_size: Optional[int] = field(default=None, metadata={"help": "Default 4."})
    max_new_tokens: int = field(default=64, metadata={"help": "Longest generated output."})
    decode_batch_size: int = field(default=8, metadata={"help": "MRs decoded per generate() call."})
    merge_for_decoding: bool = field(default=True, metadata={"help": "Decode with the merged model."})
    save_checkpoints: bool = field(default=True, metadata={"help": "Save a checkpoint each epoch."})
    resume: bool = field(default=False, metadata={"help": "Skip finished seeds, continue from checkpoints."})
    logging_steps: int = field(default=50, metadata={"help": "Log the loss every N steps."})
    tags: dict = field(default_factory=dict, metadata={"help": "Labels kept in results.json (the sweep sets them)."})

    def __post_init__(self) -> None:
        parse_seeds(self.seeds)
        if self.eval_split not in ("validation", "test"):
            raise ValueError(f"--eval-split must be 'validation' or 'test', got {self.eval_split!r}.")
        for name in ("learning_rate", "epochs", "batch_size", "max_train_samples", "max_eval_mrs", "num_beams"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {value}.")

    def resolved(self) -> dict[str, Any]:
        """Hyper-parameters used: explicit flags > preset > method default lr > recipe defaults."""
        from ..methods import get_method
        from .common import resolve_precision
        from .presets import e2e_preset

        settings: dict[str, Any] = {
            "learning_rate": get_method(self.method).default_lr, "epochs": 1, "batch_size": 4, "warmup_steps": 0,
            "weight_decay": 0.01, "label_smoothing": 0.1, "dropout": None, "num_beams": 10, "length_penalty": 0.9,
            "no_repeat_ngram_size": 4, "method_options": {},
        }
        if self.preset:
            settings.update(e2e_preset(self.preset, self.method))
        for name in list(settings):
            if name != "method_options" and getattr(self, name, None) is not None:
                settings[name] = getattr(self, name)
        settings["method_options"] = {**settings["method_options"], **self.method_options}
        settings.update(precision=resolve_precision(self.precision), group_by_length=self.group_by_length)
        return settings


class CausalLMCollator:
    """Right-pads ``input_ids`` and ``labels`` (-100 on padding: no loss there)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            labels[i, :n] = torch.tensor(f["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def prompt_text(mr: str) -> str:
    from ..data.e2e import linearize_mr

    return linearize_mr(mr) + SEPARATOR


def encode_pair(tokenizer, mr: str, ref: str, max_length: int) -> dict[str, list[int]]:
    """Prompt tokens get label -100: the loss is on the reference (and EOS) only."""
    prompt = tokenizer(prompt_text(mr), add_special_tokens=False)["input_ids"]
    target = tokenizer(" " + ref.strip(), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt + target)[:max_length]
    labels = ([-100] * len(prompt) + target)[:max_length]
    return {"input_ids": ids, "labels": labels}


def _set_dropout(model, p: float) -> None:
    """Set every dropout probability the config exposes (GPT-2: *_pdrop; Llama: attention_dropout)."""
    import torch

    for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "attention_dropout", "hidden_dropout", "dropout"):
        if hasattr(model.config, name):
            setattr(model.config, name, p)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
        elif hasattr(module, "attention_dropout") and isinstance(module.attention_dropout, float):
            module.attention_dropout = p


def decode(model, tokenizer, mrs: list[str], settings: dict[str, Any], recipe: E2ERecipe) -> list[str]:
    """Beam-search one output per MR, batched, with left padding; cut at the first newline."""
    import torch
    from tqdm.auto import tqdm

    tokenizer.padding_side = "left"
    outputs: list[str] = []
    model.eval()
    for start in tqdm(range(0, len(mrs), recipe.decode_batch_size), desc="Decoding MRs", unit="batch"):
        chunk = mrs[start:start + recipe.decode_batch_size]
        batch = tokenizer([prompt_text(mr) for mr in chunk], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(model.device)
        with torch.no_grad(), autocast(settings["precision"], model.device):
            generated = model.generate(
                **batch, num_beams=settings["num_beams"], length_penalty=settings["length_penalty"],
                no_repeat_ngram_size=settings["no_repeat_ngram_size"], max_new_tokens=recipe.max_new_tokens,
                do_sample=False, early_stopping=True, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        for row in generated[:, batch["input_ids"].shape[1]:]:
            text = tokenizer.decode(row, skip_special_tokens=True)
            outputs.append(text.strip().split("\n")[0].strip())
    return outputs


def run_seed(recipe: E2ERecipe, seed: int, settings: dict[str, Any], seed_dir: Path) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, set_seed

    from ..data.e2e import group_by_mr, load_e2e, write_official_layout
    from ..methods import apply_method, count_parameters, get_method, merge_method
    from ..metrics.e2e import score_e2e
    from ..models import DEFAULT_DECODER, drop_gguf_quantization_marker, resolve_model

    set_seed(seed)
    source = resolve_model(recipe.model, default=DEFAULT_DECODER)
    tokenizer = AutoTokenizer.from_pretrained(source.path, **source.kwargs())
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    def base_model():
        model = drop_gguf_quantization_marker(AutoModelForCausalLM.from_pretrained(source.path, **source.kwargs()))
        if settings["dropout"] is not None:
            _set_dropout(model, settings["dropout"])
        return model

    model = base_model()
    groups = group_by_mr(load_e2e(recipe.eval_split, recipe.data_dir))
    if recipe.max_eval_mrs:
        groups = groups[: recipe.max_eval_mrs]

    trainable = total = None
    train_loss, steps, train_time, speed_record = None, 0, 0.0, {}
    if recipe.train:
        import random

        pairs = load_e2e("train", recipe.data_dir)
        if recipe.max_train_samples and recipe.max_train_samples < len(pairs):
            pairs = random.Random(seed).sample(pairs, recipe.max_train_samples)
        train = Dataset.from_list([encode_pair(tokenizer, p.mr, p.ref, recipe.max_length) for p in pairs])
        train = train.map(lambda row: {"length": len(row["input_ids"])})  # the length-grouped sampler's key
        model = apply_method(recipe.method, model, task_type="CAUSAL_LM", preset=recipe.method_preset,
                             **settings["method_options"])
        trainable, total = count_parameters(model)
        args = training_arguments(
            seed_dir, seed, settings, recipe,
            warmup_steps=settings["warmup_steps"],
            weight_decay=settings["weight_decay"],
            label_smoothing_factor=settings["label_smoothing"],
            remove_unused_columns=False,
        )
        speed = throughput_callback(sum(train["length"]))
        trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=[speed],
                          data_collator=CausalLMCollator(tokenizer.pad_token_id))
        resume = recipe.resume and any(seed_dir.glob("checkpoint-*"))
        start = time.perf_counter()
        out = trainer.train(resume_from_checkpoint=True if resume else None)
        train_time = time.perf_counter() - start
        train_loss, steps, speed_record = out.training_loss, trainer.state.global_step, speed.result()
        # Rank 0 decodes alone: under FSDP or ZeRO-3 it needs the trained weights whole, in a model of its own.
        model = whole_model(trainer, lambda: apply_method(recipe.method, base_model(), task_type="CAUSAL_LM",
                                                          preset=recipe.method_preset, **settings["method_options"]))
        if not trainer.is_world_process_zero():
            return {"_is_main": False}
        if recipe.merge_for_decoding and get_method(recipe.method).merges:
            model = merge_method(model)  # the base architecture again: no added latency while decoding
    else:
        trainable, total = 0, sum(p.numel() for p in model.parameters())

    start = time.perf_counter()
    predictions = decode(model, tokenizer, [mr for mr, _ in groups], settings, recipe)
    decode_time = time.perf_counter() - start
    refs_path, preds_path = seed_dir / "references.txt", seed_dir / "predictions.txt"
    write_official_layout(groups, predictions, refs_path, preds_path)
    scores = score_e2e(predictions, [refs for _, refs in groups])
    return {
        "seed": seed,
        "metrics": scores,
        "train_loss": train_loss,
        "train_steps": steps,
        "train_time_s": train_time,
        **{k: v for k, v in speed_record.items() if k != "train_time_s"},
        "decode_time_s": decode_time,
        "eval_mrs": len(groups),
        "trainable_parameters": trainable,
        "total_parameters": total,
        "references": str(refs_path),
        "predictions": str(preds_path),
        "_is_main": True,
    }


def run_e2e(recipe: E2ERecipe) -> dict[str, Any]:
    """Run every seed (skipping finished ones with ``resume``) and write ``results.json``."""
    settings = recipe.resolved()
    out = Path(recipe.output_dir)
    started = time.perf_counter()
    records, is_main = run_seeds(recipe.seeds, out, recipe.resume,
                                 lambda seed, seed_dir: run_seed(recipe, seed, settings, seed_dir))
    if not is_main:
        return {}
    summary = {m: mean_std([r["metrics"][m] for r in records]) for m in records[0]["metrics"]}
    return write_results(out, "e2e", asdict(recipe), settings, records, summary, started)


def rescore_results(results_path: str | Path, score=None) -> list[tuple[int, str, float, float]]:
    """Score a finished E2E run again from its saved outputs and rewrite its numbers in place: each seed's
    metrics in ``results.json`` (and that seed's ``metrics.json`` where one is kept), and the summary. For
    results scored by an earlier, wrong scorer; nothing else in the files changes.

    Each seed's ``references.txt`` and ``predictions.txt`` are looked for in ``seed-N/`` beside
    ``results.json``, or beside it for a single seed copied flat.

    Args:
        results_path: an E2E ``results.json``.
        score: ``(predictions, references) -> metrics``; default the official metrics, :func:`score_e2e`.

    Returns:
        ``(seed, metric, old, new)`` for every stored metric that changed.

    Raises:
        ValueError: not an E2E results file.
        FileNotFoundError: a seed's saved outputs are missing.
    """
    from ..atomic import write_json_atomic
    from ..data.e2e import read_official_refs, read_predictions
    from ..metrics.e2e import score_e2e

    score = score or score_e2e
    path = Path(results_path)
    results = json.loads(path.read_text(encoding="utf-8"))
    if results.get("recipe") != "e2e":
        raise ValueError(f"{path} is not an E2E results.json (recipe {results.get('recipe')!r}).")
    changed = []
    for record in results["seeds"]:
        seed_dir = path.parent / f"seed-{record['seed']}"
        if not seed_dir.is_dir() and len(results["seeds"]) == 1:
            seed_dir = path.parent
        refs_path, preds_path = seed_dir / "references.txt", seed_dir / "predictions.txt"
        if not (refs_path.is_file() and preds_path.is_file()):
            raise FileNotFoundError(f"{path}: seed {record['seed']} has no references.txt and predictions.txt "
                                    f"in {seed_dir}, so it cannot be scored again.")
        new = score(read_predictions(preds_path), read_official_refs(refs_path))
        changed += [(record["seed"], m, old, new[m]) for m, old in record["metrics"].items() if new[m] != old]
        record["metrics"] = {m: new[m] for m in record["metrics"]}
        kept = seed_dir / "metrics.json"
        if kept.is_file():
            seed_record = json.loads(kept.read_text(encoding="utf-8"))
            seed_record["metrics"] = record["metrics"]
            write_json_atomic(kept, seed_record)
    results["summary"] = {m: mean_std([r["metrics"][m] for r in results["seeds"]]) for m in results["summary"]}
    write_json_atomic(path, results)
    return changed


def format_summary(results: dict[str, Any]) -> str:
    if not results:
        return ""
    cfg = results["config"]
    lines = [f"E2E · {cfg['method']} · seeds {cfg['seeds']} · {results['seeds'][0]['eval_mrs']} MRs · "
             f"{results['trainable_parameters']:,} trainable parameters"]
    for name, stats in results["summary"].items():
        lines.append(f"  {name:8s} {stats['mean']:.4f} ± {stats['std']:.4f}")
    lines.append(f"  results: {Path(cfg['output_dir']) / 'results.json'}  ({results['wall_time_s']:.0f} s)")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, E2ERecipe)


def run(args: argparse.Namespace) -> int:
    """Entry point of `hut-peft e2e`."""
    print(format_summary(run_e2e(config_from_args(E2ERecipe, args))))
    return 0
