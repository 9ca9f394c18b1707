"""Is network A better than network B, or inside the noise? A paired bootstrap over the test samples.

Both models' runs of the same seeds predict the same split; each bootstrap draw resamples the samples (with
replacement, the same draw for both models and every seed) and takes the difference of the seed-averaged metrics.
The 2.5th and 97.5th percentiles of that difference are its 95% interval: an interval that contains 0 is no win.

    python -m trainer compare --task mvsa-single --models cacnet concat --split test
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmdemo.checkpoint import load_checkpoint

from .loop import predict_split
from .run import checkpoint_features


def hits(run_dir: Path, split: str, data_dir: str | None = None, cache_dir: Path | None = None
         ) -> dict[int, torch.Tensor]:
    """{seed: [N] 1.0 where the fused prediction is right} for every seed of a run directory with its weights.
    Multi-label tasks count a hit where the top label is one of the sample's labels (P@1)."""
    out = {}
    for seed_dir in sorted(run_dir.glob("seed*")):
        if not (seed_dir / "model.safetensors").is_file():
            continue
        model = load_checkpoint(seed_dir)
        split_feats = checkpoint_features(model, data_dir, cache_dir, splits=(split,))[split]
        logits = predict_split(model, split_feats)[0]["fused"]
        top = logits.argmax(-1)
        labels = split_feats.labels
        right = labels.gather(1, top[:, None]).squeeze(1).bool() if model.multi_label else top == labels
        out[int(seed_dir.name.removeprefix("seed"))] = right.float()
    return out


def compare_sentence(r: dict) -> str:
    """A `paired_bootstrap` result (with its "models") in words: both scores, the difference and its interval."""
    (a, b) = (Path(m).name if "/" in m else m for m in r["models"])  # a run directory by its model's name
    pts = lambda x: f"{x * 100:+.2f}".replace("-", "−")  # noqa: E731
    seeds = ", ".join(map(str, r["seeds"]))
    return (f"{a} {r['a'] * 100:.2f} against {b} {r['b'] * 100:.2f} (seeds {seeds}, {r['n']} samples): "
            f"{pts(r['difference'])} points, paired bootstrap 95% interval [{pts(r['low'])}, {pts(r['high'])}]"
            + (", which contains 0: no difference shown" if r["low"] <= 0 <= r["high"] else ""))


def paired_bootstrap(a: dict[int, torch.Tensor], b: dict[int, torch.Tensor], samples: int = 10_000,
                     seed: int = 0) -> dict:
    """Mean difference (a - b) of the seed-averaged accuracy and its 95% bootstrap interval, over the seeds both have."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError(f"no seed has runs of both models (A: {sorted(a)}, B: {sorted(b)})")
    diff = torch.stack([a[s] - b[s] for s in seeds]).mean(0)  # [N] per-sample difference, averaged over seeds
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randint(len(diff), (samples, len(diff)), generator=gen)
    boot = diff[draws].mean(1)
    low, high = torch.quantile(boot, torch.tensor([0.025, 0.975])).tolist()
    return {"seeds": seeds, "n": len(diff), "difference": diff.mean().item(), "low": low, "high": high,
            "a": torch.stack([a[s] for s in seeds]).mean().item(), "b": torch.stack([b[s] for s in seeds]).mean().item()}
