"""One encoder pass per input: predict, explain, attention and the compare view over every registered network share
the frozen encoders' outputs for an input (mmdemo.pipeline.ENCODED), and give exactly the answers they give when
every call encodes afresh."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from mmdemo.checkpoint import load_checkpoint
from mmdemo.models import list_models
from mmdemo.pipeline import ENCODED
from mmdemo.predict import Predictor

from tests.helpers import EXAMPLES, make_checkpoint

CAPTION = "Best day ever at the beach!"


@pytest.fixture(scope="module")
def predictors(tmp_path_factory):
    """A tiny Predictor of every registered network, and one that fine-tunes the last two text layers."""
    root = tmp_path_factory.mktemp("checkpoints")
    out = {m: Predictor(load_checkpoint(make_checkpoint(root, m))) for m in list_models()}
    tuned = load_checkpoint(make_checkpoint(root, "concat"))
    from mmdemo.models import MultimodalClassifier

    torch.manual_seed(1)
    out["concat-tuned"] = Predictor(MultimodalClassifier(
        model="concat", task=tuned.task, labels=tuned.labels, text_encoder=tuned.text_encoder_name,
        image_encoder=tuned.image_encoder_name, dims=tuned.feature_dims.to_dict(), finetune_text_layers=2))
    return out


def _answer(pred):
    c = pred.contributions
    return (pred.probs, {k: np.asarray(v).tobytes() for k, v in pred.explain.items() if not isinstance(v, dict)},
            c.text.tolist(), c.image.tolist(), pred.tokens)


@contextlib.contextmanager
def encoder_calls(p: Predictor) -> Iterator[dict[str, int]]:
    """Counts the forward passes of a predictor's text and image encoders while the block runs."""
    calls: dict[str, int] = {}
    hooks = [encoder.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
             for name, encoder in (("text", p.text_encoder), ("image", p.image_encoder))]
    try:
        yield calls
    finally:
        for h in hooks:
            h.remove()


def test_every_network_reuses_one_encoder_pass_and_gives_the_uncached_answer(predictors):
    image = Image.open(EXAMPLES / "beach.jpg")
    size = ENCODED.size
    try:  # the answer of every network when each call encodes afresh
        ENCODED.size = 0
        ENCODED.clear()
        fresh = {m: _answer(p.predict(image, CAPTION)) for m, p in predictors.items()}
        assert len(ENCODED) == 0
    finally:
        ENCODED.size = size
    ENCODED.clear()
    any_p = next(iter(predictors.values()))
    with encoder_calls(any_p) as calls:
        for _ in range(2):  # the compare view, twice (a click's predict, explain, attention ask again)
            for m, p in predictors.items():
                assert p.text_encoder is any_p.text_encoder and p.image_encoder is any_p.image_encoder
                assert _answer(p.predict(image, CAPTION)) == fresh[m], m
    # ... and the answer of the differentiable pipeline Captum explains, which encodes exactly the layers it reads
    for m, p in predictors.items():
        inputs, _ = p.prepare(image, CAPTION)
        with torch.no_grad():
            probs = torch.softmax(p.pipeline(**inputs).logits, -1)[0]
        cached = p.predict(image, CAPTION).probs["fused"]
        assert torch.allclose(torch.tensor([cached[label] for label in p.labels]), probs, atol=1e-5), m
    # the networks read different numbers of text layers, and one tunes two of them: one pass of each encoder
    assert len({p.classifier.text_layers for p in predictors.values()}) > 1
    assert calls == {"text": 1, "image": 1}
    assert ENCODED.misses == 2 and ENCODED.hits == 2 * (3 * len(predictors) - 1)


def test_a_different_input_is_a_different_entry(predictors):
    p = predictors["concat"]
    ENCODED.clear()
    beach, rain = Image.open(EXAMPLES / "beach.jpg"), Image.open(EXAMPLES / "rain.jpg")
    a = _answer(p.predict(beach, CAPTION))
    b = _answer(p.predict(beach, "grey and cold again"))  # same image: only the text is encoded
    assert ENCODED.misses == 3 and ENCODED.hits == 1
    c = _answer(p.predict(rain, CAPTION))  # same caption: only the image is encoded
    assert ENCODED.misses == 4 and ENCODED.hits == 2
    assert a != b and a != c
    assert _answer(p.predict(beach, CAPTION)) == a


def test_the_cache_is_bounded(predictors):
    p = predictors["concat"]
    ENCODED.clear()
    image = Image.new("RGB", (64, 64), (10, 20, 30))
    for i in range(ENCODED.size + 5):
        p.predict(image, f"caption number {i}")
    assert len(ENCODED) == ENCODED.size


def _close(a, b) -> bool:
    """Two answers equal up to float rounding (a batch pads captions to the longest and stacks images)."""
    (pa, ea, ta, ia, toka), (pb, eb, tb, ib, tokb) = a, b
    return (toka == tokb and all(np.allclose(list(pa[h].values()), list(pb[h].values()), atol=1e-5) and
                                 list(pa[h]) == list(pb[h]) for h in pa)
            and np.allclose(ta, tb, atol=1e-4) and np.allclose(ia, ib, atol=1e-4)
            and ea.keys() == eb.keys())


def _answer_arrays(pred):
    """The answer with its explain quantities as arrays (attention maps included), for shape and value checks."""
    flat = {}
    for k, v in pred.explain.items():
        for name, m in (v.items() if isinstance(v, dict) else [(k, v)]):
            flat[name] = np.asarray(m, dtype=np.float64)
    return flat


