"""GLUE from the hub (``nyu-mll/glue``) or from a folder in the original GLUE release layout.

Both sources give a ``datasets.Dataset`` with the hub's column names (``sentence``; ``sentence1`` /
``sentence2``; ``question`` / ``sentence``; ``question1`` / ``question2``; ``premise`` / ``hypothesis``),
an integer ``label`` (a float for STS-B) and ``idx``, so training code treats them the same.

Local-file quirks handled (see docs/glue.md): CoLA has no header (source, label, original label, sentence);
MRPC starts with a UTF-8 BOM; STS-B must be read without quote handling (sentences contain stray ``"``);
string labels (RTE, QNLI, MNLI) map to the hub's integers. Malformed rows raise an error naming the file
and line, except in QQP and MNLI, whose release files contain a few broken rows that the hub's own loader
skips: those are skipped, counted and logged.
"""

from __future__ import annotations

import csv
import logging
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)
csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class GlueTask:
    """What the recipe needs to know about a task; column names follow the hub's schema."""

    name: str
    folder: str  # directory name in the GLUE release
    sentence1_key: str
    sentence2_key: Optional[str]
    num_labels: int  # 1 = regression (STS-B)
    labels: tuple[str, ...] = ()  # string labels in the files, in the hub's integer order
    dev_file: str = "dev.tsv"
    skip_malformed: bool = False  # the task's own convention: the hub loader skips broken rows


GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask("cola", "CoLA", "sentence", None, 2),
    "sst2": GlueTask("sst2", "SST-2", "sentence", None, 2),
    "mrpc": GlueTask("mrpc", "MRPC", "sentence1", "sentence2", 2),
    "qqp": GlueTask("qqp", "QQP", "question1", "question2", 2, skip_malformed=True),
    "stsb": GlueTask("stsb", "STS-B", "sentence1", "sentence2", 1),
    "mnli": GlueTask("mnli", "MNLI", "premise", "hypothesis", 3, ("entailment", "neutral", "contradiction"),
                     dev_file="dev_matched.tsv", skip_malformed=True),
    "qnli": GlueTask("qnli", "QNLI", "question", "sentence", 2, ("entailment", "not_entailment")),
    "rte": GlueTask("rte", "RTE", "sentence1", "sentence2", 2, ("entailment", "not_entailment")),
}
# file column -> hub column, for the tasks whose files have a header
_HEADER_COLUMNS: dict[str, dict[str, str]] = {
    "sst2": {"sentence": "sentence", "label": "label"},
    "mrpc": {"#1 String": "sentence1", "#2 String": "sentence2", "Quality": "label"},
    "qqp": {"question1": "question1", "question2": "question2", "is_duplicate": "label"},
    "stsb": {"sentence1": "sentence1", "sentence2": "sentence2", "score": "label"},
    "mnli": {"sentence1": "premise", "sentence2": "hypothesis", "gold_label": "label"},
    "qnli": {"question": "question", "sentence": "sentence", "label": "label"},
    "rte": {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"},
}


def get_task(task: str) -> GlueTask:
    key = task.lower().replace("-", "")
    if key not in GLUE_TASKS:
        raise ValueError(f"Unknown GLUE task {task!r}; choose from {', '.join(GLUE_TASKS)}.")
    return GLUE_TASKS[key]


def _task_dir(spec: GlueTask, data_dir: Path) -> Path:
    """Accept the GLUE root (``<dir>/RTE/train.tsv``) or the task folder itself (``<dir>/train.tsv``)."""
    for candidate in (data_dir / spec.folder, data_dir):
        if (candidate / "train.tsv").is_file() or (candidate / spec.dev_file).is_file():
            return candidate
    raise FileNotFoundError(
        f"GLUE {spec.folder}: found neither {data_dir / spec.folder / 'train.tsv'} nor {data_dir / 'train.tsv'}. "
        f"--data-dir must hold the original GLUE release layout (<dir>/{spec.folder}/train.tsv and "
        f"{spec.dev_file}), or point at the {spec.folder} folder itself."
    )


def _parse_label(spec: GlueTask, value: str, path: Path, line: int):
    value = value.strip()
    if spec.num_labels == 1:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{path}:{line}: STS-B score {value!r} is not a number.") from None
    if spec.labels:
        if value not in spec.labels:
            raise ValueError(f"{path}:{line}: label {value!r} is not one of {', '.join(spec.labels)}.")
        return spec.labels.index(value)
    if value not in {str(i) for i in range(spec.num_labels)}:
        raise ValueError(f"{path}:{line}: label {value!r} is not one of "
                         f"{', '.join(str(i) for i in range(spec.num_labels))}.")
    return int(value)


def read_glue_tsv(spec: GlueTask, path: Path) -> list[dict]:
    """Rows of one GLUE release file as hub-schema dicts, with every quirk of that file handled."""
    if not path.is_file():
        raise FileNotFoundError(f"GLUE {spec.folder}: missing file {path} (expected the GLUE release layout).")
    rows: list[dict] = []
    skipped = 0
    # utf-8-sig strips MRPC's BOM; QUOTE_NONE: quotes are ordinary characters in every GLUE file.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if spec.name == "cola":  # no header: source, label, original label, sentence
            header, columns = None, None
        else:
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path}: the file is empty (expected a header line).")
            wanted = _HEADER_COLUMNS[spec.name]
            missing = [c for c in wanted if c not in header]
            if missing:
                raise ValueError(f"{path}:1: header lacks column(s) {missing}; found {header}.")
            columns = {hub: header.index(col) for col, hub in wanted.items()}
        for line, fields in enumerate(reader, start=2 if header else 1):
            if not fields or fields == [""]:
                continue
            try:
                if columns is None:
                    if len(fields) != 4:
                        raise ValueError(f"{path}:{line}: expected 4 tab-separated columns "
                                         f"(source, label, original label, sentence), found {len(fields)}.")
                    row = {"sentence": fields[3], "label": _parse_label(spec, fields[1], path, line)}
                else:
                    if len(fields) != len(header):
                        raise ValueError(f"{path}:{line}: expected {len(header)} tab-separated columns, "
                                         f"found {len(fields)}.")
                    row = {hub: fields[i] for hub, i in columns.items()}
                    row["label"] = _parse_label(spec, row["label"], path, line)
            except ValueError:
                if spec.skip_malformed:
                    skipped += 1
                    continue
                raise
            row["idx"] = len(rows)
            rows.append(row)
    if skipped:
        logger.warning("%s: skipped %d malformed row(s), as the GLUE hub loader does for %s.",
                       path, skipped, spec.folder)
    return rows


