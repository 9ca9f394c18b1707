"""Every registered network and variant, through everything that uses one (timm's pattern): a new network file is
covered here without editing a test.

For each (model, variant), with tiny encoders: forward/backward at batch 1 and 3 through the head's own objective,
its explain entries against its `signals` declaration, a few epochs of the real trainer loop from the real feature
cache, a checkpoint round trip (and its bundled float16 form), `Predictor.predict` and its Shapley values, the
dataset probe, one Captum explanation and the app's signal rendering.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from mmdemo import explain as X
from mmdemo.checkpoint import compact_checkpoint, load_checkpoint, save_checkpoint
from mmdemo.models import NETWORKS, ModelOutput, MultimodalClassifier, get_model, list_models
from mmdemo.predict import Predictor
from mmdemo.render import main_signal, signals_html
from trainer.loop import RunSpec, evaluate, train
from trainer.probe import modality_report, reference_of

from tests.helpers import LABELS, REPO_ROOT, synthetic_features

ROWS = [(m, v) for m in list_models() for v in ("", *get_model(m).variants)]




def test_every_network_file_is_listed_in_the_registry():
    """A file of mmdemo/models that declares ENTRIES is a network: NETWORKS must list it, or nothing here tests it."""
    declaring = {path.stem for path in (REPO_ROOT / "mmdemo" / "models").glob("*.py")
                 if any(isinstance(node, (ast.Assign, ast.AnnAssign)) and "ENTRIES" in ast.unparse(node).split("=")[0]
                        for node in ast.parse(path.read_text()).body)}
    listed = {module.__name__.rpartition(".")[2] for module in NETWORKS}
    assert declaring == listed, f"declare ENTRIES but are not in mmdemo.models.NETWORKS: {sorted(declaring - listed)}"
    assert list_models() == [entry.name for module in NETWORKS for entry in module.ENTRIES]


def test_register_model_adds_an_entry_that_no_network_file_declares(monkeypatch):
    from mmdemo import models

    monkeypatch.setattr(models, "MODELS", dict(models.MODELS))  # undone after the test
    concat = get_model("concat")
    entry = models.register_model(models.ModelEntry("test-head", concat.head, "a test-only head",
                                                    defaults={"fusion": "text"}))
    assert get_model("test-head") is entry and list_models()[-1] == "test-head"
    with pytest.raises(ValueError, match="twice"):
        models.register_model(concat)


# Threads that each make the process's first use of the registry at once, through its public functions only (so the
# same check runs against any implementation of it): what did each see, and what is there once they are done?
FIRST_USE = """
import json, threading
THREADS = 8
barrier, seen = threading.Barrier(THREADS), []

def first_use():
    barrier.wait()
    from mmdemo.models import list_models
    seen.append(list_models())

threads = [threading.Thread(target=first_use) for _ in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
from mmdemo.models import list_models
print(json.dumps({"seen": seen, "full": list_models()}))
"""


def first_use_views(root: Path = REPO_ROOT) -> tuple[list[list[str]], list[str]]:
    """(the registry each thread saw on first use, the registry after all of them) in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", FIRST_USE], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["seen"], result["full"]


def test_concurrent_first_use_sees_the_full_registry():
    """A registry filled lazily and marked ready before it is full hands early threads part of it (the cold-start
    race of issue 48): every thread must see every entry."""
    seen, full = first_use_views()
    assert full == list_models()
    assert len(seen) == 8 and all(view == full for view in seen), [len(view) for view in seen]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, tiny_encoders):
    return synthetic_features(tmp_path_factory.mktemp("registry"), tiny_encoders)


def check_explain(model: MultimodalClassifier, out: ModelOutput, batch: int, n_tokens: int) -> None:
    """Every explain entry is declared in the head's `signals`, with the shape its kind says."""
    signals = model.head.signals
    n_patches = model.feature_dims.num_patches
    for key, value in out.explain.items():
        if key == "attention":
            continue
        assert key in signals, f"{model.model_name}: explain key {key!r} is not declared in its signals"
        sig = signals[key]
        assert sig.kind in ("score", "weights"), key
        assert value.shape == ((batch,) if sig.kind == "score" else (batch, len(sig.components))), key
    for name, m in (out.explain.get("attention") or {}).items():
        assert signals.get(name) is not None and signals[name].kind == "attention", name
        size = {"text": n_tokens, "image": n_patches}
        q, k = signals[name].axes
        assert m.shape[0] == batch and m.shape[2:] == (size[q], size[k]), (name, m.shape)


