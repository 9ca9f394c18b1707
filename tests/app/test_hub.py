"""Hub integration without network: clear errors before any work, card round trip, fallback to bundled."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from mmdemo import hub
from mmdemo.card import make_model_card
from mmdemo.checkpoint import save_checkpoint
from mmdemo.models import MultimodalClassifier
from tests.helpers import REPO_ROOT, SENTIMENT as LABELS, features, make_classifier

METRICS = {"seed": 0, "selected_on": "dev weighted_f1 (fused)",
           "dev": {"fused": {"accuracy": 0.71, "weighted_f1": 0.70, "macro_f1": 0.55}},
           "test": {"fused": {"accuracy": 0.69, "weighted_f1": 0.68, "macro_f1": 0.52}}}


@pytest.fixture
def ckpt(tiny_encoders, tmp_path) -> Path:
    te, ie = tiny_encoders
    model = make_classifier(te, ie, "concat")
    out = tmp_path / "checkpoints" / "mvsa-single" / "concat"
    save_checkpoint(model, out, metrics=METRICS)
    make_model_card(model.hub_config(), METRICS, "python -m trainer train --task mvsa-single --model concat").save(
        out / "README.md")
    return out


def test_push_fails_fast_offline(ckpt, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.HubError, match="HF_HUB_OFFLINE"):
        hub.push_checkpoint(ckpt, "someone/mmdemo-test")


def test_push_without_token_or_reachable_hub_says_so(ckpt, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(hub.HubError, match="token"):
        hub.push_checkpoint(ckpt, "someone/mmdemo-test")

    def unreachable(*a, **k):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(huggingface_hub, "whoami", unreachable)
    with pytest.raises(hub.HubError, match="unreachable"):
        hub.push_checkpoint(ckpt, "someone/mmdemo-test", token="hf_fake")


@pytest.mark.slow
def test_cli_push_and_push_to_hub_fail_before_any_work(ckpt):
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    root = REPO_ROOT
    for args in (["push", "--checkpoint", str(ckpt), "--repo-id", "a/b"],
                 ["train", "--task", "mvsa-single", "--model", "concat", "--push-to-hub", "--repo-id", "a/b"]):
        out = subprocess.run([sys.executable, "-m", "trainer", *args], capture_output=True, text=True, cwd=root,
                             env=env, timeout=120)
        assert out.returncode == 2 and "HF_HUB_OFFLINE" in out.stderr, out.stderr[-1000:]
        assert "Traceback" not in out.stderr


def test_local_directory_round_trips_through_from_pretrained(ckpt, tiny_encoders):
    te, ie = tiny_encoders
    loaded = MultimodalClassifier.from_pretrained(ckpt)
    text, image = features(te, ie)
    again = MultimodalClassifier.from_pretrained(ckpt)
    assert torch.equal(loaded(text, image).logits, again(text, image).logits)
    assert loaded.labels == LABELS and loaded.task == "mvsa-single"


def test_model_card_parses_back_with_eval_results(ckpt):
    card = ModelCard.load(ckpt / "README.md")
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results[("test", "accuracy")] == pytest.approx(0.69)
    assert results[("dev", "weighted_f1")] == pytest.approx(0.70)
    assert card.data.library_name == "mmdemo" and card.data.license == "apache-2.0"
    assert "sentence-transformers/all-MiniLM-L6-v2" not in card.data.base_model  # tiny encoders have no Hub id
    assert "python -m trainer train --task mvsa-single --model concat" in card.text


def test_model_card_says_what_was_fine_tuned_and_which_heads_are_probes(ckpt):
    config = json.loads((ckpt / "config.json").read_text())
    frozen = make_model_card(config, METRICS).text
    assert "both frozen; only the fusion head's weights" in frozen and "fine-tuned" not in frozen
    assert "trained jointly with weight `aux_weight=" in frozen
    tuned = make_model_card({**config, "finetune_text_layers": 3,
                                 "head": {**config["head"], "aux_detach": True}}, METRICS).text
    assert "last 3 layers fine-tuned" in tuned and "both frozen" not in tuned
    assert "probes" in tuned and "trained jointly" not in tuned
    lora = make_model_card({**config, "finetune_text_layers": 2, "lora_rank": 8}, METRICS).text
    assert "through LoRA adapters of rank 8" in lora and "the 2 tuned layers" not in lora
    assert "**Weights:**" not in frozen  # a run's own checkpoint; a bundled one says how it is stored
    small = {"dtype": "float16", "bytes": {"run": 2**21, "bundled": 2**20}, "dev": {"accuracy": 0.7}}
    bundled = make_model_card(config, {**METRICS, "bundle": small}).text
    shipped = make_model_card({**config, "finetune_text_layers": 2, "lora_rank": 64},  # trainer bundle --lora-rank
                                  {**METRICS, "bundle": {**small, "lora_rank": 64}}).text
    assert "fine-tuned whole, stored as LoRA adapters of rank 64" in shipped and "through LoRA" not in shipped
    assert "stored in float16 (1.0 MiB, from 2.0)" in bundled and "accuracy 0.7000" in bundled


def test_resolve_falls_back_to_bundled_when_hub_unreachable(ckpt, monkeypatch):
    root = ckpt.parents[1]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(hub.HUB_CONFIG_ENV, json.dumps({"mvsa-single/concat": "someone/does-not-exist"}))
    where = hub.resolve("mvsa-single", "concat", root=root)
    assert where.source == "bundled" and where.path == ckpt
    assert "someone/does-not-exist" in where.note and "bundled" in where.note
    monkeypatch.delenv(hub.HUB_CONFIG_ENV)
    assert hub.resolve("mvsa-single", "concat", root=root).note == ""
    with pytest.raises(Exception, match="nothing bundled"):
        hub.resolve("mvsa-single", "hglnet", root=root)


def test_resolve_uses_the_hub_snapshot_when_reachable(ckpt, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv(hub.HUB_CONFIG_ENV, json.dumps({"mvsa-single/concat": "someone/mmdemo-concat"}))
    asked = {}

    def fake_snapshot(repo_id, allow_patterns):
        asked.update(repo=repo_id, patterns=allow_patterns)
        return str(ckpt)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    where = hub.resolve("mvsa-single", "concat", root=ckpt.parents[1] / "elsewhere")
    assert where.source == "hub:someone/mmdemo-concat"
    assert not any(p.endswith((".bin", ".pt", ".pth")) for p in asked["patterns"])  # never fetch pickles
    # a Hub-only model (nothing bundled) still gets its label list in the app
    from mmdemo.app.handlers import PREDICTED, DemoApp

    app = DemoApp(ckpt.parents[1] / "elsewhere")
    assert app.labels_of("mvsa-single", "concat") == LABELS
    assert app.targets_fn("mvsa-single", "concat")["choices"] == [PREDICTED] + LABELS


def test_model_card_shows_multi_label_metrics(ckpt):
    config = {**json.loads((ckpt / "config.json").read_text()), "multi_label": True, "labels": ["#a", "#b"]}
    metrics = {"test": {"fused": {"precision@1": 0.41, "precision@3": 0.2, "recall@5": 0.5, "accuracy@1": 0.41,
                                  "accuracy@3": 0.63, "accuracy@5": 0.7, "micro_f1": 0.3}}}
    table = make_model_card(config, metrics).text.split("## Evaluation")[1].split("## Training")[0]
    assert "| P@1 | P@3 | R@5 | A@1 | A@3 | A@5 |" in table  # the hashtag papers' metrics
    assert "| test | fused | 0.4100 | 0.2000 | 0.5000 | 0.4100 | 0.6300 | 0.7000 |" in table
    assert "–" not in table


def test_bundled_checkpoints_are_what_push_uploads():
    bundled = hub.bundled_checkpoints(REPO_ROOT / "checkpoints")
    assert {"mvsa-single", "mediaeval2016"} <= set(bundled)
    for task, models in bundled.items():
        for model, path in models.items():
            names = {p.name for p in path.iterdir()}
            assert {"config.json", "model.safetensors", "metrics.json", "README.md"} <= names, path
            assert all(any(Path(n).match(pat) for pat in hub.UPLOAD_PATTERNS) for n in names), names
            assert path.joinpath("model.safetensors").stat().st_size < 25 * 2**20
            card = ModelCard.load(path / "README.md")
            assert card.data.eval_results, path


def test_model_card_names_its_splits_says_what_chose_it_and_how_far_to_trust_it(ckpt):
    """Issue 49.2 and 49.5: a checkpoint trained on every event but its validation events names them (card table and
    model-index), says they chose it, gives the recipe's figure as the recipe's, and marks it optimistic."""
    config = json.loads((ckpt / "config.json").read_text())
    metrics = {**METRICS, "data": {"groups": {"train": ["sandy"], "dev": ["boston", "nepal"], "test": []}}}
    metrics.pop("test")
    trust = {"informative": True,
             "spread": {"n": 1892, "std": 0.21, "top_low": 0.52, "top_high": 0.97, "top_share": {"a": 1.0},
                        "on": "the validation events boston, nepal (1,892 posts)"},
             "judged": {"metric": "macro_f1", "value": 0.5306, "std": 0.0101, "floor": 0.4141,
                        "floor_name": "always answering fake", "on": "events training never saw", "whose": "recipe",
                        "optimistic": True, "why": "the unseen-event recipe search read them twice"},
             "selected_on": "the validation events boston, nepal (1,892 posts): the epoch with the best macro_f1",
             "splits": {"dev": "validation events (boston, nepal)"}}
    calibration = {"temperature": 1.61, "fitted_on": "the recipe's pooled predictions", "whose": "recipe",
                   "ece_before": 0.2, "ece_after": 0.1}
    card = make_model_card({**config, "trust": trust, "calibration": calibration}, metrics)
    text = card.text
    assert "**Selection:** chosen on the validation events boston, nepal (1,892 posts)" in text
    assert "| validation events (boston, nepal) | fused |" in text and "| dev |" not in text
    assert {r.dataset_split for r in card.data.eval_results} == {"validation events (boston, nepal)"}
    assert "macro_f1 0.5306 ± 0.0101 on events training never saw: the recipe's" in text
    assert "not this checkpoint's" in text and "Optimistic: the unseen-event recipe search read them twice." in text
    assert "always answering fake scores 0.4141" in text
    assert "temperature 1.61 divides the fused logits" in text and "0.2000 before, 0.1000 after" in text
    # the same trust with a flattening temperature: never called calibrated in the trust line
    flat = make_model_card({**config, "trust": {**trust, "informative": False},
                                "calibration": {**calibration, "temperature": 1.7e6}}, metrics).text
    line = next(x for x in flat.splitlines() if x.startswith("- **How far to trust it:**"))
    assert "does not change with the input" in line and "calibrated" not in line


def test_model_card_gives_each_signal_its_measured_validity_line(ckpt):
    """The card carries the app's line for every measured signal, flat ones included."""
    from mmdemo.checkpoint import validity_line

    flat = {"n": 450, "on": "the dev split (450 posts)", "mean": 0.676, "std": 0.003, "p05": 0.672, "p95": 0.681,
            "low": 0.5, "high": 1.0, "flat": True, "spearman_text_share": 0.02, "shuffled_mean": 0.676}
    config = json.loads((ckpt / "config.json").read_text())
    config["trust"] = {"informative": True, "signals": {"discrepancy": flat}}
    card = make_model_card(config, METRICS).text
    assert "What its own signals carry, measured" in card
    assert f"`discrepancy`: {validity_line(flat)}" in card and "does not change with the input" in card
