"""A head that uses every declaration of the contract trains through the unmodified trainer and round-trips: its
own objective with parameter groups and an epoch schedule (CACNet's phases), its own text-layer count (INFIG reads
3), token ids with fit-on-train statistics (CACNet's IDF-weighted static word vectors) and a prior encoder (INFIG's
CLIP), present (tiny open_clip) and absent (CLIP offline: the head runs without it and says so)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

import pytest
import torch
from PIL import Image
from torch import nn

from mmdemo import models
from mmdemo.checkpoint import load_checkpoint, read_config
from mmdemo.card import make_model_card
from mmdemo.models import (MLP, FeatureNeeds, FitData, FusionHead, HeadConfig, ModelEntry, ModelOutput, Objective,
                           Signal, TaskInfo, masked_mean)
from mmdemo.predict import Predictor
from mmdemo.app.handlers import DemoApp

from tests.helpers import LABELS, synthetic_data, train_on_synthetic


@dataclass
class ProbeConfig(HeadConfig):
    text_layers: int = 3
    prior: str = ""  # a prior encoder name, as INFIG's config names CLIP
    passive_epochs: int = 1  # epochs whose steps update only the passive (unimodal) groups
    epochs: int = 3
    batch_size: int = 16
    lr: float = 3e-3


class ProbeHead(FusionHead):
    """Passive text / image branches and a cross-active fusion layer, as named parameter groups."""

    config_class = ProbeConfig
    signals = {"beta": Signal("Phase", "0 = passive groups only, 1 = the whole network", low=0.0, high=1.0)}

    @classmethod
    def needs(cls, config: ProbeConfig) -> FeatureNeeds:
        return FeatureNeeds(text_layers=config.text_layers, image_patches=False, token_ids=True, prior=config.prior)

    def __init__(self, config: ProbeConfig, dims, task: TaskInfo):
        super().__init__(config, dims, task)
        d = dims.text_dim
        self.register_buffer("idf", torch.zeros(dims.vocab_size))  # fitted on train, saved in the checkpoint
        self.text = nn.Linear(d * (config.text_layers + 1) + dims.prior_dim, 8)
        self.image = nn.Linear(dims.image_pooled_dim + dims.prior_dim, 8)
        self.text_out, self.image_out = nn.Linear(8, task.num_labels), nn.Linear(8, task.num_labels)
        self.cross = MLP(16, 8, task.num_labels)
        self.phase = 0
        self.epochs_seen: list[tuple[int, int]] = []

    def fit(self, data: FitData) -> None:
        df = torch.zeros_like(self.idf)
        for ids in data.input_ids:
            df[ids.unique()] += 1
        self.idf.copy_(torch.log((1 + len(data.input_ids)) / (1 + df)) + 1)  # smoothed IDF

    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        self.epochs_seen.append((epoch, num_epochs))
        self.phase = 0 if epoch <= self.config.passive_epochs else 1

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        passive = [*self.text.parameters(), *self.image.parameters(), *self.text_out.parameters(),
                   *self.image_out.parameters()]
        return {"passive": passive, "cross": list(self.cross.parameters())}

    def forward(self, text, image) -> ModelOutput:
        assert text.layers.shape[1] == self.config.text_layers
        w = self.idf[text.input_ids] * text.attention_mask  # IDF-weighted average of static word vectors
        bag = (w[..., None] * text.word_embeddings).sum(1) / w.sum(1, keepdim=True).clamp(min=1e-6)
        t = [masked_mean(text.layers[:, k], text.attention_mask) for k in range(text.layers.shape[1])] + [bag]
        v = [image.pooled]
        if self.dims.prior_dim:
            t, v = t + [text.prior], v + [image.prior]
        t, v = torch.tanh(self.text(torch.cat(t, -1))), torch.tanh(self.image(torch.cat(v, -1)))
        beta = torch.full((t.shape[0],), float(self.phase), device=t.device)
        return ModelOutput(self.cross(torch.cat([t, v], -1)), self.text_out(t), self.image_out(v),
                           explain={"beta": beta})

    def objective(self, out: ModelOutput, labels: torch.Tensor) -> Objective:
        objective = super().objective(out, labels)
        if self.phase == 0:  # phase 1: the same loss, but only the passive sub-networks take the step
            objective.update = frozenset({"passive"})
        return objective


@pytest.fixture
def probe_model(monkeypatch):
    monkeypatch.setitem(models.MODELS, "probe", ModelEntry("probe", ProbeHead, "contract probe"))
    return "probe"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_data(tmp_path_factory.mktemp("probe"), n_train=32, n_dev=8, n_test=8, corrupt=0)


def _train(tmp_path, data, monkeypatch, **overrides):
    return train_on_synthetic(tmp_path, data, monkeypatch, "probe", **overrides)


def test_a_head_owns_objective_groups_schedule_features_and_fitted_statistics(probe_model, data, tmp_path,
                                                                              monkeypatch):
    built: list[ProbeHead] = []
    cross_at_init: list[dict] = []

    def remember(self, *args, **kwargs):  # every head built; the cross-active weights of each as initialised
        original(self, *args, **kwargs)
        built.append(self)
        cross_at_init.append({k: v.clone() for k, v in self.cross.state_dict().items()})

    def cross_unchanged(model, i: int) -> bool:
        return all(torch.equal(cross_at_init[i][k], v) for k, v in model.head.cross.state_dict().items())

    original = ProbeHead.__init__
    monkeypatch.setattr(ProbeHead, "__init__", remember)
    # one epoch of phase 1: its steps take the whole loss but update only the passive groups
    model = load_checkpoint(_train(tmp_path / "phase1", data, monkeypatch, epochs=1))
    assert built[0].epochs_seen == [(1, 1)] and cross_unchanged(model, 0)
    # the same epoch with the phase switched off: the same loss does move the cross-active weights
    model = load_checkpoint(_train(tmp_path / "phase2", data, monkeypatch, epochs=1, passive_epochs=0))
    assert not cross_unchanged(model, 2)

    # the epoch hook runs the schedule: phase 1, then phase 2
    out = _train(tmp_path / "full", data, monkeypatch, epochs=3, patience=5)
    assert built[4].epochs_seen == [(1, 3), (2, 3), (3, 3)] and built[4].phase == 1
    assert set(json.loads((out / "metrics.json").read_text())["history"][0]["train_terms"]) == {"fused", "aux"}
    model = load_checkpoint(out)

    # the IDF fitted on the training captions travels in the checkpoint
    df = torch.zeros(model.feature_dims.vocab_size)
    for s in data.train:
        ids = torch.tensor(model_tokenizer_ids(s.text))
        df[ids.unique()] += 1
    expected = torch.log(torch.tensor(1.0 + len(data.train)) / (1 + df)) + 1
    torch.testing.assert_close(model.head.idf, expected)
    assert model.head.idf.max() > 1  # not the zeros it was built with
    assert read_config(out)["head"]["text_layers"] == 3

    # the live path gives the head the same declared features: Predictor and the app render its signal
    pred = Predictor(model).predict(Image.new("RGB", (64, 64), (220, 140, 40)), "the sun at the beach")
    assert set(pred.explain) == {"beta"} and abs(sum(pred.probs["fused"].values()) - 1) < 1e-5


def model_tokenizer_ids(caption: str) -> list[int]:
    from mmdemo.encoders import shared_text_encoder

    return shared_text_encoder("tiny-bert").tokenize([caption], max_length=16)["input_ids"][0].tolist()


def test_a_prior_encoder_present_and_absent(probe_model, data, tmp_path, monkeypatch):
    # present: the tiny open_clip model's global vectors reach the head from the cache and live
    out = _train(tmp_path / "clip", data, monkeypatch, prior="tiny-clip")
    config = read_config(out)
    assert config["prior_encoder"] == "tiny-clip" and config["dims"]["prior_dim"] == 32
    model = load_checkpoint(out)
    assert model.head.text.in_features == 32 * 4 + 32 and not model.missing_prior
    p = Predictor(model)
    image = Image.new("RGB", (64, 64), (40, 90, 200))
    inputs, _ = p.prepare(image, "rain and storm")
    assert inputs["prior_text"].shape == (1, 32) and inputs["prior_image"].shape == (1, 32)
    assert p.predict(image, "rain and storm").labels == LABELS

    # absent: CLIP's weights are not on this machine, so the model is built without it and says so
    out = _train(tmp_path / "offline", data, monkeypatch, prior="clip-vit-b-16")
    config = read_config(out)
    assert config["prior_encoder"] == "" and config["dims"]["prior_dim"] == 0
    model = load_checkpoint(out)
    assert model.missing_prior == "clip-vit-b-16" and model.head.text.in_features == 32 * 4
    card = make_model_card(config, {}).text
    assert "clip-vit-b-16" in card and "w/o-prior" in card
    root = tmp_path / "bundle"
    shutil.copytree(out, root / "mvsa-single" / "probe")
    app = DemoApp(root)
    *_, signals, _, _ = app.predict_fn(Image.new("RGB", (64, 64)), "a sunny day", "mvsa-single", "probe")
    assert "clip-vit-b-16" in signals and "w/o-prior" in signals and "Phase" in signals
    assert "clip-vit-b-16" in app.model_info_fn("mvsa-single", "probe")
