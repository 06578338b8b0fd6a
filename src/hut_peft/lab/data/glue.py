"""GLUE from the hub (``nyu-mll/glue``) or from a folder in the original GLUE release layout.

Both sources give a ``datasets.Dataset`` with the hub's schema: the hub's text columns (``sentence``;
``sentence1`` / ``sentence2``; ``question`` / ``sentence``; ``question1`` / ``question2``; ``premise`` /
``hypothesis``), ``label`` (a ``ClassLabel`` with the hub's names, ``float32`` for STS-B) and ``idx``
(``int32``), so the training code treats them the same.

Local-file quirks handled (docs/glue.md): CoLA has no header (source, label, original label, sentence);
MRPC starts with a UTF-8 BOM; every file is read with ``csv.QUOTE_NONE`` (STS-B, MRPC and RTE sentences
hold stray ``"``); string labels (RTE, QNLI, MNLI) map to the hub's integers; columns are found by header
name. A malformed row raises ``ValueError`` naming the file and line, except the short rows of QQP and MNLI,
which the hub's own loader drops: those are skipped, counted and logged.
"""

from __future__ import annotations

import csv
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .subset import check_max_samples, seeded_subset

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)
csv.field_size_limit(sys.maxsize)  # MNLI parse columns exceed the csv module's 128 KiB default

HUB_DATASET = "nyu-mll/glue"
SPLITS = ("train", "validation")


@dataclass(frozen=True)
class GlueTask:
    """What loaders, recipes and metrics need to know about one GLUE task (hub column names)."""

    name: str  # our key, also the hub config name except where hub_config says otherwise
    hub_config: str  # config of ``nyu-mll/glue``
    folder: str  # directory name in the GLUE release
    sentence1_key: str
    sentence2_key: str | None  # None for single-sentence tasks (CoLA, SST-2)
    num_labels: int  # 1 = regression (STS-B)
    label_names: tuple[str, ...]  # the hub's ClassLabel names, in its integer order; () for STS-B
    metric: str  # the paper's headline metric, a key of compute_glue_metrics' result
    dev_split: str = "validation"  # the hub's split for our "validation" (MNLI: the matched dev set)
    dev_file: str = "dev.tsv"
    string_labels: bool = False  # the files write label_names (RTE, QNLI, MNLI), not 0..n-1
    # file column -> hub column; None for CoLA, whose files have no header
    columns: dict[str, str] | None = None
    # The hub's loader drops rows with missing fields; the QQP and MNLI release files have a few.
    skip_short_rows: bool = False


GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask("cola", "cola", "CoLA", "sentence", None, 2, ("unacceptable", "acceptable"),
                 "matthews_correlation"),
        GlueTask("sst2", "sst2", "SST-2", "sentence", None, 2, ("negative", "positive"), "accuracy",
                 columns={"sentence": "sentence", "label": "label"}),
        GlueTask("mrpc", "mrpc", "MRPC", "sentence1", "sentence2", 2, ("not_equivalent", "equivalent"),
                 "accuracy", columns={"#1 String": "sentence1", "#2 String": "sentence2", "Quality": "label"}),
        GlueTask("qnli", "qnli", "QNLI", "question", "sentence", 2, ("entailment", "not_entailment"),
                 "accuracy", string_labels=True,
                 columns={"question": "question", "sentence": "sentence", "label": "label"}),
        GlueTask("rte", "rte", "RTE", "sentence1", "sentence2", 2, ("entailment", "not_entailment"),
                 "accuracy", string_labels=True,
                 columns={"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}),
        GlueTask("stsb", "stsb", "STS-B", "sentence1", "sentence2", 1, (), "pearson",
                 columns={"sentence1": "sentence1", "sentence2": "sentence2", "score": "label"}),
        GlueTask("mnli", "mnli", "MNLI", "premise", "hypothesis", 3, ("entailment", "neutral", "contradiction"),
                 "accuracy", dev_split="validation_matched", dev_file="dev_matched.tsv", string_labels=True,
                 columns={"sentence1": "premise", "sentence2": "hypothesis", "gold_label": "label"},
                 skip_short_rows=True),
        GlueTask("qqp", "qqp", "QQP", "question1", "question2", 2, ("not_duplicate", "duplicate"), "accuracy",
                 columns={"question1": "question1", "question2": "question2", "is_duplicate": "label"},
                 skip_short_rows=True),
    )
}
_LAYOUT = (
    "the GLUE release layout is <data_dir>/<Task>/train.tsv and dev.tsv (MNLI: dev_matched.tsv), <Task> one of "
    + ", ".join(t.folder for t in GLUE_TASKS.values())
    + "; data_dir may also be the task folder itself"
)


