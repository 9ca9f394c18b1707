"""HTML and text rendering of a Prediction for the app: the agreement banner, the measured modality contributions,
the network's own signals (from the head's `signals` declarations: nothing here names a network), the compare
table's cells, and the model card's markdown. Pure functions of their arguments: no loading, no state.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .names import HEADS

if TYPE_CHECKING:
    from .models import Signal
    from .predict import Prediction

HEAD_NAMES = {"fused": "Fused", "text": "Text only", "image": "Image only"}

# ---- HTML snippets (inline styles: readable in light and dark themes, no CSS file to pass to launch) ----------


def _box(text: str, kind: str = "error") -> str:
    colours = {"error": ("#fdecea", "#b3261e", "⚠️"), "info": ("#e8f0fe", "#1a4d8f", "ℹ️"),
               "ok": ("#e6f4ea", "#1e6b34", "✅"), "warn": ("#fff4e5", "#8a4b00", "⚠️")}
    bg, fg, icon = colours[kind]
    return (f'<div class="mm-{kind}" style="background:{bg};color:{fg};border-left:4px solid {fg};'
            f'padding:8px 12px;border-radius:6px;margin:4px 0">{icon} {text}</div>')


def error_html(message: str) -> str:
    return _box(html.escape(message), "error")


def notes_html(notes: list[str]) -> str:
    return "".join(_box(html.escape(n), "info") for n in notes)


def suggested_tags(pred: Prediction, head: str, top: int = 3) -> list[tuple[str, float]]:
    """A multi-label head's answer: every label with probability >= 0.5, else its `top` most probable."""
    ranked = list(pred.probs[head].items())
    return [(label, p) for label, p in ranked if p >= 0.5] or ranked[:top]


def verdict_html(pred: Prediction) -> str:
    """A banner that says whether the fused, text-only and image-only heads agree on their top label (and, on a
    multi-label task, which labels each head suggests)."""
    tops = {h: pred.top(h) for h in HEADS}
    if pred.multi_label:
        parts = "; ".join(f"{HEAD_NAMES[h].lower()} → " + ", ".join(f"<b>{html.escape(label)}</b> ({p:.0%})"
                                                              for label, p in suggested_tags(pred, h))
                          for h in HEADS)
        agree = "agree" if not pred.disagree else "disagree"
        return _box(f"<b>Suggested labels</b> (probability ≥ 50%, else the 3 most probable; the heads {agree} on "
                    f"the first): {parts}.", "ok" if not pred.disagree else "warn")
    if not pred.disagree:
        label, _ = tops["fused"]
        return _box(f"<b>The modalities agree</b>: fused, text-only and image-only all say "
                    f"<b>{html.escape(label)}</b>.", "ok")
    parts = ", ".join(f"{HEAD_NAMES[h].lower()} → <b>{html.escape(lab)}</b> ({p:.0%})" for h, (lab, p) in tops.items())
    return _box(f"<b>The modalities disagree</b>: {parts}.", "warn")


def _bar(value: float, low: float, high: float) -> str:
    frac = 0.0 if high <= low else float(np.clip((value - low) / (high - low), 0.0, 1.0))
    return (f'<div style="background:#8884;border-radius:4px;height:10px;width:100%;min-width:80px">'
            f'<div style="background:#f97316;height:10px;border-radius:4px;width:{frac * 100:.1f}%"></div></div>')


def _signal(key: str, signals: dict[str, Signal]) -> Signal:
    """The head's declaration of an explain key (an undeclared key shows under its own name, scaled to its values)."""
    from .models import Signal

    return signals.get(key) or Signal(key.replace("_", " ").capitalize(), "", low=None, high=None)


def _signal_rows(key: str, value: Any, signals: dict[str, Signal]) -> list[str]:
    """Table rows for one explain entry: a score -> one bar, weights -> one bar per named component."""
    sig = _signal(key, signals)
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim > 1:
        return [f"<tr><td>{html.escape(sig.title)}</td><td colspan=2>array {tuple(arr.shape)}, mean "
                f"{arr.mean():.3f}</td><td>{html.escape(sig.meaning)}</td></tr>"]
    values = arr.reshape(-1)
    low = sig.low if sig.low is not None else min(0.0, float(values.min()))
    high = sig.high if sig.high is not None else max(float(np.abs(values).max()), 1e-9)
    rows, names = [], sig.components
    for i, v in enumerate(values[:16]):  # long vectors: the first 16 components
        name = sig.title if values.size == 1 else f"{sig.title}: {names[i] if i < len(names) else i}"
        meaning = sig.meaning if i == 0 else ""
        rows.append(f"<tr><td>{html.escape(name)}</td><td style='width:35%'>{_bar(float(v), low, high)}</td>"
                    f"<td><b>{v:.3f}</b></td><td style='font-size:90%;opacity:.85'>{html.escape(meaning)}</td></tr>")
    return rows


REFERENCE_WORDS = {"blank": "an empty caption and a plain grey image", "mean": "the training set's average caption and image"}


