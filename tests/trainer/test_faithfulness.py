"""`python -m trainer faithfulness`: the app's deletion check of every map over a checkpoint's dev posts (a tiny
random checkpoint on MVSA-Single's real dev posts)."""

from __future__ import annotations

import json

import pytest

from trainer.faithfulness import dev_posts, faithfulness, run

from tests.helpers import make_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("checkpoints"), "concat")


def test_posts_are_spread_over_the_recorded_dev_split_and_have_a_caption(ckpt):
    posts, words = dev_posts(ckpt, 5)
    assert len(posts) == 5 and len({p.id for p in posts}) == 5
    assert all(p.image is not None and p.text.strip() for p in posts)
    assert words.startswith("the dev split (")


def test_each_map_gets_its_mean_gain_over_random_deletion(ckpt, tmp_path):
    out = tmp_path / "faithfulness.json"
    result = run([ckpt], posts=2, maps=("words", "grad-cam", "attention"), out=out)
    r = result["mvsa-single/concat"]
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))  # written as returned
    assert r["posts"] == 2 and "attention" not in r["maps"]  # concat draws no attention map
    for m in ("words", "grad-cam"):
        v = r["maps"][m]
        assert 0 <= v["beat"] <= v["checked"] <= 2
        if v["checked"]:  # the gain is the random deletions' probability minus the top k's, averaged over posts
            assert v["gain_mean"] == pytest.approx(v["random"] - v["top"], abs=1e-6)
            assert 0 <= v["top"] <= 1 and 0 <= v["random"] <= 1
    assert faithfulness(ckpt, 1, ("words",))["posts"] == 1
