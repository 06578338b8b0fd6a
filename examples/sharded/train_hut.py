"""Fine-tune a causal LM with HUT under any accelerate config: DDP, FSDP1, FSDP2, DeepSpeed ZeRO-2 and ZeRO-3.

One script for every config (docs/workflows.md, "Multi-GPU and multi-node")::

    accelerate launch --config_file configs/accelerate/fsdp2.yaml examples/sharded/train_hut.py \\
        --model PATH --text-file train.txt --output-dir out

and the same in one process (``python examples/sharded/train_hut.py ...``), which tests/test_sharded.py compares
every config against. Text is packed into equal blocks (as transformers' run_clm.py does): no padding, so each
rank sees the same number of tokens and a sharded run's loss is the single-process loss on the same global batch.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from peft import get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from hut_peft import HUTConfig
from hut_peft.hut import distributed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a causal LM folder or hub id")
    p.add_argument("--text-file", required=True, help="training text, one document per line")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--target-modules", default="q_proj,v_proj", help="comma-separated module names")
    p.add_argument("--fused-slices", default=None,
                   help="NAME:MASK for a fused projection, e.g. c_attn:101 adapts GPT-2's q and v blocks")
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--shift", action=argparse.BooleanOptionalAction, default=True,
                   help="train the shift β (--no-shift for bias-free layers such as Llama's, so the adapter merges)")
    p.add_argument("--block-size", type=int, default=16, help="tokens per training sequence")
    p.add_argument("--global-batch", type=int, default=8, help="sequences per optimiser step, over all processes")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sequential", action="store_true", help="no shuffling (the equality tests use it)")
    p.add_argument("--merged-out", default=None,
                   help="also merge the trained adapter into the (possibly ZeRO-3-sharded) model and save its weights here")
    return p.parse_args(argv)


def packed_blocks(tokenizer, text_file: str, block_size: int) -> list[dict[str, torch.Tensor]]:
    """Tokenise, join with EOS and cut into equal blocks (the last partial block is dropped)."""
    ids: list[int] = []
    for line in Path(text_file).read_text().splitlines():
        if line.strip():
            ids += tokenizer(line)["input_ids"] + [tokenizer.eos_token_id]
    n = len(ids) // block_size
    if n == 0:
        raise ValueError(f"{text_file} holds {len(ids)} tokens, fewer than one block of --block-size {block_size}.")
    blocks = torch.tensor(ids[: n * block_size]).view(n, block_size)
    return [{"input_ids": b, "labels": b.clone()} for b in blocks]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.global_batch % world:
        raise ValueError(f"--global-batch {args.global_batch} does not split over {world} processes.")
    training = TrainingArguments(
        output_dir=args.output_dir, max_steps=args.steps, per_device_train_batch_size=args.global_batch // world,
        learning_rate=args.lr, logging_steps=1, save_strategy="no", report_to=[], seed=args.seed,
        bf16=False, train_sampling_strategy="sequential" if args.sequential else "random",
        dataloader_drop_last=True, ddp_backend="gloo" if world > 1 and not torch.cuda.is_available() else None,
    )
    # Created after TrainingArguments: under ZeRO-3 the model is then built partitioned, and HUT sees it.
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    fused = None
    if args.fused_slices:
        name, mask = args.fused_slices.split(":")
        fused = {name: [c == "1" for c in mask]}
    config = HUTConfig(r=args.r, target_modules=args.target_modules.split(","), fused_slices=fused,
                       shift=args.shift)
    model = get_peft_model(model, config)
    trainer = Trainer(model=model, args=training, train_dataset=packed_blocks(tokenizer, args.text_file, args.block_size))
    trainer.train()
    trainer.save_model(str(Path(args.output_dir) / "adapter"))  # rank 0 writes; under ZeRO-3 it gathers first
    # Logits on the first block, to check that the saved adapter reloads to the same model (every rank runs it:
    # sharded models gather their weights collectively).
    trainer.model_wrapped.eval()
    with torch.no_grad():
        probe = trainer.train_dataset[0]["input_ids"][None].to(trainer.args.device)
        logits = trainer.model_wrapped(input_ids=probe).logits.float().cpu()
    if args.merged_out:
        merged = distributed.merged_state_dict(trainer.model)  # gathers ZeRO-3 shards; every rank takes part
        if trainer.is_world_process_zero():
            from safetensors.torch import save_file

            save_file(merged, args.merged_out)
    if trainer.is_world_process_zero():
        losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
        torch.save({"input_ids": probe.cpu(), "logits": logits}, Path(args.output_dir) / "probe.pt")
        run = {"world_size": trainer.args.world_size, "distributed_type": str(trainer.accelerator.distributed_type),
               "losses": losses}
        (Path(args.output_dir) / "run.json").write_text(json.dumps(run, indent=1))
    # All ranks leave together and close the process group: a rank that exits first, with gloo's threads still up,
    # can abort at interpreter exit ("terminate called without an active exception") and fail the whole launch.
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main()
