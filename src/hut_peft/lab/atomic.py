"""Atomic file writes: a temp file beside the target, renamed over it, so no reader or crash sees half a file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)``, then rename the temp file to ``path``; on any error, remove it.

    ``mkstemp`` creates files readable by the owner only; the result gets the mode a plain ``open`` would give
    (0o666 less the umask), so results and checkpoints stay readable by the rest of a team.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Atomic JSON (indented, non-JSON values as strings)."""
    write_text_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")
