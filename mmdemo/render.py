"""HTML and text rendering of a Prediction for the app: the agreement banner, the measured modality contributions,
the network's own signals (from the head's `signals` declarations: nothing here names a network), the compare
table's cells, the Model tab, the notes on a caption as the model read it, and the model card's markdown. Pure functions of their arguments: no loading, no state.

Every number comes with its direction, its true range and a plain sentence, the technical reading in an expander;
`uninformative` says when the fused answer carries no information, and then nothing is drawn as if it did. The page
shows `READING_GUIDE` once, not with every prediction.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .card import MULTI_LABEL_COLUMNS
from .checkpoint import missing_prior, signed, validity_line
from .names import HEADS
from .tasks import TASKS

if TYPE_CHECKING:
    from .checkpoint import Trust
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


# ---- notes on the caption, as the model read it (mmdemo.predict.Predictor.prepare) ---------------------------


def cut_caption_note(max_length: int, last_words: str) -> str:
    stops = f", so it stops at “…{last_words}”" if last_words else ""
    return f"The caption was cut to the first {max_length} tokens the model reads{stops}."


def unknown_note(unknown: int, pieces: int) -> str:
    """`unknown` of the caption's `pieces` word pieces were read as [UNK]."""
    if unknown == pieces:
        return ("The text encoder knows none of the caption's characters (emoji, or a script it was not trained "
                "on): it reads only [UNK], so the text-only prediction and the word attributions say nothing "
                "about this caption.")
    return (f"{unknown} of the caption's {pieces} word pieces {'is' if unknown == 1 else 'are'} unknown to the text "
            f"encoder (emoji, or a script it was not trained on) and read as [UNK].")


def spelled_note(spelled: int, lettered: int) -> str:
    """`spelled` of the caption's `lettered` pieces with a letter were read as single letters or [UNK]."""
    return (f"Most of this caption is outside the text encoder's vocabulary (it was trained on English): it reads "
            f"{spelled} of its {lettered} word pieces as single letters or unknown symbols, not words, so "
            f"the text-only prediction and the word attributions say little about this caption.")


def suggested_tags(pred: Prediction, head: str, top: int = 3) -> list[tuple[str, float]]:
    """A multi-label head's answer: every label with probability >= 0.5, else its `top` most probable."""
    ranked = list(pred.probs[head].items())
    return [(label, p) for label, p in ranked if p >= 0.5] or ranked[:top]


# ---- when the fused answer carries no information --------------------------------------------------------------

# Neither modality moves a class when |phi_text| + |phi_image| (log-probability, nats) is below NO_EFFECT. 0.01 nats
# changes a probability by 1% of itself (50% -> 50.5%), less than the page's whole-percent figures can show; and since
# |phi_text| + |phi_image| >= |v(both) - v(neither)|, the answer with the input is then the answer with both replaced by
# the stand-ins, to within that. A temperature of 1e5-1e6 (a fit gone wrong) divides every effect by that
# much, far below the bound; a network whose answer depends on its input moves some class by more.
NO_EFFECT = 0.01
# Two fused probabilities less than this apart print alike at whole percent: the fused head is undecided between them.
TIE = 0.01


def uninformative(pred: Prediction, trust: Trust | None = None) -> str | None:
    """A plain sentence when the fused answer carries no information, else None. It carries none when the checkpoint's
    measured trust says its fused answer does not move with the input (`Trust.informative` False), or when on this
    input neither modality moves any class (|phi_text| + |phi_image| < NO_EFFECT for every class: for one class
    alone a near-certain class barely moves in log-probability while the others do). Where it returns a sentence the
    page draws no contribution bar and no heatmap of the fused head, and does not say the fused head predicts a
    class. `trust` may be None (not measured, or an older checkpoint)."""
    if getattr(trust, "informative", None) is False:
        spread = getattr(trust, "spread", None) or {}
        where = f" over {spread['on']}" if spread.get("on") else f" over {spread['n']} posts" if spread.get("n") else ""
        return (f"This network's combined answer does not change with the input: measured{where}, it gives every "
                f"post the same probabilities, so it says nothing about this one.")
    c = pred.contributions
    if c is not None and float((c.text.abs() + c.image.abs()).max()) < NO_EFFECT:
        what = REFERENCE_WORDS.get(c.reference, c.reference)
        return (f"Neither the caption nor the image changes this network's combined answer: with both replaced by "
                f"{what} it gives the same probabilities, so the answer says nothing about this post.")
    return None


