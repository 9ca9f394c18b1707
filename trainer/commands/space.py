"""python -m trainer space: the app and the bundled checkpoints as a Hugging Face Space (trainer/space.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "space"
HELP = "deploy the app with the bundled checkpoints as a Hugging Face Space"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo-id", help="USER/NAME of the Space (created if it does not exist)")
    p.add_argument("--private", action="store_true")
    p.add_argument("--build", type=Path, metavar="DIR", help="only write the Space's files into DIR, upload nothing")


def run(a) -> None:
    from ..space import build_space, deploy_space

    if a.build:
        files = build_space(a.build)
        print(f"{len(files)} files -> {a.build} (nothing uploaded)")
        return
    if not a.repo_id:
        raise SystemExit("space needs --repo-id USER/NAME (or --build DIR to only write the files)")
    print(deploy_space(a.repo_id, private=a.private))
