"""HUT under sharded training through accelerate: each config in configs/accelerate/, 2 CPU processes on gloo.

For every config, examples/sharded/train_hut.py (a plain transformers Trainer) runs under ``accelerate launch`` and
in one process on the same global batch of 8 packed blocks (no padding, no dropout, no shuffling), and:
- the losses of the 3 steps agree within 1e-5 (observed: 2.4e-7 at most; only the order of the sums differs),
- the saved adapter's tensors agree with the single-process adapter's within 1e-5,
- the saved adapter, reloaded here (a process that did not train), gives the logits the trained model gave, 1e-5,
- under ZeRO-3, merging the sharded model (gathered first) gives the weights that merging unsharded gives, 1e-6.
GPT-2 runs with ``fused_slices`` (q and v blocks of its Conv1D ``c_attn``), the Llama with q_proj and v_proj.

accelerate enables FSDP and DeepSpeed only for accelerator process groups; tests/sharded_cpu/sitecustomize.py lets
their real code run on CPU tensors (it says exactly what it changes). Each launch takes about 15 s here: one model
per config runs in the default run, the other in ``make test-slow``.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import WORDS, write_tiny_causal_lm_dir

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "sharded" / "train_hut.py"
CONFIGS = ROOT / "configs" / "accelerate"
SHIM = Path(__file__).resolve().parent / "sharded_cpu"
TOL_LOSS = TOL_ADAPTER = TOL_LOGITS = 1e-5
TOL_MERGE = 1e-6

MODEL_ARGS = {
    "gpt2": ["--target-modules", "c_attn", "--fused-slices", "c_attn:101"],
    "llama": ["--target-modules", "q_proj,v_proj", "--no-shift"],
}
# FSDP needs the model's block class (and, for use_orig_params=False, HUT's and the base layers' classes).
WRAP = {
    ("fsdp2", "gpt2"): "GPT2Block", ("fsdp1-orig-params", "gpt2"): "GPT2Block",
    ("fsdp1-flat", "gpt2"): "GPT2Block,HUTLinear,Conv1D",
}
ENGINE = {"ddp": "MULTI_CPU", "fsdp2": "FSDP", "fsdp1-orig-params": "FSDP", "fsdp1-flat": "FSDP",
          "zero2": "DEEPSPEED", "zero3": "DEEPSPEED"}
NO_DEEPSPEED = importlib.util.find_spec("deepspeed") is None
slow = pytest.mark.slow


def _case(config: str, model: str, *marks) -> pytest.param:
    if config.startswith("zero"):
        marks += (pytest.mark.skipif(NO_DEEPSPEED, reason="deepspeed is in the dev extra: pip install -e '.[dev]'"),)
    return pytest.param(config, model, marks=marks, id=f"{config}-{model}")


CASES = [
    _case("ddp", "llama"), _case("fsdp2", "gpt2"), _case("fsdp1-orig-params", "llama"), _case("fsdp1-flat", "gpt2"),
    _case("zero2", "llama"), _case("zero3", "gpt2"), _case("zero3", "llama"),
    _case("ddp", "gpt2", slow), _case("fsdp2", "llama", slow), _case("fsdp1-orig-params", "gpt2", slow),
    _case("fsdp1-flat", "llama", slow), _case("zero2", "gpt2", slow),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """Two tiny causal LMs without dropout (so one process and two see the same function) and a text file."""
    import random

    from hut_peft.lab.models import TINY_LLAMA_WORDS, save_tiny_llama

    root = tmp_path_factory.mktemp("sharded")
    words = sorted(set(WORDS) | set(TINY_LLAMA_WORDS))
    rng = random.Random(0)
    text = root / "train.txt"
    text.write_text("\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) for _ in range(60)))
    gpt2 = write_tiny_causal_lm_dir(root / "gpt2", words)
    config = json.loads((gpt2 / "config.json").read_text())
    config.update(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    (gpt2 / "config.json").write_text(json.dumps(config))
    return {"root": root, "text": text, "gpt2": gpt2, "llama": Path(save_tiny_llama(root / "llama"))}


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               DS_ACCELERATOR="cpu", **extra)
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _script_args(setup: dict[str, Path], model: str, out: Path) -> list[str]:
    return [str(SCRIPT), "--model", str(setup[model]), "--text-file", str(setup["text"]), "--output-dir", str(out),
            "--sequential", *MODEL_ARGS[model]]


def _check(proc: subprocess.CompletedProcess, out: Path) -> dict:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads((out / "run.json").read_text())


@pytest.fixture(scope="module")
def single(setup):
    """One-process runs, by model, made once."""
    runs: dict[str, Path] = {}

    def run(model: str) -> Path:
        if model not in runs:
            out = setup["root"] / f"single-{model}"
            proc = subprocess.run([sys.executable, *_script_args(setup, model, out)], env=_env(), cwd=ROOT,
                                  capture_output=True, text=True, timeout=300)
            assert _check(proc, out)["world_size"] == 1
            runs[model] = out
        return runs[model]

    return run


def _launch(setup: dict[str, Path], config: str, model: str, *script_extra: str) -> tuple[Path, dict]:
    out = setup["root"] / f"{config}-{model}"
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / f"{config}.yaml"),
                  "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", _free_port()]
    if (config, model) in WRAP:
        accelerate += ["--fsdp_transformer_layer_cls_to_wrap", WRAP[config, model]]
    env = _env(ACCELERATE_USE_CPU="true") if config == "ddp" else _env(
        HUT_SHARDED_ON_CPU="1", ACCELERATE_TORCH_DEVICE="cpu", PYTHONPATH=os.pathsep.join([str(SHIM), str(ROOT / "src")]))
    proc = subprocess.run([*accelerate, *_script_args(setup, model, out), *script_extra], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    return out, _check(proc, out)


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "adapter" / "adapter_model.safetensors")


def _reloaded(setup: dict[str, Path], model: str, adapter: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(setup[model], dtype=torch.float32)
    return PeftModel.from_pretrained(base, adapter).eval()


@pytest.mark.parametrize("config,model", CASES)
def test_sharded_run_equals_one_process(setup, single, config, model):
    one = single(model)
    merged_out = setup["root"] / f"{config}-{model}-merged.safetensors"
    extra = ["--merged-out", str(merged_out)] if config == "zero3" else []
    out, run = _launch(setup, config, model, *extra)
    assert run["world_size"] == 2 and run["distributed_type"] == f"DistributedType.{ENGINE[config]}"
    reference = json.loads((one / "run.json").read_text())["losses"]
    assert len(run["losses"]) == len(reference) == 3
    torch.testing.assert_close(torch.tensor(run["losses"]), torch.tensor(reference), atol=TOL_LOSS, rtol=0)

    sharded, alone = _tensors(out), _tensors(one)
    assert sharded.keys() == alone.keys() and any("hut_" in k for k in sharded)
    for key in alone:
        torch.testing.assert_close(sharded[key], alone[key], atol=TOL_ADAPTER, rtol=0, msg=key)
    assert any((alone[k] - 1).abs().max() > 1e-4 for k in alone if "hut_gamma" in k), "the adapter did not train"

    probe = torch.load(out / "probe.pt")
    reloaded = _reloaded(setup, model, out / "adapter")
    with torch.no_grad():
        logits = reloaded(input_ids=probe["input_ids"]).logits
    torch.testing.assert_close(logits, probe["logits"], atol=TOL_LOGITS, rtol=0)

    if config == "zero3":  # merging the ZeRO-3-sharded model (gathered first) = merging it unsharded
        from safetensors.torch import load_file

        sharded_merge = load_file(merged_out)
        unsharded_merge = reloaded.merge_and_unload().state_dict()
        assert sharded_merge.keys() == unsharded_merge.keys()
        for key, value in unsharded_merge.items():
            torch.testing.assert_close(sharded_merge[key], value, atol=TOL_MERGE, rtol=0, msg=key)


# ------------------------------------------------------------------------------------------ in-process, no launch
class _Unit(torch.nn.Module):
    """Stands in for an FSDP1 unit around the base layer: FSDP1 wraps it as ``_fsdp_wrapped_module``."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self._fsdp_wrapped_module = module

    def forward(self, *args, **kwargs):
        return self._fsdp_wrapped_module(*args, **kwargs)


