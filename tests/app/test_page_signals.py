"""Each of a network's own signals carries its measured validity on the page (issue 47 section 4), driven in
headless Debian Chromium (marked `browser`): a signal that moves shows its line open under its bar; one that does
not change with the input is collapsed under a title that says so."""

from __future__ import annotations

import json

import pytest

from mmdemo.checkpoint import is_flat

from tests.helpers import EXAMPLE, REPO_ROOT, chromium, make_checkpoint, served

pytestmark = pytest.mark.browser


def _validity(p05: float, p95: float, low: float | None, high: float | None, rho: float, mean: float,
              shuffled: float) -> dict:
    return {"n": 450, "on": "the dev split (450 posts)", "mean": mean, "std": (p95 - p05) / 3, "p05": p05,
            "p95": p95, "low": low, "high": high, "flat": is_flat(p05, p95, low, high), "spearman_text_share": rho,
            "shuffled_mean": shuffled}


JUDGED = {"metric": "weighted_f1", "value": 0.41, "floor": 0.36, "floor_name": "always answering positive",
          "on": "events training never saw", "whose": "recipe", "optimistic": False}


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    path = make_checkpoint(root, "mggf")
    config = json.loads((path / "config.json").read_text())
    config["calibration"] = {"temperature": 2.5, "whose": "recipe", "ece_before": 0.433, "ece_after": 0.007,
                             "ece_after_unseen": 0.115, "fitted_on": "the recipe's held-out predictions"}
    config["trust"] = {"informative": True, "judged": JUDGED, "signals": {
        "discrepancy": _validity(0.672, 0.681, 0.5, 1.0, 0.02, 0.676, 0.676),  # flat: 0.009 of a 0.5 range
        "kl": _validity(0.4, 1.3, 0.0, None, 0.45, 0.8, 0.5),
        "score": _validity(-0.9, 1.1, None, None, 0.35, 0.36, 0.38)}}
    (path / "config.json").write_text(json.dumps(config))
    with served(root) as (address, _):
        yield address


def predicted_page(browser, url: str):
    """A page that has uploaded the example, written a caption and asked for a prediction, as a person does."""
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(url)
    page.locator("#mm-status").filter(has_text="is ready").wait_for(timeout=60_000)
    page.locator("#mm-image input[type=file]").set_input_files(str(EXAMPLE))
    page.locator("#mm-image img").first.wait_for(timeout=30_000)
    page.locator("#mm-caption textarea").fill("Best day ever at the beach!")
    page.locator("#mm-run").click()
    return page


def test_every_signal_shows_its_measured_validity_and_a_flat_one_is_collapsed(url):
    with chromium() as browser:
        page = predicted_page(browser, url)
        signals = page.locator("#mm-signals")
        signals.filter(has_text="What the network itself reports").wait_for(timeout=60_000)
        text = signals.inner_text()
        # the moving signals: their line is open under the bar
        assert ("it ranged from 0.4 to 1.3 (5–95% of them); it rises with the measured caption share (ρ +0.45)"
                in text)
        assert page.get_by_text("it ranged from −0.9 to 1.1 (5–95% of them)").is_visible()
        # the flat one: collapsed, its title says why, its line shows once opened
        flat = signals.locator("details.mm-flat")
        assert flat.count() == 1 and "does not change with the input: collapsed" in flat.inner_text()
        line = flat.get_by_text("it ranged from 0.672 to 0.681 (5–95% of them): it does not change with the input.")
        assert not line.is_visible()
        page.screenshot(path=str(REPO_ROOT / ".cache" / "screens" / "signals-collapsed.png"), full_page=True)
        flat.locator("summary").first.click()
        assert line.is_visible()
        signals.screenshot(path=str(REPO_ROOT / ".cache" / "screens" / "signals.png"))


def test_a_calibrated_answer_says_how_well_its_temperature_held_on_inputs_it_was_not_fitted_on(url):
    """The word "calibrated" comes with the calibration error measured where the temperature was not fitted."""
    with chromium() as browser:
        page = predicted_page(browser, url)
        line = page.get_by_text("its fused probabilities are calibrated (temperature 2.5")
        line.wait_for(timeout=60_000)
        assert line.is_visible()
        assert "calibration error 0.12 on an event left out of the fit, 0.43 unscaled" in line.inner_text()
        page.screenshot(path=str(REPO_ROOT / ".cache" / "screens" / "calibrated-line.png"))
