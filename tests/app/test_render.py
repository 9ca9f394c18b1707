"""How the page renders numbers (mmdemo.render), on fixed numbers: which way each modality pushes a class, answers
that carry no information, bars over a quantity's true range; and, for every registered network and variant, that each
declared signal has a plain sentence and a range that holds the values its head emits."""

from __future__ import annotations

import math
import re
from html import unescape

import pytest
import torch

from mmdemo import render as R
from mmdemo.checkpoint import read_trust
from mmdemo.contrib import COALITIONS, Contribution
from mmdemo.models import MultimodalClassifier, get_model, list_models
from mmdemo.predict import Prediction

from tests.helpers import LABELS, synthetic_features


def prediction(v_positive: tuple[float, float, float, float], fused: float | None = None,
               explain: dict | None = None) -> Prediction:
    """A two-class prediction whose Shapley decomposition for "positive" comes from its log-probabilities v(S) in
    COALITIONS order (both, text, image, neither); "negative" gets log(1 - p) of each. The fused probability of
    "positive" is exp(v(both)) unless given."""
    v = torch.tensor(v_positive, dtype=torch.float64)
    fused = math.exp(v_positive[0]) if fused is None else fused
    values = {k: torch.stack([v[i], torch.log1p(-v[i].exp())]) for i, k in enumerate(COALITIONS)}
    probs = {"positive": fused, "negative": 1 - fused}
    ranked = dict(sorted(probs.items(), key=lambda kv: -kv[1]))
    return Prediction(["positive", "negative"], {"fused": ranked, "text": {"positive": 0.8, "negative": 0.2},
                                                 "image": {"negative": 0.7, "positive": 0.3}},
                      explain or {}, [], contributions=Contribution(["positive", "negative"], values))


# v(both) = -0.6, v(text) = -0.1, v(image) = -2.1, v(neither) = -1.6 (positive 55% with both, 20% with neither):
# phi_text = 1/2 (-0.1 + 1.6) + 1/2 (-0.6 + 2.1) = +1.5, phi_image = 1/2 (-2.1 + 1.6) + 1/2 (-0.6 + 0.1) = -0.5
ORDINARY = (-0.6, -0.1, -2.1, -1.6)
NOTHING = (math.log(0.5),) * 4  # every coalition 50/50: both Shapley values exactly 0


def _bar_of(html: str, name: str) -> tuple[float, float]:
    """(left, width) in % of the diverging bar on `name`'s row of the contribution table."""
    m = re.search(rf"<td style='width:14%'>{name}</td><td><div[^>]*><div style='position:absolute;"
                  rf"left:([\d.]+)%;width:([\d.]+)%", html)
    assert m, html
    return float(m[1]), float(m[2])


def test_a_negative_shapley_value_renders_as_pushing_against():
    pred = prediction(ORDINARY)
    assert pred.top() == ("positive", pytest.approx(math.exp(-0.6)))
    c = pred.contributions.of("positive")
    assert (c["text"], c["image"]) == pytest.approx((1.5, -0.5))
    html = R.contribution_html(pred)
    assert "The caption pushes towards “positive” (+1.500); the image pushes against “positive” (−0.500)." in html
    # the image's bar ends at the centre line, on its left, a third as long as the caption's, which fills the right
    left, width = _bar_of(html, "image")
    assert left + width == pytest.approx(50, abs=0.1) and width == pytest.approx(50 / 3, abs=0.1)
    assert _bar_of(html, "caption") == pytest.approx((50, 50))
    assert not re.search(r"image <b>\d+%", html)  # no unsigned "image 25%" share
    assert "With neither" in html and "<b>20%</b>, with both <b>55%</b>" in html  # exp(-1.6), exp(-0.6)
    assert "<details" in html and "interaction" in html.split("<details")[1]  # the method in the expander
    # the compare table's short cell: signed shares of |phi_text| + |phi_image| = 2.0
    assert R.measured_share(pred) == "+75% / −25%"
    assert "pushes against" in R.contribution_words(c)


def test_small_contributions_draw_short_bars():
    """v(both) = log 0.45, v(text) = log 0.46, v(image) = log 0.44, v(neither) = log 0.45: phi = +0.022 and -0.022
    nats, an effect (not the rule's "nothing") too small to see in whole percentages. Half a bar is at least one nat,
    so each bar is about 1% of the track (scaled to the larger value alone, the caption's filled its half), and the
    axis prints the scale."""
    pred = prediction(tuple(math.log(p) for p in (0.45, 0.46, 0.44, 0.45)))
    html = R.contribution_html(pred, "positive")
    assert R.uninformative(pred) is None
    assert _bar_of(html, "caption")[1] == pytest.approx(1.11, abs=0.02) and _bar_of(html, "image")[1] < 1.2
    assert "← against (−1.000)" in html and "towards (+1.000) →" in html
    assert "towards (+1.500) →" in R.contribution_html(prediction(ORDINARY))  # larger effects set the scale