def _tied(probs: dict[str, float]) -> list[str]:
    """The labels tied with the top one (a single-label head undecided between them), [] when the top one leads."""
    ranked = list(probs.items())
    tied = [label for label, p in ranked if ranked[0][1] - p < TIE]
    return tied if len(tied) > 1 else []


def _head_says(pred: Prediction, head: str) -> str:
    """"text only → <b>positive</b> (80%)", the suggested tags on a multi-label task, or an undecided head's tie."""
    name = HEAD_NAMES[head].lower()
    if pred.multi_label:
        tags = suggested_tags(pred, head)
        return f"{name} → " + ", ".join(f"<b>{html.escape(label)}</b> ({p:.0%})" for label, p in tags)
    tied = _tied(pred.probs[head])
    if tied:
        return (f"{name} → undecided between " + " and ".join(f"<b>{html.escape(t)}</b>" for t in tied)
                + f" ({pred.probs[head][tied[0]]:.0%} each)")
    label, p = pred.top(head)
    return f"{name} → <b>{html.escape(label)}</b> ({p:.0%})"


def verdict_html(pred: Prediction, trust: Trust | None = None) -> str:
    """A banner that says whether the fused, text-only and image-only heads agree on their top label (and, on a
    multi-label task, which labels each head suggests). Where the fused answer carries no information
    (`uninformative`) it says so and names only the single-modality answers; an undecided head (a tie) is called
    undecided, never said to predict one of the tied labels."""
    empty = uninformative(pred, trust)
    if empty:
        return _box(f"<b>The combined answer carries no information</b>: {html.escape(empty)} On their own, the "
                    f"modalities say: {_head_says(pred, 'text')}; {_head_says(pred, 'image')}.", "warn")
    if pred.multi_label:
        parts = "; ".join(_head_says(pred, h) for h in HEADS)
        agree = "agree" if not pred.disagree else "disagree"
        return _box(f"<b>Suggested labels</b> (probability ≥ 50%, else the 3 most probable; the heads {agree} on "
                    f"the first): {parts}.", "ok" if not pred.disagree else "warn")
    parts = ", ".join(_head_says(pred, h) for h in HEADS)
    if any(_tied(pred.probs[h]) for h in HEADS):  # a tie's "top" label is arbitrary: neither agree nor disagree
        return _box(f"<b>Not every head has a clear answer, so the modalities neither agree nor disagree</b>: "
                    f"{parts}.", "warn")
    if not pred.disagree:
        label, _ = pred.top("fused")
        return _box(f"<b>The modalities agree</b>: fused, text-only and image-only all say "
                    f"<b>{html.escape(label)}</b>.", "ok")
    return _box(f"<b>The modalities disagree</b>: {parts}.", "warn")


# ---- bars --------------------------------------------------------------------------------------------------------

_TRACK = "background:#8883;border-radius:4px;height:10px;width:100%;min-width:80px;position:relative"


def _bar(value: float, low: float, high: float, colour: str = "#f97316") -> str:
    """A bar over [low, high]. A range with 0 inside it (a cosine in [-1, 1]) is drawn from 0, with a tick at 0;
    otherwise the bar fills from `low`. Values outside the range are clipped to its ends."""
    if low < 0 < high:
        span = high - low
        v = float(np.clip(value, low, high))
        zero = -low / span * 100
        left, width = min(zero, zero + v / span * 100), abs(v) / span * 100
        return (f"<div style='{_TRACK}'><div style='position:absolute;left:{left:.1f}%;width:{width:.1f}%;height:10px;"
                f"background:{colour};border-radius:2px'></div><div style='position:absolute;left:{zero:.1f}%;"
                f"width:1px;height:14px;top:-2px;background:currentColor'></div></div>")
    frac = 0.0 if high <= low else float(np.clip((value - low) / (high - low), 0.0, 1.0))
    return (f"<div style='{_TRACK}'><div style='background:{colour};height:10px;border-radius:4px;"
            f"width:{frac * 100:.1f}%'></div></div>")


