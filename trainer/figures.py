"""The figures that open the results pages (docs/results/figures/*.png), drawn with matplotlib from the rows
trainer/results.py reads out of the committed files. Each function takes those rows, so the page's data table
(which the freshness test compares) and the picture are the same numbers."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TEXT, IMAGE, FLOOR = "#3b6fb6", "#d08c2c", "#888888"


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for one value), as the tables print them."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def scores(rows: list[tuple[str, list[float]]], floor: list[float], floor_label: str, xlabel: str, title: str,
           path: Path) -> None:
    """One line per network: each seed's score as a dot, the mean with ± one std over seeds as a bar; the floor
    (a model that needs no network: logistic regression on the frozen vectors, or a tag prior) as a dashed line
    with ± its std as a band."""
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(rows) + 1.2))
    for y, (label, values) in enumerate(reversed(rows)):
        mean, std = _mean_std(values)
        ax.errorbar(mean, y, xerr=std, fmt="o", color=TEXT, capsize=4, markersize=6)
        ax.scatter(values, [y] * len(values), s=12, color="black", alpha=0.5, zorder=3)
    mean, std = _mean_std(floor)
    ax.axvspan(mean - std, mean + std, color=FLOOR, alpha=0.15, lw=0)
    ax.axvline(mean, color=FLOOR, ls="--", lw=1, label=floor_label)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_yticks(range(len(rows)), [label for label, _ in reversed(rows)])
    ax.set_xlabel(xlabel + " (mean ± std over seeds; dots: seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def shares(rows: list[tuple[str, float]], title: str, path: Path) -> None:
    """One bar per checkpoint: the measured caption share of its answer (the Shapley text share, mean over the
    inputs) and the image's, the rest."""
    fig, ax = plt.subplots(figsize=(6.4, 0.32 * len(rows) + 1.2))
    labels = [label for label, _ in reversed(rows)]
    text = [share for _, share in reversed(rows)]
    ax.barh(labels, text, color=TEXT, label="caption")
    ax.barh(labels, [1 - t for t in text], left=text, color=IMAGE, label="image")
    ax.axvline(0.5, color="black", lw=0.6, alpha=0.5)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the answer (Shapley values of the predicted class, mean over dev)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper center", fontsize=8, ncol=2, frameon=False, bbox_to_anchor=(0.5, -0.12))
    _save(fig, path)


def events(events: list[str], series: list[tuple[str, list[float], list[float]]], chance: float, xlabel: str,
           title: str, path: Path) -> None:
    """Grouped bars per held-out event: each recipe's score (mean, ± std over seeds) on an event it never saw, with
    a line at what a fair coin scores."""
    fig, ax = plt.subplots(figsize=(6.4, 0.22 * len(events) * len(series) + 1.4))
    height = 0.8 / len(series)
    colours = plt.get_cmap("tab10").colors
    for k, (label, means, stds) in enumerate(series):
        ys = [len(events) - 1 - i + (len(series) / 2 - k - 0.5) * height for i in range(len(events))]
        ax.barh(ys, means, height=height, xerr=stds, color=colours[k % 10], label=label, capsize=2,
                error_kw={"lw": 0.8})
    ax.axvline(chance, color="black", ls="--", lw=1, label="a fair coin")
    ax.set_yticks([len(events) - 1 - i for i in range(len(events))], events)
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=7, frameon=True)
    _save(fig, path)


def reliability(curves: list[tuple[str, list[tuple[float, float, int]]]], title: str, path: Path) -> None:
    """A reliability diagram: per bin of the top class's probability, how often the top class was right; a
    calibrated model's points lie on the diagonal."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="calibrated")
    for label, points in curves:
        ax.plot([c for c, _, _ in points], [r for _, r, _ in points], marker="o", label=label)
    ax.set_xlabel("top class's probability")
    ax.set_ylabel("how often the top class was right")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0.45, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    _save(fig, path)