def test_a_batch_gives_each_input_its_own_answer_and_encodes_once(predictors):
    """predict_batch (the app's batched /predict): captions of different lengths and different images in one batch
    give every network the answer each input gets alone, explain maps included; a bad input gets its InputError
    and costs the others nothing; the encoders run once for the whole batch."""
    from mmdemo.inputs import InputError

    examples = [(Image.open(EXAMPLES / "beach.jpg"), "sun"),
                (Image.open(EXAMPLES / "rain.jpg"), "Grey, cold and raining all week. So miserable, again and again."),
                (Image.open(EXAMPLES / "cake.jpg"), "Happy birthday!")]
    images = [examples[0][0], examples[1][0], None, examples[2][0]]  # the third has no image
    captions = [examples[0][1], examples[1][1], "no picture", examples[2][1]]
    for m, p in predictors.items():
        ENCODED.clear()
        alone = [p.predict(im, c) for im, c in examples]
        ENCODED.clear()
        with encoder_calls(p) as calls:
            batch = p.predict_batch(images, captions)
        assert calls == {"text": 1, "image": 1}, m
        assert isinstance(batch[2], InputError) and "image" in str(batch[2]).lower(), m
        for a, b in zip(alone, batch[:2] + batch[3:]):
            assert _close(_answer(a), _answer(b)), m
            ea, eb = _answer_arrays(a), _answer_arrays(b)
            assert all(ea[k].shape == eb[k].shape and np.allclose(ea[k], eb[k], atol=1e-4) for k in ea), m
        # ... and what the batch stored in ENCODED is each input's own entry: predicting alone now hits it
        hits = ENCODED.hits
        p.predict(*examples[1])
        assert ENCODED.hits == hits + 2, m
        short, _ = p.encode(p.prepare(*examples[0])[0])  # the shortest caption's entry holds its tokens only
        assert short.layers.shape[2] == short.attention_mask.shape[1] == int(short.attention_mask.sum()) < 8, m


def test_an_explanation_holds_the_other_modality_from_the_prediction(predictors):
    """After a click's prediction, an image explanation does not run the text encoder again, nor the word
    attributions the image encoder: the modality held fixed comes from the prediction's encoder pass."""
    import mmdemo.explain as X

    image = Image.open(EXAMPLES / "cake.jpg")
    for m in ("concat", "concat-tuned", "hglnet"):
        p = predictors[m]
        ENCODED.clear()
        p.predict(image, CAPTION)
        inputs, _ = p.prepare(image, CAPTION)
        X.grad_cam(p.pipeline, inputs, target=0)  # Grad-CAM probes the encoder's feature map once per process
        with encoder_calls(p) as calls:
            X.grad_cam(p.pipeline, inputs, target=0)
            X.integrated_gradients(p.pipeline, inputs, target=0, n_steps=2)
            assert "text" not in calls and calls["image"] > 0, (m, calls)
            image_calls = calls["image"]
            X.token_attributions(p.pipeline, inputs, target=0, n_steps=2)
            assert calls["image"] == image_calls and calls["text"] > 0, (m, calls)  # the words' IG: text encoder only


def test_requests_for_several_networks_share_one_encoder_pass(predictors):
    """predict_requests (what a batch of /predict requests runs): inputs for different networks are encoded in one
    pass of each shared encoder, and each request gets the answer its network gives the input alone."""
    from mmdemo.predict import predict_requests

    names = ["concat", "hglnet", "concat-tuned", "mggf"]
    inputs = [(Image.open(EXAMPLES / f), c) for f, c in [("beach.jpg", "sun"), ("rain.jpg", "so cold and grey"),
                                                          ("cake.jpg", "cake!"), ("beach.jpg", "waves")]]
    requests = [(predictors[m], im, c) for m, (im, c) in zip(names, inputs)]
    ENCODED.clear()
    alone = [p.predict(im, c) for p, im, c in requests]
    ENCODED.clear()
    with encoder_calls(predictors["concat"]) as calls:
        together = predict_requests(requests)
    assert calls == {"text": 1, "image": 1}
    for m, a, b in zip(names, alone, together):
        assert _close(_answer(a), _answer(b)), m


def test_side_by_side_work_gives_the_one_thread_answers_and_restores_the_thread_count(predictors):
    """With two torch threads, predict_requests runs the text and image sides, then the networks' heads, side by
    side on one torch thread each: every network's answer is the one thread's (up to float rounding), the shared
    encoders still run once, an input that cannot be read costs only its own answer, and the process keeps its
    thread count."""
    from mmdemo.inputs import InputError
    from mmdemo.pipeline import side_by_side
    from mmdemo.predict import predict_requests

    image = Image.open(EXAMPLES / "rain.jpg")
    requests = [(p, image, "so cold and grey") for p in predictors.values()] + [(predictors["concat"], b"x", "a")]
    threads = torch.get_num_threads()
    ENCODED.clear()
    one = predict_requests(requests)
    try:
        torch.set_num_threads(2)
        assert side_by_side([torch.get_num_threads] * 3) == [1, 1, 1] and torch.get_num_threads() == 2
        ENCODED.clear()
        with encoder_calls(predictors["concat"]) as calls:
            two = predict_requests(requests)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert calls == {"text": 1, "image": 1}
    assert isinstance(one[-1], InputError) and isinstance(two[-1], InputError)
    for m, a, b in zip(predictors, one, two):
        assert _close(_answer(a), _answer(b)), m
