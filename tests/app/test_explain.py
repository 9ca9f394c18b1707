"""mmdemo.explain: Captum attributions through the full pipeline (tiny encoders, CPU), attention views, overlays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mmdemo import explain as X
from mmdemo.encoders import FeatureDims, ImageEncoder, ImageFeatures, create_image_encoder, create_text_encoder
from mmdemo.models import ModelOutput, MultimodalClassifier, Signal
from mmdemo.pipeline import Pipeline
from mmdemo.predict import Predictor

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


def test_encoder_view_is_the_seen_box_of_the_upload(cnn):
    """seen_box follows the encoder's resize and centre crop back to the upload: tiny-resnet resizes the shorter side
    to 73 (64 * 256 / 224) and crops the centre 64 x 64, so an 80 x 60 picture becomes 97 x 73 and loses 16 columns
    on the left and 4 rows on the top (torchvision's rounding)."""
    pipeline, inputs = cnn
    enc, image = pipeline.image_encoder, _image()
    view = X.encoder_view(enc, image)
    assert view.size == tuple(inputs["pixel_values"].shape[-2:])[::-1]
    box = X.seen_box(enc, image)
    assert box == pytest.approx((16 * 80 / 97, 4 * 60 / 73, 80 * 80 / 97, 68 * 60 / 73))
    cut = image.crop(tuple(round(v) for v in box)).resize(view.size, Image.BICUBIC)
    assert np.abs(np.asarray(cut, float) - np.asarray(view, float)).mean() < 25  # random pixels: interpolation only
    assert "outlined centre square" in X.seen_note(enc, image) and "not read" in X.seen_note(enc, image)


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


def test_integrated_gradients_add_steps_while_the_attributions_do_not_add_up(cnn):
    """On the toy pipeline, 2 steps miss the logit's change by ~99% (target 1): with max_steps the attribution is
    recomputed with 8 and then 32 steps, which add up to within 5%, and the note says they can be trusted. Without
    room for more steps (max_steps = n_steps, or no time left) the note says to read them as rough."""
    pipeline, inputs = cnn
    _, coarse = X.integrated_gradients(pipeline, inputs, target=1, n_steps=2, return_convergence=True)
    assert coarse.relative > 0.5 and coarse.tried == (2,) and not coarse.reliable
    assert "do not add up" in coarse.describe("These") and "read them as rough" in coarse.describe("These")
    _, fine = X.integrated_gradients(pipeline, inputs, target=1, n_steps=2, max_steps=64, return_convergence=True)
    assert fine.tried == (2, 8, 32) and fine.steps == 32 and fine.reliable
    assert "add up to the change in score" in fine.describe("These") and "rough" not in fine.describe("These")
    _, hurried = X.integrated_gradients(pipeline, inputs, target=1, n_steps=2, max_steps=64, budget_s=0.0,
                                        return_convergence=True)
    assert hurried.tried == (2,) and "read them as rough" in hurried.describe("These")
    # the toy's caption barely moves its logits (by < 0.001): nothing to attribute, no steps added, and it says so
    words = X.token_attributions(pipeline, inputs, target=1, n_steps=2, max_steps=64)
    assert words.convergence.small_change and words.convergence.tried == (2,)
    assert "hardly changes" in words.convergence.describe("The word colours")


def test_escalate_keeps_the_try_that_adds_up_best():
    """Fixed numbers: a miss of 1/steps of the change stops at the first try within 5% (2 -> 8 -> 32); a miss that
    grows with the steps runs up to max_steps (4x each time, the last try capped) and keeps the first try."""
    tries = []

    def shrinking(steps):
        tries.append(steps)
        return steps, X.Convergence(1 / steps, 1.0, steps, (steps,))

    result, conv = X.escalate(shrinking, 2, 1000)
    assert tries == [2, 8, 32] and result == 32 and conv.tried == (2, 8, 32) and conv.reliable

    def growing(steps):
        return steps, X.Convergence(steps / 10, 1.0, steps, (steps,))

    result, conv = X.escalate(growing, 2, 50)
    assert result == 2 and conv.steps == 2 and conv.tried == (2, 8, 32, 50) and not conv.reliable
    assert conv.describe("These") == ("These do not add up to the change in score from the baseline to this input: "
                                      "read them as rough (they miss the change, +1.00, by 20%; 2 steps; tried 2, 8, "
                                      "32, 50).")
    assert X.escalate(lambda steps: (0, None), 2, 50) == (0, None)  # a head that does not read the input


def _plain(colour=(200, 120, 40)) -> Image.Image:
    return Image.new("RGB", (80, 60), colour)


def _picture_colours(picture: Image.Image, legend_top: int) -> set[tuple[int, ...]]:
    return set(map(tuple, np.asarray(picture)[:legend_top].reshape(-1, 3).tolist()))


def test_an_even_attention_map_is_reported_even_and_drawn_flat(cnn):
    """Every weight within 5e-5 of 1/49: focus 0, 'attends almost evenly', and the picture is the photo untinted
    inside the encoder's square (a plain orange photo keeps exactly its colour there; outside it is dimmed; the
    square's outline is white), exactly as an exactly even map is drawn."""
    enc = cnn[0].image_encoder
    even = np.full((7, 7), 1 / 49)
    near = even + 4e-5 * np.where(np.arange(49).reshape(7, 7) % 2, 1, -1)  # sums to 1 + 4e-5: still within 5e-5
    for w in (even, near):
        f = X.focus(w)
        assert f.even and f.score == pytest.approx(0, abs=1e-6) and f.top_ratio == pytest.approx(1, abs=0.01)
        assert "attends almost evenly: no region singled out" in f.describe("All words", "row 1, col 1")
    assert X.focus(even).score == 0.0
    flat = X.attention_picture(X.seen(enc, _plain()), even)
    assert flat.tobytes() == X.attention_picture(X.seen(enc, _plain()), near).tobytes()
    top = 320  # an 80 x 60 upload is shown 427 x 320, the legend below it
    dim = tuple(int(c * X.DIM) for c in (200, 120, 40))
    assert _picture_colours(flat, top) <= {(200, 120, 40), dim, (255, 255, 255)}
    assert (np.asarray(flat)[:top] == (200, 120, 40)).all(-1).mean() > 0.5  # the encoder's square, untinted


def test_a_one_hot_attention_map_is_maximally_focused(cnn):
    enc = cnn[0].image_encoder
    one = np.zeros((7, 7))
    one[3, 4] = 1.0
    f = X.focus(one)
    assert f.score == 1.0 and f.top == 3 * 7 + 4 and f.top_ratio == pytest.approx(49)
    assert f.describe("'beach'", "row 4, col 5") == (
        "'beach': focus 1.00 (0 = spread evenly over all 49 regions, 1 = all on one); the most attended, row 4, "
        "col 5, gets 100.0% against an even share of 2.0% (49.0x).")
    two = np.full(49, (1 - 2 / 49) / 48)  # twice an even share on one region, the rest spread evenly
    two[0] = 2 / 49
    assert X.focus(two).top_ratio == pytest.approx(2.0) and not X.focus(two).even
    drawn = X.attention_picture(X.seen(enc, _plain()), one)
    assert len(_picture_colours(drawn, 320)) > 3  # tinted where the region is
    assert X.focus(np.array([0.5, -0.5])) is None  # a similarity map is not a distribution


def _band_has(picture: Image.Image, top: int, colour: np.ndarray) -> bool:
    band = np.asarray(picture, dtype=float)[top:]
    return bool((np.abs(band - colour).max(-1) <= 2).any())


def test_every_picture_carries_its_colour_scale(cnn):
    """The legend is drawn into the image: the picture grows by a band whose bar holds the colour map's ends as the
    map draws them (full strength over mid-grey), with the scale's words."""
    from matplotlib import colormaps

    enc = cnn[0].image_encoder
    top = 320

    def end(cmap: str, at: float) -> np.ndarray:
        return 128 * (1 - X.ALPHA) + colormaps[cmap](at)[:3] * np.array(255.0) * X.ALPHA

    att = X.attention_picture(X.seen(enc, _plain()), np.full((7, 7), 1 / 49))
    assert att.height > top + 40 and _band_has(att, top, end(X.SEQUENTIAL, 1.0))
    heat = np.linspace(-1, 1, 64 * 64).reshape(64, 64)
    for method in ("grad-cam", "occlusion", "integrated-gradients"):
        pic = X.attribution_picture(X.seen(enc, _plain()), heat, "positive", method)
        assert pic.height > top + 40 and _band_has(pic, top, end(X.DIVERGING, 1.0))
        assert _band_has(pic, top, end(X.DIVERGING, 0.0))  # against
    band = X.legend_band(400, X.Legend("t", X.SEQUENTIAL, False, ("a", "b")))
    assert band.width == 400


def test_integrated_gradients_are_scaled_at_a_percentile():
    """One extreme pixel does not wash the map out: full colour sits at the 99th percentile of |attribution|, so
    the 1% strongest pixels are all drawn at full strength (a max-scaled map would draw the rest near white)."""
    from matplotlib import colormaps

    enc = create_image_encoder("tiny-resnet")
    heat = np.full((64, 64), 0.01)
    heat[0, 0] = 100.0
    pic = np.asarray(X.attribution_picture(X.seen(enc, _plain((255, 255, 255))), heat, "positive", "integrated-gradients"))

    full = 255 * (1 - X.ALPHA) + colormaps[X.DIVERGING](1.0)[:3] * np.array(255.0) * X.ALPHA
    assert (np.abs(pic[:320].astype(float) - full).max(-1) <= 2).mean() > 0.3  # the whole square at full colour
    pic = np.asarray(X.attribution_picture(X.seen(enc, _plain((255, 255, 255))), heat, "positive", "grad-cam"))
    assert (np.abs(pic[:320].astype(float) - full).max(-1) <= 2).mean() < 0.01


def test_word_pieces_are_whole_words_and_attention_over_them_is_absolute():
    tokens = ["[CLS]", "sun", "##ny", "day", "[SEP]"]
    assert X.word_spans(tokens) == [("sunny", [1, 2]), ("day", [3])]
    assert X.word_spans(["[CLS]", "#", "summer", "##vibes", "@", "bob", "!", "[SEP]"]) == [
        ("#summervibes", [1, 2, 3]), ("@bob", [4, 5]), ("!", [6])]
    # half on each piece of 'sunny': it gets all of it, 2.5x an even share for its 2 of 5 tokens
    words, f, markers = X.word_attention(np.array([0, 0.5, 0.5, 0, 0]), tokens)
    assert words == [("sunny", pytest.approx(np.log(2.5) / np.log(5))), ("day", -1.0)] and markers == 0
    assert f.score == pytest.approx(1 - np.log(2) / np.log(5))
    words, f, markers = X.word_attention(np.full(5, 0.2), tokens)
    assert words == [("sunny", 0.0), ("day", 0.0)] and f.even and markers == pytest.approx(0.4)


def test_attention_view_picks_whole_words_and_leaves_the_markers_out():
    """'All words' is the mean of the words' rows ([CLS] and [SEP] left out), a word is the mean of its pieces' rows;
    a region's row over the tokens colours the words."""
    tokens = ["[CLS]", "sun", "##ny", "day", "[SEP]"]
    n = 6
    t2i = np.full((5, n), 1 / n)
    t2i[0] = np.eye(n)[0]  # [CLS] looks only at region 0: not a word
    t2i[4] = np.eye(n)[5]
    i2t = np.full((n, 5), 0.2)
    view = X.attention_view(t2i, i2t, tokens, (2, 3))
    assert view.weights.shape == (2, 3) and np.allclose(view.weights, 1 / n)
    assert "attends almost evenly" in view.notes[0] and "All words" in view.notes[0]
    assert [w for w, _ in view.words] == ["sunny", "day"] and "attends almost evenly" in view.word_notes[0]
    assert "40% of it goes to the tokenizer's start and end markers" in " ".join(view.word_notes)
    t2i[1] = np.eye(n)[2]
    t2i[2] = np.eye(n)[4]
    view = X.attention_view(t2i, i2t, tokens, (2, 3), word=0, region=1)
    assert np.allclose(view.weights.reshape(-1), [0, 0, 0.5, 0, 0.5, 0]) and "'sunny'" in view.notes[0]
    # a network with text -> image only: the words say how much each attends to the picked region
    view = X.attention_view(t2i, t2i.T, tokens, (2, 3), region=4, i2t_native=False)
    assert view.words == [("sunny", pytest.approx(np.log(0.5 * n) / np.log(n))), ("day", 0.0)]


# ---- the deletion check: does a map point at what the network uses? ---------------------------------------------

E4 = float(np.exp(4) / (np.exp(4) + 2))  # softmax([4, 0, 0])[0]: the answer with the decisive word or region


class OneWordHead(nn.Module):
    """Class 0 ('positive') scores 4 when the caption holds one given word, else 0: its logit reads only the static
    word vectors (TextFeatures.word_embeddings, no context), through their projection on that word's vector (1 for
    the word itself, 0 for the zero pad vector, the other words of the caption below 0.5). The image is ignored."""

    text_layers = 1

    def __init__(self, key: torch.Tensor):
        super().__init__()
        self.register_buffer("key", key / key.norm() ** 2)

    def forward(self, text, image) -> ModelOutput:
        proj = (text.word_embeddings @ self.key) * text.attention_mask  # [B, L]
        present = torch.relu(proj.max(1).values - 0.5) / 0.5
        zero = torch.zeros_like(present)
        logits = torch.stack([4 * present, zero, zero], -1)
        return ModelOutput(logits, logits, torch.zeros_like(logits))


class CellEncoder(ImageEncoder):
    """A hand-made image encoder: patch i is the mean colour of cell i of a 4 x 4 grid over 32 x 32 pixels, so a
    region's pixels reach its own patch and nothing else."""

    name, dim, pooled_dim, grid, image_size = "cells", 3, 3, (4, 4), 32

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.images = 0  # how many images it has encoded

    def forward(self, pixel_values: torch.Tensor) -> ImageFeatures:
        self.images += pixel_values.shape[0]
        cells = self.pool(pixel_values)
        return ImageFeatures(cells.flatten(2).transpose(1, 2), cells.mean((2, 3)))

    def feature_layer(self) -> nn.Module:
        return self.pool


REGION = 9  # row 3, col 2 of the 4 x 4 grid


class OneRegionHead(nn.Module):
    """Class 0 scores 4 x the mean colour of one region (4 on the all-ones test image, 0 once that region is greyed
    out to the normalised zero); the caption is ignored."""

    text_layers = 1

    def forward(self, text, image) -> ModelOutput:
        logit = 4 * image.patches[:, REGION].mean(-1)
        zero = torch.zeros_like(logit)
        logits = torch.stack([logit, zero, zero], -1)
        return ModelOutput(logits, torch.zeros_like(logits), logits)


@pytest.fixture(scope="module")
def one_word():
    te = create_text_encoder("tiny-bert")
    key = te.embeddings().weight[te.tokenize(["sunny"])["input_ids"][0, 1]].detach()
    pipeline = Pipeline(te, CellEncoder(), OneWordHead(key)).eval()
    inputs = {**te.tokenize([CAPTION]), "pixel_values": torch.ones(1, 3, 32, 32)}
    return pipeline, inputs


@pytest.fixture(scope="module")
def one_region():
    te = create_text_encoder("tiny-bert")
    pipeline = Pipeline(te, CellEncoder(), OneRegionHead()).eval()
    return pipeline, {**te.tokenize([CAPTION]), "pixel_values": torch.ones(1, 3, 32, 32)}


def test_the_deletion_check_singles_out_the_one_word_the_head_reads(one_word):
    """Integrated Gradients puts the toy head's answer on 'sunny'; hiding the 2 most attributed of the 8 words takes
    'positive' from softmax([4, 0, 0]) = 96% to an even third, while 2 random words (8 draws) mostly leave it."""
    pipeline, inputs = one_word
    tok = X.token_attributions(pipeline, inputs, target=0, n_steps=32)
    scores = X.word_scores(tok.tokens, tok.scores)
    words = [w for w, _ in X.word_spans(tok.tokens)]
    assert words[int(scores.argmax())] == "sunny"
    check = X.word_deletion(pipeline, inputs, scores, target=0, draws=8)
    assert (check.k, check.n) == (2, 8)
    assert check.before == pytest.approx(E4, abs=1e-5) and check.top == pytest.approx(1 / 3, abs=1e-5)
    # a random draw either misses 'sunny' (the answer stays) or hits it (an even third): most miss
    hit = np.isclose(check.random, 1 / 3, atol=1e-5)
    assert (hit | np.isclose(check.random, E4, atol=1e-5)).all() and hit.sum() <= 3
    assert check.beats_random and check.gain > 0.4  # at most 3 of 8 draws hit: (96% - 33%) x 5/8 or more
    assert check.describe("positive").startswith(
        "Hiding the 2 most highlighted words (of 8) lowers 'positive' from 96% to 33%; hiding 2 random words: to ")
    assert "no more" not in check.describe("positive")


def test_a_map_on_the_wrong_words_does_no_better_than_random(one_word):
    pipeline, inputs = one_word
    words = [w for w, _ in X.word_spans(pipeline.text_encoder.convert_ids_to_tokens(inputs["input_ids"][0].tolist()))]
    wrong = np.array([1.0 if w in ("beach", "day") else 0.0 for w in words])
    check = X.word_deletion(pipeline, inputs, wrong, target=0)
    assert check.top == pytest.approx(E4, abs=1e-5) and not check.beats_random
    assert check.describe("positive").endswith(
        "So this map points no more at what the network uses than random words would.")
    assert X.word_deletion(pipeline, inputs, np.zeros(len(words)), target=0) is None  # nothing highlighted
    with pytest.raises(ValueError):
        X.word_deletion(pipeline, inputs, np.ones(3), target=0)


@pytest.mark.parametrize("method", ["integrated-gradients", "occlusion"])
def test_the_deletion_check_singles_out_the_one_region_the_head_reads(one_region, method):
    """Pixel IG and Occlusion point at region 9 of 16; greying out the 2 most attributed regions takes 'positive'
    from 96% to a third, 2 random regions (8 draws) mostly do not touch it."""
    pipeline, inputs = one_region
    heat, _ = X.image_attribution(method, pipeline, inputs, target=0)
    assert int(X.region_scores(heat, (4, 4)).argmax()) == REGION
    check = X.region_deletion(pipeline, inputs, heat, target=0, draws=8)
    assert (check.k, check.n, check.units) == (2, 16, "image regions")
    assert check.before == pytest.approx(E4, abs=1e-5) and check.top == pytest.approx(1 / 3, abs=1e-5)
    hit = np.isclose(check.random, 1 / 3, atol=1e-5)
    assert (hit | np.isclose(check.random, E4, atol=1e-5)).all() and hit.sum() <= 3
    assert check.beats_random


def test_an_attention_map_over_the_grid_is_checked_region_by_region(one_region):
    pipeline, inputs = one_region
    on = np.zeros((4, 4))
    on.flat[REGION] = 0.7
    on.flat[0] = 0.3
    assert X.region_deletion(pipeline, inputs, on, target=0, k=1).top == pytest.approx(1 / 3, abs=1e-5)
    off = np.full((4, 4), 0.5 / 15)
    off.flat[5] = 0.5
    check = X.region_deletion(pipeline, inputs, off, target=0, k=1)
    assert check.top == pytest.approx(E4, abs=1e-5) and not check.beats_random


def test_grad_cam_that_averages_its_gradients_away_fails_the_check(one_region):
    """Grad-CAM weights each channel by its gradient averaged over the grid: on this head every cell gets the same
    weight, so the map is flat over the image and hiding its 'top' regions (the first two) does nothing."""
    pipeline, inputs = one_region
    heat = X.grad_cam(pipeline, inputs, target=0)
    assert np.ptp(heat) < 1e-6 < heat.max()
    check = X.region_deletion(pipeline, inputs, heat, target=0)
    assert check.top == pytest.approx(E4, abs=1e-5) and not check.beats_random


def test_the_deletion_line_in_plain_words():
    check = X.Deletion(3, 12, "words", 0.91, 0.40, np.full(8, 0.86))
    assert check.describe("positive") == ("Hiding the 3 most highlighted words (of 12) lowers 'positive' from 91% to "
                                          "40%; hiding 3 random words: to 86% (mean of 8 draws).")
    same = X.Deletion(5, 49, "image regions", 0.62, 0.618, np.full(4, 0.60))
    assert same.describe("negative") == (
        "Hiding the 5 most highlighted image regions (of 49) leaves 'negative' at 62%; hiding 5 random image "
        "regions: to 60% (mean of 4 draws). So this map points no more at what the network uses than random image "
        "regions would.")
    assert "No deletion check" in X.deletion_line(None, "positive", "words")
    assert [X.deletion_k(n, "words") for n in (2, 5, 8, 9, 30)] == [1, 1, 2, 3, 3]
    assert [X.deletion_k(n, "regions") for n in (4, 16, 49, 196)] == [1, 2, 5, 20]
    assert X.region_bounds((30, 32), (4, 4)) == ([(0, 7), (7, 15), (15, 22), (22, 30)],
                                                 [(0, 8), (8, 16), (16, 24), (24, 32)])


def test_every_map_of_one_input_shares_its_random_deletions():
    """The random deletions do not depend on the map: the first check of an input encodes 1 + RANDOM_DRAWS images (4
    of the 16 regions hidden each time, out of 1820 sets: these differ), a second map of the same input only its own
    top-k variant, the first map again nothing, and all quote the same draws."""
    te = create_text_encoder("tiny-bert")
    pipeline = Pipeline(te, CellEncoder(), OneRegionHead()).eval()
    inputs = {**te.tokenize([CAPTION]), "pixel_values": torch.full((1, 3, 32, 32), 0.5)}
    pipeline.encoded([inputs])  # the click's prediction
    enc = pipeline.image_encoder
    before = enc.images
    on = np.zeros((4, 4))
    on.flat[[REGION, 3]] = 1.0, 0.5
    first = X.region_deletion(pipeline, inputs, on, target=0, k=4)
    assert enc.images - before == 1 + X.RANDOM_DRAWS
    second = X.region_deletion(pipeline, inputs, np.arange(16.0).reshape(4, 4), target=0, k=4)
    assert enc.images - before == 2 + X.RANDOM_DRAWS
    assert np.array_equal(first.random, second.random) and first.top != second.top
    again = X.region_deletion(pipeline, inputs, on, target=0, k=4)
    assert again.top == first.top and enc.images - before == 2 + X.RANDOM_DRAWS
