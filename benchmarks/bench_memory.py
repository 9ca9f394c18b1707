"""How much memory the app holds: every bundled network of every task loaded, then after 5 and after N
explanations (Integrated Gradients and Grad-CAM in turn, over the networks and the example inputs, from a pool of
worker threads as Gradio runs them). Prints a markdown table; asserts nothing.

    python benchmarks/bench_memory.py                  # N = 50
    python benchmarks/bench_memory.py --explanations 50 --no-trim   # without returning freed memory to the OS

Targets: all bundled networks loaded in under 1.5 GB RSS; RSS after 50 explanations within 10% of after 5.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=REPO / "checkpoints")
    ap.add_argument("--explanations", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--workers", type=int, default=8, help="request threads (Gradio's worker pool)")
    ap.add_argument("--no-trim", action="store_true", help="switch off mmdemo.memory.release_memory (the before)")
    a = ap.parse_args()
    if a.explanations <= 5:
        ap.error("--explanations must be more than 5: memory after N is compared with memory after 5")

    import torch
    from PIL import Image

    torch.set_num_threads(a.threads)
    from bench_app import EXAMPLES

    from mmdemo import memory
    from mmdemo.hub import bundled_checkpoints
    from mmdemo.app.handlers import DemoApp

    if a.no_trim:
        memory.TRIM = False
    rows = [("imports (torch, transformers, gradio, mmdemo)", rss_mb(), "")]
    app = DemoApp(a.root)
    cat = bundled_checkpoints(a.root)
    t = time.perf_counter()
    for task, models in cat.items():
        for model in models:
            app.load(task, model)
    n = sum(len(m) for m in cat.values())
    rows.append((f"all {n} bundled networks of {len(cat)} tasks loaded", rss_mb(), f"{time.perf_counter() - t:.1f} s"))
    images = [(Image.open(REPO / "examples" / f).convert("RGB"), c) for f, c in EXAMPLES]
    jobs = itertools.cycle(itertools.product([(t, m) for t, ms in cat.items() for m in ms], range(len(images)),
                                             ("integrated-gradients", "grad-cam")))

    def explain(job) -> None:
        (task, model), i, method = job
        _, _, note = app.explain_fn(images[i][0], images[i][1], task, model, method)
        assert "mm-error" not in note, note

    with ThreadPoolExecutor(a.workers) as pool:
        done = 0
        for target in (5, a.explanations):
            t = time.perf_counter()
            list(pool.map(explain, [next(jobs) for _ in range(target - done)]))
            rows.append((f"after {target} explanations", rss_mb(), f"{(time.perf_counter() - t) / (target - done):.2f} s each"))
            done = target
    growth = rows[-1][1] / rows[-2][1] - 1
    print(f"\nmmdemo memory benchmark — `{a.root}`, torch {torch.__version__}, {a.threads} thread(s), {a.workers} "
          f"request threads, release_memory {'off' if a.no_trim else 'on'}, load average {os.getloadavg()[0]:.1f}\n")
    print("| state | RSS MB | notes |\n|---|---:|---|")
    for name, mb, note in rows:
        print(f"| {name} | {mb:.0f} | {note} |")
    print(f"\nafter {a.explanations} vs after 5 explanations: {growth:+.1%}")


if __name__ == "__main__":
    main()