def _diverging(value: float, scale: float, colour: str) -> str:
    """A bar from a centre line: left of it pushes against, right of it towards; `scale` fills one half."""
    half = 0.0 if scale <= 0 else min(abs(value) / scale, 1.0) * 50
    left = 50 - half if value < 0 else 50
    return (f"<div style='{_TRACK};height:12px'><div style='position:absolute;left:{left:.1f}%;width:{half:.1f}%;"
            f"height:12px;background:{colour};border-radius:2px'></div><div style='position:absolute;left:50%;"
            f"width:1px;height:16px;top:-2px;background:currentColor'></div></div>")


def _num(x: float | None, low_end: bool) -> str:
    if x is None:
        return "−∞" if low_end else "∞"
    return f"{x:g}".replace("-", "−")


def _range_text(sig: Signal) -> str:
    """"0.5 to 1", "0 to ∞": the quantity's true range, as the page prints it."""
    return f"{_num(sig.low, True)} to {_num(sig.high, False)}"


# ---- the measured modality contributions -----------------------------------------------------------------------

REFERENCE_WORDS = {"blank": "an empty caption and a plain grey image",
                   "mean": "the training set's average caption and image"}
MODALITY_COLOURS = {"caption": "#2563eb", "image": "#f97316"}
# Half a contribution bar is the larger of the two Shapley values, but never less than one nat (the class's
# probability multiplied or divided by e): scaled to the larger value alone, +0.001 against +0.000 drew a full bar
# beside a half one, a confident picture of two effects too small to see in the percentages.
BAR_HALF_AT_LEAST = 1.0


def _push(value: float) -> str:
    """How one modality's Shapley value reads in words."""
    if abs(value) < NO_EFFECT / 2:
        return "hardly moves"
    return "pushes towards" if value > 0 else "pushes against"


def contribution_words(c: dict[str, Any]) -> str:
    """One plain sentence (HTML) on which way each modality pushes one class, with its Shapley value: "The caption
    pushes towards “positive” (+0.852); the image pushes against “positive” (−1.409)." `c`: `Contribution.of(label)`.
    """
    label = html.escape(c["label"])
    return (f"The caption {_push(c['text'])} “{label}” ({signed(c['text'], 3)}); the image {_push(c['image'])} "
            f"“{label}” ({signed(c['image'], 3)}).")


