"""The model contract, the baselines, checkpoints and the Predictor, with tiny encoders."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmdemo.checkpoint import CheckpointError, load_checkpoint, read_config, save_checkpoint
from mmdemo.models import ModelOutput, get_model, list_models
from mmdemo.predict import Predictor
from tests.helpers import SENTIMENT as LABELS, features, make_classifier

BASELINES = ["text-only", "image-only", "concat"]


def test_registry_lists_the_baselines():
    assert set(BASELINES) <= set(list_models())
    with pytest.raises(KeyError, match="concat"):
        get_model("nope")


@pytest.mark.parametrize("model", BASELINES)
@pytest.mark.parametrize("batch", [1, 3])
def test_baselines_forward_backward(tiny_encoders, model, batch):
    te, ie = tiny_encoders
    clf = make_classifier(te, ie, model).train()
    text, image = features(te, ie, batch)
    out = clf(text, image)
    assert isinstance(out, ModelOutput)
    for logits in (out.logits, out.text_logits, out.image_logits):
        assert logits.shape == (batch, len(LABELS)) and torch.isfinite(logits).all()
    (out.logits.sum() + out.text_logits.sum() + out.image_logits.sum()).backward()
    assert all(p.grad is not None for p in clf.parameters())


def test_text_only_fused_is_the_text_head(tiny_encoders):
    te, ie = tiny_encoders
    out = make_classifier(te, ie, "text-only").eval()(*features(te, ie))
    assert torch.equal(out.logits, out.text_logits)


def test_checkpoint_round_trips_bit_exactly(tiny_encoders, tmp_path):
    te, ie = tiny_encoders
    clf = make_classifier(te, ie, "concat", head={"hidden": 32}).eval()
    save_checkpoint(clf, tmp_path, metrics={"dev": {"fused": {"accuracy": 0.5}}})
    assert {p.name for p in tmp_path.iterdir()} >= {"config.json", "model.safetensors", "metrics.json", "README.md"}
    loaded = load_checkpoint(tmp_path, task="mvsa-single", labels=LABELS)
    a, b = clf.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    text, image = features(te, ie)
    assert torch.equal(clf(text, image).logits, loaded(text, image).logits)
    assert read_config(tmp_path)["head"]["hidden"] == 32


def test_an_interrupted_save_leaves_the_previous_checkpoint_or_none(tiny_encoders, tmp_path, monkeypatch):
    te, ie = tiny_encoders
    clf = make_classifier(te, ie, "concat").eval()
    out = save_checkpoint(clf, tmp_path / "ckpt", metrics={"dev": {"fused": {"accuracy": 0.5}}})
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def dies(self, *args, **kwargs):  # the disk fills up half-way through the weights
        (Path(args[0]) / "model.safetensors").write_bytes(b"\0" * 10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(clf), "save_pretrained", dies)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(clf, out, metrics={"dev": {"fused": {"accuracy": 0.9}}})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old checkpoint, untouched
    with pytest.raises(OSError):
        save_checkpoint(clf, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no partial directory, no temporary left
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="holds other files"):
        save_checkpoint(clf, tmp_path / "notes")


def test_checkpoint_mismatch_and_pickles_are_refused(tiny_encoders, tmp_path):
    te, ie = tiny_encoders
    save_checkpoint(make_classifier(te, ie), tmp_path)
    with pytest.raises(CheckpointError, match="task"):
        load_checkpoint(tmp_path, task="mediaeval2016")
    with pytest.raises(CheckpointError, match="image_encoder"):
        load_checkpoint(tmp_path, image_encoder="efficientnet-lite0")
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")


def test_weights_that_do_not_fit_the_config_are_refused(tiny_encoders, tmp_path):
    te, ie = tiny_encoders
    save_checkpoint(make_classifier(te, ie, head={"hidden": 32}), tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["head"]["hidden"] = 64
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(tmp_path)


def test_predictor_takes_pil_and_caption(tiny_encoders, tmp_path):
    te, ie = tiny_encoders
    save_checkpoint(make_classifier(te, ie), tmp_path)
    p = Predictor(load_checkpoint(tmp_path), text_encoder=te, image_encoder=ie)
    r = p.predict(Image.new("CMYK", (120, 90)), "a caption with an emoji 😀")
    for head in ("fused", "text", "image"):
        probs = r.probs[head]
        assert list(probs) == sorted(probs, key=probs.get, reverse=True) and set(probs) == set(LABELS)
        assert abs(sum(probs.values()) - 1) < 1e-5
    assert r.tokens[0] == "[CLS]" and r.latency_ms > 0


def test_config_values_given_as_text_take_the_fields_types():
    """A sweep grid or `--set` hands values over as text: "False" must switch a component off, not read as a true
    (non-empty) string."""
    c = get_model("mggf").config({"feature_norm": "False", "aux_detach": "true", "hidden": "64", "lr": "1e-3"})
    assert c.feature_norm is False and c.aux_detach is True and c.hidden == 64 and c.lr == 0.001
    with pytest.raises(ValueError, match="true or false"):
        get_model("mggf").config({"feature_norm": "maybe"})
