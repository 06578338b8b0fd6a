"""The E2E NLG Challenge data (Novikova et al. 2017): from the hub, the challenge's CSV files, or the LoRA
repository's line format. Training uses every (MR, reference) pair; evaluation groups references by MR."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_text_atomic

CSV_FILES = {"train": "trainset.csv", "validation": "devset.csv", "test": "testset_w_refs.csv"}
HUB_DATASET = "tuetschek/e2e_nlg"
LORA_FILES = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
_SLOT = re.compile(r"\s*([^\[\],]+?)\s*\[([^\]]*)\]\s*(?:,|$)")


@dataclass(frozen=True)
class E2EExample:
    """One training pair: a meaning representation and one human reference."""

    mr: str
    ref: str


def linearize_mr(mr: str) -> str:
    """``name[The Vaults], eatType[pub]`` → ``name : The Vaults | eatType : pub`` (the LoRA repo's prompt form).

    An MR already in that form (no brackets) is returned stripped.

    Raises:
        ValueError: the MR is not a comma-separated list of ``slot[value]``.
    """
    text = mr.strip()
    if "[" not in text:
        return text
    slots, pos = [], 0
    while pos < len(text):
        match = _SLOT.match(text, pos)
        if match is None:
            raise ValueError(f"Cannot parse the meaning representation {mr!r} from {text[pos:pos + 40]!r}: "
                             "expected 'slot[value], slot[value], ...'.")
        slots.append((match.group(1).strip(), match.group(2).strip()))
        pos = match.end()
    return " | ".join(f"{slot} : {value}" for slot, value in slots)


# Encoding damage in some releases of the challenge files, repaired as the official measure_scores.py does.
_MOJIBAKE = (("Ł", "£"), ("Â£", "£"), ("Ã©", "é"), ("ã©", "é"))


def _repair(text: str) -> str:
    for bad, good in _MOJIBAKE:
        text = text.replace(bad, good)
    return text


def _read_csv(path: Path) -> list[E2EExample]:
    out = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header] != ["mr", "ref"]:
            raise ValueError(f"{path}:1: expected the header 'mr,ref', found {header!r}.")
        for row in reader:
            line = reader.line_num
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != 2:
                raise ValueError(f"{path}:{line}: expected 2 columns (mr, ref), found {len(row)}.")
            mr, ref = _repair(row[0].strip()), _repair(row[1].strip())
            if not mr or "[" not in mr:
                raise ValueError(f"{path}:{line}: the MR {mr!r} is empty or not 'slot[value], ...'.")
            if not ref:
                raise ValueError(f"{path}:{line}: the reference is empty.")
            out.append(E2EExample(mr, ref))
    return out


def _read_lora_txt(path: Path) -> list[E2EExample]:
    out = []
    with path.open(encoding="utf-8-sig") as handle:
        for line, text in enumerate(handle, start=1):
            text = text.strip()
            if not text:
                continue
            if "||" not in text:
                raise ValueError(f"{path}:{line}: expected 'slot : value | ... || reference', found no '||'.")
            mr, ref = (part.strip() for part in text.split("||", 1))
            if not mr:
                raise ValueError(f"{path}:{line}: empty meaning representation.")
            if not ref:
                raise ValueError(f"{path}:{line}: the reference is empty.")
            out.append(E2EExample(mr, ref))
    return out


def load_e2e(split: str, data_dir: str | Path | None = None) -> list[E2EExample]:
    """All (MR, reference) pairs of a split: ``train``, ``validation`` or ``test``.

    ``data_dir`` holds the challenge's CSVs (``trainset.csv``, ``devset.csv``, ``testset_w_refs.csv``) or the LoRA
    repository's ``train.txt`` / ``valid.txt`` / ``test.txt``; ``None`` loads the data set from the hub.

    Raises:
        FileNotFoundError: no file of either layout for the split (or the hub is unreachable offline).
        ValueError: an unknown split, or a malformed row (with file and line).
    """
    if split not in CSV_FILES:
        raise ValueError(f"E2E split must be one of {', '.join(CSV_FILES)}, got {split!r}.")
    if data_dir is None:
        return _load_hub(split)
    folder = Path(data_dir)
    if (folder / CSV_FILES[split]).is_file():
        return _read_csv(folder / CSV_FILES[split])
    if (folder / LORA_FILES[split]).is_file():
        return _read_lora_txt(folder / LORA_FILES[split])
    raise FileNotFoundError(
        f"E2E {split}: found neither {folder / CSV_FILES[split]} (challenge CSV) nor {folder / LORA_FILES[split]} "
        "(LoRA repository format). Pass --data-dir with one of these layouts."
    )


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _load_hub(split: str) -> list[E2EExample]:
    """The challenge data from the hub (``tuetschek/e2e_nlg``; its Parquet conversion where the loading
    script is refused, as by datasets ≥ 4)."""
    hint = ("Offline, pass --data-dir with the challenge's CSV files (trainset.csv, devset.csv, "
            "testset_w_refs.csv) or the LoRA repository's train.txt / valid.txt / test.txt, e.g. "
            "--data-dir ../shared/data/e2e.")
    if _offline():
        raise FileNotFoundError(f"E2E {split}: no data directory given and the hub is off (HF_HUB_OFFLINE). {hint}")
    import datasets

    errors = []
    for revision in (None, "refs/convert/parquet"):
        try:
            ds = datasets.load_dataset(HUB_DATASET, split=split, revision=revision)
            break
        except Exception as err:  # network, script refused, missing revision: try the next, then report all
            errors.append(f"{revision or 'main'}: {type(err).__name__}: {err}")
    else:
        raise FileNotFoundError(f"Could not load {HUB_DATASET} from the hub ({'; '.join(errors)}). {hint}")
    columns = set(ds.column_names)
    for mr_col, ref_col in (("meaning_representation", "human_reference"), ("mr", "ref")):
        if {mr_col, ref_col} <= columns:
            return [E2EExample(str(r[mr_col]).strip(), str(r[ref_col]).strip()) for r in ds]
    raise ValueError(f"{HUB_DATASET} ({split}) has columns {sorted(columns)}; expected meaning_representation "
                     "and human_reference.")


def group_by_mr(examples: Iterable[E2EExample]) -> list[tuple[str, list[str]]]:
    """One entry per distinct MR, in order of first appearance, with all of its references."""
    groups: dict[str, list[str]] = {}
    for ex in examples:
        groups.setdefault(ex.mr, []).append(ex.ref)
    return list(groups.items())


def _one_line(text: str) -> str:
    return " ".join(text.split())


def write_official_layout(
    groups: Sequence[tuple[str, Sequence[str]]], predictions: Sequence[str], refs_path: str | Path,
    preds_path: str | Path,
) -> None:
    """Write the layout ``measure_scores.py`` reads: one prediction per line; each MR's references as a block,
    blocks separated by a blank line. Line breaks inside a text become spaces. Atomic writes.

    Raises:
        ValueError: the number of predictions differs from the number of MRs, or an MR has no reference.
    """
    if len(groups) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(groups)} MRs: give one prediction per MR.")
    for i, (mr, refs) in enumerate(groups):
        if not any(_one_line(r) for r in refs):
            raise ValueError(f"MR {i + 1} ({mr!r}) has no non-empty reference.")
    write_text_atomic(Path(preds_path), "".join(_one_line(p) + "\n" for p in predictions))
    blocks = ["\n".join(_one_line(r) for r in refs if _one_line(r)) for _, refs in groups]
    write_text_atomic(Path(refs_path), "\n\n".join(blocks) + "\n")


def read_official_refs(path: str | Path) -> list[list[str]]:
    """References of each MR: blocks of lines separated by blank lines, read as ``measure_scores.py`` does.

    Like the official script, a file with no blank line is a single-reference file: one MR per line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No reference file at {path} (expected each MR's references as a block of "
                                "lines, blocks separated by a blank line).")
    blocks: list[list[str]] = [[]]
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            blocks[-1].append(line.strip())
        elif blocks[-1]:
            blocks.append([])
    blocks = [b for b in blocks if b]
    if len(blocks) == 1:
        return [[line] for line in blocks[0]]
    return blocks


def read_predictions(path: str | Path) -> list[str]:
    """One output per line, stripped (an empty line is an empty output)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No prediction file at {path} (expected one output per line, one line per MR).")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
