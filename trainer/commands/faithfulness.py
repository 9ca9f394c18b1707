"""python -m trainer faithfulness: the deletion check of every explanation map (trainer/faithfulness.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..faithfulness import MAPS

NAME = "faithfulness"
HELP = ("which explanation is faithful for which network: the app's deletion check of every map over a "
        "checkpoint's dev posts")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, nargs="+", required=True, metavar="DIR")
    p.add_argument("--posts", type=int, default=30, help="dev posts, spread evenly over the split")
    p.add_argument("--maps", nargs="+", default=list(MAPS), choices=MAPS)
    p.add_argument("--json", type=Path, default=None, help="merge the results into this file")
    p.add_argument("--threads", type=int, default=1)


def run(a) -> None:
    from ..faithfulness import run as faithfulness
    from ..run import torch_threads

    torch_threads(a.threads)
    faithfulness(a.checkpoint, a.posts, tuple(a.maps), a.json)
