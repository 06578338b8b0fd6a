"""HUT adapters in serving engines: vLLM through its ``vllm.general_plugins`` entry point (docs/serving.md).

Importing this package imports no engine. ``vectors`` is plain torch (read, check and encode a saved adapter);
``plugin``, ``vllm_layers`` and ``vllm_loader`` import vLLM and run inside vLLM's processes.
"""