@pytest.mark.parametrize("trust_informative", [None, True])
def test_an_ordinary_answer_is_not_called_uninformative(trust_informative):
    pred = prediction(ORDINARY)
    trust = read_trust({"trust": {"informative": trust_informative}})
    assert R.uninformative(pred) is None and R.uninformative(pred, trust) is None
    assert "The modalities disagree" in R.verdict_html(pred, trust)  # text positive, image negative
    assert "fused → <b>positive</b> (55%)" in R.verdict_html(pred, trust)


def test_a_50_50_answer_that_no_modality_moves_is_uninformative():
    pred = prediction(NOTHING, fused=0.5)
    sentence = R.uninformative(pred)
    assert sentence and "Neither the caption nor the image changes" in sentence
    html = R.contribution_html(pred)
    assert sentence in unescape(html) and "position:absolute" not in html and "towards →" not in html  # no bar
    banner = R.verdict_html(pred)
    assert "carries no information" in banner and "fused →" not in banner and "all say" not in banner
    assert "text only → <b>positive</b> (80%)" in banner  # the single-modality answers still show
    assert R.measured_share(pred) == "no effect"
    # just above the bound it is an answer again: the bound is |phi_text| + |phi_image| over every class
    nudged = prediction((math.log(0.5) + R.NO_EFFECT, math.log(0.5), math.log(0.5), math.log(0.5)), fused=0.5)
    assert R.uninformative(nudged) is None


def test_a_checkpoint_measured_constant_is_uninformative_whatever_the_input():
    trust = read_trust({"trust": {"informative": False, "spread": {"n": 450, "on": "the 450 dev posts"}}})
    pred = prediction(ORDINARY)  # the Shapley values alone would not fire
    sentence = R.uninformative(pred, trust)
    assert sentence and "does not change with the input" in sentence and "the 450 dev posts" in sentence
    assert "carries no information" in R.verdict_html(pred, trust)
    assert "position:absolute" not in R.contribution_html(pred, trust=trust)
    assert R.measured_share(pred, trust) == "no effect"
    assert sentence in unescape(R.signals_html(pred, {}, trust=trust))


def test_an_undecided_head_is_never_said_to_predict_a_class():
    pred = prediction(ORDINARY, fused=0.5)  # informative network, a 50/50 input
    banner = R.verdict_html(pred)
    assert "undecided between <b>positive</b> and <b>negative</b> (50% each)" in banner
    assert "fused → <b>" not in banner and "all say" not in banner


def test_signal_bars_span_the_true_range_with_both_ends_named():
    signals = get_model("mggf").head.signals
    pred = prediction(ORDINARY, explain={"discrepancy": 0.676, "kl": 0.74, "score": -1.3})
    html = R.signals_html(pred, signals)
    block = html.split("Modality discrepancy α")[1].split("mm-signal")[0]
    # plain sentence before the value, the formula only in the expander, the bar 35% along [0.5, 1] with its ends
    assert block.index(signals["discrepancy"].plain) < block.index("0.676") < block.index("<details")
    assert "eq. 7" not in block.split("<details")[0] and "eq. 7" in block.split("<details")[1]
    assert "width:35.2%" in block and "0.5 agree" in block and "1 conflict" in block
    assert "range 0 to ∞: no bar" in html  # the KL has no upper limit
    assert "−1.300" in html and "range −∞ to ∞: no bar" in html  # the intensity score is a linear output
    assert "How to read" not in html  # the reading guide is shown once on the page, not with every prediction
    assert R.main_signal(pred, signals) == "Modality discrepancy α 0.676 (0.5 to 1)"


def test_a_cosine_below_zero_is_drawn_left_of_zero():
    signals = get_model("infig").head.signals
    html = R.signals_html(prediction(ORDINARY, explain={"alignment": -0.042}), signals)
    assert "−0.042" in html and "−1 opposite" in html and "1 match" in html
    # [-1, 1]: zero at 50%, the bar from 47.9% to 50%
    assert re.search(r"left:47\.9%;width:2\.1%", html) and "left:50.0%;width:1px" in html


def _validity(p05: float, p95: float, *, mean: float, std: float, rho: float | None, shuffled: float,
              low: float | None = 0.0, high: float | None = 1.0, on: str = "the dev split (450 posts)") -> dict:
    from mmdemo.checkpoint import is_flat

    return {"n": 450, "on": on, "mean": mean, "std": std, "p05": p05, "p95": p95, "low": low, "high": high,
            "flat": is_flat(p05, p95, low, high), "spearman_text_share": rho, "shuffled_mean": shuffled}


