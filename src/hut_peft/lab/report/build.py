"""`hut-peft report`: the page docs/RESULTS.md, from results.json files.

The fair comparison's findings, tables and verdicts (fair.py) lead; the paper-layout tables and Figure 3
(tables.py) follow; earlier small-budget runs go to an appendix.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from ..atomic import write_text_atomic
from .fair import claim_section, fair_sections
from .tables import ablation_markdown, collect, e2e_markdown, figure, glue_markdown, measured_gflops, row_label, table_of
from .weights import weights_section


def _paper_layout_tables(results: list[dict[str, Any]]) -> list[str]:
    return [glue_markdown(results, table="embedding-head", title="Table 1 with the embedding head"),
            ablation_markdown(results, "targets", "Table 4 (where to apply HUT)"),
            ablation_markdown(results, "rank", "Table 5 (rank r)"), e2e_markdown(results)]


def build_report(roots: list[str], output: Path, gflops: Optional[dict[str, float]] = None,
                 preamble: str = "", appendix: Optional[list[str]] = None, setup: str = "") -> str:
    """Write the markdown report (and its figures beside it); return the markdown.

    ``roots`` hold the runs the page is about; with learning-rate grids (the fair sweeps) their findings lead the
    page, right after ``preamble``; ``setup`` (the protocol) follows the findings and tables. ``appendix``
    folders (earlier, smaller runs) are rendered after them in the paper's layout, labelled.
    """
    results = collect(roots)
    if not results:
        raise FileNotFoundError(f"report: no results.json under {', '.join(roots)}; run `hut-peft sweep` first.")
    fig_path = output.with_suffix(".png")
    figure(results, fig_path, gflops or {})
    fair = fair_sections(results, output.with_name(output.stem + "-curves.png"))
    weights = "".join(weights_section(Path(root) / "weights.json", output.with_name(output.stem + "-weights.png"))
                      for root in roots)
    claims = "".join(claim_section(Path(root), output) for root in roots)
    parts = [preamble.strip() + "\n" if preamble else "", fair, weights, claims]
    if setup:
        parts.append(setup.strip() + "\n")
    if fair:
        parts.append(f"### Average score against GFLOPs (the paper's Figure 3)\n\n![Average score against GFLOPs]"
                     f"({fig_path.name})\n")
    else:
        parts += [glue_markdown(results), f"\n![Average score against GFLOPs]({fig_path.name})\n",
                  *_paper_layout_tables(results)]
    extra = collect(appendix or [])
    if extra:
        parts += ["## Appendix: earlier small-budget runs (not comparable with the tables above)\n\n"
                  "Seeded subsets of a few hundred examples, one seed, each method at its untuned default rate "
                  "(docs/results/small-budget-settings.md has their settings). Kept for the ablations, which were not rerun.\n",
                  glue_markdown(extra, title="A1 (Table 1 layout, [CLS] head)"), *_paper_layout_tables(extra)]
    sources = "\n".join(f"- `{r['_path']}`" for r in results + extra if "lr_grid_of" not in r["config"].get("tags", {}))
    text = "\n".join(p for p in parts if p) + f"\n### Result files\n\n{sources}\n"
    write_text_atomic(output, text)
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="Folders searched for results.json (e.g. docs/results/glue-fair).")
    parser.add_argument("--output", default="docs/RESULTS.md", help="Markdown file; the figures go beside it.")
    parser.add_argument("--preamble", help="A markdown file put at the top (setup, budget, deviations).")
    parser.add_argument("--appendix", nargs="*", default=[], help="Folders of earlier runs, shown in an appendix.")
    parser.add_argument("--setup", help="A markdown file put after the findings and tables (protocol, deviations).")


def run(args: argparse.Namespace) -> int:
    """Entry point of `hut-peft report`."""
    preamble = Path(args.preamble).read_text() if args.preamble else ""
    labels = {row_label(r) for r in collect(args.runs) if r.get("recipe") == "glue" and table_of(r) == "main"}
    setup = Path(args.setup).read_text() if args.setup else ""
    build_report(args.runs, Path(args.output), gflops=measured_gflops(labels), preamble=preamble,
                 appendix=args.appendix, setup=setup)
    print(f"wrote {args.output} and {Path(args.output).with_suffix('.png')}")
    return 0