def get_task(task: str) -> GlueTask:
    """The task's spec; accepts the hub name (``sst2``) or the release folder name (``SST-2``)."""
    key = task.lower().replace("-", "")
    if key not in GLUE_TASKS:
        raise ValueError(f"Unknown GLUE task {task!r}; choose from {', '.join(GLUE_TASKS)}.")
    return GLUE_TASKS[key]


def hub_features(task: str) -> datasets.Features:
    """The hub's features for ``task``: text columns, ``label`` and ``idx``, as ``nyu-mll/glue`` declares."""
    import datasets

    spec = get_task(task)
    features: dict[str, Any] = {spec.sentence1_key: datasets.Value("string")}
    if spec.sentence2_key:
        features[spec.sentence2_key] = datasets.Value("string")
    features["label"] = (datasets.ClassLabel(names=list(spec.label_names)) if spec.label_names
                         else datasets.Value("float32"))
    features["idx"] = datasets.Value("int32")
    return datasets.Features(features)


def task_dir(task: str, data_dir: str | Path) -> Path:
    """The folder holding ``task``'s files: ``<data_dir>/<Task>``, or ``data_dir`` itself if it is that folder.

    Raises:
        FileNotFoundError: Neither holds the task's files (the message names both paths and the layout).
        ValueError: ``data_dir`` is the folder of another GLUE task.
    """
    spec = get_task(task)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"GLUE data folder {data_dir} does not exist; {_LAYOUT}.")
    others = {t.folder: t.name for t in GLUE_TASKS.values() if t.name != spec.name}
    if data_dir.name in others and not (data_dir / spec.folder).is_dir():
        raise ValueError(f"{data_dir} is the {data_dir.name} folder, but the task is {spec.name!r} "
                         f"(folder {spec.folder}); pass the GLUE root or the {spec.folder} folder.")
    for candidate in (data_dir / spec.folder, data_dir):
        if any((candidate / name).is_file() for name in ("train.tsv", spec.dev_file)):
            return candidate
    raise FileNotFoundError(
        f"GLUE {spec.folder}: found neither {data_dir / spec.folder / 'train.tsv'} nor {data_dir / 'train.tsv'}; "
        f"{_LAYOUT}."
    )


def _parse_label(spec: GlueTask, value: str, path: Path, line: int) -> int | float:
    """The hub's label for a file value: an int class id, or a float score (STS-B)."""
    value = value.strip()
    if spec.num_labels == 1:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{path}:{line}: STS-B score {value!r} is not a number.") from None
    allowed = spec.label_names if spec.string_labels else tuple(str(i) for i in range(spec.num_labels))
    if value not in allowed:
        raise ValueError(f"{path}:{line}: {spec.folder} label {value!r} is not one of {', '.join(allowed)}.")
    return allowed.index(value)


