"""python -m trainer bundle: the best-on-dev seed of a run into checkpoints/<task>/<model> (trainer/bundle.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..run import OUTPUTS, REPO_ROOT

NAME = "bundle"
HELP = "copy the best-on-dev seed into checkpoints/<task>/<model>"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--variant", default="")
    p.add_argument("--runs", type=Path, default=OUTPUTS, help="the runs to read (results/main: the committed rows)")
    p.add_argument("--dest", type=Path, default=REPO_ROOT / "checkpoints")
    p.add_argument("--float32", action="store_true", help="copy the weights as trained (default: float16, without "
                   "the state only further training reads; dev is re-measured and recorded)")
    p.add_argument("--calibration", type=Path, default=None, metavar="LOEO_JSON",
                   help="a leave-one-event-out report of the same recipe (train --protocol loeo): its temperature "
                        "and unseen-event scores go into the checkpoint, and the app shows them")
    p.add_argument("--checkpoint", type=Path, default=None, metavar="DIR",
                   help="bundle this checkpoint, or the best seed of this run directory, instead of the best seed "
                        "of --runs (it may be the bundled one itself: `--checkpoint checkpoints/TASK/MODEL --lora-rank "
                        "R` shrinks it in place; without --lora-rank only its notes and card are made anew)")
    p.add_argument("--lora-rank", type=int, default=0, metavar="R",
                   help="a run that tuned whole text blocks is bundled as rank-R LoRA adapters on the pretrained "
                        "blocks: each weight's change cut to its top R singular directions (dev is re-measured)")


def run(a) -> None:
    from mmdemo.checkpoint import read_metrics

    from ..bundle import bundle
    from ..run import run_name

    dest = a.dest / a.task / a.model
    source = a.checkpoint or a.runs / a.task / run_name(a.model, a.variant)
    best, metric = bundle(source, dest, compact=not a.float32,
                          calibration=a.calibration, lora_rank=a.lora_rank)
    print(f"bundled {best} -> {dest} (best dev {metric})")
    small = read_metrics(dest).get("bundle")
    if small:
        run_ = read_metrics(best)["dev"]["fused"]
        shown = ", ".join(f"{k} {run_[k]:.4f} -> {v:.4f}" for k, v in small["dev"].items() if k in run_)
        lora = f", whole tuned blocks as rank-{a.lora_rank} LoRA adapters" if a.lora_rank else ""
        print(f"  float16{lora}, training-only state left out: {small['bytes']['run'] / 2**20:.1f} -> "
              f"{small['bytes']['bundled'] / 2**20:.1f} MiB; dev {shown}")
