"""Concurrent users never see each other's state: predictions, explanations (Captum hooks the shared encoders) and
the compare view, hammered from many threads on every registered network, each give exactly the answer they give
alone."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mmdemo.models import list_models  # noqa: E402
from mmdemo.app.handlers import DemoApp  # noqa: E402

from tests.helpers import EXAMPLES, make_checkpoint  # noqa: E402

INPUTS = [(EXAMPLES / "beach.jpg", "Best day ever at the beach!"), (EXAMPLES / "rain.jpg", "grey and cold again"),
          (EXAMPLES / "cake.jpg", "a cake for my birthday, with a much longer caption than the other two have")]
MODELS = list_models()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    for model in MODELS:
        make_checkpoint(root, model)
    return DemoApp(root)


def predict(app, model, i):
    fused, text, image, _, signals, status, contributions = app.predict_fn(str(INPUTS[i][0]), INPUTS[i][1], "mvsa-single", model)
    assert "mm-error" not in status, status
    return ("predict", model, i, fused, text, image, signals, contributions)


def explain(app, model, i):
    heat, words, note = app.explain_fn(str(INPUTS[i][0]), INPUTS[i][1], "mvsa-single", model, "grad-cam")
    assert "mm-error" not in note, note
    return ("explain", model, i, None if heat is None else np.asarray(heat).tobytes(), str(words))


def compare(app, _model, i):
    table, note = app.compare_fn(str(INPUTS[i][0]), INPUTS[i][1], "mvsa-single")
    assert "mm-error" not in note, note
    return ("compare", i, table.drop(columns=["ms"]).to_json())


@pytest.mark.slow
def test_concurrent_predict_explain_compare_equal_the_quiet_answers(app):
    jobs = [(fn, model, i) for fn in (predict, explain) for model in MODELS for i in range(len(INPUTS))]
    jobs += [(compare, None, i) for i in range(len(INPUTS))]
    quiet = {(fn.__name__, model, i): fn(app, model, i) for fn, model, i in jobs}
    hammer = jobs * 3
    np.random.default_rng(0).shuffle(hammer)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda job: ((job[0].__name__, job[1], job[2]), job[0](app, *job[1:])), hammer))
    wrong = [key for key, answer in answers if answer != quiet[key]]
    assert not wrong, f"{len(wrong)} of {len(answers)} concurrent answers differ from the quiet ones: {wrong[:5]}"