def test_a_signal_that_does_not_change_with_the_input_says_so_and_is_collapsed():
    """A signal whose 5-95% range is under 5% of its declared range: one plain line, collapsed; one that moves gets
    its range, its correlation with the measured caption share and the mismatched pairs' mean, open."""
    signals = get_model("mggf").head.signals
    flat = _validity(0.672, 0.681, mean=0.676, std=0.003, rho=0.02, shuffled=0.676, low=0.5)  # 0.009 < 0.025
    moving = _validity(0.1, 1.2, mean=0.7, std=0.3, rho=0.45, shuffled=0.5, low=0.0, high=None)  # unbounded: |1.2|
    trust = read_trust({"trust": {"signals": {"discrepancy": flat, "kl": moving}}})
    html = R.signals_html(prediction(ORDINARY, explain={"discrepancy": 0.676, "kl": 0.74}), signals, trust=trust)
    collapsed = html.split("<details class='mm-signal mm-flat'")[1].split("</details>")[0]
    assert "Modality discrepancy α" in collapsed and "does not change with the input" in collapsed
    assert ("Over the dev split (450 posts) it stayed at 0.672" not in collapsed
            and "it ranged from 0.672 to 0.681 (5–95% of them): it does not change with the input." in collapsed)
    kl = html.split("<div class='mm-signal'")[1]
    assert ("it ranged from 0.1 to 1.2 (5–95% of them); it rises with the measured caption share (ρ +0.45); with each "
            "caption given another post's image its mean is 0.5, against 0.7 on the real pairs.") in unescape(kl)
    assert "<details class='mm-signal mm-flat'" not in kl.split("How it is computed")[0]


@pytest.mark.parametrize("rho,words", [(-0.5, "it rises as the image's measured share does (ρ with the caption share "
                                               "−0.50)"),
                                       (0.2, "only weakly tied to the measured caption share (ρ +0.20)"),
                                       (None, "unrelated to the measured caption share (ρ +0.00)")])
def test_a_signals_line_says_which_way_it_follows_the_measured_caption_share(rho, words):
    from mmdemo.checkpoint import validity_line

    line = validity_line(_validity(0.2, 0.8, mean=0.5, std=0.2, rho=rho, shuffled=0.49))
    assert words in line and "leaves its mean where it was (0.5)" in line  # a shift of 0.05 sd moves nothing


def test_every_component_of_a_weights_signal_gets_its_own_line():
    signals = get_model("hglnet").head.signals
    a = _validity(0.3, 0.7, mean=0.49, std=0.1, rho=0.74, shuffled=0.49)
    b = _validity(0.3, 0.7, mean=0.51, std=0.1, rho=-0.74, shuffled=0.51)
    trust = read_trust({"trust": {"signals": {"modality_weights:text": a, "modality_weights:image": b}}})
    html = unescape(R.signals_html(prediction(ORDINARY, explain={"modality_weights": [0.6, 0.4]}), signals,
                                   trust=trust))
    assert html.count("class='mm-validity'") == 2 and "(ρ +0.74)" in html and "(ρ with the caption share −0.74)" in html


# ---- every declared signal of every network ---------------------------------------------------------------------

ROWS = [(m, v) for m in list_models() for v in ("", *get_model(m).variants)]
JARGON = re.compile(r"\beq\.|equation|\[CLS\]|\[SEP\]|\bsigmoid\b|softmax|\bKL\b|[α-ωΑ-Ω]")


@pytest.mark.parametrize("model", list_models())
def test_every_declared_signal_has_one_plain_sentence(model):
    for key, sig in get_model(model).head.signals.items():
        assert sig.plain and sig.plain.endswith("."), (model, key)
        assert not re.search(r"\.\s+[A-Z]", sig.plain), (model, key, "one sentence")
        assert not JARGON.search(sig.plain), (model, key, JARGON.search(sig.plain)[0])
        assert sig.meaning, (model, key)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, tiny_encoders):
    return synthetic_features(tmp_path_factory.mktemp("render"), tiny_encoders, n_train=8, n_dev=8, n_test=8)


def _emitted(clf: MultimodalClassifier, feats) -> dict[str, torch.Tensor]:
    """{explain key or attention map name: its values} on 8 training inputs."""
    text, image, _ = feats["train"].batch(torch.arange(8), clf.needs)
    with torch.no_grad():
        out = clf.eval()(text, image)
    values = {k: v for k, v in out.explain.items() if k != "attention"}
    return {**values, **(out.explain.get("attention") or {})}


@pytest.mark.parametrize("model,variant", ROWS, ids=[f"{m}-{v}" if v else m for m, v in ROWS])
def test_every_declared_range_holds_the_values_the_head_emits(model, variant, synthetic, tiny_encoders):
    """At initialisation and with every weight redrawn large (sigmoids and cosines pushed to their ends, outputs
    far from their training targets), on a single-label ordinal task and a multi-label one."""
    _, feats, dims = synthetic
    te, ie = tiny_encoders
    for task, multi_label in (("mvsa-single", False), ("hashtags", True)):
        torch.manual_seed(0)
        clf = MultimodalClassifier(model, task, LABELS, te.name, ie.name, dims.to_dict(), variant=variant,
                                   multi_label=multi_label)
        signals = clf.head.signals
        for scale in (None, 1.0):
            if scale:
                with torch.no_grad():
                    for p in clf.head.parameters():
                        p.normal_(0, scale)
            for key, value in _emitted(clf, feats).items():
                sig = signals[key]
                assert torch.isfinite(value).all(), (model, variant, key)
                lo, hi = float(value.min()), float(value.max())
                where = (model, variant, task, scale, key, lo, hi, sig.low, sig.high)
                assert sig.low is None or lo >= sig.low - 1e-5, where
                assert sig.high is None or hi <= sig.high + 1e-5, where
