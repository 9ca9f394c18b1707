"""mmdemo.explain: Captum attributions through the full pipeline (tiny encoders, CPU), attention views, overlays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mmdemo import explain as X
from mmdemo.encoders import FeatureDims, create_image_encoder, create_text_encoder
from mmdemo.models import ModelOutput, MultimodalClassifier, Signal
from mmdemo.predict import Pipeline, Predictor

LABELS = ["positive", "neutral", "negative"]
CAPTION = "what a lovely sunny day at the beach"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a small shared CPU, oversubscribed threads make these runs several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8))


class PatchHead(nn.Module):
    """A head that reads the image's patch tokens, as the fusion networks do (the concat baseline reads only
    pooled vectors, which a ViT computes from [CLS] alone, so Grad-CAM on its patch tokens would be flat)."""

    text_layers = 1

    def __init__(self, dims: FeatureDims):
        super().__init__()
        torch.manual_seed(0)
        self.text = nn.Linear(dims.text_dim, 3)
        self.image = nn.Linear(dims.image_dim, 3)

    def forward(self, text, image) -> ModelOutput:
        t, v = self.text(text.pooled), self.image(torch.tanh(image.patches).mean(1))
        return ModelOutput(t + v, t, v)


def _concat_predictor(text: str, image: str) -> Predictor:
    te, ie = create_text_encoder(text), create_image_encoder(image)
    torch.manual_seed(0)
    clf = MultimodalClassifier(model="concat", task="mvsa-single", labels=LABELS, text_encoder=text,
                               image_encoder=image, dims=FeatureDims.of(te, ie).to_dict())
    return Predictor(clf, te, ie)


@pytest.fixture(scope="module")
def cnn():
    """(pipeline, inputs) for the concat baseline on tiny-bert + tiny-resnet."""
    p = _concat_predictor("tiny-bert", "tiny-resnet")
    return p.pipeline, p.prepare(_image(), CAPTION)[0]


def _patch_pipeline(text: str, image: str):
    te, ie = create_text_encoder(text), create_image_encoder(image)
    p = Predictor.__new__(Predictor)  # only prepare() is needed: encoders + max_length
    p.text_encoder, p.image_encoder, p.device, p.prior = te, ie, "cpu", None
    p.classifier = type("C", (), {"max_length": 32})()
    return Pipeline(te, ie, PatchHead(FeatureDims.of(te, ie))).eval(), p.prepare(_image(), CAPTION)[0]


@pytest.fixture(scope="module", params=[("tiny-bert", "tiny-vit"), ("tiny-clip-text", "tiny-clip-image")],
                ids=["vit", "clip"])
def tokens_encoder(request):
    """(pipeline, inputs) for a ViT-style image encoder whose feature layer outputs tokens [B, T, C]."""
    return _patch_pipeline(*request.param)


def _check_map(heat: np.ndarray, inputs: dict) -> None:
    assert heat.shape == tuple(inputs["pixel_values"].shape[-2:])
    assert np.isfinite(heat).all()
    assert np.abs(heat).max() > 0


@pytest.mark.parametrize("method", ["grad-cam", "integrated-gradients", "occlusion"])
def test_image_methods_give_finite_nonzero_maps_of_the_input_size(cnn, method):
    pipeline, inputs = cnn
    kwargs = {"n_steps": 4} if method == "integrated-gradients" else {}
    heat = X.IMAGE_METHODS[method](pipeline, inputs, **kwargs)
    _check_map(heat, inputs)


def test_grad_cam_on_token_feature_layers(tokens_encoder):
    pipeline, inputs = tokens_encoder
    heat = X.grad_cam(pipeline, inputs)
    _check_map(heat, inputs)


def test_image_methods_work_on_token_encoders(tokens_encoder):
    pipeline, inputs = tokens_encoder
    _check_map(X.integrated_gradients(pipeline, inputs, n_steps=4), inputs)
    _check_map(X.occlusion(pipeline, inputs), inputs)


def test_token_attributions_one_score_per_real_token(cnn):
    pipeline, inputs = cnn
    att = X.token_attributions(pipeline, inputs, n_steps=4)
    n_real = int(inputs["attention_mask"].sum())
    assert len(att.tokens) == n_real == att.scores.shape[0]
    assert att.tokens[0] == "[CLS]" and att.tokens[-1] == "[SEP]"
    assert np.isfinite(att.scores).all() and np.abs(att.scores[1:-1]).max() > 0
    # [CLS] / [SEP] are kept in the baseline, so only the words get attributions
    assert att.scores[0] == 0 and att.scores[-1] == 0
    assert np.abs(att.normalised()).max() == pytest.approx(1.0)


def test_token_attributions_clip_text(tokens_encoder):
    pipeline, inputs = tokens_encoder
    att = X.token_attributions(pipeline, inputs, n_steps=4)
    assert len(att.tokens) == int(inputs["attention_mask"].sum())
    assert np.isfinite(att.scores).all() and np.abs(att.scores).max() > 0


def test_heads_route_to_their_own_logits(cnn):
    pipeline, inputs = cnn
    # the image-only head never reads the caption, the text-only head never reads the pixels
    assert not np.any(X.token_attributions(pipeline, inputs, head="image", n_steps=2).scores)
    assert not np.any(X.integrated_gradients(pipeline, inputs, head="text", n_steps=2))
    assert not np.any(X.grad_cam(pipeline, inputs, head="text"))
    with pytest.raises(ValueError):
        X.grad_cam(pipeline, inputs, head="audio")


def test_default_target_is_the_fused_prediction(cnn):
    pipeline, inputs = cnn
    fused = X.predicted_class(pipeline, inputs)
    assert np.allclose(X.grad_cam(pipeline, inputs), X.grad_cam(pipeline, inputs, target=fused))
    other = (fused + 1) % len(LABELS)
    assert not np.allclose(X.occlusion(pipeline, inputs), X.occlusion(pipeline, inputs, target=other))


def test_token_baseline_keeps_first_and_last_real_token():
    ids = torch.tensor([[101, 7, 8, 102, 0], [101, 5, 102, 0, 0]])
    mask = (ids != 0).long()
    assert X.token_baseline(ids, mask, 0).tolist() == [[101, 0, 0, 102, 0], [101, 0, 102, 0, 0]]


def test_merge_subwords():
    words = X.merge_subwords(["[CLS]", "sun", "##ny", "day", "[SEP]"], np.array([0.0, 0.25, 0.5, -1.0, 0.0]))
    assert words == [("[CLS]", 0.0), ("sunny", 0.75), ("day", -1.0), ("[SEP]", 0.0)]
    sp = X.merge_subwords(["[CLS]", "▁sun", "ny", "▁day"], np.array([0.0, 0.5, 0.5, 1.0]))
    assert sp == [("[CLS]", 0.0), ("sunny", 1.0), ("day", 1.0)]


def _fake_explain(heads=2, L=5, grid=(2, 3), both=True):
    rng = np.random.default_rng(0)
    N = grid[0] * grid[1]
    t2i = rng.random((heads, L, N))
    att = {"text->image": t2i / t2i.sum(-1, keepdims=True)}
    if both:
        i2t = rng.random((heads, N, L))
        att["image->text"] = i2t / i2t.sum(-1, keepdims=True)
    return {"modality_weights": np.array([0.3, 0.7]), "attention": att}


AXES = {"text->image": Signal("t2i", "", kind="attention", axes=("text", "image")),
        "image->text": Signal("i2t", "", kind="attention", axes=("image", "text"))}


def test_attention_word_to_image_and_region_to_words():
    explain = _fake_explain()
    t2i, i2t = X.attention_matrices(explain, AXES, n_tokens=5)
    assert t2i.shape == (5, 6) and i2t.shape == (6, 5)
    np.testing.assert_allclose(t2i, explain["attention"]["text->image"].mean(0))
    heat = X.word_to_image(t2i, 2, (2, 3))
    assert heat.shape == (2, 3) and np.isclose(heat.sum(), 1.0)
    assert X.word_to_image(t2i, None, (2, 3)).shape == (2, 3)
    weights = X.image_to_words(i2t, 4)
    assert weights.shape == (5,) and np.isclose(weights.sum(), 1.0)


def test_attention_one_direction_is_transposed_and_padding_cut():
    explain = _fake_explain(L=7, both=False)
    t2i, i2t = X.attention_matrices(explain, AXES, n_tokens=4)  # 3 padding tokens dropped
    assert t2i.shape == (4, 6) and i2t.shape == (6, 4)
    np.testing.assert_allclose(i2t, t2i.T)
    reverse_only = {"attention": {"v->t": np.ones((1, 6, 4))}}
    t2i, i2t = X.attention_matrices(reverse_only, {"v->t": AXES["image->text"]}, n_tokens=4)
    assert t2i.shape == (4, 6)


def test_no_attention():
    assert X.attention_matrices({"discrepancy": np.array(0.7)}, {}, 5) == (None, None)


def test_grid_shape():
    assert X.grid_shape(49, (7, 7)) == (7, 7)
    assert X.grid_shape(12, (7, 7)) == (3, 4)


def test_overlay_and_encoder_view(cnn):
    pipeline, inputs = cnn
    view = X.encoder_view(pipeline.image_encoder, _image())
    assert view.size == tuple(inputs["pixel_values"].shape[-2:])[::-1]
    out = X.overlay(view, np.random.default_rng(0).random((2, 2)))
    assert out.mode == "RGB" and min(out.size) >= 320
    flat = X.overlay(view, np.zeros((7, 7)))  # a flat map does not divide by zero
    assert np.isfinite(np.asarray(flat)).all()
    boxed = X.outline_region(out, 3, (2, 2))
    assert boxed.size == out.size and boxed.tobytes() != out.tobytes()


def test_method_names():
    assert X.method_id("grad-cam") == "grad-cam"
    assert X.method_id(X.METHODS["occlusion"]) == "occlusion"
    with pytest.raises(ValueError):
        X.method_id("lime")


def test_integrated_gradients_report_captums_convergence_delta(cnn):
    """Completeness (Sundararajan et al.): the attributions add up to the explained logit's change from the baseline
    to the input, up to the reported delta. `change` is that change, measured here by running the pipeline on the
    input and on each baseline; more steps leave a smaller delta."""
    pipeline, inputs = cnn
    target = 1
    pad = pipeline.text_encoder.pad_token_id
    with torch.no_grad():
        def logit(**replaced) -> float:
            return float(pipeline(**{**inputs, **replaced}).logits[0, target])
        pixel_change = logit() - logit(pixel_values=torch.zeros_like(inputs["pixel_values"]))
        word_change = logit() - logit(input_ids=X.token_baseline(inputs["input_ids"], inputs["attention_mask"], pad))
    coarse, fine = (X.integrated_gradients(pipeline, inputs, target=target, n_steps=n, return_convergence=True)[1]
                    for n in (2, 64))
    assert fine.change == pytest.approx(pixel_change, abs=1e-4) and coarse.change == pytest.approx(pixel_change, abs=1e-4)
    assert fine.relative < coarse.relative and fine.relative < 0.05, (coarse, fine)
    words = X.token_attributions(pipeline, inputs, target=target, n_steps=64)
    assert words.convergence.change == pytest.approx(word_change, abs=1e-4)
    assert words.convergence.relative < 0.05 and abs(words.scores.sum() - word_change) <= abs(words.convergence.delta) + 1e-4
    # a head that does not read the input has nothing to converge
    assert X.token_attributions(pipeline, inputs, head="image", n_steps=2).convergence is None
    assert X.integrated_gradients(pipeline, inputs, head="text", n_steps=2, return_convergence=True)[1] is None
    assert X.image_attribution("grad-cam", pipeline, inputs)[1] is None
