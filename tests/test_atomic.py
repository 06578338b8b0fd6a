"""Atomic writes: the whole file or the old one, never half; the usual permissions; no temp files left."""

from __future__ import annotations

import json
import os
import stat

import pytest

from hut_peft.lab.atomic import atomic_write, write_json_atomic, write_text_atomic


def test_writes_with_the_mode_a_plain_open_gives(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "sub" / "r.json", {"a": 1})
        (tmp_path / "plain").write_text("x")
    finally:
        os.umask(old)
    assert json.loads((tmp_path / "sub" / "r.json").read_text()) == {"a": 1}
    mode = stat.S_IMODE((tmp_path / "sub" / "r.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o644


def test_a_failing_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "results.json"
    write_text_atomic(target, "old\n")

    def half_then_crash(tmp: str) -> None:
        with open(tmp, "w") as handle:
            handle.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_crash)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
