"""Wall time of training the five networks x 3 seeds on a task from the feature cache, frozen encoders: the
training target of docs/PERFORMANCE.md, measured end to end with the trainer itself.

    python benchmarks/bench_training.py                           # MVSA-Single, the five networks, seeds 0 1 2
    python benchmarks/bench_training.py --models cacnet mggf --seeds 0

Each run is `python -m trainer train --preset best --unfreeze-text-layers 0 --lora-rank 0` (each network's dev-chosen
head settings and schedule, its text layers left frozen) on one torch thread, `--jobs` runs at a time, the longest
first (by `--order`, the networks' usual cost). The feature cache must exist (a first `trainer train` builds it);
runs go to a temporary directory. Prints one row per run and the total wall time; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NETWORKS = ("infig", "mahfnet", "hglnet", "mggf", "cacnet")  # slowest first: two workers finish together


def train(task: str, model: str, seed: int, out: Path) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "trainer", "train", "--task", task, "--model", model, "--seeds", str(seed),
           "--preset", "best", "--unfreeze-text-layers", "0", "--lora-rank", "0", "--threads", "1", "--quiet",
           "--out", str(out)]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    line = done.stdout.strip().splitlines()[-1]  # "... | best epoch 3/6 | 85s -> ..."
    epochs = re.search(r"best epoch (\d+/\d+)", line)
    return seconds, epochs.group(1) if epochs else "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="mvsa-single")
    p.add_argument("--models", nargs="*", default=list(NETWORKS))
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (one torch thread each)")
    a = p.parse_args()
    runs = [(m, s) for m in sorted(a.models, key=lambda m: NETWORKS.index(m) if m in NETWORKS else 0)
            for s in a.seeds]
    with tempfile.TemporaryDirectory(prefix="bench-training-") as out:
        start = time.perf_counter()
        with ThreadPoolExecutor(a.jobs) as pool:
            results = list(pool.map(lambda run: train(a.task, *run, Path(out)), runs))
        total = time.perf_counter() - start
    print(f"| {a.task} | seed | best epoch / run | wall s (process, with loading the cache) |")
    print("|---|---|---|---|")
    for (model, seed), (seconds, epochs) in zip(runs, results):
        print(f"| {model} | {seed} | {epochs} | {seconds:.0f} |")
    print(f"\n{len(runs)} runs, {a.jobs} at a time: {total / 60:.1f} minutes wall "
          f"(target for the five networks x 3 seeds: under 15)")


if __name__ == "__main__":
    main()