@pytest.mark.parametrize("fused", [None, [True, False, True]], ids=["plain", "fused"])
def test_own_unit_forward_equals_the_direct_forward(fused):
    """With the base layer in its own FSDP1 unit, HUT reads nothing from it outside its forward: same output."""
    from transformers.pytorch_utils import Conv1D

    from hut_peft import HUTConfig
    from hut_peft.hut import HUTLinear

    torch.manual_seed(0)
    base = Conv1D(12, 6) if fused else torch.nn.Linear(6, 12)
    torch.nn.init.normal_(base.bias)
    layer = HUTLinear(base.requires_grad_(False), "default", HUTConfig(r=2, init="perturbed", init_std=0.3),
                      fused_mask=fused)
    x = torch.randn(3, 5, 6)
    direct = layer(x)
    assert not torch.allclose(direct, base(x))
    layer.base_layer = _Unit(base)
    torch.testing.assert_close(layer(x), direct, atol=1e-6, rtol=0)
    assert layer._unit_bias is not None  # b0 came from inside the unit's forward
    with pytest.raises(ValueError, match="use_orig_params=True"):
        layer(x, adapter_names=["default"] * 3)


def test_fsdp_policy_units_and_errors():
    """Units: the blocks, each HUT layer and each HUT layer's base layer; nothing else."""
    from peft import get_peft_model

    from conftest import tiny_llama
    from hut_peft import HUTConfig
    from hut_peft.hut import HUTLayer
    from hut_peft.hut.distributed import fsdp_auto_wrap_policy, merged_state_dict

    with pytest.raises(ValueError, match="no HUT layers"):
        fsdp_auto_wrap_policy(tiny_llama())
    model = get_peft_model(tiny_llama(), HUTConfig(r=2, target_modules=["q_proj", "v_proj"], shift=False))
    policy = fsdp_auto_wrap_policy(model)
    units = {name.removeprefix("base_model.model.") for name, m in model.named_modules()
             if policy(module=m, recurse=False, nonwrapped_numel=0)}
    expected = {f"model.layers.{i}" for i in range(2)}
    for i in range(2):
        for proj in ("q_proj", "v_proj"):
            expected |= {f"model.layers.{i}.self_attn.{proj}", f"model.layers.{i}.self_attn.{proj}.base_layer"}
    assert units == expected
    assert all(isinstance(dict(model.named_modules())[f"base_model.model.{u}"], HUTLayer) for u in expected
               if u.endswith("_proj"))
    # merged_state_dict on an unsharded model (a perturbed adapter): exactly merge_and_unload's state dict
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "hut_" in name:
                p.add_(0.1 * torch.randn_like(p))
    expected = copy.deepcopy(model).merge_and_unload().state_dict()
    torch.testing.assert_close(merged_state_dict(model), dict(expected), atol=0, rtol=0)


