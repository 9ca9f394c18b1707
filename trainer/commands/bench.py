"""python -m trainer bench: feature-extraction and training-step throughput (trainer/bench.py)."""

from __future__ import annotations

import argparse

from .common import encoder_flags

NAME = "bench"
HELP = "feature-extraction throughput; an epoch from cache vs re-encoding"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="mvsa-single")
    p.add_argument("--model", default="concat")
    p.add_argument("--samples", type=int, default=256)
    encoder_flags(p)


def run(a) -> None:
    from ..bench import bench

    bench(a.task, a.model, a.text_encoder, a.image_encoder, a.samples, a.max_length, a.data_dir)
