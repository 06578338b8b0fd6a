"""Run peft's own generic test matrix against HUT: ``python tests/peft_matrix/run.py [pytest args]``.

1. Downloads the source distribution of the *installed* peft version from PyPI (``pip download
   --no-binary :all:``; the wheel has no tests) into ``.cache/peft-matrix/`` (gitignored), once.
2. Copies peft's generic test files (custom models, decoders, encoder-decoders, feature extraction and their
   two helper modules) into ``.cache/peft-matrix/run-<version>/tests/`` and applies inject.py's edits, which add
   HUT the way peft adds a method (rows in the parametrised case lists, HUT named where helpers list methods).
3. Builds tiny random stand-ins for the hub models those tests name into a local hub cache (standins.py).
4. Runs pytest on that folder, offline, HUT's tests only; extra arguments go to pytest (``-k``, ``-x``, ``-n``).

Exit status is pytest's. ``make test-peft-matrix`` runs this; docs/methods.md records the result.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("HUT_MATRIX_CACHE", REPO / ".cache" / "peft-matrix"))
sys.path.insert(0, str(HERE))

from inject import HELPERS, TEST_MODULES, apply_edits  # noqa: E402
from standins import write_hub_cache  # noqa: E402


def fetch_peft_tests(version: str, cache: Path = CACHE) -> Path:
    """``tests/`` of peft's sdist for ``version``, downloaded and unpacked once into ``cache``."""
    target = cache / f"peft-{version}" / "tests"
    if (target / "testing_common.py").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"peft=={version}", "--no-binary", ":all:", "--no-deps",
             "--quiet", "-d", tmp],
            check=True,
        )
        (archive,) = Path(tmp).glob(f"peft-{version}.tar.gz")
        prefix = f"peft-{version}/tests/"
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12
            tar.extractall(tmp, members=members, **safe)
        shutil.move(Path(tmp) / f"peft-{version}", cache / f"peft-{version}")
    return target


def build_run_dir(version: str, cache: Path = CACHE) -> Path:
    """A fresh folder with peft's generic tests, HUT joined in, and the matrix conftest; returns its ``tests``."""
    source = fetch_peft_tests(version, cache)
    run = cache / f"run-{version}"
    shutil.rmtree(run, ignore_errors=True)
    tests = run / "tests"
    tests.mkdir(parents=True)
    for name in TEST_MODULES + HELPERS:
        shutil.copy(source / name, tests / name)
    (tests / "__init__.py").write_text("")
    shutil.copy(HERE / "hut_join.py", tests / "hut_join.py")
    shutil.copy(HERE / "conftest_matrix.py", tests / "conftest.py")
    apply_edits(tests, version)
    # pytest settings of peft's own pyproject that matter here, without its coverage options.
    (run / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    single_gpu_tests\n    multi_gpu_tests\n    regression\n    bitsandbytes\n"
        "filterwarnings =\n    ignore::DeprecationWarning\n    ignore::FutureWarning\n    ignore::UserWarning\n"
    )
    return tests


def main(argv: list[str]) -> int:
    version = importlib.metadata.version("peft")
    tests = build_run_dir(version)
    hub = CACHE / "hub"
    write_hub_cache(hub)
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(hub),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    }
    print(f"peft {version}: running its generic tests against HUT in {tests}", flush=True)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEX", "--rootdir", str(tests.parent),
           str(tests), *argv]
    return subprocess.run(cmd, cwd=tests.parent, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
