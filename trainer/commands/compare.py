"""python -m trainer compare: paired bootstrap interval of two models' accuracy difference (trainer/compare.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..run import OUTPUTS

NAME = "compare"
HELP = ("paired bootstrap interval of the accuracy difference of two models (same seeds, same samples); needs the "
        "runs' weights")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True)
    p.add_argument("--models", nargs=2, required=True, metavar="MODEL[:VARIANT]|RUN_DIR",
                   help="two models under --runs, or run directories (each holding seed*/ with weights)")
    p.add_argument("--split", default="test", choices=["dev", "test"])
    p.add_argument("--runs", type=Path, default=OUTPUTS, help="the runs to read (results/main: the committed rows)")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--json", type=Path, default=None,
                   help="also write the result here (docs/RESULTS.in.md cites it: {{compare PATH}})")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", type=Path, default=None)


def run(a) -> None:
    from ..compare import compare_sentence, hits, paired_bootstrap
    from ..run import run_name

    def run_dir(spec: str) -> Path:  # MODEL[:VARIANT] under --runs, or a run directory (holding seed*/)
        if Path(spec).is_dir():
            return Path(spec)
        model, _, variant = spec.partition(":")
        return a.runs / a.task / run_name(model, variant)

    runs = [hits(run_dir(s), a.split, a.data_dir, a.cache_dir) for s in a.models]
    r = {"task": a.task, "split": a.split, "models": a.models, **paired_bootstrap(*runs, samples=a.samples)}
    print(f"{a.task} {a.split}: {compare_sentence(r)}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(r, indent=1) + "\n")
