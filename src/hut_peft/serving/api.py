"""vLLM's OpenAI server, answering for adapters as a client expects: 400 for a bad adapter, 404 that names them.

vLLM 0.32 answers any adapter that fails to load with 500 ("Worker failed with error ..."), i.e. as the server's
fault, although the folder is the client's; and an unknown model name with a 404 whose "valid aliases" list only
the base model. ``install()`` wraps the two methods of vLLM's API server that build those answers (the server's
process only; ``hut-peft serve`` calls it through vllm_main.py before vLLM starts):

- ``OpenAIServingModels.load_lora_adapter``: an error raised by our checks (folders.py, the HUT loader: every
  message starts "bad adapter" or "HUT adapter") becomes 400 with that message, which names the folder (by its
  own name: vLLM hides paths in answers), the tensor and both shapes. At start-up vLLM raises that message, so
  the server stops naming the bad folder.
- ``BaseServing._check_model``: the 404 for an unknown model lists the served adapters beside the base model.

Other errors keep vLLM's answers. A vLLM whose methods moved fails here, loudly (plugin.py's rule).
"""

from __future__ import annotations

import re
from http import HTTPStatus
from pathlib import PurePath
from typing import Any, Optional

# Our client-fault messages, as vLLM's worker error wraps them: "Worker failed with error '<ours>', please check ..."
_OURS = re.compile(r"(?:bad adapter|HUT adapter) .*?(?=', please check|$)", re.S)
_UNKNOWN_MODEL = "does not exist"


def client_message(message: str) -> Optional[str]:
    """Our message inside vLLM's error text, or None when the error is not one of our adapter checks."""
    found = _OURS.search(message)
    return found.group(0).strip() if found else None


def install() -> None:
    """Wrap vLLM's adapter-loading answer and its unknown-model answer (idempotent)."""
    from vllm.entrypoints.openai.models.serving import OpenAIServingModels
    from vllm.entrypoints.serve import create_error_response
    from vllm.entrypoints.serve.engine.protocol import ErrorResponse
    from vllm.entrypoints.serve.engine.serving import BaseServing

    if getattr(OpenAIServingModels.load_lora_adapter, "_hut_peft", False):
        return
    vllm_load = OpenAIServingModels.load_lora_adapter
    vllm_check = BaseServing._check_model

    async def load_lora_adapter(self: Any, request: Any, base_model_name: Optional[str] = None) -> Any:
        result = await vllm_load(self, request, base_model_name)
        if isinstance(result, ErrorResponse) and result.error.code == HTTPStatus.INTERNAL_SERVER_ERROR.value:
            ours = client_message(result.error.message)
            if ours is not None:  # vLLM hides paths in errors ("<path>"); the folder's own name is enough
                ours = ours.replace("<path>", PurePath(str(request.lora_path)).name)
                return create_error_response(ours, "BadRequestError", HTTPStatus.BAD_REQUEST, param="lora_path")
        return result

    async def _check_model(self: Any, request: Any) -> Any:
        result = await vllm_check(self, request)
        if (isinstance(result, ErrorResponse) and result.error.code == HTTPStatus.NOT_FOUND.value
                and _UNKNOWN_MODEL in result.error.message):
            base = ", ".join(model.name for model in self.models.base_model_paths)
            adapters = ", ".join(sorted(self.models.lora_requests)) or "none"
            result.error.message = (f"The model `{request.model}` does not exist. Served: {base} (the base model); "
                                    f"adapters: {adapters}. GET /v1/models lists them.")
        return result

    load_lora_adapter._hut_peft = True  # type: ignore[attr-defined]
    load_lora_adapter.__wrapped__ = vllm_load  # type: ignore[attr-defined]
    _check_model.__wrapped__ = vllm_check  # type: ignore[attr-defined]
    OpenAIServingModels.load_lora_adapter = load_lora_adapter
    BaseServing._check_model = _check_model
