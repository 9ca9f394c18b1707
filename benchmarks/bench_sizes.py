"""How large the bundled checkpoints are, and would be with every network bundled on every task. Prints a markdown
table; asserts nothing.

    python benchmarks/bench_sizes.py

For each network and task: the checkpoint file `trainer bundle` writes (float16, without training-only state) for
the network's `best` preset (its MVSA-Single preset where it has none for the task, the defaults where it has
none at all), built untrained with the default encoders (the size does not depend on the weights' values), with
its tuned text layers stored whole or as LoRA adapters of rank 8; and what checkpoints/ holds today. Target: every
bundled checkpoint under 5 MB, checkpoints/ under 60 MB with all five networks on the three tasks.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

NETWORKS = ["concat", "hglnet", "mggf", "cacnet", "infig", "mahfnet"]
TASKS = ["mvsa-single", "mediaeval2016", "hashtags"]
HASHTAGS = 50  # the hashtag task's labels come from the data: its 50 most frequent tags
MB = 1e6


def point(model: str, task: str) -> dict:
    from mmdemo.models import get_model

    presets = get_model(model).presets.get("best", {})
    return dict(presets.get(task, presets.get("mvsa-single", {})))


def bundled_size(model: str, task: str, dims, lora_rank: int, workdir: Path) -> float:
    """MB of model.safetensors as `trainer bundle` writes it, for the network's preset on the task."""
    from mmdemo.checkpoint import compact_checkpoint, save_checkpoint
    from mmdemo.models import MultimodalClassifier
    from mmdemo.tasks import get_task

    from trainer.sweep import TRAIN_OPTIONS

    p = point(model, task)
    tuned = int(p.get("unfreeze_text_layers", 0))
    head = {k: v for k, v in p.items() if k not in TRAIN_OPTIONS}
    labels = list(get_task(task).labels) or [f"tag{i}" for i in range(HASHTAGS)]
    clf = MultimodalClassifier(model, task, labels, "minilm-l6", "efficientnet-lite0", dims.to_dict(), head=head,
                               multi_label=task == "hashtags", finetune_text_layers=tuned,
                               lora_rank=lora_rank if tuned else 0)
    out = save_checkpoint(clf, workdir / f"{task}-{model}-{lora_rank}")
    return compact_checkpoint(out)[1] / MB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=REPO / "checkpoints")
    a = ap.parse_args()

    from mmdemo.encoders import FeatureDims, create_image_encoder, create_text_encoder

    dims = FeatureDims.of(create_text_encoder("minilm-l6"), create_image_encoder("efficientnet-lite0"))
    print("| task | network | tuned text layers | whole layers, MB | LoRA rank 8, MB | checkpoints/ today, MB |")
    print("|---|---|---|---|---|---|")
    totals = {"whole": 0.0, "lora": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for task in TASKS:
            for model in NETWORKS:
                whole = bundled_size(model, task, dims, 0, Path(tmp))
                lora = bundled_size(model, task, dims, 8, Path(tmp))
                totals["whole"] += whole
                totals["lora"] += lora
                today = a.root / task / model / "model.safetensors"
                shown = f"{today.stat().st_size / MB:.1f}" if today.is_file() else "–"
                tuned = point(model, task).get("unfreeze_text_layers", 0)
                print(f"| {task} | {model} | {tuned} | {whole:.1f} | {lora:.1f} | {shown} |")
    today = sum(f.stat().st_size for f in a.root.rglob("*") if f.is_file()) / MB
    print(f"\nAll {len(NETWORKS)} x {len(TASKS)} weights files: {totals['whole']:.1f} MB with whole tuned layers, "
          f"{totals['lora']:.1f} MB with LoRA adapters; {a.root.name}/ holds {today:.1f} MB today (every file).")


if __name__ == "__main__":
    main()