_FSDP1_FLAT = """
import copy, os, sys
import torch, torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from peft import get_peft_model
from peft.utils.other import fsdp_auto_wrap_policy as peft_policy
from conftest import tiny_gpt2
from hut_peft import HUTConfig
from hut_peft.hut.distributed import fsdp_auto_wrap_policy

dist.init_process_group("gloo", rank=0, world_size=1)
model = get_peft_model(tiny_gpt2(), HUTConfig(r=2, target_modules=["c_attn"], init="perturbed",
                                              fused_slices={"c_attn": [True, False, True]}))
reference = copy.deepcopy(model)
kw = dict(use_orig_params=False, device_id=torch.device("cpu"))
try:
    FSDP(copy.deepcopy(model), auto_wrap_policy=peft_policy(model), **kw)
except ValueError as e:
    print("peft:", e)
wrapped = FSDP(model, auto_wrap_policy=fsdp_auto_wrap_policy(model), **kw)
ids = torch.randint(0, 100, (2, 8))
print("diff:", (wrapped(input_ids=ids).logits - reference(input_ids=ids).logits).abs().max().item())
dist.destroy_process_group()
"""


def test_our_fsdp1_policy_wraps_where_peft_policy_fails():
    """FSDP1, use_orig_params=False, wrapped by torch itself (1 process): peft's policy fails as issue 21 says; ours
    wraps and the wrapped model gives the unwrapped logits (GPT-2 with fused_slices, so the stacked-base path)."""
    env = _env(MASTER_ADDR="127.0.0.1", MASTER_PORT=_free_port(),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), str(ROOT / "src")]))
    proc = subprocess.run([sys.executable, "-c", _FSDP1_FLAT], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "peft: Must flatten tensors with uniform `requires_grad` when `use_orig_params=False`" in proc.stdout
    assert float(proc.stdout.split("diff:")[1]) < 1e-5


def test_cli_closes_the_process_group_after_a_command(tmp_path):
    """A rank that exits with its gloo group still open can abort at exit (pytorch/pytorch#190489, seen in CI under
    ZeRO-3): after a command succeeds the CLI waits for every rank and destroys the group; without one it is a no-op."""
    import torch.distributed as dist

    from hut_peft import cli

    cli._leave_process_group()  # no group: nothing to do
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        cli._leave_process_group()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
