"""The layout the docs promise (docs/architecture.md): library and lab apart, one direction, no cycles.

The import graph is read from the sources (``ast``), so a lazy import inside a function counts as much as one at the
top, and so does one under ``if TYPE_CHECKING:`` (a cycle for a reader, even if not at run time).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "hut_peft"
LIBRARY_PREFIXES = ("hut_peft.hut", "hut_peft.serving")  # with hut_peft itself (the package's __init__)
LAB = "hut_peft.lab"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, names: bool = True) -> set[str]:
    """hut_peft modules that ``path`` imports at run time (absolute and relative, at any depth).

    ``from pkg import x`` lists ``pkg`` and, with ``names``, ``pkg.x`` too (x may be a module or a function).
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("hut_peft"):
                found.add(target)
                if names:
                    found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("hut_peft"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        # Keep only edges to real modules: `from .x import name` also listed `x.name`, which may be a function.
        graph[name] = {m for m in imported_modules(path) if m in modules and m != name}
    return graph


def test_every_internal_import_names_a_module_that_exists() -> None:
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    broken = {(module_name(p), m) for p in PACKAGE.rglob("*.py") for m in imported_modules(p, names=False)
              if m not in modules}
    assert not broken, f"imports of modules that do not exist: {sorted(broken)}"


def is_library(name: str) -> bool:
    return name == "hut_peft" or name.startswith(LIBRARY_PREFIXES)


def test_graph_reader_sees_relative_and_lazy_imports(tmp_path: Path) -> None:
    graph = import_graph()
    assert "hut_peft.hut.layer" in graph["hut_peft.hut.model"]               # relative, at the top
    assert "hut_peft.lab.train.glue" in graph["hut_peft.lab.sweep"]          # relative, inside a function
    assert "hut_peft.hut" in graph["hut_peft.lab.methods.peft_methods"]      # absolute, lab -> library


def test_library_never_imports_the_lab_or_the_cli() -> None:
    graph = import_graph()
    wrong = {(m, d) for m, deps in graph.items() if is_library(m) for d in deps if not is_library(d)}
    assert not wrong, f"library modules import the lab: {sorted(wrong)}"


def test_no_import_cycles() -> None:
    graph = import_graph()
    # A package's __init__ re-exporting its own modules is not a cycle between modules: drop parent -> child edges.
    edges = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                walk(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            walk(node)


def test_every_module_says_what_it_is_for() -> None:
    missing = [module_name(p) for p in PACKAGE.rglob("*.py") if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, f"modules without an opening docstring: {missing}"


def test_the_lab_holds_what_the_library_does_not_need() -> None:
    top = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert top == {"__init__", "cli", "hut", "lab", "serving"}


EXTRA_ONLY = ("datasets", "matplotlib", "sklearn", "nltk", "rouge_score", "sacrebleu", "pycocoevalcap", "gguf", "vllm")


def test_importing_the_library_loads_no_package_of_the_extras() -> None:
    """In this (full) environment: ``import hut_peft`` adds nothing of the experiments extra to what peft loads."""
    code = ("import sys; import peft; before = set(sys.modules); import hut_peft; "
            f"print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in {EXTRA_ONLY!r} "
            "or m.startswith(('hut_peft.lab', 'hut_peft.serving'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
