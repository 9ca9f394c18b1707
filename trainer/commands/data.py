"""python -m trainer data: a task's dataset summary."""

from __future__ import annotations

import argparse

NAME = "data"
HELP = "print a task's dataset summary"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True)
    p.add_argument("--data-dir", default=None)


def run(a) -> None:
    from ..datasets import load_task_data

    print(load_task_data(a.task, a.data_dir).describe())
