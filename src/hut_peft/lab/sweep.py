"""`hut-peft sweep FILE`: methods × tasks × seeds from one YAML file, resumable, one results.json per cell.

A sweep file::

    recipe: glue                      # or e2e, squad
    output_dir: runs/glue-minilm
    tasks: [rte, mrpc]                # glue only
    seeds: "0,1,2"
    common: {data_dir: ../shared/data/glue, epochs: 3}
    per_task: {sst2: {max_train_samples: 2000}}
    variants:                         # a name is a method; a mapping sets a label, a table and overrides
      - hut
      - {label: lora, method: lora, lr_grid: [3e-4, 1e-3, 3e-3]}
      - {label: bitfit, method: bitfit, lr_grid: [3e-4, 1e-3], seeds: "0"}
      - {label: hut-fp32, method: hut, precision: fp32, lr_from: hut, table: precision, only_tasks: [rte]}
      - {label: hut-r1, method: hut, method_options: {r: 1}, table: rank}

A cell is (task, variant); it writes ``<output_dir>/<table>/<task>/<label>/results.json``. Finished seeds
and finished cells are skipped, so an interrupted sweep continues where it stopped.

A variant with ``lr_grid`` runs in two stages: one cell per learning rate on the first seed
(``<label>/lr=<value>/``), then, once they are all finished, the cell itself on every seed at the rate whose
headline (the best-epoch primary metric for GLUE, BLEU for E2E) was highest; the grid's run of the first seed
is reused, not trained again. The selection is kept in the cell's ``results.json`` (``lr_selection``).
With ``grids_first: true`` every variant's grid runs before any variant's other seeds (a first comparison at
the chosen rates lands early). ``lr_from: <label>`` gives a variant the rate chosen for another variant of the same task. With
``lr_grid_extend: N`` a winner at either edge of the grid gets one more probe a grid step beyond it, up to N times,
so a rate is never chosen only because the grid stopped there. A finished cell whose rate is no longer the
chosen one (the grid grew) is cleared and run again at the new rate.

Sweeps started side by side on the same file share the work: a cell runs under a lock file
(``<cell>/.sweep-lock``), another sweep skips a locked cell and comes back for it, and a lock left by a process
that died is taken over. ``--workers N`` starts N such sweeps, each on ``cores // N`` threads, because two small
models on one thread each train more tokens per second than one model on two threads (docs/glue.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .train.common import load_config_file, parse_seeds

logger = logging.getLogger(__name__)


RECIPES = ("glue", "e2e", "squad")  # only glue has tasks; the others' cells sit in a folder named after the recipe


@dataclass
class Cell:
    """One recipe run: a variant on a task, over the sweep's seeds.

    ``grid`` lists the learning-rate cells whose winner this cell runs at (empty: its rate is fixed);
    ``lr_from`` names another cell of the same task whose chosen rate this one takes.
    """

    table: str
    task: Optional[str]
    label: str
    fields: dict[str, Any] = field(default_factory=dict)
    recipe: str = "e2e"  # names the folder of a recipe without tasks (e2e, squad)
    grid: list[Cell] = field(default_factory=list)
    lr_from: Optional[str] = None
    extend: int = 0  # how many probes past the planned grid's edge it may grow by
    planned: int = 0  # how many rates the YAML file gave it

    def probe(self, lr: float) -> Cell:
        """The grid cell of rate ``lr``: this cell's fields on its first seed."""
        fields = {**self.fields, "learning_rate": float(lr), "seeds": str(parse_seeds(self.fields["seeds"])[0]),
                  "tags": {**self.fields["tags"], "lr_grid_of": self.label}}
        return Cell(table=self.table, task=self.task, label=f"{self.label}/{lr_label(float(lr))}", fields=fields,
                    recipe=self.recipe)

    @property
    def name(self) -> str:
        return f"{self.table}/{self.task or self.recipe}/{self.label}"

    def output_dir(self, root: Path) -> Path:
        return root / self.table / (self.task or self.recipe) / self.label


