"""SQuAD v1.1 from the hub (``rajpurkar/squad``, the hub's ``squad``) or from the official release's JSON files.

Both sources give a ``datasets.Dataset`` in the hub's schema: ``id``, ``title``, ``context``, ``question`` and
``answers`` (``{"text": [...], "answer_start": [...]}``, character offsets into ``context``), so the recipe treats
them the same.

The task is described once, here (``SQUAD``): its files, hub id, headline metric and the preprocessing constants of
transformers' question-answering example; the recipe and the metrics import it (STYLE lesson 14).

Offline split (docs/squad.md). The official training file is 30 MB and may be absent; a folder holding only
``dev-v1.1.json`` (48 articles, 10,570 questions) is split **by article**, never by question, so no paragraph is seen
in both halves: the articles are sorted by title, those at even positions (0, 2, 4, ...) train and those at odd
positions evaluate. On the official dev file that is 24 articles and 5,665 questions to train on, 24 articles and
4,905 questions to evaluate on. A folder that also holds ``train-v1.1.json`` uses the official train/dev splits, as
the hub does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .subset import check_max_samples, seeded_subset

if TYPE_CHECKING:
    import datasets

SPLITS = ("train", "validation")


@dataclass(frozen=True)
class SquadTask:
    """What loaders, the recipe and the metrics need to know about SQuAD v1.1."""

    name: str = "squad"
    hub_dataset: str = "rajpurkar/squad"  # the hub's "squad" redirects here; train / validation = the release
    train_file: str = "train-v1.1.json"
    dev_file: str = "dev-v1.1.json"
    metrics: tuple[str, ...] = ("exact_match", "f1")  # evaluate-v1.1.py's keys, both ×100
    metric: str = "f1"  # the headline (a learning rate is chosen by it)
    # transformers' examples/pytorch/question-answering/run_qa.py defaults
    max_length: int = 384
    doc_stride: int = 128
    n_best: int = 20
    max_answer_length: int = 30


SQUAD = SquadTask()
_LAYOUT = (
    "expected the official SQuAD v1.1 layout: {\"version\": \"1.1\", \"data\": [{\"title\", \"paragraphs\": "
    "[{\"context\", \"qas\": [{\"id\", \"question\", \"answers\": [{\"text\", \"answer_start\"}]}]}]}]}"
)


def _need(node: Any, key: str, kind: type, where: str, path: Path) -> Any:
    if not isinstance(node, dict) or key not in node:
        raise ValueError(f"{path}: {where} has no {key!r}; {_LAYOUT}.")
    value = node[key]
    if not isinstance(value, kind):
        raise ValueError(f"{path}: {where}.{key} is a {type(value).__name__}, expected a {kind.__name__}; {_LAYOUT}.")
    return value


def read_squad_json(path: str | Path) -> list[dict[str, Any]]:
    """The articles of an official SQuAD v1.1 file (``data``), every question checked.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Not JSON, not the official layout, or an answer that is not found at its ``answer_start``
            in its context (the message names the file and where in it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SQuAD: missing file {path}; pass --data-dir with the official dev-v1.1.json "
                                "(and train-v1.1.json if you have it), e.g. --data-dir ../shared/data/squad.")
    try:
        root = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a JSON file ({err}); {_LAYOUT}.") from None
    articles = _need(root, "data", list, "the file", path)
    for a, article in enumerate(articles):
        _need(article, "title", str, f"data[{a}]", path)
        for p, paragraph in enumerate(_need(article, "paragraphs", list, f"data[{a}]", path)):
            where = f"data[{a}].paragraphs[{p}]"
            context = _need(paragraph, "context", str, where, path)
            for q, qa in enumerate(_need(paragraph, "qas", list, where, path)):
                at = f"{where}.qas[{q}]"
                _need(qa, "id", str, at, path)
                _need(qa, "question", str, at, path)
                for answer in _need(qa, "answers", list, at, path):
                    text = _need(answer, "text", str, f"{at}.answers[]", path)
                    start = _need(answer, "answer_start", int, f"{at}.answers[]", path)
                    if context[start:start + len(text)] != text:
                        raise ValueError(f"{path}: {at} (id {qa['id']}): answer {text!r} is not at answer_start "
                                         f"{start} of its context; answer_start must be the answer's character "
                                         "offset in 'context'.")
    return articles


def split_articles(articles: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The offline split: articles sorted by title, even positions → ``train``, odd → ``validation``."""
    ordered = sorted(articles, key=lambda article: article["title"])
    return {"train": ordered[0::2], "validation": ordered[1::2]}


def flatten(articles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per question in the hub's schema, in file order."""
    return [
        {"id": qa["id"], "title": article["title"], "context": paragraph["context"], "question": qa["question"],
         "answers": {"text": [a["text"] for a in qa["answers"]],
                     "answer_start": [a["answer_start"] for a in qa["answers"]]}}
        for article in articles for paragraph in article["paragraphs"] for qa in paragraph["qas"]
    ]


def source_description(data_dir: str | Path | None) -> str:
    """Which split a run used, for results.json."""
    if data_dir is None:
        return f"hub {SQUAD.hub_dataset} (train / validation)"
    if (Path(data_dir) / SQUAD.train_file).is_file():
        return f"{data_dir}: {SQUAD.train_file} / {SQUAD.dev_file}"
    return (f"{Path(data_dir) / SQUAD.dev_file} split by article: sorted by title, even positions train, odd "
            "positions evaluate")


def load_squad_articles(data_dir: str | Path, split: str) -> list[dict[str, Any]]:
    """The articles of ``split`` from a release folder (the offline split when there is no training file)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"SQuAD data folder {data_dir} does not exist; pass --data-dir with the official "
                                f"{SQUAD.dev_file} in it.")
    if (data_dir / SQUAD.train_file).is_file():
        return read_squad_json(data_dir / (SQUAD.train_file if split == "train" else SQUAD.dev_file))
    return split_articles(read_squad_json(data_dir / SQUAD.dev_file))[split]


def load_squad(
    data_dir: str | Path | None = None,
    split: str = "train",
    max_samples: int | None = None,
    seed: int = 0,
) -> datasets.Dataset:
    """One split of SQuAD v1.1 as a ``datasets.Dataset`` in the hub's schema.

    Args:
        data_dir: A folder with the official ``dev-v1.1.json`` (and ``train-v1.1.json``); ``None`` loads the hub.
        split: ``"train"`` or ``"validation"``.
        max_samples: Keep a random subset of this many questions (``random.Random(seed).sample``, kept in file
            order); ``None``, or a number not below the split's size, keeps all.
        seed: Seed of that subset.

    Raises:
        FileNotFoundError: The folder or file is missing, or the hub cannot be reached (offline).
        ValueError: Unknown split, bad ``max_samples``, or a malformed file (named, with where in it).
    """
    import datasets

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
    check_max_samples(max_samples)
    if data_dir is None:
        try:
            ds = datasets.load_dataset(SQUAD.hub_dataset, split=split)
        except Exception as err:  # offline or unreachable
            raise FileNotFoundError(
                f"Could not load SQuAD from the hub ({SQUAD.hub_dataset}, split {split!r}): {type(err).__name__}: "
                f"{err}. Offline, pass --data-dir with the official {SQUAD.dev_file}, e.g. --data-dir "
                "../shared/data/squad."
            ) from err
    else:
        rows = flatten(load_squad_articles(data_dir, split))
        if not rows:
            raise ValueError(f"{data_dir}: the {split} split holds no questions.")
        ds = datasets.Dataset.from_list(rows)
    return seeded_subset(ds, max_samples, seed)
