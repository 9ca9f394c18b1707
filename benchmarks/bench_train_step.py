"""Seconds per training step of each network's head on the cached features (frozen encoders), and what that makes
an epoch: the cost that decides how long a sweep takes on the CPU.

    python benchmarks/bench_train_step.py --task mvsa-single --models infig mahfnet --threads 1

Each network is built as `--preset best` builds it for the task where it has that preset (head fields only: tuned
text layers are left out, this times the head), else with its defaults; two warm-up steps, then the mean of
`--steps` steps (forward, objective, backward, AdamW step) over real training batches.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmdemo.models import MultimodalClassifier, get_model, list_models  # noqa: E402
from trainer.batches import loader as _loader  # noqa: E402
from trainer.run import load_features, torch_threads  # noqa: E402
from trainer.sweep import TRAIN_OPTIONS  # noqa: E402


def head_settings(model: str, task: str) -> dict:
    """The head fields of the model's `best` preset for the task (train options left out), or {}."""
    entry = get_model(model)
    if task not in entry.presets.get("best", {}):
        return {}
    return {k: v for k, v in entry.preset("best", task).items() if k not in TRAIN_OPTIONS}


def step_seconds(model: str, task: str, head: dict, feats, dims, labels, multi_label: bool, steps: int
                 ) -> tuple[float, int]:
    clf = MultimodalClassifier(model=model, task=task, labels=labels, multi_label=multi_label,
                               text_encoder="minilm-l6", image_encoder="efficientnet-lite0", dims=dims.to_dict(),
                               head=head or None)
    batch_size = clf.head_config.batch_size
    loader = _loader(feats, batch_size, clf, shuffle=True, seed=0, with_index=True)
    optimizer = torch.optim.AdamW([p for p in clf.parameters() if p.requires_grad], lr=1e-4)
    clf.train()
    times = []
    for i, (text, image, y, _) in enumerate(loader):
        if i == steps + 2:
            break
        start = time.perf_counter()
        clf.head.objective(clf(text, image), y).total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return sum(times[2:]) / len(times[2:]), math.ceil(len(feats) / batch_size)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="mvsa-single")
    p.add_argument("--models", nargs="*", default=None, help="default: every registered network")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch_threads(a.threads)
    data, feats, dims = load_features(a.task, "minilm-l6", "efficientnet-lite0", splits=("train",))
    print(f"| {a.task} | head settings | s / step | steps / epoch | s / epoch ({a.threads} thread(s)) |")
    print("|---|---|---|---|---|")
    for model in a.models or list_models():
        head = head_settings(model, a.task)
        seconds, per_epoch = step_seconds(model, a.task, head, feats["train"], dims, data.labels, data.multi_label,
                                          a.steps)
        print(f"| {model} | {head or 'defaults'} | {seconds:.3f} | {per_epoch} | "
              f"{seconds * per_epoch:.0f} |", flush=True)


if __name__ == "__main__":
    main()
