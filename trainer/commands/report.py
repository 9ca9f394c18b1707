"""python -m trainer report: results tables (trainer/report.py), docs/RESULTS.md (trainer/results.py), sweep tables."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..run import OUTPUTS

NAME = "report"
HELP = "markdown table, mean ± std over seeds"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=Path, nargs="+", default=[OUTPUTS],
                   help="run directories; several pool their seeds (e.g. results/main results/extra)")
    p.add_argument("--split", default="test", choices=["dev", "test"])
    p.add_argument("--heads", nargs="+", default=["fused"], choices=["fused", "text", "image"])
    p.add_argument("--tasks", nargs="+", default=None)
    p.add_argument("--models", nargs="+", default=None)
    p.add_argument("--variants", action="store_true", help="include ablation variants")
    p.add_argument("--markdown", action="store_true",
                   help="write docs/RESULTS.md: docs/RESULTS.in.md with its placeholders filled from the runs")
    p.add_argument("--sweeps", type=Path, default=None, metavar="DIR",
                   help="print the dev tables of the hyperparameter sweeps under DIR (e.g. results/sweep) instead")


def run(a) -> None:
    from ..report import table
    from ..sweep import best_args, sweep_table

    if a.markdown:  # docs/RESULTS.md from its template and the committed metrics
        from ..results import write_results

        print("wrote", write_results())
        return
    if a.sweeps:  # dev-only tables of `sweep` runs
        for path in sorted(a.sweeps.rglob("sweep.json")):
            print(sweep_table(json.loads(path.read_text())) + f"\n\nbest (dev): {best_args(path)}\n")
        return
    for head in a.heads:
        print(table(a.runs, a.split, head, a.tasks, a.models, a.variants))
