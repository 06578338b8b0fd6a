"""One real model in the default run: HUT on the embedded all-MiniLM-L6-v2 learns from real text."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model

from hut_peft import HUTConfig
from hut_peft.lab.models import resolve_model

SENTENCES = [
    ("a gorgeous, witty, seductive movie.", 1),
    ("the acting, costumes, music, cinematography and sound are all astounding.", 1),
    ("it's a charming and often affecting journey.", 1),
    ("one of the greatest family-oriented, fantasy-adventure movies ever.", 1),
    ("unflinchingly bleak and desperate", 0),
    ("the story is also as unoriginal as they come, already having been recycled more times than i'd care to count.", 0),
    ("it's slow -- very, very slow.", 0),
    ("a sometimes tedious film.", 0),
]


def test_a_few_hut_steps_lower_the_loss_on_minilm():
    transformers = pytest.importorskip("transformers")
    try:
        source = resolve_model("minilm")
    except FileNotFoundError as err:
        pytest.skip(str(err))
    torch.manual_seed(0)
    tok = transformers.AutoTokenizer.from_pretrained(source.path)
    base = transformers.AutoModelForSequenceClassification.from_pretrained(source.path, num_labels=2)
    model = get_peft_model(base, HUTConfig(r=8, target_modules=["query", "value"], task_type="SEQ_CLS"))
    batch = tok([s for s, _ in SENTENCES], padding=True, return_tensors="pt")
    batch["labels"] = torch.tensor([y for _, y in SENTENCES])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(10):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses
    # the HUT vectors moved away from the identity, the base weights did not move
    layer = model.base_model.model.bert.encoder.layer[0].attention.self.query
    assert (layer.hut_gamma["default"] - 1).abs().max() > 1e-3
