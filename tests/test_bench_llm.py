"""`hut-peft bench --sections llm` on a toy-width Llama-3-8B shape: every case runs, in one run, with its ratios."""

from __future__ import annotations

import pytest


def test_llm_bench_runs_every_case_on_tiny_shapes():
    from hut_peft.lab.bench.llm import bench_llm, to_markdown

    result = bench_llm(layers=2, batch=2, seq=8, reps=1, warmup=1, device="cpu", quick=True)
    cases = {"frozen", "lora-qv", "hut-qv", "lora-all", "hut-all", "hut-all-recompute", "ia3", "lora-qv-compiled",
             "hut-qv-compiled"}
    assert set(result["step_s"]) == cases and all(t > 0 for t in result["step_s"].values())
    assert result["ratio_to_floor"]["frozen"] == 1.0
    assert set(result["hut_over_lora"]) == {"hut-qv", "hut-all", "hut-qv-compiled"}
    assert result["trainable"]["frozen"] == 0
    # HUT r=8 on a d→k layer trains r(d+k) + k (shift=False): q (64→64) and v (64→32, 2 of 4 heads' width)
    assert result["trainable"]["hut-qv"] == 2 * ((8 * (64 + 64) + 64) + (8 * (64 + 32) + 32))
    assert result["trainable"]["hut-all"] == result["trainable"]["hut-all-recompute"] > result["trainable"]["hut-qv"]
    assert result["shape"]["num_key_value_heads"] == 2 and result["peak_memory_gib"]["hut-qv"] is None  # CPU
    table = "\n".join(to_markdown(result))
    assert "| HUT r=8, all linear, recompute_base_output=True |" in table and "× frozen floor" in table


def test_llm_section_is_only_run_on_request():
    from hut_peft.lab.bench.run import SECTIONS, run_bench

    assert "llm" not in SECTIONS  # the default `hut-peft bench` stays CPU-sized
    with pytest.raises(ValueError, match="Unknown --arch 'gpt5'"):
        run_bench(quick=True, sections=("llm",), llm={"arch": "gpt5"})