@pytest.mark.parametrize("model,variant", ROWS, ids=[f"{m}-{v}" if v else m for m, v in ROWS])
def test_every_network_and_variant_end_to_end(model, variant, synthetic, tiny_encoders, tmp_path):
    data, feats, dims = synthetic
    te, ie = tiny_encoders
    spec = RunSpec(task="mvsa-single", model=model, labels=LABELS, multi_label=False, text_encoder=te.name,
                   image_encoder=ie.name, dims=dims, seed=0, variant=variant, max_length=16,
                   overrides={"epochs": 2, "batch_size": 16}, data_version=data.version)

    # forward / backward at batch 1 and 3, through the head's own objective, from the cached features
    torch.manual_seed(0)
    clf = MultimodalClassifier(model, "mvsa-single", LABELS, te.name, ie.name, dims.to_dict(), variant=variant).train()
    for b in (1, 3):
        text, image, y = feats["train"].batch(torch.arange(b), clf.needs)
        out = clf(text, image)
        for logits in (out.logits, out.text_logits, out.image_logits):
            assert logits.shape == (b, len(LABELS)) and torch.isfinite(logits).all()
        check_explain(clf, out, b, text.attention_mask.shape[1])
        objective = clf.head.objective(out, y)
        assert objective.terms and torch.isfinite(objective.total)
        clf.zero_grad()
        objective.total.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in clf.head.parameters())
        # the fused representation (an event discriminator trains against it) reaches the head's weights
        if model != "prior":
            out = clf(text, image)
            assert out.features.shape[0] == b and out.features.dim() == 2 and torch.isfinite(out.features).all()
            clf.zero_grad()
            out.features.square().sum().backward()
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in clf.head.parameters())

    # the real trainer loop on the real cache
    trained, record = train(spec, feats, progress=False)
    assert record["epochs_run"] >= 1 and np.isfinite(record["history"][-1]["train_loss"])
    # the head's own loss terms (not necessarily "fused": a phase may train other outputs), each logged and finite
    terms = record["history"][0]["train_terms"]
    assert terms and all(np.isfinite(v) for v in terms.values())
    dev = evaluate(trained, feats["dev"])
    # against an independent count: the whole dev split in one batch, argmax against the labels (catches a batching,
    # ordering or metric bug in evaluate's path, which a range check cannot)
    text, image, y = feats["dev"].batch(torch.arange(len(feats["dev"].labels)), trained.needs)
    with torch.no_grad():
        hits = (trained.eval()(text, image).logits.argmax(-1) == y).float().mean().item()
    assert dev["fused"]["accuracy"] == pytest.approx(hits, abs=1e-6)

    # checkpoint round trip
    save_checkpoint(trained, tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt", task="mvsa-single", labels=LABELS)
    assert loaded.variant == variant and loaded.head.config == trained.head.config
    text, image, _ = feats["dev"].batch(torch.arange(3), trained.needs)
    with torch.no_grad():
        a, b = trained(text, image), loaded(text, image)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.text_logits, b.text_logits)
    # the bundled form (float16, no training-only state): same predictions up to float16 rounding
    shutil.copytree(tmp_path / "ckpt", tmp_path / "bundled")
    compact_checkpoint(tmp_path / "bundled")
    stored = load_file(tmp_path / "bundled" / "model.safetensors")
    assert not any(t.dtype == torch.float32 for t in stored.values())
    with torch.no_grad():
        c = load_checkpoint(tmp_path / "bundled")(text, image)
    assert torch.allclose(c.logits, a.logits, atol=2e-2, rtol=1e-2)

    # Predictor, a Captum explanation, the app's rendering of the network's own signals
    p = Predictor(loaded, text_encoder=te, image_encoder=ie)
    image = Image.new("RGB", (80, 60), (220, 140, 40))
    pred = p.predict(image, "the sun at the beach today")
    assert abs(sum(pred.probs["fused"].values()) - 1) < 1e-5 and pred.labels == LABELS
    c = pred.contributions  # exact Shapley values of the two modalities
    assert torch.allclose(c.text + c.image, c.values["both"] - c.values["neither"], atol=1e-5)
    for kind in ("blank", "mean"):  # the dataset probe, with either reference
        report = modality_report(trained, feats["dev"], reference_of(trained, kind, feats["train"]), shuffles=1)
        assert 0 <= report["shapley"]["text_share"]["mean"] <= 1 and set(report["perceptual"]) == {"image", "text"}
    inputs, _ = p.prepare(image, "the sun at the beach today")
    words = X.token_attributions(p.pipeline, inputs, n_steps=4)
    assert len(words.scores) == len(pred.tokens) and np.isfinite(words.scores).all()
    heat = X.grad_cam(p.pipeline, inputs)
    assert heat.shape == tuple(inputs["pixel_values"].shape[-2:]) and np.isfinite(heat).all()
    html = signals_html(pred, loaded.head.signals)
    for key in pred.explain:
        if key != "attention":
            assert loaded.head.signals[key].title in html
    assert main_signal(pred, loaded.head.signals)
    t2i, i2t = X.attention_matrices(pred.explain, loaded.head.signals, len(pred.tokens))
    assert (t2i is None) == (not pred.explain.get("attention"))
    if t2i is not None:
        assert t2i.shape == (len(pred.tokens), dims.num_patches) and i2t.shape == t2i.shape[::-1]


