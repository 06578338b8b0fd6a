"""`hut-peft tenants` (lab/tenants.py): one adapter per tenant in DIR/<tenant>/, joint equal to --separate, resume,
and one clear error line before any training for each kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from hut_peft.cli import main
from hut_peft.hut.loading import find_saved_adapters
from hut_peft.lab.models import TINY_LLAMA_WORDS, save_tiny_llama
from hut_peft.serving.vectors import module_vectors, read_adapter

TENANTS = {"alpha": 7, "beta": 3, "gamma": 11}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tenant_rows() -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    words = list(TINY_LLAMA_WORDS)

    def text(n: int) -> str:
        return " ".join(words[int(i)] for i in torch.randint(0, len(words), (n,), generator=gen))

    return [{"tenant": t, "prompt": text(3), "completion": text(4)} for t, n in TENANTS.items() for _ in range(n)]


def run_cli(data: Path, out: Path, model: str, *extra: str) -> int:
    return main(["tenants", str(data), "--model", model, "--output-dir", str(out), "--batch-size", "2",
                 "--rows-per-step", "5", "--epochs", "2", "--learning-rate", "0.02", "--threads", "1", *extra])


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter_model.safetensors")


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_joint_equals_separate_and_serves_from_the_folder(tmp_path: Path, tiny_model: str) -> None:
    data = write_rows(tmp_path / "rows.jsonl", tenant_rows())
    assert run_cli(data, tmp_path / "joint", tiny_model) == 0
    assert run_cli(data, tmp_path / "separate", tiny_model, "--separate") == 0
    assert sorted(find_saved_adapters(tmp_path / "joint")) == sorted(TENANTS)  # what `hut-peft serve --adapters` reads
    for tenant in TENANTS:
        joint, separate = weights(tmp_path / "joint" / tenant), weights(tmp_path / "separate" / tenant)
        assert max_diff(joint, separate) <= 1e-5
        assert max((v - (0.0 if "beta" in k else 1.0)).abs().max().item() for k, v in joint.items()) > 1e-3
    summary = json.loads((tmp_path / "joint" / "tenants.json").read_text())
    assert summary["mode"] == "joint" and sorted(summary["trained"]) == sorted(TENANTS)
    # The reader hut-peft's vLLM plugin serves folders with accepts every tenant's folder as it is.
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    for tenant in TENANTS:
        config, modules = read_adapter(tmp_path / "joint" / tenant)
        assert config["peft_type"] == "HUT" and len(modules) == 2 * base.config.num_hidden_layers
        for name, tensors in modules.items():
            layer = base.get_submodule(name)
            module_vectors(tensors, name, layer.in_features, layer.out_features, shift=config["shift"])


def test_resume_keeps_finished_tenants_and_trains_the_rest_as_before(tmp_path: Path, tiny_model: str) -> None:
    data = write_rows(tmp_path / "rows.jsonl", tenant_rows())
    out = tmp_path / "out"
    assert run_cli(data, out, tiny_model) == 0
    first = {t: weights(out / t) for t in TENANTS}
    kept = (out / "alpha" / "adapter_model.safetensors").stat().st_mtime_ns
    for tenant in ("beta", "gamma"):  # as if the run had been killed before these two were saved
        for f in (out / tenant).iterdir():
            f.unlink()
        (out / tenant).rmdir()
    assert run_cli(data, out, tiny_model) == 2  # refuses to overwrite without --resume
    assert run_cli(data, out, tiny_model, "--resume") == 0
    assert (out / "alpha" / "adapter_model.safetensors").stat().st_mtime_ns == kept
    summary = json.loads((out / "tenants.json").read_text())
    assert summary["skipped_finished"] == ["alpha"] and sorted(summary["trained"]) == ["beta", "gamma"]
    for tenant in TENANTS:
        assert max_diff(weights(out / tenant), first[tenant]) <= 1e-5


BAD = [
    ([{"tenant": "a", "text": "good film"}, {"tenant": "", "text": "bad film"}], "Row 1 has no tenant"),
    ([{"tenant": "a", "text": "good film"}, {"text": "bad film", "tenant": None}], "Row 1 has no tenant"),
    ([{"tenant": "a", "prompt": "the film", "completion": ""}], r"Row 0 \(tenant 'a'\) has no completion"),
    ([{"tenant": "../up", "text": "good film"}], "not a safe folder name"),
    ([{"tenant": "a b", "text": "good film"}], "not a safe folder name"),
    ([{"tenant": "Shop", "text": "good film"}, {"tenant": "shop", "text": "bad film"}], "share one output folder"),
    ([{"tenant": "a", "sentence": "good film"}], "needs 'text', or 'prompt' and 'completion'"),
    ([{"label": "a", "text": "good film"}], "no 'tenant' column"),
]


@pytest.mark.parametrize("rows,message", BAD)
def test_bad_input_fails_with_one_line_before_loading_a_model(tmp_path: Path, capsys, rows, message) -> None:
    data = write_rows(tmp_path / "rows.jsonl", rows)
    # A model path that does not exist: the error must come from the data, before any model is loaded.
    assert run_cli(data, tmp_path / "out", str(tmp_path / "no-model")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hut-peft tenants: error: ")
    assert __import__("re").search(message, err[0])
    assert not (tmp_path / "out").exists()


def test_a_tenant_with_nothing_to_learn_is_refused(tmp_path: Path, tiny_model: str, capsys) -> None:
    rows = [{"tenant": "a", "prompt": "good film", "completion": "fun"},
            {"tenant": "b", "prompt": "the film was very good", "completion": "fun"}]
    data = write_rows(tmp_path / "rows.jsonl", rows)
    assert run_cli(data, tmp_path / "out", tiny_model, "--max-length", "3") == 2
    assert "Tenant 'b' has no token to learn" in capsys.readouterr().err
    assert not (tmp_path / "out" / "a").exists()


def test_csv_keeps_tenant_names_as_written(tmp_path: Path, tiny_model: str) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("tenant,text\n007,the film was good\n007,the food was bad\n042,a great pub\n")
    assert run_cli(data, tmp_path / "out", tiny_model) == 0
    assert sorted(find_saved_adapters(tmp_path / "out")) == ["007", "042"]
