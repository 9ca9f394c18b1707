"""python -m trainer probe: what a network draws on, measured (trainer/probe.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..run import REPO_ROOT

NAME = "probe"
HELP = ("what a network draws on: Shapley shares, perceptual scores, and its own signals against them (and on "
        "matched vs shuffled pairs)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", nargs="*", default=[])
    p.add_argument("--bundled", action="store_true", help="every bundled checkpoint")
    p.add_argument("--splits", nargs="+", default=["dev"], choices=["train", "dev", "test"])
    p.add_argument("--reference", default="blank", choices=["mean", "blank"],
                   help="what stands in for a missing modality (mmdemo.contrib; the app's: blank)")
    p.add_argument("--shuffles", type=int, default=5, help="shuffles for the perceptual score")
    p.add_argument("--compare-references", action="store_true",
                   help="with several checkpoints of one run (its seeds): how much each reference's per-input "
                        "answer depends on the seed")
    p.add_argument("--json", type=Path, default=None,
                   help="write the reports into this file (merged with what it holds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", type=Path, default=None)


def compare_references(a, paths: list[Path]) -> None:
    """Which reference gives the answer that least depends on the training seed."""
    import torch
    from torchmetrics.functional import spearman_corrcoef

    from mmdemo.checkpoint import load_checkpoint
    from mmdemo.contrib import REFERENCES

    from ..probe import reference_of, text_shares
    from ..run import checkpoint_features

    models = [load_checkpoint(p) for p in paths]
    split = a.splits[0]
    feats = checkpoint_features(models[0], a.data_dir, a.cache_dir, splits=("train", split))
    print(f"text share of the predicted class on {split}, per input: Spearman correlation between the "
          f"{len(models)} checkpoints (pairs), for each reference")
    for kind in REFERENCES:
        shares = [text_shares(m, feats[split], reference_of(m, kind, feats["train"])) for m in models]
        rhos = [spearman_corrcoef(shares[i], shares[j]).item() for i in range(len(shares)) for j in range(i)]
        print(f"| {kind} | {sum(rhos) / len(rhos):.3f} | {' '.join(f'{r:.3f}' for r in rhos)} | mean share "
              f"{torch.stack(shares).mean():.3f} |")


def print_report(path: Path, split: str, r: dict, shuffles: int) -> None:
    s, p = r["shapley"], r["perceptual"]
    print(f"\n{path} on {split} ({r['n']} pairs, {r['metric']} {r['score']:.4f}, reference {r['reference']})")
    print(f"  text share of the predicted class: {s['text_share']['mean']:.3f} ± {s['text_share']['std']:.3f}"
          f" | phi text {s['text']['mean']:+.3f}, image {s['image']['mean']:+.3f}, interaction "
          f"{s['interaction']['mean']:+.3f}")
    print(f"  perceptual score ({shuffles} shuffles): image {p['image']['mean']:+.4f} ± {p['image']['std']:.4f}"
          f", text {p['text']['mean']:+.4f} ± {p['text']['std']:.4f}")
    for key, sig in r["signals"].items():
        print(f"  {key}: {sig['mean']:.4f} ± {sig['std']:.4f} (5-95%: {sig['p05']:.3f}-{sig['p95']:.3f}), "
              f"Spearman with text share {sig['spearman_text_share']:+.3f}, image-shuffled mean "
              f"{sig['shuffled_mean']:.4f} (higher for {sig['shuffled_higher_fraction']:.0%})")


def merge_json(path: Path, results: dict, unprobed: list[str]) -> None:
    """Merged into what the file holds: probing one new checkpoint keeps the others' reports."""
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = json.loads(path.read_text()) if path.is_file() else {}
    for name, splits in results.items():
        merged.setdefault(name, {}).update(splits)
    for name in unprobed:  # an earlier report of that name was another checkpoint's
        merged.pop(name, None)
    path.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")


def run(a) -> None:
    from mmdemo.checkpoint import load_checkpoint, read_config, read_metrics
    from mmdemo.hub import bundled_checkpoints

    from ..loeo import trained_on_every_event
    from ..probe import modality_report, reference_of
    from ..run import checkpoint_features

    bundled = bundled_checkpoints(REPO_ROOT / "checkpoints") if a.bundled else {}
    paths = ([p for models in bundled.values() for p in models.values()] if a.bundled
             else [Path(p) for p in a.checkpoint])
    if not paths:
        raise SystemExit("name --checkpoint DIR [DIR ...] or --bundled")
    if a.compare_references:
        compare_references(a, paths)
        return
    results, unprobed = {}, []
    for path in paths:
        if trained_on_every_event(read_metrics(path)):
            print(f"{path}: trained on every event of its task but its validation events, so every split of the task "
                  "is its training data: not probed (its measure on unseen events is its leave-one-event-out report)")
            config = read_config(path)
            unprobed.append(f"{config['task']}/{config['model']}")
            continue
        model = load_checkpoint(path)
        train = ("train",) if a.reference == "mean" else ()
        splits = tuple(dict.fromkeys(train + tuple(a.splits)))
        feats = checkpoint_features(model, a.data_dir, a.cache_dir, splits=splits)
        ref = reference_of(model, a.reference, feats.get("train"))
        for split in a.splits:
            r = modality_report(model, feats[split], ref, a.shuffles, a.seed)
            results.setdefault(f"{model.task}/{model.model_name}", {})[split] = r
            print_report(path, split, r, a.shuffles)
    if a.json:
        merge_json(a.json, results, unprobed)
