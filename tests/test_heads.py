"""The sentence-embedding head: pooling, features and losses against hand computations; methods apply and
merge exactly through it; the collator pads each sentence alone; ``auto`` picks it for sentence-transformers
folders only; and the GLUE CLI runs with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import tiny_bert, write_rte_fixture, write_tiny_bert_dir
from hut_peft.lab.heads import EmbeddingClassifier, PairCollator, mean_pool, resolve_head
from hut_peft.lab.methods import apply_method, count_parameters, merge_method


def _encoder():
    return tiny_bert().bert


def _inputs(seed: int, batch: int = 3, length: int = 7):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, 4:] = 0  # one padded row
    return ids, mask


def test_mean_pool_ignores_padding():
    hidden = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    expected = torch.stack([hidden[0, :2].mean(0), hidden[1].mean(0)])
    assert torch.equal(mean_pool(hidden, mask), expected)


def test_pair_features_and_losses_match_a_hand_computation():
    torch.manual_seed(0)
    model = EmbeddingClassifier(_encoder(), num_labels=2, pair=True).eval()
    assert model.encoder.pooler is None  # [CLS] pooler dropped: unused weights
    (a, ma), (b, mb) = _inputs(1), _inputs(2)
    out = model(input_ids=a, attention_mask=ma, input_ids_b=b, attention_mask_b=mb, labels=torch.tensor([0, 1, 1]))

    def embed(ids, mask):  # independent: a loop over rows, no padding at all
        rows = [model.encoder(input_ids=i[m.bool()][None]).last_hidden_state[0].mean(0) for i, m in zip(ids, mask)]
        return torch.stack(rows)

    u, v = embed(a, ma), embed(b, mb)
    features = torch.cat([(u - v).abs(), u * v], dim=-1)
    logits = features @ model.classifier.weight.T + model.classifier.bias
    torch.testing.assert_close(out.logits, logits, atol=1e-5, rtol=1e-5)
    log_probs = logits.log_softmax(-1)
    torch.testing.assert_close(out.loss, -(log_probs[0, 0] + log_probs[1, 1] + log_probs[2, 1]) / 3)
    with pytest.raises(ValueError, match="input_ids_b"):
        model(input_ids=a, attention_mask=ma)


def test_single_sentence_regression_uses_mse():
    model = EmbeddingClassifier(_encoder(), num_labels=1, pair=False).eval()
    assert model.config.problem_type == "regression"
    a, ma = _inputs(3)
    target = torch.tensor([0.5, 2.0, 4.5])
    out = model(input_ids=a, attention_mask=ma, labels=target)
    torch.testing.assert_close(out.loss, ((out.logits[:, 0] - target) ** 2).mean())


def test_hut_applies_through_the_head_and_merges_exactly():
    torch.manual_seed(0)
    model = EmbeddingClassifier(_encoder(), num_labels=2, pair=True)
    peft_model = apply_method("hut", model, task_type="SEQ_CLS", r=4)
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("classifier" in n for n in names) and any("query" in n for n in names)
    assert not any("pooler" in n or "embeddings" in n for n in names)
    with torch.no_grad():  # move off the identity so the merge has something to fold
        for n, p in peft_model.named_parameters():
            if p.requires_grad and "classifier" not in n:
                p.add_(0.1 * torch.randn_like(p))
    trainable, _ = count_parameters(peft_model)
    assert trainable == len(torch.cat([p.flatten() for p in peft_model.parameters() if p.requires_grad]))
    (a, ma), (b, mb) = _inputs(4), _inputs(5)
    peft_model.eval()
    with torch.no_grad():
        before = peft_model(input_ids=a, attention_mask=ma, input_ids_b=b, attention_mask_b=mb).logits
        merged = merge_method(peft_model)
        after = merged(input_ids=a, attention_mask=ma, input_ids_b=b, attention_mask_b=mb).logits
    assert isinstance(merged, EmbeddingClassifier)
    assert (before - after).abs().max().item() <= 1e-5


def test_pair_collator_pads_each_sentence_alone(tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(write_tiny_bert_dir(tmp_path / "m"))
    rows = [{"input_ids": [2, 5, 3], "attention_mask": [1, 1, 1], "input_ids_b": [2, 6, 7, 8, 3],
             "attention_mask_b": [1] * 5, "label": 1.5},
            {"input_ids": [2, 5, 6, 7, 9, 3], "attention_mask": [1] * 6, "input_ids_b": [2, 3],
             "attention_mask_b": [1, 1], "label": 0.0}]
    batch = PairCollator(tok)(rows)
    assert batch["input_ids"].shape == (2, 6) and batch["input_ids_b"].shape == (2, 5)
    assert batch["attention_mask"].tolist()[0] == [1, 1, 1, 0, 0, 0]
    assert batch["attention_mask_b"].tolist()[1] == [1, 1, 0, 0, 0]
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [1.5, 0.0]


def _mark_sentence_transformers(folder, mean: bool = True):
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": mean}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    return folder


def test_auto_picks_embedding_for_sentence_transformers_folders_only(tmp_path):
    plain = write_tiny_bert_dir(tmp_path / "plain")
    assert resolve_head("auto", plain) == "cls"
    assert resolve_head("auto", "some-org/some-hub-model") == "cls"
    st = _mark_sentence_transformers(write_tiny_bert_dir(tmp_path / "st"))
    assert resolve_head("auto", st) == "embedding" and resolve_head("cls", st) == "cls"
    cls_pooled = _mark_sentence_transformers(write_tiny_bert_dir(tmp_path / "st-cls"), mean=False)
    assert resolve_head("auto", cls_pooled) == "cls"
    with pytest.raises(ValueError, match="--head must be one of"):
        resolve_head("mean", plain)


def test_glue_cli_with_the_embedding_head(tmp_path):
    model = _mark_sentence_transformers(write_tiny_bert_dir(tmp_path / "st"))
    data = write_rte_fixture(tmp_path / "data")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "hut_peft.cli", "glue", "--task", "rte", "--method", "hut",
                           "--model", str(model), "--data-dir", str(data), "--output-dir", str(out), "--epochs", "1",
                           "--batch-size", "8", "--no-save-checkpoints"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "embedding head" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["head"] == "embedding"
    assert results["settings"]["learning_rate"] == 1e-3 and results["settings"]["epochs"] == 1  # flag wins
    assert 0.0 <= results["summary"]["best"]["accuracy"]["mean"] <= 1.0


def test_recipe_defaults_follow_the_head(tmp_path):
    from hut_peft.lab.train.glue import GlueRecipe

    st = _mark_sentence_transformers(write_tiny_bert_dir(tmp_path / "st"))
    plain = write_tiny_bert_dir(tmp_path / "plain")
    emb = GlueRecipe(task="rte", method="hut", model=str(st)).resolved()
    assert (emb["head"], emb["learning_rate"], emb["epochs"]) == ("embedding", 1e-3, 5)
    lora = GlueRecipe(task="rte", method="lora", model=str(st)).resolved()
    assert (lora["learning_rate"], lora["epochs"]) == (5e-4, 5)  # below the cap: the method's own default
    cls = GlueRecipe(task="rte", method="hut", model=str(plain)).resolved()
    assert (cls["head"], cls["learning_rate"], cls["epochs"]) == ("cls", 1e-2, 3)
    forced = GlueRecipe(task="rte", method="hut", model=str(st), head="cls", learning_rate=0.5).resolved()
    assert (forced["head"], forced["learning_rate"], forced["epochs"]) == ("cls", 0.5, 3)
    assert GlueRecipe(task="rte", method="hut", preset="paper", model=str(st)).resolved()["learning_rate"] == 2e-3
    with pytest.raises(ValueError, match="--head must be one of"):
        GlueRecipe(task="rte", head="mean")
