"""What the encoder experiment's points cost on this CPU (scripts/encoders.sh): encoding time per encoder pair, and
for each sweep point the predict p50 of its best-on-dev checkpoint through the app's Predictor and that
checkpoint's size; a point whose weights are not on this machine keeps the costs that costs.json has for it. Writes
results/encoders/costs.json (docs/RESULTS.md's encoder table reads it) and prints the table.

    python scripts/encoders_table.py [--runs results/encoders] [--task mvsa-single] [--samples 256] [--predictions 20]
                                     [--keep-encode]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))  # bench_app's examples and timer
os.environ.setdefault("HF_HUB_OFFLINE", "1")

EXAMPLES = REPO / "examples"


def encode_seconds(task: str, text: str, image: str, samples: int) -> tuple[float, float]:
    """Seconds per 1,000 training samples to encode their captions / their images (all cores, batches of 64)."""
    import torch

    from mmdemo.encoders import create_image_encoder, create_text_encoder
    from mmdemo.inputs import load_image
    from trainer.datasets import load_task_data

    subset = load_task_data(task).train[:samples]
    te, ie = create_text_encoder(text), create_image_encoder(image)
    with torch.no_grad():
        start = time.perf_counter()
        for i in range(0, len(subset), 64):
            te.encode([s.text for s in subset[i:i + 64]], num_layers=4, max_length=64)
        text_s = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(0, len(subset), 64):
            ie.encode([load_image(s.image) for s in subset[i:i + 64]])
        image_s = time.perf_counter() - start
    return text_s * 1000 / len(subset), image_s * 1000 / len(subset)


def predict_p50_ms(checkpoint: Path, runs: int) -> float:
    """Median wall-clock ms of Predictor.predict of a new input (nothing of it encoded yet) over the app
    benchmark's examples (benchmarks/bench_app.py)."""
    from bench_app import EXAMPLES as INPUTS, timed
    from PIL import Image

    from mmdemo.pipeline import ENCODED
    from mmdemo.predict import Predictor

    inputs = [(Image.open(EXAMPLES / f).convert("RGB"), caption) for f, caption in INPUTS]
    predictor = Predictor.from_checkpoint(checkpoint)
    calls = iter(range(10**9))

    def fresh():
        ENCODED.clear()
        predictor.predict(*inputs[next(calls) % len(inputs)])
    return statistics.median(timed(fresh, runs, warmup=2))


def main() -> None:
    import torch

    from trainer.results import encoders
    from trainer.run import best_seed_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, default=REPO / "results/encoders")
    p.add_argument("--task", default="mvsa-single")
    p.add_argument("--samples", type=int, default=256, help="training samples encoded to time each encoder")
    p.add_argument("--predictions", type=int, default=20, help="predictions timed per checkpoint")
    p.add_argument("--checkpoints", nargs="*", type=Path, default=[REPO / "checkpoints" / "mvsa-single" / "hglnet"],
                   help="bundled checkpoints to time as well (a point whose runs live elsewhere)")
    p.add_argument("--keep-encode", action="store_true",
                   help="re-measure the predictions only, keeping the encode times already in costs.json")
    a = p.parse_args()
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))

    costs: dict = {"threads": torch.get_num_threads(), "points": {}, "encode": {}}
    before = json.loads((a.runs / "costs.json").read_text()) if (a.runs / "costs.json").is_file() else {}
    if a.keep_encode:
        costs["encode"] = before.get("encode", {})
    for sweep in sorted((a.runs / a.task).glob("*/sweep.json")):
        result = json.loads(sweep.read_text())
        for point in result["points"]:
            run_dir = a.runs / point["runs"] / result["model"]
            best, _ = best_seed_dir(run_dir)
            config = json.loads((best / "config.json").read_text())
            pair = f"{config['text_encoder']} + {config['image_encoder']}"
            if pair not in costs["encode"]:
                text_s, image_s = encode_seconds(a.task, config["text_encoder"], config["image_encoder"], a.samples)
                costs["encode"][pair] = {"text_s": round(text_s, 2), "image_s": round(image_s, 2)}
            weights = best / "model.safetensors"
            key = f"{result['model']}/{point['tag']}"
            if not weights.exists():  # weights are not kept in git: the costs need the runs made here
                if key in before.get("points", {}):
                    costs["points"][key] = before["points"][key]
                print(f"not re-measured: {run_dir} ({weights} is not here; rerun scripts/encoders.sh)")
                continue
            costs["points"][key] = {
                "predict_p50_ms": round(predict_p50_ms(best, a.predictions), 1),
                "checkpoint_mb": round(weights.stat().st_size / 1e6, 2)}
    for ckpt in a.checkpoints:
        costs["points"][f"bundled/{ckpt.parent.name}/{ckpt.name}"] = {
            "predict_p50_ms": round(predict_p50_ms(ckpt, a.predictions), 1),
            "checkpoint_mb": round((ckpt / "model.safetensors").stat().st_size / 1e6, 2)}
    costs["load_average"] = round(os.getloadavg()[0], 1)  # what else the machine was doing while measuring
    (a.runs / "costs.json").write_text(json.dumps(costs, indent=2))
    print(encoders(a.runs.name, a.task, a.runs.parent))


if __name__ == "__main__":
    main()