def contribution_html(pred: Prediction, label: str | None = None, trust: Trust | None = None) -> str:
    """The measured answer to "which way did each modality push this class" (default: the fused prediction): one
    sentence in words, a diverging bar per modality (right of the centre: towards the class, left: against), the
    Shapley values, and what the class gets with neither and with both. Where the fused answer carries no
    information (`uninformative`) it says so and draws no bar."""
    if pred.contributions is None:
        return ""
    c = pred.contributions.of(label or pred.top()[0])
    what = REFERENCE_WORDS.get(c["reference"], c["reference"])
    head = (f"<div style='margin-top:6px'><b>Measured: how much each modality moved “{html.escape(c['label'])}”</b>"
            f"</div>")
    numbers = (f"Shapley values of the change in log-probability: caption <b>{signed(c['text'], 3)}</b>, image "
               f"<b>{signed(c['image'], 3)}</b>; together beyond their separate effects (interaction) "
               f"<b>{signed(c['interaction'], 3)}</b>. The network was rerun with the caption, the image or both "
               f"replaced by {html.escape(what)}; each value is that modality's average effect of being added, and "
               f"the two add up to the change from neither to both.")
    details = f"<details style='font-size:90%'><summary>How this is measured</summary>{numbers}</details>"
    empty = uninformative(pred, trust)
    if empty:
        return head + _box(html.escape(empty), "warn") + details
    scale = max(abs(c["text"]), abs(c["image"]), BAR_HALF_AT_LEAST)
    rows = "".join(
        f"<tr><td style='width:14%'>{name}</td><td>{_diverging(v, scale, MODALITY_COLOURS[name])}</td>"
        f"<td style='width:24%;text-align:right'><b>{signed(v, 3)}</b> {_push(v).removeprefix('pushes ')}</td></tr>"
        for name, v in (("caption", c["text"]), ("image", c["image"])))
    axis = ("<tr style='font-size:80%;opacity:.8'><td></td><td><div style='display:flex;justify-content:space-between'>"
            f"<span>← against ({signed(-scale, 3)})</span><span>towards ({signed(scale, 3)}) →</span></div></td>"
            "<td></td></tr>")
    return (head + f"<div style='font-size:95%'>{contribution_words(c)}</div>"
            f"<table style='width:100%;font-size:95%'>{rows}{axis}</table>"
            f"<div style='font-size:90%'>With neither ({html.escape(what)}) the network gives it "
            f"<b>{math.exp(c['neither']):.0%}</b>, with both <b>{math.exp(c['both']):.0%}</b>.</div>" + details)


# ---- the network's own signals -----------------------------------------------------------------------------------


def _signal(key: str, signals: dict[str, Signal]) -> Signal:
    """The head's declaration of an explain key (an undeclared key shows under its own name, without a bar)."""
    from .models import Signal

    return signals.get(key) or Signal(key.replace("_", " ").capitalize(), "", low=None, high=None)


def _ranged_bar(value: float, sig: Signal) -> str:
    """The bar over the signal's true range with both ends printed (and named where the signal names them), or the
    range in words where it is unbounded."""
    if not sig.bounded:
        return f"<span style='font-size:85%;opacity:.85'>range {_range_text(sig)}: no bar</span>"
    lo, hi = (f"{_num(x, i == 0)}" + (f" {html.escape(sig.ends[i])}" if sig.ends else "")
              for i, x in enumerate((sig.low, sig.high)))
    end = "font-size:80%;opacity:.8;white-space:nowrap"
    return (f"<div style='display:flex;align-items:center;gap:6px'><span style='{end}'>{lo}</span>"
            f"{_bar(value, sig.low, sig.high)}<span style='{end}'>{hi}</span></div>")


def _signal_rows(key: str, value: Any, signals: dict[str, Signal], measured: dict | None = None) -> list[str]:
    """The block for one explain entry: its title and plain sentence first, then the value on a bar over its true
    range (one per named component), each with its measured validity line (`measured`: `Trust.signals`), then the
    technical reading in an expander. A signal that does not change with the input is collapsed under one line."""
    sig, measured = _signal(key, signals), measured or {}
    arr = np.asarray(value, dtype=np.float64)
    title = f"<b>{html.escape(sig.title)}</b>" + (f" — {html.escape(sig.plain)}" if sig.plain else "")
    details = (f"<details style='font-size:85%;opacity:.9'><summary>How it is computed</summary>"
               f"{html.escape(sig.meaning)}</details>" if sig.meaning else "")
    found = []
    if arr.ndim > 1:
        body = f"<div>array {tuple(arr.shape)}, mean {arr.mean():.3f}</div>"
    else:
        values, names = arr.reshape(-1), sig.components
        lines = []
        for i, v in enumerate(values[:16]):  # long vectors: the first 16 components
            part = str(names[i] if i < len(names) else i)
            name = "" if values.size == 1 else html.escape(part)
            shown = signed(v, 3) if sig.low is None or sig.low < 0 else f"{v:.3f}"  # a sign where one can occur
            lines.append(f"<tr><td style='width:12%'>{name}</td><td style='width:12%'><b>{shown}</b></td>"
                         f"<td>{_ranged_bar(float(v), sig)}</td></tr>")
            check = measured.get(key if values.size == 1 else f"{key}:{part}")
            if check:
                found.append(check)
                lines.append(f"<tr><td></td><td colspan='2' class='mm-validity' style='font-size:85%;opacity:.85'>"
                             f"{html.escape(validity_line(check))}</td></tr>")
        body = "<table style='width:100%;font-size:95%'>" + "".join(lines) + "</table>"
    if found and all(c["flat"] for c in found):  # carries no information about this input: one line, collapsed
        return [f"<details class='mm-signal mm-flat' style='margin:6px 0'><summary>{title} <i>(does not change "
                f"with the input: collapsed)</i></summary>{body}{details}</details>"]
    return [f"<div class='mm-signal' style='margin:6px 0'><div>{title}</div>{body}{details}</div>"]


