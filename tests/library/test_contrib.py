"""Modality contributions (mmdemo.contrib): exact two-player Shapley values from four coalitions, the references
that stand in for a missing modality, and the dataset-level probe (trainer.probe)."""

import math

import pytest
import torch
from PIL import Image

from mmdemo.contrib import COALITIONS, Contribution, contribution, mean_reference, with_reference
from mmdemo.encoders import ImageFeatures, TextFeatures
from mmdemo.models import MultimodalClassifier
from mmdemo.predict import Predictor
from trainer.loop import RunSpec, train
from trainer.probe import modality_report, reference_of

from tests.helpers import LABELS, synthetic_features


def test_shapley_values_on_fixed_numbers():
    # v(both) = -0.1, v(text) = -0.5, v(image) = -1.0, v(neither) = -2.0 (log-probabilities of one class)
    c = Contribution(["a"], {k: torch.tensor([v]) for k, v in zip(COALITIONS, (-0.1, -0.5, -1.0, -2.0))})
    # phi_t = 1/2 (-0.5 + 2.0) + 1/2 (-0.1 + 1.0) = 1.2; phi_i = 1/2 (-1.0 + 2.0) + 1/2 (-0.1 + 0.5) = 0.7
    assert c.text.item() == pytest.approx(1.2) and c.image.item() == pytest.approx(0.7)
    assert c.interaction.item() == pytest.approx(-0.1 + 0.5 + 1.0 - 2.0)
    assert c.text.item() + c.image.item() == pytest.approx(-0.1 + 2.0)  # efficiency
    assert c.text_share("a") == pytest.approx(1.2 / 1.9)
    nothing = Contribution(["a"], {k: torch.tensor([-1.0]) for k in COALITIONS})
    assert nothing.text_share(0) == 0.5 and nothing.interaction.item() == 0


def test_contribution_reads_the_coalition_batch_coalition_major():
    # B = 2 inputs, 2 classes: row c * B + b is coalition c of input b; v = log-softmax
    logits = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0],
                           [0.0, 3.0], [0.0, 0.0], [math.log(3), 0.0], [0.0, 0.0]])
    c = contribution(logits, ["x", "y"], multi_label=False, reference="mean")
    assert c.values["both"][0, 0].item() == pytest.approx(math.log(0.5))
    assert c.values["text"][1, 0].item() == pytest.approx(math.log(math.e ** 2 / (math.e ** 2 + 1)))
    assert c.values["neither"][0, 0].item() == pytest.approx(math.log(0.75))
    assert c[1].values["image"].shape == (2,)
    ml = contribution(torch.zeros(4, 3), ["a", "b", "c"], multi_label=True, reference="mean")
    assert ml.values["both"][0, 0].item() == pytest.approx(math.log(0.5))  # log-sigmoid on multi-label tasks


def _text(layers, mask):
    layers, mask = torch.tensor(layers, dtype=torch.float), torch.tensor(mask)
    return TextFeatures(layers, mask, layers[:, -1].sum(1))


def test_mean_reference_on_fixed_numbers():
    # two captions of 2 and 1 real tokens, one layer of width 1; two images of 2 patches
    text = _text([[[[1.0], [3.0]]], [[[5.0], [100.0]]]], [[1, 1], [1, 0]])
    image = ImageFeatures(torch.tensor([[[0.0], [2.0]], [[4.0], [6.0]]]), torch.tensor([[1.0], [3.0]]))
    ref = mean_reference([(text, image, torch.tensor([0, 1]))])
    assert ref.text.layers.shape == (1, 1, 1, 1) and ref.text.layers.item() == pytest.approx(3.0)  # (1 + 3 + 5) / 3
    assert ref.text.attention_mask.tolist() == [[1]]
    assert ref.text.pooled.item() == pytest.approx((4.0 + 105.0) / 2)  # the samples' own pooled vectors
    assert ref.image.patches[0, :, 0].tolist() == [2.0, 4.0] and ref.image.pooled.item() == 2.0


def test_with_reference_builds_the_four_coalitions():
    text = _text([[[[1.0], [2.0], [3.0]]]], [[1, 1, 1]])
    ref_text = _text([[[[9.0]]]], [[1]])
    image = ImageFeatures(torch.ones(1, 2, 1), torch.ones(1, 1))
    ref_image = ImageFeatures(torch.zeros(1, 2, 1), torch.zeros(1, 1))
    from mmdemo.contrib import Reference

    t, i = with_reference(text, image, Reference(ref_text, ref_image))
    # both, text, image, neither: text rows input, input, ref, ref; image rows input, ref, input, ref
    assert t.layers[:, 0, :, 0].tolist() == [[1, 2, 3], [1, 2, 3], [9, 0, 0], [9, 0, 0]]
    assert t.attention_mask.tolist() == [[1, 1, 1], [1, 1, 1], [1, 0, 0], [1, 0, 0]]
    assert i.pooled[:, 0].tolist() == [1, 0, 1, 0]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, tiny_encoders):
    return synthetic_features(tmp_path_factory.mktemp("contrib"), tiny_encoders, n_dev=16)


def _trained(model: str, synthetic, epochs: int = 3) -> MultimodalClassifier:
    data, feats, dims = synthetic
    spec = RunSpec(task="mvsa-single", model=model, labels=LABELS, multi_label=False, text_encoder="tiny-bert",
                   image_encoder="tiny-resnet", dims=dims, seed=0, max_length=16, data_version=data.version,
                   overrides={"epochs": epochs, "batch_size": 16, "lr": 3e-3})
    clf, _ = train(spec, feats, progress=False)
    return clf