def load_glue(
    task: str,
    data_dir: str | Path | None = None,
    split: str = "train",
    max_samples: Optional[int] = None,
    seed: int = 0,
):
    """One split of a GLUE task as a ``datasets.Dataset`` in the hub's schema.

    Args:
        task: cola, sst2, mrpc, qqp, stsb, mnli, qnli or rte.
        data_dir: A folder in the GLUE release layout; ``None`` loads ``nyu-mll/glue`` from the hub.
        split: ``"train"`` or ``"validation"`` (MNLI: the matched dev set).
        max_samples: Keep a random subset of this size, drawn with ``seed`` (reproducible).
        seed: Seed of the subset.

    Raises:
        FileNotFoundError: A file of the layout is missing, or the hub cannot be reached offline.
        ValueError: Unknown task or split; a malformed row (with file and line).
    """
    import datasets

    spec = get_task(task)
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}.")
    if data_dir is None:
        hub_split = "validation_matched" if spec.name == "mnli" and split == "validation" else split
        try:
            ds = datasets.load_dataset("nyu-mll/glue", spec.name, split=hub_split)
        except Exception as err:  # offline, or the hub is unreachable
            raise FileNotFoundError(
                f"Could not load GLUE {spec.folder} from the hub ({type(err).__name__}: {err}). Offline, pass "
                "--data-dir with the GLUE release files, e.g. --data-dir ../shared/data/glue."
            ) from err
    else:
        folder = _task_dir(spec, Path(data_dir))
        rows = read_glue_tsv(spec, folder / ("train.tsv" if split == "train" else spec.dev_file))
        if not rows:
            raise ValueError(f"{folder}: no rows in the {split} file.")
        ds = datasets.Dataset.from_list(rows)
    if max_samples is not None and max_samples < len(ds):
        keep = sorted(random.Random(seed).sample(range(len(ds)), max_samples))
        ds = ds.select(keep)
    return ds