def lr_label(lr: float) -> str:
    return f"lr={lr:g}"


def plan(spec: dict[str, Any]) -> list[Cell]:
    """Expand a sweep file into cells, validating it with messages that name the key at fault."""
    recipe = spec.get("recipe")
    if recipe not in RECIPES:
        raise ValueError(f"sweep: 'recipe' must be one of {', '.join(RECIPES)}, got {recipe!r}.")
    variants = spec.get("variants") or []
    if not variants:
        raise ValueError("sweep: 'variants' is empty; list method names or {label, method, ...} mappings.")
    tasks = spec.get("tasks") if recipe == "glue" else [None]
    if not tasks:
        raise ValueError("sweep: a glue sweep needs 'tasks', e.g. [rte, mrpc].")
    seeds = str(spec.get("seeds", "0"))
    parse_seeds(seeds)
    cells: list[Cell] = []
    for task in tasks:
        for variant in variants:
            v = {"method": variant} if isinstance(variant, str) else dict(variant)
            if "method" not in v:
                raise ValueError(f"sweep: variant {variant!r} has no 'method'.")
            only = v.pop("only_tasks", None)
            if only is not None and task not in only:
                continue
            label = v.pop("label", v["method"])
            table = v.pop("table", "main")
            grid, lr_from, extend = v.pop("lr_grid", None), v.pop("lr_from", None), v.pop("lr_grid_extend", 0)
            if not isinstance(extend, int) or extend < 0 or (extend and (not grid or len(grid) < 2)):
                raise ValueError(f"sweep: variant {label!r}: lr_grid_extend must be an integer >= 0, with an lr_grid "
                                 f"of at least two rates, got {extend!r}.")
            cell_seeds = str(v.pop("seeds", seeds))
            parse_seeds(cell_seeds)
            if grid is not None and (not isinstance(grid, list) or not grid
                                     or not all(isinstance(x, (int, float)) and x > 0 for x in grid)):
                raise ValueError(f"sweep: variant {label!r}: lr_grid must be a list of positive numbers, got {grid!r}.")
            if sum(x is not None for x in (grid, lr_from, v.get("learning_rate"))) > 1:
                raise ValueError(f"sweep: variant {label!r}: give at most one of lr_grid, lr_from, learning_rate.")
            fields = {**spec.get("common", {}), **spec.get("per_task", {}).get(task, {}), **v}
            fields.update(seeds=cell_seeds, tags={"label": label, "table": table}, resume=True)
            if task:
                fields["task"] = task
            cell = Cell(table=table, task=task, label=label, fields=fields, lr_from=lr_from, extend=extend,
                        recipe=recipe)
            cell.grid = [cell.probe(lr) for lr in sorted(grid or [])]
            cell.planned = len(cell.grid)
            cells.append(cell)
    labels = [(c.table, c.task, c.label) for c in cells]
    if len(set(labels)) != len(labels):
        raise ValueError("sweep: two variants share a label in the same table; give each a distinct 'label'.")
    by_task = {(c.task, c.label) for c in cells if c.grid}
    for c in cells:
        if c.lr_from is not None and (c.task, c.lr_from) not in by_task:
            raise ValueError(f"sweep: variant {c.label!r}: lr_from {c.lr_from!r} names no variant with an lr_grid.")
    return cells


def headline(results: dict[str, Any]) -> float:
    """The number a learning rate is chosen by: GLUE's and SQuAD's best-epoch primary metric (SQuAD: F1), or
    E2E's BLEU (means)."""
    if results.get("recipe") == "e2e":
        return results["summary"]["BLEU"]["mean"]
    return results["summary"]["best"][results["primary_metric"]]["mean"]


def select_lr(cell: Cell, root: Path) -> Optional[dict[str, Any]]:
    """The grid's scores and the winning rate (ties: the smaller rate), or None while a grid cell is unfinished."""
    scores = {}
    for probe in cell.grid:
        if not is_finished(probe, root):
            return None
        results = json.loads((probe.output_dir(root) / "results.json").read_text())
        scores[probe.fields["learning_rate"]] = headline(results)
    chosen = max(sorted(scores), key=lambda lr: scores[lr])
    return {"grid": {lr_label(lr): score for lr, score in sorted(scores.items())}, "chosen": chosen,
            "seed": parse_seeds(cell.fields["seeds"])[0]}