def test_the_prediction_is_the_input_row_of_the_coalition_batch(synthetic, tiny_encoders):
    te, ie = tiny_encoders
    p = Predictor(_trained("hglnet", synthetic, epochs=1), text_encoder=te, image_encoder=ie)
    image, caption = Image.new("RGB", (64, 64), (220, 140, 40)), "the sun at the beach"
    pred = p.predict(image, caption)
    inputs, _ = p.prepare(image, caption)
    with torch.no_grad():
        alone = p.pipeline(**inputs)
    assert [pred.probs["fused"][label] for label in LABELS] == pytest.approx(alone.logits.softmax(-1)[0].tolist(), abs=1e-6)
    assert pred.explain["modality_weights"] == pytest.approx(alone.explain["modality_weights"][0].numpy(), abs=1e-6)
    c = pred.contributions
    assert c.reference == "blank" and torch.allclose(c.text + c.image, c.values["both"] - c.values["neither"], atol=1e-6)
    # the "both" coalition is the prediction itself
    assert c.values["both"] == pytest.approx(alone.logits.log_softmax(-1)[0], abs=1e-5)


@pytest.mark.parametrize("model,absent", [("text-only", "image"), ("image-only", "text")])
def test_a_modality_the_head_ignores_gets_exactly_nothing(model, absent, synthetic, tiny_encoders):
    data, feats, _ = synthetic
    te, ie = tiny_encoders
    clf = _trained(model, synthetic, epochs=2)
    pred = Predictor(clf, text_encoder=te, image_encoder=ie).predict(Image.new("RGB", (64, 64), (40, 90, 200)), "wet")
    assert torch.all(getattr(pred.contributions, absent) == 0) and torch.all(pred.contributions.interaction == 0)
    for kind in ("mean", "blank"):
        report = modality_report(clf, feats["dev"], reference_of(clf, kind, feats["train"]), shuffles=3)
        assert report["perceptual"][absent] == {"mean": 0.0, "std": 0.0}  # shuffling it changes no prediction
        assert report["shapley"][absent]["mean"] == 0 and report["shapley"][absent]["std"] == 0
        share = report["shapley"]["text_share"]  # 1 (0 for image-only), or 0.5 where the input moves nothing
        assert share["p05"] >= 0.5 if absent == "image" else share["p95"] <= 0.5


def test_the_probe_relates_a_networks_own_signals_to_the_measured_share(synthetic):
    """The signal section of the probe against an independent computation: the head called directly on the whole
    split, numpy's percentiles and scipy's Spearman correlation with the measured text shares; the image-shuffled pass
    takes the probe's own derangement (seed + 1). Catches a signal paired with the wrong inputs (the shuffled pass,
    the image component), a wrong percentile or std, or a correlation taken against anything but the measured share."""
    import numpy as np
    from scipy.stats import spearmanr

    from trainer.probe import derangements, text_shares

    _, feats, _ = synthetic
    dev = feats["dev"]
    clf = _trained("hglnet", synthetic, epochs=2).eval()
    ref = reference_of(clf, "blank")
    report = modality_report(clf, dev, ref, shuffles=2, seed=0)
    n = len(dev)
    with torch.no_grad():
        text, image, _ = dev.batch(torch.arange(n), clf.needs)
        w = clf(text, image).explain["modality_weights"][:, 0].numpy()
        _, shuffled_image, _ = dev.batch(derangements(n, 1, 1)[0], clf.needs)
        w_shuffled = clf(text, shuffled_image).explain["modality_weights"][:, 0].numpy()
    share = text_shares(clf, dev, ref).numpy()
    got = report["signals"]["modality_weights:text"]
    assert got["mean"] == pytest.approx(w.mean(), abs=1e-6) and got["std"] == pytest.approx(w.std(ddof=1), abs=1e-6)
    assert [got["p05"], got["p95"]] == pytest.approx(np.percentile(w, [5, 95]), abs=1e-6)
    assert got["spearman_text_share"] == pytest.approx(spearmanr(w, share).statistic, abs=1e-5)
    assert got["shuffled_mean"] == pytest.approx(w_shuffled.mean(), abs=1e-6)
    assert got["shuffled_higher_fraction"] == pytest.approx((w_shuffled > w).mean(), abs=1e-6)
    assert report["signals"]["modality_weights:image"]["mean"] == pytest.approx(1 - got["mean"], abs=1e-5)


def test_a_constant_signal_is_reported_constant():
    """signal_validity on fixed numbers: a signal that is the same for every input is flat with no correlation; one
    that is the measured caption share itself correlates 1; its shuffled mean is what the shuffled pass gave."""
    from mmdemo.models import get_model
    from trainer.probe import signal_validity

    share = torch.linspace(0, 1, 20)
    got = signal_validity(get_model("mggf").head.signals, {"discrepancy": torch.full((20,), 0.6725), "kl": share * 3},
                          share, {"discrepancy": torch.full((20,), 0.6725), "kl": share.flip(0) + 1})
    assert got["discrepancy"]["flat"] and got["discrepancy"]["spearman_text_share"] is None
    assert (got["discrepancy"]["low"], got["discrepancy"]["high"]) == (0.5, 1.0)  # its declared range
    assert not got["kl"]["flat"] and got["kl"]["spearman_text_share"] == pytest.approx(1.0)
    assert got["kl"]["shuffled_mean"] == pytest.approx(1.5) and got["kl"]["high"] is None
