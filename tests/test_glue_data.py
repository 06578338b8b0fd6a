"""GLUE loaders: every layout quirk on small fixture files, the hub path offline, and the real files' counts."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import datasets
import pytest

from hut_peft.lab.data.glue import GLUE_TASKS, get_task, hub_features, load_glue

STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
MNLI_DEV_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                   "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\t"
                   "label5\tgold_label\n")
QQP_HEADER = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"


def _write(path: Path, text: str, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def test_cola_has_no_header(tmp_path):
    _write(tmp_path / "CoLA" / "train.tsv", "gj04\t1\t\tThe sailors rode the breeze.\ngj04\t0\t*\tBill whistled.\n")
    ds = load_glue("cola", tmp_path, "train")
    assert ds["sentence"] == ["The sailors rode the breeze.", "Bill whistled."]
    assert ds["label"] == [1, 0] and ds["idx"] == [0, 1]
    assert ds.features["label"].names == ["unacceptable", "acceptable"]


def test_sst2_header_and_hub_schema(tmp_path):
    _write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\nit 's a \" charming journey . \t1\nbad . \t0\n")
    ds = load_glue("SST-2", tmp_path, "validation")  # the release folder name works as a task name too
    assert ds.features == hub_features("sst2")
    assert ds.features["idx"].dtype == "int32" and ds.features["label"].names == ["negative", "positive"]
    assert ds[0] == {"sentence": "it 's a \" charming journey . ", "label": 1, "idx": 0}


def test_mrpc_bom_header_by_name_and_quotes(tmp_path):
    _write(tmp_path / "MRPC" / "dev.tsv",
           'Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\the said " yes .\the said " no .\n', bom=True)
    ds = load_glue("mrpc", tmp_path, "validation")
    assert ds[0] == {"sentence1": 'he said " yes .', "sentence2": 'he said " no .', "label": 1, "idx": 0}
    # columns are found by header name: a file with another column order reads the same
    _write(tmp_path / "MRPC" / "dev.tsv",
           '#2 String\t#1 ID\tQuality\t#2 ID\t#1 String\nhe said " no .\t1\t1\t2\the said " yes .\n', bom=True)
    assert load_glue("mrpc", tmp_path, "validation")[0] == ds[0]


def test_stsb_reads_stray_quotes_without_quoting(tmp_path):
    # With csv's default quoting the leading '"' would swallow the tab and merge both sentences.
    row = '0\tmain-news\tx\t2012\t1\tnone\tnone\t"A man\tA "woman" runs.\t3.800\n'
    _write(tmp_path / "STS-B" / "train.tsv", STSB_HEADER + row)
    with (tmp_path / "STS-B" / "train.tsv").open(newline="") as handle:
        assert len(list(csv.reader(handle, delimiter="\t"))[1]) != 10  # the quirk is real
    ds = load_glue("stsb", tmp_path / "STS-B", "train")  # data_dir may be the task folder itself
    assert ds[0]["sentence1"] == '"A man' and ds[0]["sentence2"] == 'A "woman" runs.'
    assert ds[0]["label"] == pytest.approx(3.8) and ds.features["label"].dtype == "float32"


@pytest.mark.parametrize("task", ["rte", "qnli"])
def test_binary_string_labels_map_like_the_hub(tmp_path, task):
    spec = GLUE_TASKS[task]
    header = f"index\t{spec.sentence1_key}\t{spec.sentence2_key}\tlabel\n"
    _write(tmp_path / spec.folder / "train.tsv", header + "0\ta\tb\tentailment\n1\tc\td\tnot_entailment\n")
    ds = load_glue(task, tmp_path, "train")
    assert ds["label"] == [0, 1] and ds.features["label"].names == ["entailment", "not_entailment"]
    assert ds.column_names == [spec.sentence1_key, spec.sentence2_key, "label", "idx"]


def test_mnli_many_columns_and_matched_dev(tmp_path):
    rows = ["\t".join(["0", "p", "q", "fiction", "(a)", "(b)", "(A)", "(B)", "A man runs.", "Nobody runs.",
                       "contradiction"] + ["neutral"] * 4 + ["contradiction"]),
            "\t".join(["1", "p", "q", "slate", "(a)", "(b)", "(A)", "(B)", "It rains.", "It is wet.",
                       "entailment"] + ["entailment"] * 4 + ["neutral"])]
    _write(tmp_path / "MNLI" / "dev_matched.tsv", MNLI_DEV_HEADER + "\n".join(rows) + "\n")
    ds = load_glue("mnli", tmp_path, "validation")
    assert ds["premise"] == ["A man runs.", "It rains."] and ds["hypothesis"] == ["Nobody runs.", "It is wet."]
    assert ds["label"] == [2, 1]  # gold_label (last column), not label1


def test_malformed_rows_name_file_and_line(tmp_path):
    rte = tmp_path / "RTE" / "train.tsv"
    _write(rte, "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n\n1\tc\tmaybe\n")
    with pytest.raises(ValueError, match=r"RTE/train\.tsv:4: expected 4 tab-separated columns "
                                         r"\(index, sentence1, sentence2, label\), found 3"):
        load_glue("rte", tmp_path, "train")
    _write(rte, "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tyes\n")
    with pytest.raises(ValueError, match=r"train\.tsv:2: RTE label 'yes' is not one of entailment, "
                                         r"not_entailment"):
        load_glue("rte", tmp_path, "train")
    _write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\nfine\t1\nodd\t2\n")
    with pytest.raises(ValueError, match=r"SST-2/train\.tsv:3: SST-2 label '2' is not one of 0, 1"):
        load_glue("sst2", tmp_path, "train")
    _write(tmp_path / "STS-B" / "train.tsv", STSB_HEADER + "0\tg\tf\ty\t1\tn\tn\ta\tb\tfive\n")
    with pytest.raises(ValueError, match=r"STS-B/train\.tsv:2: STS-B score 'five' is not a number"):
        load_glue("stsb", tmp_path, "train")
    _write(tmp_path / "CoLA" / "train.tsv", "gj04\t1\t\tfine.\ngj04\t1\tno original label column\n")
    with pytest.raises(ValueError, match=r"CoLA/train\.tsv:2: expected 4 tab-separated columns \(source, "
                                         r"label, original label, sentence\), found 3"):
        load_glue("cola", tmp_path, "train")
    _write(tmp_path / "QNLI" / "train.tsv", "index\tquestion\ttext\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(ValueError, match=r"QNLI/train\.tsv:1: the QNLI header lacks column\(s\) \['sentence'\]"):
        load_glue("qnli", tmp_path, "train")


def test_qqp_skips_and_counts_short_rows_as_the_hub_does(tmp_path, caplog):
    _write(tmp_path / "QQP" / "train.tsv",
           QQP_HEADER + "1\t1\t2\tq?\tp?\t1\n2\t3\t4\tbroken\n3\t5\t6\tq2?\tp2?\t\n4\t7\t8\tq3?\tp3?\t0\n")
    with caplog.at_level(logging.WARNING, logger="hut_peft.lab.data.glue"):
        ds = load_glue("qqp", tmp_path, "train")
    assert ds["question1"] == ["q?", "q3?"] and ds["label"] == [1, 0]
    assert ds["idx"] == [0, 3]  # the hub numbers rows before dropping the broken ones
    assert "skipped 2 malformed row(s) with missing fields (lines 3, 4)" in caplog.text
    # a wrong label, or extra columns, is not the hub's convention to skip: still an error
    _write(tmp_path / "QQP" / "train.tsv", QQP_HEADER + "1\t1\t2\tq?\tp?\t7\n")
    with pytest.raises(ValueError, match=r"QQP/train\.tsv:2: QQP label '7' is not one of 0, 1"):
        load_glue("qqp", tmp_path, "train")
    _write(tmp_path / "QQP" / "train.tsv", QQP_HEADER + "1\t1\t2\tq?\tp?\t1\textra\n")
    with pytest.raises(ValueError, match=r"QQP/train\.tsv:2: expected 6 tab-separated columns"):
        load_glue("qqp", tmp_path, "train")


def test_missing_files_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"GLUE data folder .*nowhere does not exist"):
        load_glue("rte", tmp_path / "nowhere", "train")
    with pytest.raises(FileNotFoundError, match=r"RTE/train\.tsv nor .*the GLUE release layout is "
                                                r"<data_dir>/<Task>/train\.tsv"):
        load_glue("rte", tmp_path, "train")
    _write(tmp_path / "RTE" / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(FileNotFoundError, match=r"missing file .*RTE/dev\.tsv"):
        load_glue("rte", tmp_path, "validation")
    with pytest.raises(ValueError, match=r"is the RTE folder, but the task is 'sst2'"):
        load_glue("sst2", tmp_path / "RTE", "train")
    with pytest.raises(ValueError, match="Unknown GLUE task 'squad'"):
        load_glue("squad", tmp_path)
    with pytest.raises(ValueError, match="split must be one of train, validation, got 'test'"):
        load_glue("rte", tmp_path, "test")
    with pytest.raises(ValueError, match="max_samples must be a positive integer"):
        load_glue("rte", tmp_path, "train", max_samples=0)
    _write(tmp_path / "RTE" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n")
    with pytest.raises(ValueError, match=r"RTE/dev\.tsv: no data rows"):
        load_glue("rte", tmp_path, "validation")


def test_seeded_subset_is_reproducible_and_in_file_order(tmp_path):
    rows = "".join(f"s{i}\t{i % 2}\n" for i in range(50))
    _write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\n" + rows)
    a = load_glue("sst2", tmp_path, "train", max_samples=10, seed=1)
    assert a["sentence"] == load_glue("sst2", tmp_path, "train", max_samples=10, seed=1)["sentence"]
    assert len(a) == 10 and a["idx"] == sorted(a["idx"]) and a["idx"] != list(range(10))
    assert a["sentence"] != load_glue("sst2", tmp_path, "train", max_samples=10, seed=2)["sentence"]
    assert len(load_glue("sst2", tmp_path, "train", max_samples=500)) == 50


def test_hub_path_names_config_and_split_and_fails_clearly_offline(monkeypatch):
    calls = []

    def fake_load_dataset(path, name, split):
        calls.append((path, name, split))
        return datasets.Dataset.from_list([{"premise": "a", "hypothesis": "b", "label": 0, "idx": 0}],
                                          features=hub_features("mnli"))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_glue("mnli", split="validation")[0]["premise"] == "a"
    assert calls == [("nyu-mll/glue", "mnli", "validation_matched")]

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(FileNotFoundError, match=r"Could not load GLUE rte from the hub .*ConnectionError.*"
                                                r"pass --data-dir"):
        load_glue("rte")


def test_task_table():
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "qnli", "rte", "stsb", "mnli", "qqp"}
    assert GLUE_TASKS["stsb"].num_labels == 1 and GLUE_TASKS["mnli"].num_labels == 3
    assert GLUE_TASKS["mnli"].label_names == ("entailment", "neutral", "contradiction")
    assert get_task("STS-B") is GLUE_TASKS["stsb"]
    for spec in GLUE_TASKS.values():
        assert spec.num_labels == (len(spec.label_names) or 1)


# README counts; the shared copy's MRPC train.tsv has 3,668 lines including its header, so 3,667 examples
# (the hub's MRPC train split, built from the MSR source files, has 3,668). Checked independently below.
README_COUNTS = {"cola": (8551, 1043), "sst2": (67349, 872), "mrpc": (3668, 408), "rte": (2490, 277),
                 "stsb": (5749, 1500)}
FILE_COUNTS = {**README_COUNTS, "mrpc": (3667, 408)}


@pytest.mark.parametrize("task", list(README_COUNTS))
def test_real_glue_files(task, data_dir):
    spec = GLUE_TASKS[task]
    folder = data_dir / "glue" / spec.folder
    if not folder.is_dir():
        pytest.skip(f"GLUE {spec.folder} not found at {folder} (set HUT_PEFT_DATA_DIR)")
    train, dev = (load_glue(task, data_dir / "glue", split) for split in ("train", "validation"))
    assert (len(train), len(dev)) == FILE_COUNTS[task]
    header = 0 if task == "cola" else 1
    for ds, name in ((train, "train.tsv"), (dev, "dev.tsv")):
        lines = (folder / name).read_bytes().rstrip(b"\n").count(b"\n") + 1
        assert len(ds) == lines - header  # every line is one example: nothing merged or dropped
    assert train.features == hub_features(task)
