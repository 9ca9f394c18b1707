"""Metrics (torchmetrics) and plots (matplotlib) for single- and multi-label tasks."""

from __future__ import annotations

from pathlib import Path

import torch
import torchmetrics.functional as MF
from torchmetrics.retrieval import RetrievalHitRate, RetrievalPrecision, RetrievalRecall

TOP_KS = (1, 3, 5)


def single_label_metrics(logits: torch.Tensor, target: torch.Tensor, labels: list[str]) -> dict:
    C = len(labels)
    preds = logits.argmax(-1)
    kw = {"task": "multiclass", "num_classes": C}
    per_class = MF.f1_score(preds, target, average="none", **kw).tolist()
    return {
        "accuracy": MF.accuracy(preds, target, average="micro", **kw).item(),
        "weighted_f1": MF.f1_score(preds, target, average="weighted", **kw).item(),
        "macro_f1": MF.f1_score(preds, target, average="macro", **kw).item(),
        "per_class_f1": dict(zip(labels, per_class)),
        "confusion_matrix": MF.confusion_matrix(preds, target, **kw).tolist(),  # rows: true, cols: predicted
        "n": int(target.numel()),
    }


def multi_label_metrics(logits: torch.Tensor, target: torch.Tensor, labels: list[str]) -> dict:
    """P@k, R@k, Acc@k (a hit among the top k, as in HARRISON / CACNet): each sample is a query over tags."""
    N, C = target.shape
    # torchmetrics' precision and recall count a retrieved tag only where its score is > 0, so a right tag in the top
    # k with a negative logit (p < 0.5: most tags) would be a miss. Each tag's rank within its post (1 = lowest) is
    # positive and orders the tags as the logits do.
    preds, tgt = (logits.argsort(-1).argsort(-1) + 1).flatten().float(), target.flatten().long()
    indexes = torch.arange(N).repeat_interleave(C)
    out: dict = {"n": int(N)}
    for k in TOP_KS:
        out[f"precision@{k}"] = RetrievalPrecision(top_k=k, adaptive_k=False)(preds, tgt, indexes=indexes).item()
        out[f"recall@{k}"] = RetrievalRecall(top_k=k)(preds, tgt, indexes=indexes).item()
        out[f"accuracy@{k}"] = RetrievalHitRate(top_k=k)(preds, tgt, indexes=indexes).item()
    out["micro_f1"] = MF.f1_score((logits > 0).long(), target.long(), task="multilabel", num_labels=C, average="micro").item()
    return out


def compute_metrics(logits: torch.Tensor, target: torch.Tensor, labels: list[str], multi_label: bool) -> dict:
    logits = logits.float()
    return multi_label_metrics(logits, target, labels) if multi_label else single_label_metrics(logits, target, labels)


def selection_metric(multi_label: bool, preferred: str) -> str:
    return "precision@1" if multi_label else preferred


def plot_confusion(matrix: list[list[int]], labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = torch.tensor(matrix, dtype=torch.float)
    norm = m / m.sum(1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(labels), 1.0 + 0.8 * len(labels)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(history: list[dict], metric: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(5.5, 3.2))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train loss", color="tab:blue")
    ax1.plot(epochs, [h["dev_loss"] for h in history], label="dev loss", color="tab:orange")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [h[f"dev_{metric}"] for h in history], label=f"dev {metric}", color="tab:green", linestyle="--")
    ax2.set_ylabel(f"dev {metric}")
    fig.legend(loc="upper right", fontsize=8)
    ax1.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