def signals_html(pred: Prediction, signals: dict[str, Signal], missing_prior: str = "",
                 trust: Trust | None = None) -> str:
    """The measured modality contributions (`contribution_html`), then the network's own interpretable quantities
    (Prediction.explain), each rendered from its declaration."""
    measured = trust.signals if trust else None
    rows = [r for k, v in pred.explain.items() if k != "attention" for r in _signal_rows(k, v, signals, measured)]
    attention = pred.explain.get("attention") or {}
    parts = [contribution_html(pred, trust=trust),
             "<div style='margin-top:6px'><b>What the network itself reports</b></div>", *rows]
    if attention:
        declared = [_signal(n, signals) for n in attention]
        maps = "".join(f"<li><b>{html.escape(s.title)}</b>" + (f" — {html.escape(s.plain)}" if s.plain else "")
                       + "</li>" for s in declared)
        parts.append(f"<div style='font-size:90%'>Cross-modal attention maps (see the <i>Attention</i> tab):"
                     f"<ul style='margin:2px 0'>{maps}</ul></div>")
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
    """One short text for the compare table: the first non-attention explain entry, with its true range."""
    for key, value in pred.explain.items():
        if key == "attention" or isinstance(value, dict):
            continue
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
        sig = _signal(key, signals)
        if arr.size == 1:
            return f"{sig.title} {arr[0]:.3f} ({_range_text(sig)})"
        names = sig.components or [str(i) for i in range(arr.size)]
        return f"{sig.title}: " + ", ".join(f"{n} {v:.2f}" for n, v in zip(names, arr[:4]))
    return "attention maps" if pred.explain.get("attention") else "–"


def measured_share(pred: Prediction, trust: Trust | None = None) -> str:
    """The compare table's cell: each modality's share of the measured movement of the fused prediction, signed by
    the way it pushes ("+38% / −62%": the caption pushes towards the answer, the image, more strongly, against it);
    "no effect" where the fused answer carries no information."""
    if pred.contributions is None:
        return "–"
    if uninformative(pred, trust):
        return "no effect"
    c = pred.contributions.of(pred.top()[0])

    def signed_share(phi: float, share: float) -> str:
        return "0%" if round(share * 100) == 0 else f"{'+' if phi >= 0 else '−'}{share:.0%}"

    return f"{signed_share(c['text'], c['text_share'])} / {signed_share(c['image'], 1 - c['text_share'])}"


READING_GUIDE = """\
**The three answers.** *Fused* is the network's answer from the caption and the image together; *text only* and
*image only* are the same network's answers from the caption alone and from the image alone. The banner says whether
they agree. Where the fused answer does not change with the input, the page says so and draws no picture for it.

**Which way each modality pushes.** The network is rerun with the caption, the image or both replaced by stand-ins
(an empty caption, a plain grey image). Each modality's *Shapley value* is its average effect on the log-probability
of the class when it is added: positive pushes towards the class (bar right of the centre line), negative pushes
against it (bar left). The two add up to the change from neither to both, so a modality that agrees with what the
stand-ins already suggest moves little. The compare table gives each modality's share of that movement, signed:
"+38% / −62%" means the caption pushes towards the answer and the image, more strongly, against it.

**What the network itself reports.** Each quantity comes with one sentence on how to read it and a bar over its true
range, both ends printed (a cosine runs from −1 to 1; a quantity that cannot go below 0.5 starts its bar at 0.5).
A quantity with no limit on one side gets no bar. *How it is computed* opens the formula and the paper's equations.
These are what the network computes inside, not measurements of what it used: where one says "text" while the
caption moves nothing, trust the measured Shapley values. The line under each says what it was measured to carry
over the inputs that chose the network; one that does not change with the input is collapsed.
"""


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


