"""Why MGGF's discrepancy score alpha (eq. 5-7) is flat: read the vectors it compares.

alpha = sigmoid(SKL) with SKL = (KL(P_v||P_t) + KL(P_t||P_v)) / 2 and P_m = softmax(X_m). Because the two
log-normalisers cancel, SKL = 1/2 sum_i (p_t,i - p_v,i)(x_t,i - x_v,i) exactly, and for softmaxes close to uniform
it is about (1 / 2d) ||x~_t - x~_v||^2 (x~: each vector centred) = (var_t + var_v) / 2 - cov(x_t, x_v): it moves
only with the covariance of X_t and X_v coordinate by coordinate. Nothing in MGGF's objective puts X_t and X_v in a
shared coordinate system, so this script measures on a split, for matched and for image-shuffled pairs: alpha,
SKL and its quadratic approximation, the per-vector variances (the LayerNorm gains set them) and the Pearson
correlation of X_t with X_v across coordinates.

    python scripts/mggf_alpha.py [--checkpoint checkpoints/mvsa-single/mggf] [--split dev]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@torch.no_grad()
def measure(model, split, image_order: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-pair quantities over the split, images taken in `image_order`."""
    from trainer.batches import model_batch

    captured: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = model.head.cmgl.register_forward_hook(lambda m, args, out: captured.append((args[0], args[1])))
    alphas = []
    try:
        for start in range(0, len(split), 256):
            idx = torch.arange(start, min(start + 256, len(split)))
            text, _, _ = model_batch(model, split, idx)
            _, image, _ = model_batch(model, split, image_order[idx])
            alphas.append(model(text, image).explain["discrepancy"])
    finally:
        hook.remove()
    x_t, x_v = torch.cat([c[0] for c in captured]), torch.cat([c[1] for c in captured])
    p_t, p_v = x_t.softmax(-1), x_v.softmax(-1)
    skl = 0.5 * ((p_t - p_v) * (x_t - x_v)).sum(-1)
    c_t, c_v = x_t - x_t.mean(-1, keepdim=True), x_v - x_v.mean(-1, keepdim=True)
    d = x_t.shape[-1]
    return {"alpha": torch.cat(alphas), "skl": skl, "quadratic": (c_t - c_v).pow(2).sum(-1) / (2 * d),
            "var_t": c_t.pow(2).mean(-1), "var_v": c_v.pow(2).mean(-1),
            "corr": torch.nn.functional.cosine_similarity(c_t, c_v, dim=-1),
            "max_p": torch.maximum(p_t.max(-1).values, p_v.max(-1).values)}


def main() -> None:
    from mmdemo.checkpoint import load_checkpoint
    from trainer.probe import derangements
    from trainer.run import checkpoint_features

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=REPO / "checkpoints" / "mvsa-single" / "mggf")
    ap.add_argument("--split", default="dev")
    a = ap.parse_args()
    model = load_checkpoint(a.checkpoint).eval()
    split = checkpoint_features(model, splits=(a.split,))[a.split]
    n = len(split)
    matched = measure(model, split, torch.arange(n))
    shuffled = measure(model, split, derangements(n, 1, seed=0)[0])
    norms = {name: model.head.get_submodule(f"{name}.norm") for name in ("text_branch", "image_branch")}
    gains = ", ".join(f"{name.split('_')[0]} {m.weight.abs().mean():.3f}" for name, m in norms.items()
                      if isinstance(m, torch.nn.LayerNorm)) or "none (feature_norm=False)"
    print(f"{a.checkpoint} on {a.split} ({n} pairs); mean |LayerNorm gain| of X_m: {gains}")
    print("| quantity | matched mean ± sd | image-shuffled mean ± sd |\n|---|---|---|")
    for key in matched:
        m, s = matched[key], shuffled[key]
        print(f"| {key} | {m.mean():.4f} ± {m.std():.4f} | {s.mean():.4f} ± {s.std():.4f} |")
    r = torch.corrcoef(torch.stack([matched["skl"], matched["quadratic"]]))[0, 1]
    print(f"\nPearson r(SKL, quadratic approximation) on matched pairs: {r:.3f}; "
          f"mean |SKL - quadratic| {(matched['skl'] - matched['quadratic']).abs().mean():.4f}")


if __name__ == "__main__":
    main()