PRESETS = [(m, name, task) for m in list_models() for name, tasks in get_model(m).presets.items() for task in tasks]


@pytest.mark.parametrize("model,preset,task", PRESETS)
def test_every_preset_is_a_valid_point_for_a_known_task(model, preset, task):
    """A preset names head config fields and train options only, for a registered task, and builds its config."""
    from mmdemo.tasks import TASKS
    from trainer.sweep import TRAIN_OPTIONS

    point = get_model(model).preset(preset, task)
    assert task in TASKS
    head = {k: v for k, v in point.items() if k not in TRAIN_OPTIONS}
    config = get_model(model).config(head)  # unknown fields raise
    assert all(getattr(config, k) == v for k, v in head.items())
    assert point.get("lora_rank", 0) == 0 or point.get("unfreeze_text_layers", 0) > 0


def _matches_point(config: dict, trained_rank: int, point: dict) -> bool:
    """A checkpoint's config holds a sweep point's (or a preset's) head fields, tuned text layers and adapter rank."""
    from trainer.sweep import TRAIN_OPTIONS

    head = {k: v for k, v in point.items() if k not in TRAIN_OPTIONS}
    # the head config as the checkpoint loads it: a field its config.json predates reads as what it was trained with
    loaded = get_model(config["model"]).config(config["head"], config.get("variant", "")).to_dict()
    return ({k: loaded.get(k) for k in head} == head
            and config["finetune_text_layers"] == point.get("unfreeze_text_layers", 0)
            and trained_rank == point.get("lora_rank", 0))


def _bundle_origin(task: str, model: str, metrics: dict):
    """-> (the run directory whose seeds the bundle was chosen from, the sweep.json that chose its point or None),
    read off the bundle's recorded command (`--out`); a run retrained outside the repository falls back to results/main/."""
    import shlex

    from trainer.run import REPO_ROOT
    from trainer.run import run_name

    args = shlex.split(metrics.get("command", ""))
    out = Path(args[args.index("--out") + 1]) if "--out" in args else REPO_ROOT / "results" / "main"
    out = out if out.is_absolute() else REPO_ROOT / out
    if not out.is_relative_to(REPO_ROOT) or not out.is_dir():
        out = REPO_ROOT / "results" / "main"
    name = run_name(model, metrics.get("variant", ""))
    every_event = "all-events" in args
    run_dir = out / task / name / ("all-events" if every_event else "")
    # a recipe trained on every event is chosen on its validation events (a sweep beside its runs, or an all-events
    # sweep), never by a sweep on the task's split
    sweep = out.parent / "sweep.json" if (out.parent / "sweep.json").is_file() else (
        REPO_ROOT / "results" / ("all-events-sweep" if every_event else "sweep") / task / name / "sweep.json")
    return run_dir, (sweep if sweep.is_file() else None), out


