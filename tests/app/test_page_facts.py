"""What the page shows belongs to what is on screen, checked without a browser: the tickets that keep a stale
answer off the page, per-task examples, and the notes on captions the text encoder cannot read. (The browser side is tests/app/test_page_truth.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from mmdemo.checkpoint import CheckpointError
from mmdemo.hub import bundled_checkpoints
from mmdemo.tasks import TASKS
from mmdemo.app.handlers import DemoApp, OnScreen, selection_of

from tests.helpers import EXAMPLE, EXAMPLES, REPO_ROOT, TASK, make_checkpoint


def test_a_page_shows_one_selection_at_a_time():
    on_screen = OnScreen()
    beach, rain = (selection_of(Image.open(EXAMPLES / name), "a caption", TASK, "concat")
                   for name in ("beach.jpg", "rain.jpg"))
    assert beach == selection_of(Image.open(EXAMPLES / "beach.jpg"), "a caption", TASK, "concat")  # by content
    assert on_screen.show("page", beach) and on_screen.shows("page", beach)
    assert not on_screen.show("page", beach)  # the same selection again is no change
    assert on_screen.show("page", rain) and not on_screen.shows("page", beach)
    assert on_screen.shows("other page", beach) and on_screen.shows("", beach)  # unseen pages and the API
    other_network = selection_of(Image.open(EXAMPLES / "rain.jpg"), "a caption", TASK, "hglnet")
    assert on_screen.shows("page", other_network, parts=3) and not on_screen.shows("page", other_network)


def test_a_prediction_whose_page_changed_selection_changes_nothing(tmp_path):
    make_checkpoint(tmp_path, "concat")
    app = DemoApp(tmp_path)
    image = Image.open(EXAMPLE)
    real = app.on_screen.show

    def change_during(session, selection):  # the page "old" moves on while its prediction is computed
        real(session, selection)
        if session == "old":
            real("old", selection_of(image, "another caption", TASK, "concat"))
        return True

    app.on_screen.show = change_during
    out = app.predict_batch_fn([image] * 2, ["a caption"] * 2, [TASK] * 2, ["concat"] * 2, ["old", "new"])
    stale, fresh = [tuple(column[i] for column in out) for i in (0, 1)]
    assert all(v == gr.skip() for v in stale)
    assert fresh[0] and fresh[-1].selection == selection_of(image, "a caption", TASK, "concat")  # the answer, and what it answers
    assert "Answer of <b>concat</b> on <b>mvsa-single</b>" in fresh[3]


def test_a_checkpoint_message_does_not_show_the_servers_paths(tmp_path):
    app = DemoApp(tmp_path / "checkpoints")
    e = CheckpointError(f"checkpoint {tmp_path / 'checkpoints' / TASK / 'hglnet'} does not match its config.json")
    text = app._message(e, "loading")
    assert str(tmp_path) not in text and f"checkpoints/{TASK}/hglnet" in text


def test_every_task_with_networks_has_its_own_examples():
    rows = json.loads((EXAMPLES / "examples.json").read_text())
    example_rows = DemoApp(REPO_ROOT / "checkpoints", EXAMPLES).example_rows
    assert {r["task"] for r in rows} <= set(TASKS)
    for task in bundled_checkpoints(REPO_ROOT / "checkpoints"):
        examples = example_rows(task)
        assert len(examples) >= 3, task
        for image, caption in examples:
            assert Image.open(image).size and caption.strip(), (task, image)
    assert {Path(p).parent.name for p, _ in example_rows("mediaeval2016")} == {"mediaeval2016"}
    assert not set(map(tuple, example_rows("mvsa-single"))) & set(map(tuple, example_rows("hashtags")))
    assert example_rows("no-such-task") == []


@pytest.mark.parametrize("caption, said", [
    ("Пляж сегодня был прекрасен, мы купались весь день", "Most of this caption is outside"),
    ("مرحبا بالعالم، يوم جميل على الشاطئ", "Most of this caption is outside"),
    ("Ein wunderschöner Tag am Strand mit Freunden", None),  # pieces of German words, not single letters
    ("Best day ever at the beach with my friends", None),
])
def test_a_caption_mostly_outside_the_vocabulary_is_said_to_be(caption, said):
    from mmdemo.predict import Predictor

    predictor = Predictor.from_checkpoint(REPO_ROOT / "checkpoints" / "mvsa-single" / "concat")  # the real MiniLM-L6
    _, notes = predictor.prepare(Image.open(EXAMPLE), caption)
    outside = [n for n in notes if "outside the text encoder's vocabulary" in n]
    assert bool(outside) == bool(said), notes


def test_a_cut_caption_says_where_it_stops():
    from mmdemo.predict import Predictor

    predictor = Predictor.from_checkpoint(REPO_ROOT / "checkpoints" / "mvsa-single" / "concat")
    _, notes = predictor.prepare(Image.open(EXAMPLE), " ".join(f"word{i}" for i in range(200)))
    cut = [n for n in notes if "cut to the first 64 tokens" in n]
    assert cut and "so it stops at “…" in cut[0], notes


def _judged(value: float, floor: float) -> dict:
    return {"judged": {"metric": "macro_f1", "value": value, "floor": floor, "floor_name": "always the commonest class",
                       "on": "events training never saw", "whose": "checkpoint", "optimistic": False}}


def test_the_default_network_is_the_best_on_the_measure_the_task_is_judged_on(tmp_path):
    """Fake news is judged on events a network never saw: the default is the best there, not the best on dev, and
    the picker marks a network below a guess that ignores the input, or whose answer does not move with it."""
    best_dev = {"dev": {"fused": {"macro_f1": 0.98}}}
    make_checkpoint(tmp_path, "hglnet", task="mediaeval2016", labels=["real", "fake"], metrics=best_dev,
                    trust={**_judged(0.30, 0.45), "informative": True})
    make_checkpoint(tmp_path, "concat", task="mediaeval2016", labels=["real", "fake"],
                    trust={**_judged(0.53, 0.45), "informative": True})
    make_checkpoint(tmp_path, "mggf", task="mediaeval2016", labels=["real", "fake"],
                    trust={**_judged(0.60, 0.45), "informative": False})
    app = DemoApp(tmp_path)
    assert app.default_model("mediaeval2016") == "concat"
    labels = dict((model, label) for label, model in app.model_choices("mediaeval2016"))
    assert labels == {"concat": "concat", "hglnet": "hglnet (below a guess that ignores the input)",
                      "mggf": "mggf (answer does not change with the input)"}
    make_checkpoint(tmp_path, "concat", task=TASK)  # nothing judged recorded: the best on dev, as before
    make_checkpoint(tmp_path, "hglnet", task=TASK, metrics={"dev": {"fused": {"weighted_f1": 0.9}}})
    assert DemoApp(tmp_path).default_model(TASK) == "hglnet"


def test_the_reading_guide_lists_every_signal_as_the_network_declares_it():
    """docs/READING.md says how each displayed number is read: every declared signal of every network, with the
    plain sentence its file declares (a signal renamed or reworded in its file fails here until the guide follows)."""
    from mmdemo.models import MODELS, list_models

    guide = (REPO_ROOT / "docs" / "READING.md").read_text()
    for name in list_models():
        for key, signal in MODELS[name].head.signals.items():
            assert f"| {name} | {signal.title} |" in guide, (name, key)
            assert signal.plain in guide, (name, key)
