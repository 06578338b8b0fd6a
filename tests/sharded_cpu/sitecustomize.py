"""Tests only: let accelerate's FSDP and DeepSpeed code paths run on a CPU, with gloo.

accelerate turns FSDP and DeepSpeed on only for accelerator process groups (``MULTI_GPU`` and its kin), never for
``MULTI_CPU``, and DeepSpeed only when ``cpu`` is off, so on this machine a FSDP or ZeRO config would silently run as
plain data parallel. tests/test_sharded.py puts this folder on ``PYTHONPATH`` (with ``ACCELERATE_TORCH_DEVICE=cpu``
and ``DS_ACCELERATOR=cpu``): every launched process then reports a ``MULTI_GPU`` group on the gloo backend, and
accelerate, torch's FSDP and DeepSpeed run their real code on CPU tensors. Nothing else is changed.
"""

import os

if os.environ.get("HUT_SHARDED_ON_CPU") == "1" and int(os.environ.get("LOCAL_RANK", -1)) != -1:
    import accelerate.state as _state
    from accelerate.utils import DistributedType as _DistributedType

    _original = _state.PartialState._prepare_backend

    def _prepare_backend(self, cpu=False, sagemaker_dp=False, backend=None):
        return "gloo", _DistributedType.MULTI_GPU

    _state.PartialState._prepare_backend = _prepare_backend

    # Scripts that ask for the CPU where there is no GPU (the lab's recipes: use_cpu=not torch.cuda.is_available())
    # would switch FSDP and DeepSpeed off again: the device is the CPU here anyway (ACCELERATE_TORCH_DEVICE).
    def _not_cpu(init):
        def patched(self, *args, **kwargs):
            if kwargs.get("cpu"):
                kwargs["cpu"] = False
            return init(self, *args, **kwargs)

        return patched

    _state.PartialState.__init__ = _not_cpu(_state.PartialState.__init__)
    _state.AcceleratorState.__init__ = _not_cpu(_state.AcceleratorState.__init__)

    # torch's FSDP1 full state dict with offload_to_cpu=True, on parameters that already live on the CPU, frees the
    # gathered storage before reading it ("setStorage: ... out of bounds for storage of size 0", or a SIGSEGV).
    # accelerate always asks for the offload; on the CPU it moves nothing, so it is dropped here.
    if True:
        import torch.distributed.fsdp as _fsdp

        _init = _fsdp.FullStateDictConfig.__init__

        def _no_offload(self, offload_to_cpu=False, rank0_only=False):
            _init(self, offload_to_cpu=False, rank0_only=rank0_only)

        _fsdp.FullStateDictConfig.__init__ = _no_offload
