"""python -m trainer sweep: choose head hyperparameters and training options on dev (trainer/sweep.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..run import OUTPUTS, RESULTS
from .common import events, pairs, value

NAME = "sweep"
HELP = "choose head hyperparameters on dev: a grid x seeds, ranked by mean dev score"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--variant", default="")
    p.add_argument("--grid", nargs="+", default=[], metavar="KEY=V1,V2",
                   help="head config values to try, and the train options unfreeze_text_layers / encoder_lr / "
                        "lora_rank / text_encoder / image_encoder")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=OUTPUTS / "sweep")
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--promote", action="store_true", help="copy the best point's runs into --runs")
    p.add_argument("--runs", type=Path, default=RESULTS / "main", help="where --promote puts them (committed rows)")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs that finished, continue the interrupted ones, train the rest")
    p.add_argument("--protocol", choices=("split", "loeo", "all-events"), default="split",
                   help="split: each point x seed on the task's split, ranked by mean dev score; loeo: each point one "
                        "leave-one-event-out run over the seeds, ranked by its validation folds (never a left-out "
                        "event); all-events: each point x seed trained on every event but the validation ones, "
                        "ranked by its mean score on those (how a MediaEval bundle is chosen)")
    p.add_argument("--validation-events", default="", metavar="E1,E2,...",
                   help="loeo, all-events: the events that may validate, in order (as for train)")
    p.add_argument("--prefer-narrower", default="", metavar="FIELD,...",
                   help="width fields (e.g. hidden): a narrower point within one std of the winner replaces it "
                        "(rule 2 of trainer/sweep.py)")


def run(a) -> None:
    from ..sweep import promote, sweep, sweep_table

    grid = {k: [value(v) for v in values.split(",")]
            for k, values in pairs(a.grid, "--grid", "key=v1,v2,...").items()}
    result = sweep(a.task, a.model, grid, a.seeds, a.out, a.variant, a.jobs, a.threads, resume=a.resume,
                   protocol=a.protocol, validation_events=events(a.validation_events),
                   prefer_narrower=tuple(f for f in a.prefer_narrower.split(",") if f))
    print(sweep_table(result))
    print("best (dev):", json.dumps(result["best"]))
    if a.promote:
        print("promoted ->", promote(result, a.out, a.runs))
