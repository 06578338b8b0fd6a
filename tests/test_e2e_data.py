"""E2E loaders for every layout, the MR grouping, and the official file layout."""

from __future__ import annotations

import pytest

from hut_peft.lab.data.e2e import (
    E2EExample,
    group_by_mr,
    linearize_mr,
    load_e2e,
    read_official_refs,
    read_predictions,
    write_official_layout,
)

CSV = (
    'mr,ref\n"name[The Vaults], eatType[pub], priceRange[more than £30]",The Vaults is an expensive pub.\n'
    '"name[Blue Spice], food[Chinese]",Blue Spice serves Chinese food.\n'
    '"name[The Vaults], eatType[pub], priceRange[more than £30]","The Vaults, a pub, is pricey."\n'
)


def test_csv_layout_and_grouping_in_order_of_first_appearance(tmp_path):
    (tmp_path / "devset.csv").write_text("\ufeff" + CSV, encoding="utf-8")  # a BOM is tolerated
    pairs = load_e2e("validation", tmp_path)
    assert pairs[2] == E2EExample("name[The Vaults], eatType[pub], priceRange[more than £30]",
                                  "The Vaults, a pub, is pricey.")
    groups = group_by_mr(pairs)
    assert groups == [
        ("name[The Vaults], eatType[pub], priceRange[more than £30]",
         ["The Vaults is an expensive pub.", "The Vaults, a pub, is pricey."]),
        ("name[Blue Spice], food[Chinese]", ["Blue Spice serves Chinese food."]),
    ]


def test_linearize_mr():
    assert linearize_mr("name[The Vaults], eatType[pub], priceRange[more than £30]") == \
        "name : The Vaults | eatType : pub | priceRange : more than £30"
    assert linearize_mr(" near[Café Rouge] ") == "near : Café Rouge"
    assert linearize_mr("name : Aromi | Type : cafe") == "name : Aromi | Type : cafe"  # already linear
    with pytest.raises(ValueError, match=r"from ' food\[Thai\]x'"):
        linearize_mr("name[Aromi], food[Thai]x")


def test_lora_line_layout(tmp_path):
    (tmp_path / "train.txt").write_text(
        "name : The Vaults | Type : pub || The Vaults is a pub .\n\nname : Aromi | Type : cafe||Aromi is a cafe .\n",
        encoding="utf-8")
    pairs = load_e2e("train", tmp_path)
    assert pairs == [E2EExample("name : The Vaults | Type : pub", "The Vaults is a pub ."),
                     E2EExample("name : Aromi | Type : cafe", "Aromi is a cafe .")]
    (tmp_path / "valid.txt").write_text("name : Aromi | Type : cafe\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"valid.txt:1: .*no '\|\|'"):
        load_e2e("validation", tmp_path)


def test_csv_is_preferred_when_both_layouts_are_present(tmp_path):
    (tmp_path / "devset.csv").write_text(CSV, encoding="utf-8")
    (tmp_path / "valid.txt").write_text("name : X || y\n", encoding="utf-8")
    assert len(load_e2e("validation", tmp_path)) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mr,ref\nname[X],ok\n,no mr here\n", r"trainset.csv:3: the MR '' is empty"),
        ("mr,ref\nname[X],ok\nname[Y]\n", r"trainset.csv:3: expected 2 columns \(mr, ref\), found 1"),
        ("mr,ref\nname[X],\n", r"trainset.csv:2: the reference is empty"),
        ("meaning,text\nname[X],ok\n", r"trainset.csv:1: expected the header 'mr,ref'"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, text, message):
    (tmp_path / "trainset.csv").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_e2e("train", tmp_path)


def test_missing_files_and_bad_split(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"testset_w_refs.csv.*test.txt.*--data-dir"):
        load_e2e("test", tmp_path)
    with pytest.raises(ValueError, match="split must be one of train, validation, test"):
        load_e2e("dev", tmp_path)


def test_hub_offline_tells_the_user_to_pass_data_dir(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"HF_HUB_OFFLINE.*--data-dir"):
        load_e2e("validation", None)


def test_official_layout_round_trip(tmp_path):
    groups = [("mr1", ["a b", "c\nd"]), ("mr2", ["e f"])]
    write_official_layout(groups, ["x", "y\nz"], tmp_path / "out" / "refs.txt", tmp_path / "out" / "preds.txt")
    assert (tmp_path / "out" / "refs.txt").read_text(encoding="utf-8") == "a b\nc d\n\ne f\n"
    assert read_official_refs(tmp_path / "out" / "refs.txt") == [["a b", "c d"], ["e f"]]
    assert read_predictions(tmp_path / "out" / "preds.txt") == ["x", "y z"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["preds.txt", "refs.txt"]  # no temp files left
    with pytest.raises(ValueError, match="1 predictions for 2 MRs"):
        write_official_layout(groups, ["x"], tmp_path / "r", tmp_path / "p")


def test_reference_file_without_blank_lines_is_single_reference(tmp_path):
    # as measure_scores.py reads it: one MR per line
    (tmp_path / "refs.txt").write_text("first\nsecond\n", encoding="utf-8")
    assert read_official_refs(tmp_path / "refs.txt") == [["first"], ["second"]]
    with pytest.raises(FileNotFoundError, match="No prediction file"):
        read_predictions(tmp_path / "missing.txt")


def test_real_devset(data_dir):
    path = data_dir / "e2e"
    if not (path / "devset.csv").is_file():
        pytest.skip(f"{path / 'devset.csv'} not found (set HUT_PEFT_DATA_DIR)")
    pairs = load_e2e("validation", path)
    groups = group_by_mr(pairs)
    assert len(pairs) == 4672 and len(groups) == 547
    assert sum(len(refs) for _, refs in groups) == 4672
    assert groups[0][0] == "name[Alimentum], area[city centre], familyFriendly[no]"
    assert linearize_mr(groups[0][0]) == "name : Alimentum | area : city centre | familyFriendly : no"