def is_finished(cell: Cell, root: Path) -> bool:
    results = cell.output_dir(root) / "results.json"
    if not results.is_file():
        return False
    done = {r["seed"] for r in json.loads(results.read_text()).get("seeds", [])}
    return set(parse_seeds(cell.fields["seeds"])) <= done


RUNNING_ELSEWHERE = "running elsewhere"
LOCK_NAME = ".sweep-lock"


def run_sweep(spec: dict[str, Any], dry_run: bool = False, keep_going: bool = False, poll_s: float = 30.0,
              workers: int = 1) -> list[tuple[Cell, str]]:
    """Run every unfinished cell in order; return (cell, status) pairs.

    A cell locked by another sweep is passed over; once a pass has nothing left to run here, this sweep waits
    ``poll_s`` seconds and passes again until those cells are finished, so whatever depends on them (a grid's
    winner) runs too. No cell is run twice by one process, a failed one included. ``workers`` is recorded in
    every cell's tags (``sweep_workers``) so the report can tell cell time from elapsed time.
    """
    attempted: dict[str, str] = {}
    while True:
        ran_before = len(attempted)
        report = _sweep_pass(spec, dry_run, keep_going, attempted, workers)
        if dry_run or all(status != RUNNING_ELSEWHERE for _, status in report):
            return [(cell, attempted.get(cell.name, status)) for cell, status in report]
        if len(attempted) == ran_before:
            logger.info("waiting %.0f s for cells that other sweeps are running", poll_s)
            time.sleep(poll_s)


def _sweep_pass(spec: dict[str, Any], dry_run: bool, keep_going: bool, attempted: dict[str, str],
                workers: int) -> list[tuple[Cell, str]]:
    """One pass over the plan: run what is runnable and not locked; ``attempted`` collects what this process ran."""
    from .train.e2e import E2ERecipe, run_e2e
    from .train.glue import GlueRecipe, run_glue
    from .train.squad import SquadRecipe, run_squad

    root = Path(spec.get("output_dir", "runs/sweep"))
    recipe_cls, runner = {"glue": (GlueRecipe, run_glue), "e2e": (E2ERecipe, run_e2e),
                          "squad": (SquadRecipe, run_squad)}[spec["recipe"]]
    cells = plan(spec)
    graded = {(c.task, c.label): c for c in cells if c.grid}
    report: list[tuple[Cell, str]] = []

    def run_cell(cell: Cell, fields: dict[str, Any]) -> str:
        """Run one cell; with ``keep_going`` a failure is logged and reported instead of ending the sweep."""
        print(f"== {cell.name}", flush=True)
        if workers > 1:
            fields = {**fields, "tags": {**fields["tags"], "sweep_workers": workers}}
        try:
            runner(recipe_cls(**{**fields, "output_dir": str(cell.output_dir(root))}))
        except Exception as err:
            if not keep_going:
                attempted[cell.name] = "failed"
                raise
            logger.exception("cell %s failed; going on (--keep-going)", cell.name)
            attempted[cell.name] = f"failed: {type(err).__name__}: {err}"
            return attempted[cell.name]
        attempted[cell.name] = "ran"
        return "ran"

    def run_probes(cell: Cell) -> None:
        for probe in cell.grid:
            if probe.name in {c.name for c, _ in report}:
                continue
            if is_finished(probe, root):
                report.append((probe, "done"))
            elif dry_run:
                report.append((probe, "to run"))
            elif probe.name in attempted:
                report.append((probe, attempted[probe.name]))
            else:
                with cell_lock(probe.output_dir(root)) as mine:
                    status = (RUNNING_ELSEWHERE if not mine else "done" if is_finished(probe, root)
                              else run_cell(probe, probe.fields))
                report.append((probe, status))

    def run_grid(cell: Cell) -> None:
        run_probes(cell)  # stage 1: the learning-rate grid on the first seed
        while _add_probe_past_edge(cell, root):  # a winner at an edge: one more rate beyond it
            run_probes(cell)

    if spec.get("grids_first"):  # every variant's grid before any cell's other seeds
        for cell in cells:
            run_grid(cell)
    for cell in cells:
        run_grid(cell)
        source = cell if cell.grid else graded.get((cell.task, cell.lr_from))
        if source is not None and source is not cell:  # its grid may have grown since this pass planned it
            _extend_finished(source, root)
        selection = select_lr(source, root) if source is not None else None
        if is_finished(cell, root) and not _stale(cell, root, selection):
            report.append((cell, "done"))
            logger.info("skip %s (finished)", cell.name)
            continue
        if source is not None and selection is None:
            report.append((cell, "waiting for its learning-rate grid" if dry_run else "skipped: grid unfinished"))
            continue
        if dry_run:
            report.append((cell, "to run"))
            continue
        if cell.name in attempted:
            report.append((cell, attempted[cell.name]))
            continue
        with cell_lock(cell.output_dir(root)) as mine:
            if not mine:
                report.append((cell, RUNNING_ELSEWHERE))
                continue
            if is_finished(cell, root) and not _stale(cell, root, selection):  # finished while we looked
                report.append((cell, "done"))
                continue
            if _stale(cell, root, selection):
                _clear(cell, root)
            fields = dict(cell.fields)
            if selection is not None:
                fields["learning_rate"] = selection["chosen"]
                fields["tags"] = {**fields["tags"], "lr_selection": {**selection, "of": source.label}}
            if cell.grid:  # stage 2 reuses the grid's run of the first seed at the chosen rate
                _reuse_seed(next(p for p in cell.grid if p.fields["learning_rate"] == selection["chosen"]), cell,
                            root, selection["seed"])
            report.append((cell, run_cell(cell, fields)))
    return report


