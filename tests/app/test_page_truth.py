"""The page tells the truth, driven in headless Debian Chromium as a person uses it (marked `browser`): an answer
belongs to the image, caption, task and network on screen, or is cleared.

One module-scoped server over tiny random checkpoints for two tasks (sentiment and fake news); each test opens
its own page (its own session)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import EXAMPLE, REPO_ROOT, SENTIMENT, chromium, free_port, make_checkpoint, pick, served

pytestmark = pytest.mark.browser
FAKE_NEWS = ["real", "fake"]
ANY_SENTIMENT = re.compile("|".join(SENTIMENT))


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    for model in ("concat", "text-only"):
        make_checkpoint(root, model)
        make_checkpoint(root, model, task="mediaeval2016", labels=FAKE_NEWS)
    with served(root) as (address, _):
        yield address


@pytest.fixture
def page(url):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.locator("#mm-status").filter(has_text="is ready").wait_for(timeout=60_000)
        yield page


def predict(page, caption: str = "Best day ever at the beach!", image: Path = EXAMPLE) -> None:
    page.locator("#mm-image input[type=file]").set_input_files(str(image))
    page.locator("#mm-image img").first.wait_for(timeout=30_000)  # the upload has landed
    page.locator("#mm-caption textarea").fill(caption)
    page.locator("#mm-verdict").filter(has_text="Press Predict").wait_for(timeout=10_000)  # a person's pace
    page.locator("#mm-run").click()


def answers_on_screen(page) -> str:
    """Every result panel's text: the cards, the banner, the signals, the explanation and attention notes."""
    return " ".join(page.locator(f"#{i}").inner_text() for i in
                    ("mm-fused", "mm-text", "mm-image-only", "mm-verdict", "mm-signals", "mm-explain-note"))


def test_a_task_or_network_switch_leaves_no_answer_of_the_old_selection(page):
    from playwright.sync_api import expect

    predict(page)
    expect(page.locator("#mm-fused")).to_contain_text(ANY_SENTIMENT, timeout=60_000)
    expect(page.locator("#mm-explain-note")).to_contain_text("Explaining", timeout=60_000)
    pick(page, "mm-task", "mediaeval2016")
    expect(page.locator("#mm-verdict")).to_contain_text("Press Predict and explain", timeout=10_000)
    assert not ANY_SENTIMENT.search(answers_on_screen(page)), answers_on_screen(page)
    assert page.locator("#mm-heatmap img").count() == 0
    examples = page.locator("#mm-examples")  # the new task's own examples, and a click fills the inputs
    expect(examples).to_contain_text("Dharahara Tower", timeout=10_000)
    expect(examples).not_to_contain_text("ice cream")
    examples.locator("tr.tr-body").nth(1).click()
    expect(page.locator("#mm-caption textarea")).to_have_value(re.compile("NepalEarthquake"), timeout=10_000)
    page.get_by_role("tab", name="Model").click()  # the model panel follows the task, even for the same network
    expect(page.locator("#mm-model-info")).to_contain_text("on mediaeval2016", timeout=30_000)
    expect(page.locator("#mm-model-info")).not_to_contain_text("positive")
    page.get_by_role("tab", name="Explanation").click()

    page.locator("#mm-run").click()
    expect(page.locator("#mm-fused")).to_contain_text(re.compile("real|fake"), timeout=60_000)
    expect(page.locator("#mm-verdict")).to_contain_text("mediaeval2016")  # the answer says what it answers
    other = "text-only" if "concat" in page.locator("#mm-model input").input_value() else "concat"
    pick(page, "mm-model", other)
    expect(page.locator("#mm-verdict")).to_contain_text(f"with {other} on mediaeval2016", timeout=10_000)
    assert not re.search("real|fake", page.locator("#mm-fused").inner_text())
    page.locator("#mm-caption textarea").fill("A new caption")  # a new caption: the answer is gone too
    expect(page.locator("#mm-verdict")).to_contain_text("Press Predict and explain", timeout=10_000)
    page.locator("#mm-run").click()
    expect(page.locator("#mm-fused")).to_contain_text(re.compile("real|fake"), timeout=60_000)
    page.locator("#mm-caption textarea").fill("Another caption")
    expect(page.locator("#mm-verdict")).to_contain_text("Press Predict and explain", timeout=10_000)
    page.screenshot(path=str(REPO_ROOT / ".cache" / "screens" / "after-switch.png"))


