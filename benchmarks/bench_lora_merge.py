"""What folding the LoRA adapters into the blocks' weights saves a prediction (`MultimodalClassifier.merge_adapters`,
which the Predictor applies on load): every bundled checkpoint that carries adapters, merged against unmerged, taking
turns on the same inputs, the frozen encoders' outputs cached as in the app (so the time is the tuned blocks and the
head). Prints a markdown table; asserts nothing.

    python benchmarks/bench_lora_merge.py [--runs 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_app import EXAMPLES, REPO
from PIL import Image


def main() -> None:
    from peft.tuners.lora import LoraLayer

    from mmdemo.checkpoint import read_config
    from mmdemo.hub import bundled_checkpoints
    from mmdemo.predict import Predictor

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    inputs = [(Image.open(REPO / "examples" / f).convert("RGB"), c) for f, c in EXAMPLES]
    print(f"| checkpoint | LoRA rank | merged p50 ms | unmerged p50 ms | ({a.runs} runs, {a.threads} thread(s)) |")
    print("|---|---:|---:|---:|---|")
    for task, models in bundled_checkpoints(REPO / "checkpoints").items():
        for model, path in models.items():
            rank = read_config(path).get("lora_rank", 0)
            if not rank:
                continue
            merged, unmerged = Predictor.from_checkpoint(path, task=task), Predictor.from_checkpoint(path, task=task)
            for layer in unmerged.classifier.text_encoder.modules():
                if isinstance(layer, LoraLayer):
                    layer.unmerge()
            ms: dict[str, list[float]] = {"merged": [], "unmerged": []}
            for r in range(a.runs + 2):
                image, caption = inputs[r % len(inputs)]
                pair = [("merged", merged), ("unmerged", unmerged)]
                for name, predictor in pair[::1 if r % 2 else -1]:
                    t = time.perf_counter()
                    predictor.predict(image, caption)
                    if r >= 2:  # warm-up rounds: the first encodes each input, which is then cached for both
                        ms[name].append((time.perf_counter() - t) * 1000)
            print(f"| {task}/{model} | {rank} | {statistics.median(ms['merged']):.1f} | "
                  f"{statistics.median(ms['unmerged']):.1f} | |", flush=True)


if __name__ == "__main__":
    main()
