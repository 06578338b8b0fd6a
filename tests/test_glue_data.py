"""GLUE loaders: every layout quirk on small fixture files, and the real files' row counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from hut_peft.data.glue import load_glue


def _write(path: Path, text: str, bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())


def test_cola_has_no_header(tmp_path):
    _write(tmp_path / "CoLA" / "train.tsv", "gj04\t1\t\tThe sailors rode the breeze.\ngj04\t0\t*\tBill whistled.\n")
    ds = load_glue("cola", tmp_path, "train")
    assert ds["sentence"] == ["The sailors rode the breeze.", "Bill whistled."] and ds["label"] == [1, 0]


def test_mrpc_bom_header_and_quotes(tmp_path):
    _write(tmp_path / "MRPC" / "dev.tsv",
           'Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\the said " yes .\the said " no .\n', bom=True)
    ds = load_glue("mrpc", tmp_path, "validation")
    assert ds[0] == {"sentence1": 'he said " yes .', "sentence2": 'he said " no .', "label": 1, "idx": 0}


def test_stsb_reads_stray_quotes_and_float_scores(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    row = '0\tmain-news\tx\t2012\t1\tnone\tnone\t"A man\tA "woman" runs.\t3.800\n'
    _write(tmp_path / "STS-B" / "train.tsv", header + row)
    ds = load_glue("stsb", tmp_path / "STS-B", "train")  # data_dir may be the task folder itself
    assert ds[0]["sentence1"] == '"A man' and ds[0]["label"] == pytest.approx(3.8)


def test_string_labels_map_like_the_hub(tmp_path):
    _write(tmp_path / "RTE" / "train.tsv",
           "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\td\tnot_entailment\n")
    assert load_glue("rte", tmp_path, "train")["label"] == [0, 1]


def test_malformed_rows_name_file_and_line(tmp_path):
    _write(tmp_path / "RTE" / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\tmaybe\n")
    with pytest.raises(ValueError, match=r"train.tsv:3: expected 4 tab-separated columns, found 3"):
        load_glue("rte", tmp_path, "train")
    _write(tmp_path / "RTE" / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tyes\n")
    with pytest.raises(ValueError, match=r"train.tsv:2: label 'yes' is not one of entailment, not_entailment"):
        load_glue("rte", tmp_path, "train")
    _write(tmp_path / "STS-B" / "train.tsv", "sentence1\tsentence2\tscore\na\tb\tfive\n")
    with pytest.raises(ValueError, match=r"train.tsv:2: STS-B score 'five' is not a number"):
        load_glue("stsb", tmp_path, "train")


def test_qqp_skips_and_counts_malformed_rows_as_the_hub_does(tmp_path, caplog):
    _write(tmp_path / "QQP" / "train.tsv",
           "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t1\t2\tq?\tp?\t1\n2\t3\t4\tbroken\n")
    ds = load_glue("qqp", tmp_path, "train")
    assert len(ds) == 1 and "skipped 1 malformed" in caplog.text


def test_missing_files_and_unknown_task(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"RTE.*--data-dir must hold the original GLUE release layout"):
        load_glue("rte", tmp_path, "train")
    with pytest.raises(ValueError, match="Unknown GLUE task"):
        load_glue("squad", tmp_path)


def test_seeded_subset_is_reproducible(tmp_path):
    rows = "".join(f"s{i}\t{i % 2}\n" for i in range(50))
    _write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\n" + rows)
    a = load_glue("sst2", tmp_path, "train", max_samples=10, seed=1)["sentence"]
    assert a == load_glue("sst2", tmp_path, "train", max_samples=10, seed=1)["sentence"] and len(a) == 10
    assert a != load_glue("sst2", tmp_path, "train", max_samples=10, seed=2)["sentence"]


# The shared copy's MRPC train.tsv has 3,668 lines including its header: 3,667 examples.
REAL_COUNTS = {"cola": (8551, 1043), "sst2": (67349, 872), "mrpc": (3667, 408), "rte": (2490, 277),
               "stsb": (5749, 1500)}


@pytest.mark.parametrize("task", list(REAL_COUNTS))
def test_real_glue_files(task, data_dir):
    train, dev = (len(load_glue(task, data_dir / "glue", split)) for split in ("train", "validation"))
    assert (train, dev) == REAL_COUNTS[task]