# ---- the answer's header and the Model tab ----------------------------------------------------------------------


def answer_header(config: dict) -> str:
    """The line above an answer naming the network and the task that gave it."""
    return (f"<div class='mm-answers' style='font-size:90%;opacity:.85'>Answer of <b>"
            f"{html.escape(config.get('model', ''))}</b> on <b>{html.escape(config.get('task', ''))}"
            f"</b> for the image and caption above.</div>")


def model_info_md(model: str, task: str, config: dict, metrics: dict, source: str, note: str, shown_path: str,
                  card: str) -> str:
    """The Model tab: where the checkpoint came from (`source`: "bundled" or "hub:<repo>", `note`: why a fallback
    was taken, `shown_path`: the bundled directory as shown), backbones, training data, test metrics, model card."""
    where = (f"Hugging Face Hub (`{source.removeprefix('hub:')}`)" if source.startswith("hub:")
             else f"bundled checkpoint `{shown_path}`")
    t = TASKS.get(config.get("task", ""))
    lines = [
        f"### {model} on {task}",
        f"- **Loaded from:** {where}" + (f" — {note}" if note else ""),
        f"- **Backbones:** text `{config.get('text_encoder')}`"
        + (f" (last {config['finetune_text_layers']} layers fine-tuned"
           + (f" through LoRA, rank {config['lora_rank']})" if config.get("lora_rank") else ")")
           if config.get("finetune_text_layers") else " (frozen)")
        + f", image `{config.get('image_encoder')}` (frozen)",
        f"- **Training data:** {t.description if t else task}" +
        (f" (data version `{config['data_version']}`)" if config.get("data_version") else ""),
        f"- **Labels:** {', '.join(config.get('labels', []))}",
    ]
    wanted = missing_prior(config)
    if config.get("prior_encoder"):
        lines.append(f"- **Prior encoder:** `{config['prior_encoder']}` (its global vectors join the network's own)")
    elif wanted:
        lines.append(f"- **Prior encoder:** none. {prior_note(wanted)}")
    lines += ["", "#### Test metrics", metrics_table(metrics)]
    if card:
        lines += ["", "---", "#### Model card", demote_headings(strip_front_matter(card))]
    return "\n".join(lines)


def metrics_table(metrics: dict) -> str:
    """The checkpoint's test scores per head, a markdown table."""
    test = metrics.get("test", {})
    heads = [h for h in HEADS if isinstance(test.get(h), dict)]
    if not heads and metrics.get("data", {}).get("sizes", {}).get("test") == 0:
        return ("_No test part: this checkpoint was trained on every event but its validation events "
                "(`--protocol all-events`); its score on unseen events is in the model card below._")
    if not heads:
        return "_No test metrics recorded in metrics.json._"
    names = [k for k in ("accuracy", "weighted_f1", "macro_f1", *MULTI_LABEL_COLUMNS)
             if any(k in test[h] for h in heads)]
    names = names or [k for k in test[heads[0]] if isinstance(test[heads[0]][k], (int, float)) and k != "n"][:5]
    out = ["| head | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for h in heads:
        vals = [f"{test[h][k]:.4f}" if isinstance(test[h].get(k), (int, float)) else "–" for k in names]
        out.append(f"| {HEAD_NAMES[h].lower()} | " + " | ".join(vals) + " |")
    return "\n".join(out)