# Bundles that a selection rule now chooses differently, until they are bundled again (each must still differ: a
# rebundled checkpoint that passes makes this entry fail, so it is removed).
PENDING: dict[tuple[str, str], str] = {}  # bundles known to differ from their rules' choice, each with why


def test_every_bundled_checkpoint_is_its_networks_best_preset_its_sweeps_choice_and_best_seed():
    """The README's `--preset best` reproduces what the app ships, and what ships is what the rules chose: each
    bundle's config holds its preset's head fields, tuned text layers and adapter rank (a bundle converted to adapters
    by `bundle --lora-rank` records it); where a sweep chose its settings, they are the point `trainer.sweep.choose`
    takes from the committed sweep.json (whatever the file's "best" says); and its seed is the best-on-dev seed of
    the runs it came from (ties to the lowest seed, as `trainer bundle` takes them)."""
    from mmdemo.checkpoint import read_config, read_metrics
    from mmdemo.hub import bundled_checkpoints
    from trainer.run import REPO_ROOT, dev_scores
    from trainer.sweep import choose

    failures = {}
    for task, models in bundled_checkpoints(REPO_ROOT / "checkpoints").items():
        for model, path in models.items():
            config, metrics = read_config(path), read_metrics(path)
            trained_rank = 0 if metrics.get("bundle", {}).get("lora_rank") else config["lora_rank"]
            problems = []
            if not _matches_point(config, trained_rank, get_model(model).preset("best", task)):
                problems.append("not its `best` preset")
            run_dir, sweep, out = _bundle_origin(task, model, metrics)
            if sweep is not None:
                chosen = choose(json.loads(sweep.read_text()))
                if sweep.parent == out.parent and out.name != chosen["tag"]:
                    problems.append(f"trained at {out.name}, {sweep} chooses {chosen['tag']}")
                if not _matches_point(config, trained_rank, chosen["point"]):
                    problems.append(f"config is not {sweep}'s chosen point {chosen['tag']}")
            scores, _ = dev_scores(run_dir)
            best = max(scores, key=scores.get).name
            if best != f"seed{metrics['seed']}":
                problems.append(f"seed {metrics['seed']}, but {best} is best on dev in {run_dir}")
            if problems:
                failures[(task, model)] = problems
    assert set(failures) == set(PENDING), {k: v for k, v in failures.items() if k not in PENDING} or (
        f"now passing, remove from PENDING: {set(PENDING) - set(failures)}")


def test_train_preset_fills_what_the_flags_leave_unset(monkeypatch):
    """`--preset best` trains the row of docs/RESULTS.md; an explicit flag or --set wins over the preset's value."""
    import trainer.run
    from trainer.__main__ import main

    calls = []
    real_train_task = trainer.run.train_task
    monkeypatch.setattr(trainer.run, "train_task", lambda *a, **k: calls.append((a, k)) or [])
    main(["train", "--task", "mvsa-single", "--model", "hglnet", "--preset", "best", "--quiet"])
    main(["train", "--task", "mvsa-single", "--model", "hglnet", "--preset", "best", "--encoder-lr", "1e-4",
          "--set", "lr=3e-4", "--quiet"])
    (_, kw), (_, kw2) = calls
    best = get_model("hglnet").preset("best", "mvsa-single")
    assert kw["overrides"] == {k: best[k] for k in ("conv_channels", "lr", "weight_decay")}  # the head overrides
    assert kw["finetune_text_layers"] == best["unfreeze_text_layers"] and kw["encoder_lr"] == best["encoder_lr"]
    assert "text_encoder" not in kw and "image_encoder" not in kw  # unset by flag and preset: train_task's defaults
    import inspect

    defaults = inspect.signature(real_train_task).parameters
    assert (defaults["text_encoder"].default, defaults["image_encoder"].default) == ("minilm-l6", "efficientnet-lite0")
    assert kw2["encoder_lr"] == 1e-4 and kw2["overrides"]["lr"] == 3e-4 and kw2["overrides"]["conv_channels"] == 256
    with pytest.raises(KeyError, match="no preset"):
        get_model("hglnet").preset("fastest", "mvsa-single")
