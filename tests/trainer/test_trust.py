"""The trust record a checkpoint carries (mmdemo.checkpoint.Trust) and the one line the app prints from it."""

import subprocess
import sys

from mmdemo.checkpoint import Trust, read_trust, reliability_line

SPREAD = {"n": 1892, "std": 0.21, "top_low": 0.52, "top_high": 0.97, "top_share": {"real": 0.7, "fake": 0.3},
          "on": "the validation events boston, nepal (1,892 posts)"}
RECIPE = {"metric": "macro_f1", "value": 0.5306, "floor": 0.4141, "floor_name": "always answering fake",
          "on": "events training never saw (leave-one-event-out, 15 events, 3 seeds pooled)", "whose": "recipe",
          "optimistic": True, "why": "the unseen-event recipe search"}
CALIBRATION = {"temperature": 1.61, "fitted_on": "the recipe's pooled leave-one-event-out predictions",
               "whose": "recipe", "ece_before": 0.21, "ece_after": 0.12}


def test_reading_a_checkpoint_never_measured_gives_nothing_to_say():
    t = read_trust({"model": "concat"})
    assert t == Trust() and not t.below_floor and not t.calibrated
    assert reliability_line(t) == ""


def test_recipe_figure_is_named_as_the_recipes_and_marked_optimistic():
    t = read_trust({"trust": {"informative": True, "spread": SPREAD, "judged": RECIPE,
                              "selected_on": "the validation events boston, nepal"},
                    "calibration": CALIBRATION})
    assert t.informative and t.calibrated and not t.below_floor
    line = reliability_line(t)
    assert "this recipe" in line and "not this checkpoint itself" in line
    assert "macro F1 0.53" in line and "above the 0.41 of always answering fake" in line
    assert "optimistic" in line and "the unseen-event recipe search" in line
    assert "calibrated (temperature 1.61" in line


def test_an_uninformative_answer_is_never_called_calibrated():
    judged = {**RECIPE, "value": 0.4161, "floor": 0.4141, "optimistic": False}
    t = read_trust({"trust": {"informative": False, "spread": {**SPREAD, "std": 2e-7, "top_low": 0.5,
                                                               "top_high": 0.5}, "judged": judged},
                    "calibration": {**CALIBRATION, "temperature": 1.75e6}})
    assert not t.calibrated
    line = reliability_line(t)
    assert "does not change with the input" in line
    assert "calibrated" not in line and "optimistic" not in line


def test_below_floor_checkpoint_figure_and_uncalibrated():
    judged = {"metric": "macro_f1", "value": 0.2927, "floor": 0.3755, "floor_name": "always answering fake",
              "on": "the held-out events malaysia, nepal (1,670 posts)", "whose": "checkpoint", "optimistic": False}
    t = read_trust({"trust": {"informative": True, "spread": SPREAD, "judged": judged}})
    assert t.below_floor and not t.calibrated
    line = reliability_line(t)
    assert line.startswith("On the held-out events malaysia, nepal (1,670 posts) this checkpoint scores macro F1 "
                           "0.29, below the 0.38 of always answering fake")
    assert "not calibrated" in line and "recipe" not in line


def test_hashtags_line_gives_test_p_at_1_against_the_prior():
    judged = {"metric": "precision@1", "value": 0.1311, "floor": 0.0984,
              "floor_name": "always suggesting the training posts' most popular tag", "on": "the test posts (61)",
              "whose": "checkpoint", "optimistic": False}
    line = reliability_line(read_trust({"trust": {"informative": True, "judged": judged}}))
    assert "P@1" in line and "0.13" in line and "above the 0.098 of always suggesting" in line


def test_reading_trust_does_not_import_torch():
    code = ("import sys, mmdemo.checkpoint as c; c.reliability_line(c.read_trust({})); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_temperature_that_does_not_carry_over_to_a_new_event_is_not_called_calibration():
    cal = {**CALIBRATION, "temperature": 8.0, "ece_before": 0.21, "ece_after": 0.086, "ece_after_unseen": 0.228}
    t = read_trust({"trust": {"informative": True, "spread": SPREAD, "judged": RECIPE}, "calibration": cal})
    assert not t.carries_over and not t.calibrated
    line = reliability_line(t)
    assert "calibrated" not in line and "does not carry over to a new event" in line
    assert "calibration error 0.23 on an event left out of the fit, 0.21 unscaled" in line
    helps = read_trust({"trust": {"informative": True, "judged": RECIPE},
                        "calibration": {**cal, "ece_after_unseen": 0.15}})
    assert helps.calibrated and "calibrated (temperature 8," in reliability_line(helps)
    assert "calibration error 0.15 on an event left out of the fit, 0.21 unscaled)" in reliability_line(helps)


def test_a_checkpoint_with_no_held_out_measure_says_so():
    """Trained on every event but its validation events, with no leave-one-event-out run of its recipe: the line
    says that nothing measured it on unseen inputs, instead of naming no figure at all."""
    t = read_trust({"trust": {"informative": True, "spread": SPREAD,
                              "splits": {"dev": "validation events (boston, nepal)"}}})
    line = reliability_line(t)
    assert line.startswith("It has not been measured on inputs it was neither trained on nor chosen on")
    assert "not calibrated" in line
    split_trained = read_trust({"trust": {"informative": True, "spread": SPREAD,
                                          "splits": {"dev": "dev", "test": "test"}}})
    assert "has not been measured" not in reliability_line(split_trained)
