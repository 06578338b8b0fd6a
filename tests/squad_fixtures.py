"""Hand-made SQuAD material shared by the SQuAD tests: two contexts, six questions, a tiny QA model folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONTEXTS = [
    "Super Bowl 50 was an American football game to determine the champion of the National Football League for the "
    "2015 season. The American Football Conference champion Denver Broncos defeated the National Football Conference "
    "champion Carolina Panthers 24 to 10 to earn their third Super Bowl title. The game was played on February 7, "
    "2016, at Levi's Stadium in the San Francisco Bay Area at Santa Clara, California.",
    "The Amazon rainforest, also known in English as Amazonia, is a moist broadleaf forest that covers most of the "
    "Amazon basin of South America. This basin encompasses seven million square kilometres, of which five and a half "
    "million square kilometres are covered by the rainforest.",
]
QUESTIONS = [  # (context index, question, answer)
    (0, "Which team won Super Bowl 50?", "Denver Broncos"),
    (0, "Where was Super Bowl 50 played?", "Santa Clara, California"),
    (0, "What was the final score?", "24 to 10"),
    (1, "What is the Amazon rainforest also known as?", "Amazonia"),
    (1, "How large is the Amazon basin?", "seven million square kilometres"),
    (1, "What kind of forest is the Amazon rainforest?", "moist broadleaf forest"),
]


def write_tiny_qa_setup(root: Path, tokenizer: Any) -> tuple[Path, Path]:
    """(a tiny random BERT QA model saved with ``tokenizer``, a release folder whose dev-v1.1.json has 4 articles:
    Alpha and Charlie train, Bravo and Delta are held out, 6 questions each half)."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    tokenizer.save_pretrained(root / "model")
    torch.manual_seed(0)
    BertForQuestionAnswering(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=37,
                                        max_position_embeddings=128)).save_pretrained(root / "model")
    articles = []
    for a, title in enumerate(["Alpha", "Bravo", "Charlie", "Delta"]):
        qas = [{"id": f"{title}-{i}", "question": question,
                "answers": [{"text": answer, "answer_start": CONTEXTS[c].index(answer)}]}
               for i, (c, question, answer) in enumerate(QUESTIONS) if c == a % 2]
        articles.append({"title": title, "paragraphs": [{"context": CONTEXTS[a % 2], "qas": qas}]})
    (root / "data").mkdir()
    (root / "data" / "dev-v1.1.json").write_text(json.dumps({"version": "1.1", "data": articles}))
    return root / "model", root / "data"
