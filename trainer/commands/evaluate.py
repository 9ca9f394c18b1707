"""python -m trainer eval: a checkpoint's metrics on the splits it recorded."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "eval"
HELP = "evaluate a checkpoint directory on the splits it recorded"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--splits", nargs="+", default=["dev", "test"], choices=["train", "dev", "test"],
                   help="the checkpoint's own: dev chose its epoch and seed (for a run trained on every event, its "
                        "validation events), test it never saw (none for such a run)")
    p.add_argument("--json", default="")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", type=Path, default=None)


def run(a) -> None:
    from mmdemo.checkpoint import load_checkpoint, read_metrics

    from ..loop import evaluate
    from ..trust import recorded_splits

    model = load_checkpoint(a.checkpoint)
    # the checkpoint's own splits: for a run trained on every event, its validation events are "dev" and it has no test
    splits = recorded_splits(model, read_metrics(a.checkpoint), tuple(a.splits), a.data_dir, a.cache_dir)
    for name in a.splits:
        if name not in splits:
            print(f"{name:5s} none: this checkpoint trained on every event but its validation events")
    res = {name: evaluate(model, split) for name, (split, _) in splits.items()}
    for name, r in res.items():
        print(f"{name:5s} = {splits[name][1]}")
        for head in ("fused", "text", "image"):
            shown = {k: round(v, 4) for k, v in r[head].items() if isinstance(v, float)}
            print(f"{name:5s} {head:6s} {shown}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
