"""`hut-peft sweep FILE`: methods × tasks × seeds from one YAML file, resumable, one results.json per cell.

A sweep file::

    recipe: glue                      # or e2e
    output_dir: runs/glue-minilm
    tasks: [rte, mrpc]                # glue only
    seeds: "0,1,2"
    common: {data_dir: ../shared/data/glue, epochs: 3}
    per_task: {sst2: {max_train_samples: 2000}}
    variants:                         # a name is a method; a mapping sets a label, a table and overrides
      - hut
      - lora
      - {label: hut-r1, method: hut, method_options: {r: 1}, table: rank}

A cell is (task, variant); it writes ``<output_dir>/<table>/<task>/<label>/results.json``. Finished seeds
and finished cells are skipped, so an interrupted sweep continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .train.common import load_config_file, parse_seeds

logger = logging.getLogger(__name__)


@dataclass
class Cell:
    """One recipe run: a variant on a task, over the sweep's seeds."""

    table: str
    task: Optional[str]
    label: str
    fields: dict[str, Any] = field(default_factory=dict)

    def output_dir(self, root: Path) -> Path:
        return root / self.table / (self.task or "e2e") / self.label


def plan(spec: dict[str, Any]) -> list[Cell]:
    """Expand a sweep file into cells, validating it with messages that name the key at fault."""
    recipe = spec.get("recipe")
    if recipe not in ("glue", "e2e"):
        raise ValueError(f"sweep: 'recipe' must be 'glue' or 'e2e', got {recipe!r}.")
    variants = spec.get("variants") or []
    if not variants:
        raise ValueError("sweep: 'variants' is empty; list method names or {label, method, ...} mappings.")
    tasks = spec.get("tasks") if recipe == "glue" else [None]
    if not tasks:
        raise ValueError("sweep: a glue sweep needs 'tasks', e.g. [rte, mrpc].")
    seeds = str(spec.get("seeds", "0"))
    parse_seeds(seeds)
    cells = []
    for task in tasks:
        for variant in variants:
            v = {"method": variant} if isinstance(variant, str) else dict(variant)
            if "method" not in v:
                raise ValueError(f"sweep: variant {variant!r} has no 'method'.")
            label = v.pop("label", v["method"])
            table = v.pop("table", "main")
            fields = {**spec.get("common", {}), **spec.get("per_task", {}).get(task, {}), **v}
            fields.update(seeds=seeds, tags={"label": label, "table": table}, resume=True)
            if task:
                fields["task"] = task
            cells.append(Cell(table=table, task=task, label=label, fields=fields))
    labels = [(c.table, c.task, c.label) for c in cells]
    if len(set(labels)) != len(labels):
        raise ValueError("sweep: two variants share a label in the same table; give each a distinct 'label'.")
    return cells


def is_finished(cell: Cell, root: Path) -> bool:
    results = cell.output_dir(root) / "results.json"
    if not results.is_file():
        return False
    done = {r["seed"] for r in json.loads(results.read_text()).get("seeds", [])}
    return set(parse_seeds(cell.fields["seeds"])) <= done


def run_sweep(spec: dict[str, Any], dry_run: bool = False) -> list[tuple[Cell, str]]:
    """Run every unfinished cell in order; return (cell, status) pairs."""
    from .train.e2e import E2ERecipe, run_e2e
    from .train.glue import GlueRecipe, run_glue

    root = Path(spec.get("output_dir", "runs/sweep"))
    recipe_cls, runner = (GlueRecipe, run_glue) if spec["recipe"] == "glue" else (E2ERecipe, run_e2e)
    report = []
    for cell in plan(spec):
        name = f"{cell.table}/{cell.task or 'e2e'}/{cell.label}"
        if is_finished(cell, root):
            report.append((cell, "done"))
            logger.info("skip %s (finished)", name)
            continue
        if dry_run:
            report.append((cell, "to run"))
            continue
        recipe = recipe_cls(**{**cell.fields, "output_dir": str(cell.output_dir(root))})
        print(f"== {name}", flush=True)
        runner(recipe)
        report.append((cell, "ran"))
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="Sweep YAML file (see configs/).")
    parser.add_argument("--dry-run", action="store_true", help="List the cells and whether they are finished.")
    parser.add_argument("--output-dir", help="Override the file's output_dir.")


def run(args: argparse.Namespace) -> int:
    """Entry point of `hut-peft sweep`."""
    spec = load_config_file(args.file)
    if args.output_dir:
        spec["output_dir"] = args.output_dir
    for cell, status in run_sweep(spec, dry_run=args.dry_run):
        print(f"{status:7s} {cell.table}/{cell.task or 'e2e'}/{cell.label}")
    return 0
