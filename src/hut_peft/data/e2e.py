"""The E2E NLG Challenge data (Novikova et al. 2017): from the hub, the challenge's CSV files, or the LoRA
repository's line format. Training uses every (MR, reference) pair; evaluation groups references by MR."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..train.common import write_text_atomic

CSV_FILES = {"train": "trainset.csv", "validation": "devset.csv", "test": "testset_w_refs.csv"}
LORA_FILES = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
_SLOT = re.compile(r"\s*([^\[\],]+?)\s*\[([^\]]*)\]\s*(?:,|$)")


@dataclass(frozen=True)
class E2EExample:
    """One training pair: a meaning representation and one human reference."""

    mr: str
    ref: str


def linearize_mr(mr: str) -> str:
    """``name[The Vaults], eatType[pub]`` → ``name : The Vaults | eatType : pub`` (the LoRA repo's prompt form).

    An MR already in that form is returned unchanged.
    """
    if "[" not in mr:
        return mr.strip()
    slots = _SLOT.findall(mr)
    if not slots:
        raise ValueError(f"Cannot parse the meaning representation {mr!r}: expected 'slot[value], ...'.")
    return " | ".join(f"{slot.strip()} : {value.strip()}" for slot, value in slots)


def _read_csv(path: Path) -> list[E2EExample]:
    out = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header[:2]] != ["mr", "ref"]:
            raise ValueError(f"{path}:1: expected the header 'mr,ref', found {header!r}.")
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != 2:
                raise ValueError(f"{path}:{line}: expected 2 columns (mr, ref), found {len(row)}.")
            mr, ref = row[0].strip(), row[1].strip()
            if not mr or "[" not in mr:
                raise ValueError(f"{path}:{line}: the MR {mr!r} is empty or not 'slot[value], ...'.")
            out.append(E2EExample(mr, ref))
    return out


def _read_lora_txt(path: Path) -> list[E2EExample]:
    out = []
    with path.open(encoding="utf-8") as handle:
        for line, text in enumerate(handle, start=1):
            text = text.strip()
            if not text:
                continue
            if "||" not in text:
                raise ValueError(f"{path}:{line}: expected 'slot : value | ... || reference'.")
            mr, ref = (part.strip() for part in text.split("||", 1))
            if not mr:
                raise ValueError(f"{path}:{line}: empty meaning representation.")
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


def _load_hub(split: str) -> list[E2EExample]:
    import datasets

    try:
        ds = datasets.load_dataset("tuetschek/e2e_nlg", split=split)
    except Exception as err:
        raise FileNotFoundError(
            f"Could not load E2E from the hub ({type(err).__name__}: {err}). Offline, pass --data-dir with the "
            "challenge's CSV files, e.g. --data-dir ../shared/data/e2e."
        ) from err
    return [E2EExample(r["meaning_representation"], r["human_reference"]) for r in ds]


def group_by_mr(examples: Iterable[E2EExample]) -> list[tuple[str, list[str]]]:
    """One entry per distinct MR, in order of first appearance, with all of its references."""
    groups: dict[str, list[str]] = {}
    for ex in examples:
        groups.setdefault(ex.mr, []).append(ex.ref)
    return list(groups.items())


def write_official_layout(
    groups: Sequence[tuple[str, list[str]]], predictions: Sequence[str], refs_path: str | Path,
    preds_path: str | Path,
) -> None:
    """Write the challenge's layout: one prediction per line; each MR's references as a block, blocks
    separated by a blank line (atomic writes)."""
    if len(groups) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(groups)} MRs.")
    write_text_atomic(Path(preds_path), "".join(p.replace("\n", " ").strip() + "\n" for p in predictions))
    blocks = ["\n".join(r.replace("\n", " ").strip() for r in refs) for _, refs in groups]
    write_text_atomic(Path(refs_path), "\n\n".join(blocks) + "\n")


def read_official_refs(path: str | Path) -> list[list[str]]:
    """Blocks of references separated by blank lines."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No reference file at {path}.")
    blocks: list[list[str]] = [[]]
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            blocks[-1].append(line.strip())
        elif blocks[-1]:
            blocks.append([])
    return [b for b in blocks if b]


def read_predictions(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No prediction file at {path}.")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]