def read_glue_tsv(task: str, path: str | Path) -> list[dict[str, Any]]:
    """Rows of one GLUE release file as hub-schema dicts, every quirk of that file handled.

    ``idx`` is the row's 0-based position among the file's data rows, counting skipped rows, as the hub's
    loader numbers them. Blank lines are ignored (``csv.DictReader`` does the same in the hub's loader).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: A malformed row or header, naming the file and line.
    """
    spec = get_task(task)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GLUE {spec.folder}: missing file {path}; {_LAYOUT}.")
    rows: list[dict[str, Any]] = []
    skipped: list[int] = []
    # utf-8-sig strips MRPC's BOM; QUOTE_NONE: quotes are ordinary characters in every GLUE file, and it keeps
    # one record per physical line, so reader.line_num is the line a user opens in an editor.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if spec.columns is None:  # CoLA: no header; source, label, original label (blank or *), sentence
            width, where = 4, {"sentence": 3, "label": 1}
            described = "source, label, original label, sentence"
        else:
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path}: the file is empty (expected a header line).")
            missing = [c for c in spec.columns if c not in header]
            if missing:
                raise ValueError(f"{path}:1: the {spec.folder} header lacks column(s) {missing}; found {header}.")
            width, where = len(header), {hub: header.index(col) for col, hub in spec.columns.items()}
            described = ", ".join(header)
        n = -1
        for fields in reader:
            if not fields:
                continue
            n += 1
            line = reader.line_num
            if len(fields) != width:
                if spec.skip_short_rows and len(fields) < width:
                    skipped.append(line)
                    continue
                raise ValueError(f"{path}:{line}: expected {width} tab-separated columns ({described}), "
                                 f"found {len(fields)}.")
            row: dict[str, Any] = {hub: fields[i] for hub, i in where.items() if hub != "label"}
            label = fields[where["label"]]
            if spec.skip_short_rows and not label.strip():
                skipped.append(line)  # the hub reads an empty label as missing and drops the row
                continue
            row["label"] = _parse_label(spec, label, path, line)
            row["idx"] = n
            rows.append(row)
    if skipped:
        shown = ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
        logger.warning("%s: skipped %d malformed row(s) with missing fields (lines %s), as the hub's GLUE "
                       "loader does for %s.", path, len(skipped), shown, spec.folder)
    return rows


def load_glue(
    task: str,
    data_dir: str | Path | None = None,
    split: str = "train",
    max_samples: int | None = None,
    seed: int = 0,
) -> datasets.Dataset:
    """One split of a GLUE task as a ``datasets.Dataset`` in the hub's schema.

    Args:
        task: cola, sst2, mrpc, qnli, rte, stsb, mnli or qqp (release folder names such as ``SST-2`` too).
        data_dir: A folder in the GLUE release layout, or the task folder itself; ``None`` loads
            ``nyu-mll/glue`` from the Hugging Face hub.
        split: ``"train"`` or ``"validation"`` (the labelled dev set; MNLI: matched).
        max_samples: Keep a random subset of this many rows: indices drawn by ``random.Random(seed).sample``
            and kept in file order. ``None``, or a number not below the split's size, keeps every row.
        seed: Seed of that subset; the same seed gives the same rows from either source of equal size.

    Raises:
        FileNotFoundError: A file of the layout is missing, or the hub cannot be reached (offline).
        ValueError: Unknown task or split, bad ``max_samples``, or a malformed row (with file and line).
    """
    import datasets

    spec = get_task(task)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
    check_max_samples(max_samples)
    if data_dir is None:
        hub_split = spec.dev_split if split == "validation" else split
        try:
            ds = datasets.load_dataset(HUB_DATASET, spec.hub_config, split=hub_split)
        except Exception as err:  # offline (HF_HUB_OFFLINE, no network) or the hub is unreachable
            raise FileNotFoundError(
                f"Could not load GLUE {spec.name} from the hub ({HUB_DATASET}, config {spec.hub_config!r}, "
                f"split {hub_split!r}): {type(err).__name__}: {err}. Offline, pass --data-dir (data_dir=) with "
                f"the GLUE release files, e.g. --data-dir ../shared/data/glue; {_LAYOUT}."
            ) from err
    else:
        folder = task_dir(spec.name, data_dir)
        path = folder / ("train.tsv" if split == "train" else spec.dev_file)
        rows = read_glue_tsv(spec.name, path)
        if not rows:
            raise ValueError(f"{path}: no data rows.")
        ds = datasets.Dataset.from_list(rows, features=hub_features(spec.name))
    return seeded_subset(ds, max_samples, seed)
