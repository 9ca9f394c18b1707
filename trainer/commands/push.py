"""python -m trainer push: a checkpoint directory to the Hugging Face Hub."""

from __future__ import annotations

import argparse

NAME = "push"
HELP = "upload a checkpoint directory to the Hugging Face Hub"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--repo-id", required=True)
    p.add_argument("--private", action="store_true")


def run(a) -> None:
    from mmdemo.hub import push_checkpoint

    print(push_checkpoint(a.checkpoint, a.repo_id, private=a.private))
