"""Matched vs mismatched pairs: how a trained model's scalar `explain` signals react when each caption is
paired with another sample's image (a fixed derangement of the split). For MGGF this is the paper's claim
that the discrepancy score alpha rises when the modalities conflict.

    python -m trainer probe --checkpoint checkpoints/mvsa-single/mggf --split dev
"""

from __future__ import annotations

import torch

from mmdemo.models import MultimodalClassifier

from .features import CachedSplit
from .loop import model_batch, require_captions


@torch.no_grad()
def scalar_signals(model: MultimodalClassifier, split: CachedSplit, image_order: torch.Tensor,
                   batch_size: int = 256) -> dict[str, torch.Tensor]:
    """{explain key: [N] values} for every [B]-shaped explain tensor, images taken in `image_order`."""
    require_captions(model, split)
    model.eval()
    out: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(split), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(split)))
        text, _, _ = model_batch(model, split, idx)
        _, image, _ = model_batch(model, split, image_order[idx])
        explain = model(text, image).explain
        for key, value in explain.items():
            if isinstance(value, torch.Tensor) and value.dim() == 1:
                out.setdefault(key, []).append(value.float())
    return {k: torch.cat(v) for k, v in out.items()}


def matched_vs_shuffled(model: MultimodalClassifier, split: CachedSplit, seed: int = 0) -> dict[str, dict[str, float]]:
    n = len(split)
    gen = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(n, generator=gen)
    clash = shuffled == torch.arange(n)
    shuffled[clash] = (shuffled[clash] + 1) % n  # no caption keeps its own image
    matched = scalar_signals(model, split, torch.arange(n))
    mismatched = scalar_signals(model, split, shuffled)
    report = {}
    for key in matched:
        a, b = matched[key], mismatched[key]
        report[key] = {"matched_mean": a.mean().item(), "shuffled_mean": b.mean().item(),
                       "matched_std": a.std().item(), "shuffled_std": b.std().item(),
                       "shuffled_higher_fraction": (b > a).float().mean().item(), "n": n}
    return report
