"""python -m trainer floor: logistic regression on the frozen features (trainer/floor.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..run import OUTPUTS
from .common import encoder_flags

NAME = "floor"
HELP = "logistic regression on the frozen features (a fair floor)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True)
    p.add_argument("--out", type=Path, default=OUTPUTS)
    encoder_flags(p)


def run(a) -> None:
    from mmdemo.tasks import get_task

    from ..floor import logistic_floor
    from ..run import load_features

    data, feats, _ = load_features(a.task, a.text_encoder, a.image_encoder, a.data_dir, a.max_length, a.cache_dir)
    m = logistic_floor(feats, data.labels, get_task(a.task).paper_metric, a.task, a.out / a.task / "logreg")
    for split in ("dev", "test"):
        f = m[split]["fused"]
        print(f"logreg {a.task} {split}: acc {f['accuracy']:.4f} wF1 {f['weighted_f1']:.4f} mF1 {f['macro_f1']:.4f} "
              f"(C={m['C']})")
