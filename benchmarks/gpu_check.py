"""The CUDA paths of hut-peft on a GPU: merge exactness, `--precision auto`, and `hut-peft bench` with two
stand-ins for models this project cannot ship to a machine without the hub (docs/performance.md, "On a GPU").

    python benchmarks/gpu_check.py correctness       # merge on CUDA (fp32), auto precision, one bf16 autocast step
    python benchmarks/gpu_check.py bench --device cuda --models minilm,roberta-large-slice \
        --sections training,inference,mixed,compile --reps 5 --output bench.json
    python benchmarks/gpu_check.py bench-large --device cuda --models roberta-large-slice --sections training \
        --reps 5 --output bench-roberta-large.json   # the whole 24-layer RoBERTa-large shape, batch 16 x 128
    python benchmarks/gpu_check.py serving --device cuda --sections serving --serving-sizes 1,8,64,256 \
        --reps 2 --warmup 1 --output serving.json     # SmolLM2-135M's architecture with random weights

``bench*`` and ``serving`` take `hut-peft bench`'s arguments. Why stand-ins: step time and latency depend on
the shapes, not the weights, and the GPU machine this ran on reaches no hub (the packaged SmolLM2 GGUF is too
large to carry there).
"""

import argparse
import copy
import sys

import torch


def correctness(device: str) -> None:
    from peft import get_peft_model
    from transformers import BertConfig, BertModel

    from hut_peft.hut import HUTConfig
    from hut_peft.lab.train.common import native_bf16, resolve_precision

    print("gpu:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "| native_bf16:", native_bf16(),
          "| precision auto ->", resolve_precision("auto"))
    torch.manual_seed(0)
    base = BertModel(BertConfig(vocab_size=1000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                                intermediate_size=1024)).to(device).eval()
    model = get_peft_model(copy.deepcopy(base), HUTConfig(r=8, target_modules=["query", "value", "dense"],
                                                          init="perturbed", init_std=0.1)).to(device)
    ids = torch.randint(5, 1000, (8, 64), device=device)
    # one bf16 autocast training step: adapter parameters and their grads stay fp32
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        loss = model(input_ids=ids).last_hidden_state.float().pow(2).mean()
    loss.backward()
    opt.step()
    trainable = [p for p in model.parameters() if p.requires_grad]
    print("trainable dtypes:", sorted({str(p.dtype) for p in trainable}),
          "| state dtypes:", sorted({str(v.dtype) for s in opt.state.values() for v in s.values() if v.dim()}))
    model.eval()
    with torch.no_grad():
        adapted = model(input_ids=ids).last_hidden_state
        merged = model.merge_and_unload()(input_ids=ids).last_hidden_state
    print(f"fp32 merge on CUDA: max |adapted - merged| = {(adapted - merged).abs().max().item():.3e} "
          f"(matmul TF32 allowed: {torch.backends.cuda.matmul.allow_tf32})")


def smollm2_shaped(name, device):
    """SmolLM2-135M's architecture (the project's arch registry) with random weights: speed does not depend on
    the values."""
    from transformers import LlamaForCausalLM

    from hut_peft.lab.archs import arch_config

    torch.manual_seed(0)
    model = LlamaForCausalLM(arch_config("smollm2-135m"))
    return model.float().to(device).eval(), "SmolLM2-135M shape, random weights"


def roberta_large_full(name, device):
    """The whole 24-layer RoBERTa-large shape with random weights, batch 16 × 128 (the paper's encoder)."""
    from hut_peft.lab.archs import build_arch

    torch.manual_seed(0)
    model = build_arch("roberta-large", device="cpu").float().to(device)
    ids = torch.randint(1000, model.config.vocab_size, (16, 128), generator=torch.Generator().manual_seed(0))
    return model, {"input_ids": ids.to(device)}, "RoBERTa-large shape, 24 layers, random weights (batch 16 × 128)"


def main() -> None:
    part, rest = sys.argv[1], sys.argv[2:]
    if part == "correctness":
        correctness("cuda" if torch.cuda.is_available() else "cpu")
        return
    from hut_peft.lab.bench import run as bench
    from hut_peft.lab.bench import serving as bench_serving

    if part == "serving":
        bench_serving.load_decoder = smollm2_shaped
    if part == "bench-large":
        bench.load_model = roberta_large_full
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    bench.run(parser.parse_args(rest))


if __name__ == "__main__":
    main()
