"""`hut-peft tenants`: fine-tune one HUT adapter per tenant of a dataset, all in one joint run (issue 28).

    hut-peft tenants DATA --model M --output-dir DIR [--separate] [--epochs N] [--batch-size B]
                     [--learning-rate LR] [--seed S] [--target-modules ...] [--resume]

DATA is a JSONL, JSON, CSV or parquet file, or a ``datasets`` hub name, in TRL's formats (``text``, or ``prompt`` +
``completion``) plus a ``tenant`` column. Every tenant's adapter lands in ``DIR/<tenant>/`` as ``save_pretrained``
writes it (so ``hut-peft serve --adapters DIR`` serves them all), moved into place in one rename as soon as that
tenant's last step is done: a run killed mid-way keeps its finished tenants, and ``--resume`` trains the others
(exactly as the full run would have: each tenant's batches do not depend on the other tenants). ``--separate``
trains the same tenants one ordinary run after another on the once-loaded model, with the same batches: the
baseline that a joint run equals (docs/tenants.md). Bad input fails before any training, with one line.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from .atomic import write_json_atomic

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")  # a folder name on every OS, and a peft adapter name
DATA_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}  # else a hub name
SUMMARY = "tenants.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="JSONL/JSON/CSV/parquet file or a datasets hub name: 'text' (or 'prompt' + "
                                     "'completion') and 'tenant' columns.")
    parser.add_argument("--model", default="smollm2", help="Base causal LM: a hub id, a folder, or 'smollm2' (embedded).")
    parser.add_argument("--output-dir", required=True, help="Each tenant's adapter is saved to OUTPUT_DIR/<tenant>/.")
    parser.add_argument("--separate", action="store_true",
                        help="Train the tenants one ordinary run after another (model loaded once): the baseline.")
    parser.add_argument("--epochs", type=int, default=1, help="Passes over each tenant's rows.")
    parser.add_argument("--batch-size", type=int, default=8, help="Rows per tenant batch.")
    parser.add_argument("--rows-per-step", type=int, default=64,
                        help="Joint mode: at most this many rows per step (several tenants' batches, one each).")
    parser.add_argument("--learning-rate", type=float, default=5e-3, help="Peak learning rate (linear decay).")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay.")
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="Clip each tenant's gradient norm (0: off).")
    parser.add_argument("--seed", type=int, default=0, help="Shuffling seed: the same batches in both modes.")
    parser.add_argument("--target-modules", nargs="+", default=["q_proj", "v_proj"], help="Modules HUT adapts.")
    parser.add_argument("--rank", type=int, default=1,
                        help="HUT's r; from the identity init r trains like 1 under AdamW (docs/method.md).")
    parser.add_argument("--max-length", type=int, default=256, help="Tokens per row, at most.")
    parser.add_argument("--split", default="train", help="Split of a datasets hub name.")
    parser.add_argument("--resume", action="store_true",
                        help="Keep tenants already saved in OUTPUT_DIR and train only the others.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's).")


# ------------------------------------------------------------------------------------------------- input
def read_rows(data: str, split: str = "train") -> list[dict[str, Any]]:
    """The rows of a local file (by its suffix) or of a ``datasets`` hub dataset.

    Raises:
        ValueError: A local file with an unknown suffix.
        FileNotFoundError: A path-like DATA that does not exist.
    """
    path = Path(data)
    if path.suffix.lower() in DATA_SUFFIXES or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"No data file {data!r}.")
        kind = DATA_SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise ValueError(f"Cannot read {data!r}: use a .jsonl, .json, .csv or .parquet file, or a datasets hub name.")
        if kind == "csv":  # every column a string: "007" stays a tenant name
            import pandas as pd

            return pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
        if kind == "parquet":
            import pandas as pd

            return pd.read_parquet(path).to_dict("records")
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".jsonl" or not text.lstrip().startswith("["):
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)
    from datasets import load_dataset

    return list(load_dataset(data, split=split))


def validate_rows(rows: Sequence[dict[str, Any]], output_dir: Path, resume: bool) -> tuple[tuple[str, ...], list[str]]:
    """The text format and each row's tenant; every problem with the input raises before any model is loaded.

    Raises:
        ValueError: No rows; text columns missing; a row without a tenant or without text; a tenant name that is
            not a safe folder name; two tenants sharing an output folder (names equal but for case); tenant
            folders already in ``output_dir`` without ``resume``.
    """
    from ..hut.tenant_data import TENANT_COLUMN, text_format

    if not rows:
        raise ValueError("The data has no rows.")
    fmt = text_format(list(rows[0]))
    if TENANT_COLUMN not in rows[0]:
        raise ValueError(f"The data has columns {sorted(rows[0])} but no '{TENANT_COLUMN}' column.")
    tenants = []
    for i, row in enumerate(rows):
        tenant = row.get(TENANT_COLUMN)
        tenant = "" if tenant is None else str(tenant).strip()
        if not tenant:
            raise ValueError(f"Row {i} has no tenant (empty '{TENANT_COLUMN}'): every row must name its tenant.")
        missing = [c for c in fmt if not isinstance(row.get(c), str) or not row[c].strip()]
        if missing:
            raise ValueError(f"Row {i} (tenant {tenant!r}) has no {' / '.join(missing)}: tenant {tenant!r} would "
                             "train on an empty example; drop the row or fill it.")
        tenants.append(tenant)
    folders: dict[str, str] = {}
    for tenant in dict.fromkeys(tenants):
        if not SAFE_NAME.match(tenant):
            raise ValueError(f"Tenant name {tenant!r} is not a safe folder name: use letters, digits, '_' and '-' "
                             "(at most 100, starting with a letter or digit); it names OUTPUT_DIR/<tenant>/.")
        other = folders.setdefault(tenant.lower(), tenant)
        if other != tenant:
            raise ValueError(f"Tenants {other!r} and {tenant!r} would share one output folder on a case-insensitive "
                             "file system: rename one.")
    existing = [t for t in dict.fromkeys(tenants) if (output_dir / t).exists()]
    if existing and not resume:
        raise ValueError(f"{output_dir / existing[0]} already exists ({len(existing)} tenant folders in all): pass "
                         "--resume to keep them and train the other tenants, or choose another --output-dir.")
    return fmt, tenants


def tokenize_rows(rows: Sequence[dict[str, Any]], tenants: Sequence[str], tokenizer: Any, fmt: tuple[str, ...],
                  max_length: int) -> list[dict[str, list[int]]]:
    """Token ids and labels per row.

    Raises:
        ValueError: A tenant without any token to learn (every row empty or cut away by ``max_length``).
    """
    from ..hut.tenant_data import tokenize_row

    out = [tokenize_row(row, tokenizer, fmt, max_length) for row in rows]
    learnt: dict[str, int] = {}
    for tenant, row in zip(tenants, out):
        learnt[tenant] = learnt.get(tenant, 0) + sum(1 for t in row["labels"][1:] if t != -100)
    empty = [t for t, n in learnt.items() if n == 0]
    if empty:
        raise ValueError(f"Tenant {empty[0]!r} has no token to learn (its completions are empty or cut by "
                         f"--max-length {max_length}): an empty tenant.")
    return out


# ---------------------------------------------------------------------------------------------- training
def load_model(name: str) -> tuple[Any, Any]:
    """The base causal LM (fp32) and its tokenizer, with a pad token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .models import DEFAULT_DECODER, drop_gguf_quantization_marker, resolve_model

    source = resolve_model(name, default=DEFAULT_DECODER)
    tokenizer = AutoTokenizer.from_pretrained(source.path, **source.kwargs())
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32, **source.kwargs())
    return drop_gguf_quantization_marker(model), tokenizer


