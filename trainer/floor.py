"""A fair floor: logistic regression on the same frozen features the heads see
([text pooled; image pooled], standardised), C chosen on dev. Written as results/main/<task>/logreg/metrics.json so
the report lists it beside the trained models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from .features import CachedSplit
from .metrics import compute_metrics

C_GRID = (0.001, 0.01, 0.1, 1.0)


def _xy(split: CachedSplit) -> tuple[np.ndarray, np.ndarray]:
    x = torch.cat([split.text_pooled.float(), split.image_pooled[split.image_index].float()], dim=1)
    return x.numpy(), split.labels.numpy()


def _logits(clf: LogisticRegression, x: np.ndarray) -> torch.Tensor:
    """[N, C] scores; sklearn gives one margin for binary problems, turned into two logits."""
    z = torch.tensor(clf.decision_function(x), dtype=torch.float32)
    return torch.stack([-z, z], dim=1) / 2 if z.dim() == 1 else z


def logistic_floor(feats: dict[str, CachedSplit], labels: list[str], metric: str, task: str, out: Path,
                   seed: int = 0) -> dict:
    if feats["train"].labels.dim() != 1:
        raise ValueError("the logistic-regression floor is for single-label tasks")
    (xtr, ytr), (xdev, ydev), (xte, yte) = (_xy(feats[s]) for s in ("train", "dev", "test"))
    scaler = StandardScaler().fit(xtr)
    xtr, xdev, xte = scaler.transform(xtr), scaler.transform(xdev), scaler.transform(xte)
    best = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(xtr, ytr)
        dev = compute_metrics(_logits(clf, xdev), torch.tensor(ydev), labels, False)
        if best is None or dev[metric] > best[1][metric]:
            best = (clf, dev, c)
    clf, dev, c = best
    test = compute_metrics(_logits(clf, xte), torch.tensor(yte), labels, False)
    metrics = {"task": task, "model": "logreg", "variant": "", "seed": seed, "C": c,
               "selected_on": f"dev {metric}", "dev": {"fused": dev}, "test": {"fused": test},
               "command": f"python -m trainer floor --task {task}"}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