@pytest.mark.parametrize("server_sees_the_change", [True, False])
def test_a_switch_during_a_prediction_does_not_let_it_land(page, monkeypatch, server_sees_the_change):
    """The task is switched while a sentiment answer is computed. Either the server sees the change before the
    answer is done and holds it back, or (simulated: it always says the answer is current) it decided a moment before
    the change reached it: then the answer lands after the change's clearing, and the page's own check after every
    result clears it again. Either way no sentiment answer stays under the new task."""
    from playwright.sync_api import expect

    from mmdemo import predict as predict_module
    from mmdemo.app.handlers import OnScreen

    started, real = threading.Event(), predict_module.analyse_requests

    def slow(requests):
        started.set()
        time.sleep(3.0)
        return real(requests)

    monkeypatch.setattr(predict_module, "analyse_requests", slow)
    if not server_sees_the_change:
        monkeypatch.setattr(OnScreen, "shows", lambda self, session, selection, parts=4: True)
    predict(page)
    assert started.wait(30), "the prediction never started"
    pick(page, "mm-task", "mediaeval2016")  # while the sentiment answer is being computed
    time.sleep(8.0)  # long enough for it to finish, try to land, and for the check after it
    assert not ANY_SENTIMENT.search(answers_on_screen(page)), answers_on_screen(page)
    expect(page.locator("#mm-verdict")).to_contain_text("Press Predict and explain")


def test_a_file_that_is_not_an_image_gets_a_plain_message(page, tmp_path, capfd):
    from playwright.sync_api import expect

    predict(page)
    expect(page.locator("#mm-fused")).to_contain_text(ANY_SENTIMENT, timeout=60_000)
    capfd.readouterr()
    not_image = tmp_path / "holiday.png"
    not_image.write_text("these are my holiday notes, not a picture")
    page.locator("#mm-image input[type=file]").set_input_files(str(not_image))
    expect(page.locator("#mm-verdict")).to_contain_text("Press Predict and explain", timeout=10_000)
    page.locator("#mm-run").click()
    expect(page.locator("#mm-status")).to_contain_text("could not be read as an image", timeout=30_000)
    time.sleep(2.0)  # let every chained panel finish
    assert page.get_by_text("Error", exact=True).count() == 0  # no bare red badges on the panels
    assert not ANY_SENTIMENT.search(answers_on_screen(page))  # the old answer is not left standing under it
    err = capfd.readouterr().err
    assert "Traceback" not in err, err


# The words in an element that the browser has broken across two lines (a word's text range has two boxes).
BROKEN_WORDS = """root => {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT), broken = [];
  for (let node; (node = walker.nextNode());) {
    for (const m of node.data.matchAll(/[^\\s-]+/g)) {  // a break after a hyphen is no break
      const range = document.createRange();
      range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
      const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
      if (lines.size > 1) broken.push(m[0]);
    }
  }
  return broken;
}"""


def test_the_compare_table_fits_its_column(page):
    from playwright.sync_api import expect

    predict(page)
    expect(page.locator("#mm-fused")).to_contain_text(ANY_SENTIMENT, timeout=60_000)
    page.get_by_role("tab", name="Compare networks").click()
    assert not page.locator("#mm-compare-table").is_visible()  # no empty table before the first run
    page.locator("#mm-compare").click()
    table = page.locator("#mm-compare-table")
    expect(table).to_contain_text("text-only", timeout=60_000)
    right = table.bounding_box()["x"] + table.bounding_box()["width"]
    for header in table.locator("th").all():
        box = header.bounding_box()
        assert box and box["x"] + box["width"] <= right + 1, (header.inner_text(), box, right)
    # no sideways scrolling anywhere in the table, and no word broken across lines
    assert table.evaluate("t => [t, ...t.querySelectorAll('*')].every(e => !['auto', 'scroll'].includes("
                          "getComputedStyle(e).overflowX) || e.scrollWidth <= e.clientWidth + 1)")
    broken = table.evaluate(BROKEN_WORDS)
    assert not broken, broken
    table.screenshot(path=str(REPO_ROOT / ".cache" / "screens" / "compare.png"))


@pytest.mark.slow
def test_three_cold_starts_opened_at_once_show_no_error(tmp_path):
    """`python app.py` opened within a second of starting: the first network loads in the background while the page
    asks for it (the model registry once filled itself in one thread while another read it half-filled)."""
    for model in ("hglnet", "mggf", "concat"):
        make_checkpoint(tmp_path, model, metrics={"dev": {"fused": {"weighted_f1": 0.9 if model == "hglnet" else .5}}})
    with chromium() as browser:
        for attempt in range(3):
            port = free_port()
            env = {**os.environ, "MMDEMO_CHECKPOINTS": str(tmp_path), "GRADIO_SERVER_PORT": str(port),
                   "GRADIO_SERVER_NAME": "127.0.0.1"}
            app = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                deadline = time.monotonic() + 60
                while True:  # open the page the moment the server answers
                    try:
                        page.goto(f"http://127.0.0.1:{port}", timeout=2_000)
                        break
                    except Exception:
                        assert time.monotonic() < deadline and app.poll() is None, "the app did not start"
                        time.sleep(0.05)
                status = page.locator("#mm-status")
                status.filter(has_text=re.compile("is ready|could not|failed|does not")).wait_for(timeout=90_000)
                assert "is ready" in status.inner_text(), (attempt, status.inner_text())
                assert page.locator(".mm-error").count() == 0, attempt
                page.close()
            finally:
                app.terminate()
                app.wait(30)