@contextmanager
def cell_lock(folder: Path) -> Iterator[bool]:
    """Hold ``folder/.sweep-lock`` for the duration; yield False (and hold nothing) if another live sweep has it.

    The lock names its host and process; one left by a process that is gone from this host is taken over, so a
    killed sweep never blocks the next. A lock from another host is respected until someone removes it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path, me = folder / LOCK_NAME, f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _lock_is_stale(path):
                yield False
                return
            logger.warning("%s: taking over a lock left by a process that is gone (%s)", folder, path.read_text())
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(me)
        try:
            yield True
        finally:
            path.unlink(missing_ok=True)
        return
    yield False


def _lock_is_stale(path: Path) -> bool:
    try:
        host, pid = path.read_text().split()
    except (OSError, ValueError):
        return False  # being written right now, or not ours to judge
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _beyond_edge(cell: Cell, root: Path) -> Optional[float]:
    """The next rate past the grid's edge when the (finished) grid's winner sits on that edge, else None."""
    selection = select_lr(cell, root)
    rates = sorted(p.fields["learning_rate"] for p in cell.grid)
    if selection is None or len(rates) < 2:
        return None
    if selection["chosen"] == rates[-1]:
        return float(f"{rates[-1] * rates[-1] / rates[-2]:.3g}")
    if selection["chosen"] == rates[0]:
        return float(f"{rates[0] * rates[0] / rates[1]:.3g}")
    return None


def _extend_finished(cell: Cell, root: Path) -> None:
    """Add the extension probes that the finished grid calls for (not run here: an unfinished one keeps the
    selection waiting). Another worker may have finished and extended a grid during this pass's long walk."""
    while _add_probe_past_edge(cell, root):
        pass


def _add_probe_past_edge(cell: Cell, root: Path) -> bool:
    """Add to ``cell.grid`` the probe one step past its finished grid's edge winner; False if none is called for,
    or if the grid has already grown by its ``extend`` probes, however many passes or workers added them."""
    if len(cell.grid) >= cell.planned + cell.extend:
        return False
    beyond = _beyond_edge(cell, root)
    if beyond is None or any(p.fields["learning_rate"] == beyond for p in cell.grid):
        return False
    cell.grid = sorted(cell.grid + [cell.probe(beyond)], key=lambda c: c.fields["learning_rate"])
    return True