def contribution_html(pred: Prediction, label: str | None = None) -> str:
    """The measured answer to "how much did each modality matter" for one class (default: the fused prediction):
    a text-vs-image share bar, the two Shapley values and their interaction, and how to read them."""
    if pred.contributions is None:
        return ""
    c = pred.contributions.of(label or pred.top()[0])
    share = c["text_share"]
    bar = (f"<div style='display:flex;height:14px;border-radius:4px;overflow:hidden;min-width:120px'>"
           f"<div style='background:#2563eb;width:{share * 100:.1f}%'></div>"
           f"<div style='background:#f97316;width:{(1 - share) * 100:.1f}%'></div></div>")
    what = REFERENCE_WORDS.get(c["reference"], c["reference"])
    return (f"<div style='margin-top:6px'><b>Measured: how much each modality moved “{html.escape(c['label'])}”</b></div>"
            f"<table style='width:100%;font-size:95%'><tr><td style='width:22%'>caption <b>{share:.0%}</b></td>"
            f"<td>{bar}</td><td style='width:22%;text-align:right'>image <b>{1 - share:.0%}</b></td></tr></table>"
            f"<div style='font-size:90%'>With neither ({html.escape(what)}) the network gives it "
            f"<b>{math.exp(c['neither']):.0%}</b>, with both <b>{math.exp(c['both']):.0%}</b>. Shapley values of that "
            f"change in log-probability: caption <b>{c['text']:+.3f}</b>, image <b>{c['image']:+.3f}</b>; together "
            f"beyond their separate effects (interaction) <b>{c['interaction']:+.3f}</b>.</div>"
            f"<div style='font-size:90%;opacity:.85'>How to read: the network was rerun with the caption, the image or "
            f"both replaced by {what}; each modality's value is its average effect of being added (the two sum to the "
            f"change from neither to both), positive when it pushes towards the class. The shares divide that change "
            f"only: a modality that agrees with what the stand-ins already suggest moves little. Compare it with what "
            f"the network itself reports below: a signal that says “text” while the caption moves nothing is not "
            f"telling you what the network used.</div>")


def signals_html(pred: Prediction, signals: dict[str, Signal], missing_prior: str = "") -> str:
    """The measured modality contributions, then the network's own interpretable quantities (Prediction.explain),
    each rendered from its declaration."""
    rows = [r for k, v in pred.explain.items() if k != "attention" for r in _signal_rows(k, v, signals)]
    attention = pred.explain.get("attention") or {}
    parts = [contribution_html(pred), "<div style='margin-top:6px'><b>What the network itself reports</b></div>"]
    if rows:
        parts.append("<table style='width:100%;font-size:95%'>" + "".join(rows) + "</table>")
    if attention:
        names = "; ".join(f"{_signal(n, signals).title} ({' → '.join(_signal(n, signals).axes or ('?', '?'))})"
                          for n in attention)
        parts.append(f"<div style='font-size:90%'>Cross-modal attention maps: {html.escape(names)} — see the "
                     f"<i>Attention</i> tab.</div>")
    if not rows and not attention:
        parts.append("<div style='font-size:90%;opacity:.85'>This network reports no interpretable fusion "
                     "quantities (a baseline); use the heatmaps below.</div>")
    if missing_prior:
        parts.append(_box(html.escape(prior_note(missing_prior)), "info"))
    return "".join(parts)


def prior_note(missing_prior: str) -> str:
    return (f"This network runs without its prior encoder {missing_prior!r} (the paper's w/o-prior variant): its "
            f"weights were not available where the checkpoint was trained.")


def main_signal(pred: Prediction, signals: dict[str, Signal]) -> str:
    """One short text for the compare table: the first non-attention explain entry."""
    for key, value in pred.explain.items():
        if key == "attention" or isinstance(value, dict):
            continue
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
        sig = _signal(key, signals)
        if arr.size == 1:
            return f"{sig.title} = {arr[0]:.3f}"
        names = sig.components or [str(i) for i in range(arr.size)]
        return f"{sig.title}: " + ", ".join(f"{n} {v:.2f}" for n, v in zip(names, arr[:4]))
    return "attention maps" if pred.explain.get("attention") else "–"


def measured_share(pred: Prediction) -> str:
    """The compare table's cell: the measured caption / image share of the fused prediction."""
    if pred.contributions is None:
        return "–"
    share = pred.contributions.text_share(pred.top()[0])
    return f"{share:.0%} / {1 - share:.0%}"


def contributions_json(pred: Prediction) -> dict:
    """The API's view of the modality contributions: every class, the predicted one first."""
    if pred.contributions is None:
        return {}
    return {"predicted": pred.top()[0], "classes": [pred.contributions.of(label) for label in pred.probs["fused"]]}


def label_value(pred: Prediction, head: str) -> dict[str, float]:
    return dict(pred.probs[head])


def highlighted_tokens(words: list[tuple[str, float]]) -> list[tuple[str, float | None]]:
    """(word, score in [-1, 1]) -> gr.HighlightedText value with spaces between words."""
    out: list[tuple[str, float | None]] = []
    for i, (w, s) in enumerate(words):
        if i:
            out.append((" ", None))
        out.append((w, round(float(s), 4)))
    return out


def strip_front_matter(card: str) -> str:
    if card.startswith("---"):
        end = card.find("\n---", 3)
        if end != -1:
            return card[end + 4:].lstrip()
    return card


def demote_headings(md: str, levels: int = 3) -> str:
    """'# Title' -> '#### Title' outside code fences, so a model card sits under the panel's own headings."""
    out, fenced = [], False
    for line in md.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)
