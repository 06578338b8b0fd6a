"""E2E loaders for both layouts, the MR grouping, and the official file layout."""

from __future__ import annotations

import pytest

from hut_peft.data.e2e import (
    group_by_mr,
    linearize_mr,
    load_e2e,
    read_official_refs,
    read_predictions,
    write_official_layout,
)

CSV = 'mr,ref\n"name[The Vaults], eatType[pub], priceRange[more than £30]",The Vaults is an expensive pub.\n' \
      '"name[The Vaults], eatType[pub], priceRange[more than £30]","The Vaults, a pub, is pricey."\n' \
      '"name[Blue Spice], food[Chinese]",Blue Spice serves Chinese food.\n'


def test_csv_layout_and_grouping(tmp_path):
    (tmp_path / "devset.csv").write_text(CSV, encoding="utf-8")
    pairs = load_e2e("validation", tmp_path)
    assert len(pairs) == 3 and pairs[1].ref == "The Vaults, a pub, is pricey."
    groups = group_by_mr(pairs)
    assert [len(refs) for _, refs in groups] == [2, 1]
    assert linearize_mr(groups[0][0]) == "name : The Vaults | eatType : pub | priceRange : more than £30"


def test_lora_line_layout(tmp_path):
    (tmp_path / "train.txt").write_text(
        "name : The Vaults | Type : pub || The Vaults is a pub .\n\nname : Aromi | Type : cafe || Aromi is a cafe .\n")
    pairs = load_e2e("train", tmp_path)
    assert [(p.mr, p.ref) for p in pairs][1] == ("name : Aromi | Type : cafe", "Aromi is a cafe .")
    assert linearize_mr(pairs[0].mr) == pairs[0].mr  # already linear


def test_malformed_and_missing(tmp_path):
    (tmp_path / "trainset.csv").write_text("mr,ref\nname[X],ok\n,no mr here\n")
    with pytest.raises(ValueError, match=r"trainset.csv:3: the MR '' is empty"):
        load_e2e("train", tmp_path)
    (tmp_path / "devset.csv").write_text("meaning,text\n")
    with pytest.raises(ValueError, match=r"devset.csv:1: expected the header 'mr,ref'"):
        load_e2e("validation", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"testset_w_refs.csv.*--data-dir"):
        load_e2e("test", tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        load_e2e("dev", tmp_path)


def test_official_layout_round_trip(tmp_path):
    groups = [("mr1", ["a b", "c d"]), ("mr2", ["e f"])]
    write_official_layout(groups, ["x", "y"], tmp_path / "refs.txt", tmp_path / "preds.txt")
    assert (tmp_path / "refs.txt").read_text() == "a b\nc d\n\ne f\n"
    assert read_official_refs(tmp_path / "refs.txt") == [["a b", "c d"], ["e f"]]
    assert read_predictions(tmp_path / "preds.txt") == ["x", "y"]
    with pytest.raises(ValueError, match="1 predictions for 2 MRs"):
        write_official_layout(groups, ["x"], tmp_path / "r", tmp_path / "p")


def test_real_devset(data_dir):
    pairs = load_e2e("validation", data_dir / "e2e")
    assert len(pairs) == 4672 and len(group_by_mr(pairs)) == 547