def _stale(cell: Cell, root: Path, selection: Optional[dict[str, Any]]) -> bool:
    """A finished cell run at a rate that is no longer the chosen one."""
    results = cell.output_dir(root) / "results.json"
    if selection is None or not results.is_file():
        return False
    return json.loads(results.read_text())["settings"]["learning_rate"] != selection["chosen"]


def _clear(cell: Cell, root: Path) -> None:
    """Remove a stale cell's results and seed records (its grid probes, in sub-folders, stay)."""
    import shutil

    folder = cell.output_dir(root)
    logger.warning("%s was run at a rate that is no longer chosen; running it again", cell.name)
    for seed_dir in folder.glob("seed-*"):
        shutil.rmtree(seed_dir)
    (folder / "results.json").unlink(missing_ok=True)


def _reuse_seed(probe: Cell, cell: Cell, root: Path, seed: int) -> None:
    """Copy a finished grid cell's record of ``seed`` into the cell, so ``resume`` does not train it again."""
    from .atomic import write_text_atomic

    target = cell.output_dir(root) / f"seed-{seed}" / "metrics.json"
    source = probe.output_dir(root) / f"seed-{seed}"
    if not target.is_file():
        write_text_atomic(target, (source / "metrics.json").read_text())
    for name in ("references.txt", "predictions.txt", "predictions.json"):  # E2E's outputs, SQuAD's answers
        if (source / name).is_file() and not (target.parent / name).is_file():
            write_text_atomic(target.parent / name, (source / name).read_text())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="Sweep YAML file (see configs/).")
    parser.add_argument("--dry-run", action="store_true", help="List the cells and whether they are finished.")
    parser.add_argument("--keep-going", action="store_true",
                        help="Log a failing cell and go on with the others (for long unattended sweeps).")
    parser.add_argument("--output-dir", help="Override the file's output_dir.")
    parser.add_argument("--workers", type=int, default=1,
                        help="Run N sweeps side by side on this file, each on cores // N threads; each writes "
                             "<output_dir>/sweep-worker-<i>.log. On 2 CPU cores 2 workers train about 1.4x the "
                             "tokens per second of one (docs/glue.md).")
    parser.add_argument("--worker-of", type=int, default=1, help=argparse.SUPPRESS)  # set by --workers


def run(args: argparse.Namespace) -> int:
    """Entry point of `hut-peft sweep`."""
    spec = load_config_file(args.file)
    if args.output_dir:
        spec["output_dir"] = args.output_dir
    if args.workers < 1:
        raise ValueError(f"sweep: --workers must be >= 1, got {args.workers}.")
    if args.workers > 1 and not args.dry_run:
        return run_workers(args, Path(spec.get("output_dir", "runs/sweep")))
    for cell, status in run_sweep(spec, dry_run=args.dry_run, keep_going=args.keep_going, workers=args.worker_of):
        print(f"{status:7s} {cell.name}")
    return 0


def run_workers(args: argparse.Namespace, root: Path) -> int:
    """Start ``args.workers`` sweeps of the same file, each on its share of the cores, and wait for them all."""
    threads = str(max(1, (os.cpu_count() or 1) // args.workers))
    command = [sys.executable, "-m", "hut_peft.cli", "sweep", args.file, "--worker-of", str(args.workers)]
    command += ["--keep-going"] * args.keep_going + (["--output-dir", args.output_dir] if args.output_dir else [])
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    root.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(args.workers):
        log = root / f"sweep-worker-{i}.log"
        print(f"worker {i}: {threads} thread(s), log {log}", flush=True)
        with open(log, "a") as handle:
            procs.append(subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env))
    codes = [p.wait() for p in procs]
    for i, code in enumerate(codes):
        print(f"worker {i}: exit status {code}")
    return max(codes)
