"""SQuAD v1.1's official EM / F1 on hand-made cases (normalisation corners included), and the data loader's split
and its errors on malformed files."""

from __future__ import annotations

import json

import pytest

from hut_peft.lab.metrics.squad import exact_match_score, f1_score, normalize_answer, question_scores, squad_scores


@pytest.mark.parametrize(("text", "normalized"), [
    ("The Denver Broncos", "denver broncos"),
    ("Over The Top", "over top"),  # articles go anywhere, not only in front
    ("the theatre and an anthem", "theatre and anthem"),  # whole words only: "theatre", "anthem" keep theirs
    ("a.b", "ab"),  # punctuation goes before articles are looked for
    ("the-end", "theend"),  # so "the" glued to a word by a hyphen is not an article any more
    ("  New\tYork\n", "new york"),
    ("!!!", ""),  # punctuation only
    ("Paris—France", "paris—france"),  # the em dash is not ASCII punctuation: it stays
    ("Beyoncé’s", "beyoncé’s"),  # nor is the curly apostrophe
    ("Beyoncé's", "beyoncés"),
    ("", ""),
])
def test_normalize_answer_follows_the_official_script(text, normalized):
    assert normalize_answer(text) == normalized


def test_exact_match_and_f1_corners():
    assert exact_match_score("the Denver Broncos!", "Denver Broncos")
    assert f1_score("Denver Broncos team", "the Denver Broncos") == pytest.approx(0.8)  # P 2/3, R 1
    assert f1_score("x x y", "x y y") == pytest.approx(2 / 3)  # token counts are clipped, not sets
    assert (exact_match_score("", "Denver"), f1_score("", "Denver")) == (False, 0.0)  # empty prediction
    # A gold answer that normalises to nothing: EM says equal, F1 finds no common token (the official script's
    # behaviour, kept).
    assert (exact_match_score("?", "!!!"), f1_score("?", "!!!")) == (True, 0.0)
    assert (exact_match_score("Paris—France", "Paris France"), f1_score("Paris—France", "Paris France")) == (False, 0.0)
    assert f1_score("Beyoncé’s song", "Beyoncé's song") == pytest.approx(0.5)


def test_scores_take_the_best_gold_answer_and_the_mean_over_all_questions():
    assert question_scores("Denver", ["Denver Broncos", "Denver"]) == (1.0, 1.0)
    assert question_scores("Broncos", ["Denver Broncos", "Carolina"]) == (0.0, pytest.approx(2 / 3))
    refs = {"q1": ["x y"], "q2": ["z"], "q3": ["w v"]}
    scores = squad_scores({"q1": "x y", "q3": "w"}, refs)  # q2 unanswered: scored 0, counted
    assert scores == {"exact_match": pytest.approx(100 / 3), "f1": pytest.approx(100 * (1 + 2 / 3) / 3),
                      "missing": 1}
    with pytest.raises(ValueError, match="at least one gold answer"):
        question_scores("x", [])
    with pytest.raises(ValueError, match="no SQuAD questions"):
        squad_scores({}, {})


# ------------------------------------------------------------------------------------------------- data
def _article(title: str, n_questions: int = 2) -> dict:
    context = f"{title} was founded in 1900 by Ada Lovelace in London."
    qas = [{"id": f"{title}-{i}", "question": f"Who founded {title}?",
            "answers": [{"text": "Ada Lovelace", "answer_start": context.index("Ada")}]} for i in range(n_questions)]
    return {"title": title, "paragraphs": [{"context": context, "qas": qas}]}


def _write(folder, data) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dev-v1.1.json").write_text(data if isinstance(data, str) else json.dumps(data))


def test_offline_split_is_by_article_sorted_by_title_even_and_odd(tmp_path):
    from hut_peft.lab.data.squad import load_squad

    _write(tmp_path, {"version": "1.1", "data": [_article(t, n) for t, n in (("Delta", 1), ("Alpha", 2),
                                                                              ("Charlie", 3), ("Bravo", 4))]})
    train, dev = load_squad(tmp_path, "train"), load_squad(tmp_path, "validation")
    assert sorted(set(train["title"])) == ["Alpha", "Charlie"] and sorted(set(dev["title"])) == ["Bravo", "Delta"]
    assert (len(train), len(dev)) == (5, 5)
    assert train[0]["answers"] == {"text": ["Ada Lovelace"], "answer_start": [29]}
    assert load_squad(tmp_path, "train", max_samples=3, seed=1)["id"] == load_squad(tmp_path, "train", 3, 1)["id"]


def test_real_dev_file_halves(data_dir):
    from hut_peft.lab.data.squad import load_squad_articles

    train, dev = (load_squad_articles(data_dir / "squad", split) for split in ("train", "validation"))
    assert len(train) == len(dev) == 24 and not {a["title"] for a in train} & {a["title"] for a in dev}
    count = [sum(len(p["qas"]) for a in half for p in a["paragraphs"]) for half in (train, dev)]
    assert count == [5665, 4905]


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not a JSON file"),
    ({"version": "1.1"}, "the file has no 'data'"),
    ({"data": [{"title": "T", "paragraphs": [{"context": "c", "qas": [{"id": "1", "question": "q"}]}]}]},
     r"data\[0\].paragraphs\[0\].qas\[0\] has no 'answers'"),
    ({"data": [{"title": "T", "paragraphs": [{"context": "abc", "qas": [
        {"id": "7", "question": "q", "answers": [{"text": "b", "answer_start": 0}]}]}]}]},
     "answer 'b' is not at answer_start 0"),
])
def test_malformed_files_name_the_problem(tmp_path, content, message):
    from hut_peft.lab.data.squad import load_squad

    _write(tmp_path, content)
    with pytest.raises(ValueError, match=message):
        load_squad(tmp_path, "train")


def test_cli_reports_a_malformed_file_in_one_line(tmp_path, capsys):
    from hut_peft.cli import main

    _write(tmp_path / "data", {"data": [{"title": "T", "paragraphs": [{"context": "c", "qas": [{"id": "1"}]}]}]})
    assert main(["squad", "--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hut-peft squad: error: ")
    assert "qas[0] has no 'question'" in err[0] and "official SQuAD v1.1 layout" in err[0]
    assert main(["squad", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "does not exist; pass --data-dir" in capsys.readouterr().err
    assert main(["squad", "--output-dir", str(tmp_path / "hub")]) == 2  # offline (conftest): the hub cannot answer
    assert "Offline, pass --data-dir with the official dev-v1.1.json" in capsys.readouterr().err
    assert main(["squad", "--doc-stride", "400"]) == 2
    assert "--doc-stride (400) must be below --max-length (384)" in capsys.readouterr().err
    assert not (tmp_path / "out" / "results.json").exists()