def save_tenant(model: Any, tenant: str, output_dir: Path) -> None:
    """Write ``output_dir/<tenant>/`` as ``save_pretrained`` does, in one rename: a reader or a crash sees the
    complete folder or none."""
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output_dir, prefix=f".{tenant}."))
    try:
        model.save_pretrained(tmp, selected_adapters=[tenant])
        written = tmp if tenant == "default" else tmp / tenant  # peft nests adapters other than "default"
        os.replace(written, output_dir / tenant)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def peak_rss_mib() -> Optional[float]:
    """This process's peak resident memory (None where the OS does not report it).

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this program's memory. Not ``ru_maxrss``: the
    kernel carries that across ``exec`` from the forked parent, so a child of a large process reports the parent's
    size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def run(args: argparse.Namespace) -> int:
    """Entry point of `hut-peft tenants`."""
    import torch
    from tqdm import tqdm

    from ..hut import HUTConfig
    from ..hut.tenant_data import plan_tenants
    from ..hut.tenant_training import TenantTrainingArgs, train_jointly, train_separately
    from ..hut.tenants import add_adapters

    start = time.perf_counter()
    for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size),
                        ("--rows-per-step", args.rows_per_step), ("--rank", args.rank), ("--max-length", args.max_length)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}.")
    if args.threads:
        torch.set_num_threads(args.threads)
    output_dir = Path(args.output_dir)
    rows = read_rows(args.data, args.split)
    fmt, tenants = validate_rows(rows, output_dir, args.resume)
    plan = plan_tenants(tenants, args.batch_size, args.epochs, args.seed, args.rows_per_step)
    done = [t for t in plan.batches if (output_dir / t / "adapter_config.json").is_file()]
    todo = plan.without(done)
    model, tokenizer = load_model(args.model)
    tokens = tokenize_rows(rows, tenants, tokenizer, fmt, args.max_length)
    load_s = time.perf_counter() - start
    names = list(todo.batches)
    summary: dict[str, Any] = {
        "mode": "separate" if args.separate else "joint", "data": args.data, "model": args.model, "format": list(fmt),
        "tenants": len(plan.batches), "rows": len(rows), "skipped_finished": done, "trained": names,
        "settings": {k: v for k, v in vars(args).items() if k not in ("passthrough",)},
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
                        "machine": platform.machine(), "processor": platform.processor()},
    }
    if names:
        torch.manual_seed(args.seed)
        config = HUTConfig(r=args.rank, target_modules=list(args.target_modules))
        train_args = TenantTrainingArgs(learning_rate=args.learning_rate, weight_decay=args.weight_decay,
                                        max_grad_norm=args.max_grad_norm or None)
        from peft import get_peft_model

        peft_model = get_peft_model(model, copy.deepcopy(config), adapter_name=names[0])
        pad = tokenizer.pad_token_id
        save = lambda t: save_tenant(peft_model, t, output_dir)  # noqa: E731
        if args.separate:
            bar = tqdm(total=sum(todo.total_steps().values()), desc="tenants (separate)", unit="step")
            losses = train_separately(peft_model, tokens, todo, train_args, pad, config, on_finished=save,
                                      on_step=lambda i, v: bar.update(1))
        else:
            add_adapters(peft_model, names[1:], config)
            bar = tqdm(total=len(todo.steps), desc=f"{len(names)} tenants (joint)", unit="step")
            losses = train_jointly(peft_model, tokens, todo, train_args, pad, on_finished=save,
                                   on_step=lambda i, v: bar.update(1))
        bar.close()
        summary["steps"] = len(todo.steps) if not args.separate else sum(todo.total_steps().values())
        summary["final_loss"] = {t: v[-1] for t, v in losses.items()}
    summary["load_s"] = load_s
    summary["wall_s"] = time.perf_counter() - start
    summary["peak_rss_mib"] = peak_rss_mib()
    write_json_atomic(output_dir / SUMMARY, summary)
    print(f"{len(names)} tenants trained ({summary['mode']}), {len(done)} kept from before, in {summary['wall_s']:.1f} s: "
          f"{output_dir}/<tenant>/")
    return 0
