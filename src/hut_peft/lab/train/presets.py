"""Hyper-parameter presets from the papers, one table each, so a run can cite its source.

GLUE: the HUT paper's Table 6 (RoBERTa-large). Rows marked † in that table are the baselines' own papers'
settings (LoRA: Hu et al. 2022; adapters: as reported there), which the HUT paper reused. E2E: the HUT
paper's Table 7, and the LoRA paper's GPT-2 medium settings (Hu et al. 2022, Table 11).
"""

from __future__ import annotations

from typing import Any

GLUE_TASK_ORDER = ("sst2", "mrpc", "cola", "qnli", "rte", "stsb")


def _rows(batch: tuple, epochs: tuple, lr: tuple, max_length: int, options: dict[str, Any]) -> dict[str, dict]:
    def per_task(values: tuple | Any, i: int) -> Any:
        return values[i] if isinstance(values, tuple) else values

    return {
        task: {
            "batch_size": per_task(batch, i),
            "epochs": per_task(epochs, i),
            "learning_rate": per_task(lr, i),
            "max_length": max_length,
            "warmup_ratio": 0.06,
            "method_options": dict(options),
        }
        for i, task in enumerate(GLUE_TASK_ORDER)
    }


# preset name -> method -> task -> settings (Table 6 columns: SST-2 MRPC CoLA QNLI RTE STS-B)
GLUE_PRESETS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "paper": {
        "hut": _rows((8, 16, 4, 8, 16, 16), (20, 20, 40, 10, 80, 40),
                     (1e-4, 5e-3, 1e-3, 2e-4, 2e-3, 5e-3), 512, {"r": 8}),
        "lora": _rows(4, (10, 20, 20, 10, 20, 10), (4e-4, 3e-4, 2e-4, 2e-4, 4e-4, 2e-4), 128,
                      {"r": 8, "lora_alpha": 16}),
        "padapter": _rows(32, (20, 20, 20, 10, 20, 20), (3e-5, 3e-4, 3e-4, 3e-4, 3e-4, 3e-4), 128,
                          {"bottleneck": 64}),
        "hadapter": _rows(32, (5, 10, 10, 5, 20, 10), 3e-4, 128, {"bottleneck": 64}),
    },
    "paper-0.8m": {
        "padapter": _rows(32, (20, 20, 20, 10, 20, 20), 3e-4, 128, {"bottleneck": 16}),
        "hadapter": _rows(32, (5, 10, 10, 5, 20, 10), 3e-4, 128, {"bottleneck": 8}),
    },
}

# E2E: preset name -> method -> settings
E2E_PAPER_TRAINING: dict[str, Any] = {
    "batch_size": 4,
    "epochs": 5,
    "learning_rate": 2e-3,
    "weight_decay": 0.01,
    "dropout": 0.1,
    "warmup_steps": 500,
    "label_smoothing": 0.1,
    "num_beams": 10,
    "length_penalty": 0.9,
    "no_repeat_ngram_size": 4,
}
E2E_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"hut": {**E2E_PAPER_TRAINING, "method_options": {"r": 4}}},
    # LoRA paper, GPT-2 M on E2E: lr 2e-4, r=4, alpha 32, batch 8, 5 epochs, warm-up 500, label smoothing 0.1
    "lora-paper": {
        "lora": {**E2E_PAPER_TRAINING, "batch_size": 8, "learning_rate": 2e-4,
                 "method_options": {"r": 4, "lora_alpha": 32}},
    },
}


def glue_preset(preset: str, method: str, task: str) -> dict[str, Any]:
    """Settings of one Table 6 cell; a clear error names the presets and methods that exist."""
    if preset not in GLUE_PRESETS:
        raise ValueError(f"Unknown GLUE preset {preset!r}; known: {', '.join(GLUE_PRESETS)}.")
    methods = GLUE_PRESETS[preset]
    if method not in methods:
        raise ValueError(
            f"GLUE preset {preset!r} has no settings for method {method!r} (the paper's Table 6 lists "
            f"{', '.join(methods)}); set --learning-rate, --epochs and --batch-size yourself."
        )
    if task not in methods[method]:
        raise ValueError(
            f"GLUE preset {preset!r} covers the tasks {', '.join(GLUE_TASK_ORDER)}, not {task!r} "
            "(the paper gives no settings for it); set the hyper-parameters yourself."
        )
    return methods[method][task]


def e2e_preset(preset: str, method: str) -> dict[str, Any]:
    if preset not in E2E_PRESETS:
        raise ValueError(f"Unknown E2E preset {preset!r}; known: {', '.join(E2E_PRESETS)}.")
    if method not in E2E_PRESETS[preset]:
        raise ValueError(
            f"E2E preset {preset!r} has settings for {', '.join(E2E_PRESETS[preset])}, not {method!r}; set "
            "the hyper-parameters yourself."
        )
    return E2E_PRESETS[preset][method]
