"""Trainer end to end on a small synthetic task with tiny encoders: cache, train, evaluate, write, report."""

import json
import os
from pathlib import Path

import pytest
import torch

from mmdemo.checkpoint import load_checkpoint
from mmdemo.encoders import FeatureDims
from mmdemo.models import FeatureNeeds, get_model
from trainer.features import cached_features, load_split
from trainer.loop import RunSpec, evaluate, predict_split, train
from trainer.metrics import compute_metrics
from trainer.bundle import bundle
from trainer.report import table
from trainer.run import write_run

from tests.helpers import LABELS, synthetic_data

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, tiny_encoders):
    root = tmp_path_factory.mktemp("synthetic")
    data = synthetic_data(root)
    te, ie = tiny_encoders
    feats = cached_features(data, te, ie, max_length=16, cache_dir=root / "cache", batch_size=16)
    return data, feats, FeatureDims.of(te, ie), root


def test_corrupt_images_are_counted_not_fatal(synthetic):
    data, feats, _, _ = synthetic
    assert len(feats["train"]) == len(data.train) - 2
    assert feats["train"].skipped["unreadable_image"] == 2


def test_feature_cache_is_reused_and_batches_are_padded(synthetic, tiny_encoders):
    data, feats, _, root = synthetic
    files = sorted((root / "cache").rglob("*.safetensors"))
    assert len(files) == 3
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = cached_features(data, *tiny_encoders, max_length=16, cache_dir=root / "cache")
    assert [f.stat().st_mtime_ns for f in files] == mtimes  # loaded, not re-encoded
    assert torch.equal(again["dev"].text_tokens, feats["dev"].text_tokens)
    text, image, y = feats["dev"].batch(torch.tensor([0, 1, 2]))
    assert feats["dev"].batch(torch.tensor([0, 1]), FeatureNeeds(text_layers=1))[0].layers.shape[1] == 1
    assert text.layers.shape[:2] == (3, 4) and text.attention_mask.shape == text.layers.shape[:1] + text.layers.shape[2:3]
    assert (text.attention_mask.sum(1) == feats["dev"].text_offsets[1:4] - feats["dev"].text_offsets[:3]).all()
    assert image.patches.shape == (3, 4, 512) and y.tolist() == [0, 1, 0]
    # what was written is what is read back
    dev = load_split(next(f for f in files if f.name == "dev.safetensors"))
    assert dev.ids == [s.id for s in data.dev] and torch.equal(dev.labels, torch.tensor([i % 2 for i in range(16)]))
    # the size the build prints is the file's, with float16 token states and patches
    path = next(f for f in files if f.name == "dev.safetensors")
    assert abs(sum(dev.footprint().values()) - path.stat().st_size) < 64 * 1024
    assert dev.text_tokens.dtype == dev.image_patches.dtype == torch.float16
    assert f"{sum(dev.footprint().values()) / 1e6:.0f} MB for {len(dev)} samples" in dev.describe("dev")


def test_cached_features_equal_the_live_encoder(synthetic, tiny_encoders):
    """Every field a head can declare (k text layers, 0 layers, token ids, word embeddings, patches or not) comes
    out of the cache as the live encoder gives it (up to the cache's fp16)."""
    data, feats, _, _ = synthetic
    te, ie = tiny_encoders
    idx = torch.tensor([3, 0, 5])
    captions = [data.dev[i].text for i in idx.tolist()]
    batch = te.tokenize(captions, max_length=16)
    for k in (0, 1, 3):
        live = te(batch["input_ids"], batch["attention_mask"], num_layers=k)
        cached, image, _ = feats["dev"].batch(idx, FeatureNeeds(text_layers=k, image_patches=False, token_ids=True))
        assert live.layers.shape == cached.layers.shape == (3, k, batch["input_ids"].shape[1], te.dim)
        torch.testing.assert_close(cached.layers, live.layers * batch["attention_mask"][:, None, :, None],
                                   atol=2e-3, rtol=2e-3)
        assert torch.equal(cached.input_ids, batch["input_ids"] * batch["attention_mask"])
        torch.testing.assert_close(cached.word_embeddings, live.word_embeddings * batch["attention_mask"][..., None],
                                   atol=2e-3, rtol=2e-3)
        assert image.patches.shape == (3, 0, 512)
    assert feats["dev"].batch(idx, FeatureNeeds(text_layers=1))[0].input_ids is None  # not declared, not built
    assert feats["dev"].token_ids(3).tolist() == batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()


def test_the_cache_holds_what_the_registered_heads_declare(tiny_encoders, monkeypatch):
    from mmdemo import models
    from trainer import features

    te, _ = tiny_encoders
    assert features.declared_text_layers() == 4  # HGLNet reads the last four
    with monkeypatch.context() as m:
        m.setattr(models, "MODELS", {"mggf": get_model("mggf")})  # a registry of MGGF alone (others read more)
        assert features.declared_text_layers() == 1  # MGGF's one
        assert features.cached_text_layers(te) == 1 and features.cached_text_layers(te, wanted=3) == 3
    assert features.cached_text_layers(te, wanted=9) == te.num_layers


def test_tiny_run_learns_well_above_chance_and_writes_a_checkpoint(synthetic, tmp_path, monkeypatch):
    from trainer import trust

    data, feats, dims, root = synthetic
    monkeypatch.setattr(trust, "load_task_data", lambda task, data_dir=None: data)  # what bundle measures trust on
    spec = RunSpec(task="mvsa-single", model="concat", labels=LABELS, multi_label=False, text_encoder="tiny-bert",
                   image_encoder="tiny-resnet", dims=dims, seed=0, overrides={"epochs": 25, "batch_size": 16, "lr": 3e-3},
                   max_length=16, data_version=data.version, select_metric="accuracy")
    model, record = train(spec, feats, progress=False)
    out = tmp_path / "runs" / "mvsa-single" / "concat" / "seed0"
    metrics = write_run(model, record, feats, data, out, 0, "pytest")
    assert metrics["test"]["fused"]["accuracy"] >= 0.85, metrics["test"]["fused"]  # chance is 0.5
    assert 1 <= record["best_epoch"] <= record["epochs_run"] <= 25
    for name in ("config.json", "model.safetensors", "metrics.json", "README.md", "confusion.png", "curves.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text())["data"]["skipped_unreadable"]["train"]["unreadable_image"] == 2
    assert load_checkpoint(out).labels == LABELS
    report = table(tmp_path / "runs")
    assert "| mvsa-single | concat | fused | 1 |" in report
    extra = tmp_path / "extra" / "mvsa-single" / "concat" / "seed1"
    extra.mkdir(parents=True)
    (extra / "metrics.json").write_text(json.dumps({**metrics, "seed": 1, "test": {"fused": {
        **metrics["test"]["fused"], "accuracy": metrics["test"]["fused"]["accuracy"] - 0.1}}}))
    pooled = table([tmp_path / "runs", tmp_path / "extra"])
    assert "| mvsa-single | concat | fused | 2 |" in pooled and "±" in pooled
    assert "| mvsa-single | concat | fused | 1 |" in table([tmp_path / "runs", tmp_path / "runs" / "mvsa-single"])
    (out / "README.md").write_text("a card written by older code")  # bundle makes the card anew
    dest = tmp_path / "checkpoints" / "mvsa-single" / "concat"
    assert bundle(out.parent, dest, compact=False, cache_dir=root / "cache")[0] == out
    assert (dest / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    card = (dest / "README.md").read_text()
    assert "older code" not in card and "# concat on mvsa-single" in card and "pytest" in card
    # and it says how far to trust it: the test split's weighted F1 against always answering the commonest class
    trust = json.loads((dest / "config.json").read_text())["trust"]
    assert trust["judged"]["value"] == pytest.approx(metrics["test"]["fused"]["weighted_f1"])
    assert trust["judged"]["floor_name"] == "always answering sunny"  # 8 sunny, 8 rainy: the first wins
    assert "this checkpoint scores weighted F1" in card and trust["informative"] is True
    # the default bundle: float16 weights, its dev metrics measured again and recorded beside the run's
    assert bundle(out.parent, dest, dev=feats["dev"], cache_dir=root / "cache")[0] == out
    small = json.loads((dest / "metrics.json").read_text())["bundle"]
    assert small["dtype"] == "float16" and small["bytes"]["bundled"] < 0.6 * small["bytes"]["run"]
    assert abs(small["dev"]["accuracy"] - metrics["dev"]["fused"]["accuracy"]) <= 0.02
    # a checkpoint itself, re-bundled in place (`trainer bundle --checkpoint checkpoints/TASK/MODEL`)
    from safetensors.torch import load_file

    weights = load_file(dest / "model.safetensors")
    assert bundle(dest, dest, dev=feats["dev"], cache_dir=root / "cache")[0] == dest
    again = load_file(dest / "model.safetensors")
    assert again.keys() == weights.keys() and all(torch.equal(again[k], weights[k]) for k in weights)
    assert os.listdir(dest.parent) == ["concat"]
    assert json.loads((dest / "metrics.json").read_text())["dev"] == metrics["dev"]


def test_metrics_single_and_multi_label():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    m = compute_metrics(logits, torch.tensor([0, 1, 1, 1]), LABELS, multi_label=False)
    assert m["accuracy"] == pytest.approx(0.75) and m["confusion_matrix"] == [[1, 0], [1, 2]]
    ml = compute_metrics(torch.tensor([[3.0, 2.0, -1.0], [-1.0, 0.5, 2.0]]), torch.tensor([[1, 0, 1], [0, 1, 0]]),
                         ["a", "b", "c"], multi_label=True)
    assert ml["precision@1"] == pytest.approx(0.5)  # sample 0 top-1 'a' is right, sample 1 top-1 'c' is wrong
    assert ml["accuracy@3"] == pytest.approx(1.0)
    assert ml["recall@1"] == pytest.approx(0.25)  # 1/2 and 0/1


def test_unfreezing_the_last_text_layer_trains_it_and_only_it(synthetic, tmp_path, monkeypatch):
    """Fine-tuning trains on the cached output of the block below the tuned one (only that block runs per step);
    the checkpoint holds that block alone, and reading the captions live gives the same predictions."""
    data, feats, dims, root = synthetic
    spec = RunSpec(task="mvsa-single", model="concat", labels=LABELS, multi_label=False, text_encoder="tiny-bert",
                   image_encoder="tiny-resnet", dims=dims, overrides={"epochs": 2, "batch_size": 16},
                   max_length=16, finetune_text_layers=1, encoder_lr=1e-3)
    model, _ = train(spec, feats, progress=False)
    assert model.tunes_frozen_features and feats["train"].texts is None
    from mmdemo.encoders import create_text_encoder

    fresh = create_text_encoder("tiny-bert").state_dict()
    tuned = model.text_encoder.state_dict()
    last, first = "model.encoder.layer.3.attention.self.query.weight", "model.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(fresh[last], tuned[last]) and torch.equal(fresh[first], tuned[first])
    from mmdemo.checkpoint import save_checkpoint

    save_checkpoint(model, tmp_path)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:  # only the tuned block joins the head
        saved = [k for k in f.keys() if k.startswith("text_encoder.")]
    assert saved and all(".layer.3." in k for k in saved)
    reloaded = load_checkpoint(tmp_path)
    assert torch.equal(reloaded.text_encoder.state_dict()[last], tuned[last])
    assert torch.equal(reloaded.text_encoder.state_dict()[first], fresh[first])

    # `trainer eval` / `probe` read the same cached features the run was trained and evaluated on.
    from trainer import run, trust

    monkeypatch.setattr(run, "load_task_data", lambda task, data_dir=None: data)
    monkeypatch.setattr(trust, "load_task_data", lambda task, data_dir=None: data)
    dev = run.checkpoint_features(reloaded, cache_dir=root / "cache")["dev"]
    # bundled as adapters of the tiny block's full rank (32): the same model, in the files a bundle keeps
    (tmp_path / "curves.png").write_bytes(b"a plot")
    dest = tmp_path.with_name(tmp_path.name + "-bundled") / "mvsa-single" / "concat"
    bundle(tmp_path, dest, dev=dev, lora_rank=32, cache_dir=root / "cache")
    small = load_checkpoint(dest)
    assert small.lora_rank == 32 and (dest / "curves.png").read_bytes() == b"a plot"
    assert abs(evaluate(small, dev)["fused"]["accuracy"] - evaluate(model, feats["dev"])["fused"]["accuracy"]) < 1e-6
    assert dev.texts is None and dev.text_layers >= 2
    assert evaluate(reloaded, dev)["fused"] == evaluate(model, feats["dev"])["fused"]
    # The live path (raw captions through the model's whole encoder) agrees up to the cache's fp16 rounding.
    cached_logits, _ = predict_split(reloaded, dev)
    dev.attach_texts(data.splits()["dev"])
    try:
        live_logits, _ = predict_split(reloaded, dev)
    finally:
        dev.attach_texts(None)
    assert torch.allclose(cached_logits["fused"], live_logits["fused"], atol=2e-2)


def test_an_interrupted_cache_write_never_reads_as_complete(synthetic, tmp_path, monkeypatch, tiny_encoders):
    """A full disk (or a kill) while a split's features are written leaves no file the next run takes as cached."""
    import safetensors.torch

    data, feats, _, _ = synthetic
    te, ie = tiny_encoders

    def disk_full(tensors, path, *args, **kwargs):
        Path(path).write_bytes(b"\0" * 100)  # a partial file...
        raise OSError(28, "No space left on device")  # ...then the disk is full

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)  # what mmdemo.atomic.save_tensors writes with
    with pytest.raises(OSError, match="No space"):
        cached_features(data, te, ie, max_length=16, cache_dir=tmp_path, splits=("dev",), batch_size=16)
    assert not list(tmp_path.rglob("dev.safetensors"))
    monkeypatch.undo()
    again = cached_features(data, te, ie, max_length=16, cache_dir=tmp_path, splits=("dev",), batch_size=16)
    assert torch.equal(again["dev"].text_tokens, feats["dev"].text_tokens)


def test_eval_encodes_only_the_splits_it_is_asked_for(synthetic, tmp_path, monkeypatch):
    """`trainer eval --splits test` reads (and, on a cold cache, encodes) test alone, not train first."""
    from mmdemo.models import MultimodalClassifier
    from trainer import run

    data, _, dims, _ = synthetic
    monkeypatch.setattr(run, "load_task_data", lambda task, data_dir=None: data)
    model = MultimodalClassifier("concat", "mvsa-single", LABELS, "tiny-bert", "tiny-resnet", dims.to_dict(),
                                 max_length=16)
    feats = run.checkpoint_features(model, cache_dir=tmp_path / "cache", splits=("test",))
    assert list(feats) == ["test"]
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*.safetensors")) == ["test.safetensors"]


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(synthetic, tmp_path, monkeypatch):
    """Killed after its second epoch and resumed from the saved state, a run ends with the weights, history and
    best epoch of the run that was never interrupted (CPU)."""
    import trainer.loop as loop

    data, feats, dims, _ = synthetic
    spec = RunSpec(task="mvsa-single", model="hglnet", labels=LABELS, multi_label=False, text_encoder="tiny-bert",
                   image_encoder="tiny-resnet", dims=dims, seed=3, max_length=16, finetune_text_layers=1,
                   encoder_lr=1e-3, overrides={"epochs": 4, "batch_size": 16, "patience": 10})
    whole, whole_record = train(spec, feats, progress=False, state_path=tmp_path / "whole.safetensors")

    real_evaluate, calls = loop.evaluate, []

    def killed_in_epoch_three(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", killed_in_epoch_three)
    state = tmp_path / "cut.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train(spec, feats, progress=False, state_path=state)
    assert loop.read_train_progress(state)["epoch"] == 2
    monkeypatch.setattr(loop, "evaluate", real_evaluate)
    torch.manual_seed(123)  # the resumed run restores its own RNG state
    resumed, record = train(spec, feats, progress=False, state_path=state)
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert record["history"] == whole_record["history"] and record["best_epoch"] == whole_record["best_epoch"]
    state.write_bytes(b"not a state")  # a damaged or foreign file is never half-used: the run starts afresh
    again, record = train(spec, feats, progress=False, state_path=state)
    assert record["history"] == whole_record["history"]


def test_lora_trains_adapters_only_and_the_checkpoint_holds_only_them(synthetic, tmp_path):
    """LoRA starts as the frozen encoder (B = 0), trains only its adapters, and its checkpoint carries them, not
    the blocks they sit on."""
    data, feats, dims, root = synthetic
    from mmdemo.encoders import create_text_encoder
    from mmdemo.models import MultimodalClassifier

    spec = RunSpec(task="mvsa-single", model="concat", labels=LABELS, multi_label=False, text_encoder="tiny-bert",
                   image_encoder="tiny-resnet", dims=dims, overrides={"epochs": 2, "batch_size": 16},
                   max_length=16, finetune_text_layers=2, encoder_lr=1e-2, lora_rank=4)
    untrained = MultimodalClassifier("concat", "mvsa-single", LABELS, "tiny-bert", "tiny-resnet", dims.to_dict(),
                                     finetune_text_layers=2, lora_rank=4).eval()
    with torch.no_grad():
        text = create_text_encoder("tiny-bert").encode(["the sun today", "rain and storm"], untrained.text_layers)
        assert torch.allclose(untrained.tune_text(text).layers, text.layers, atol=1e-5)  # B = 0 at the start

    model, _ = train(spec, feats, progress=False)
    fresh = create_text_encoder("tiny-bert").state_dict()
    tuned = model.text_encoder.state_dict()
    base = {k.replace(".base_layer", ""): v for k, v in tuned.items() if "lora_" not in k}
    assert all(torch.equal(fresh[k], v) for k, v in base.items())  # no block weight moved
    assert any(v.abs().sum() > 0 for k, v in tuned.items() if "lora_B" in k)  # the adapters did
    assert all(".layer.2." in k or ".layer.3." in k for k in tuned if "lora_" in k)

    from mmdemo.checkpoint import save_checkpoint
    from safetensors import safe_open

    save_checkpoint(model, tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        saved = [k for k in f.keys() if k.startswith("text_encoder.")]
    assert saved and all("lora_" in k for k in saved)
    reloaded = load_checkpoint(tmp_path)
    assert reloaded.lora_rank == 4
    assert evaluate(reloaded, feats["dev"])["fused"] == evaluate(model, feats["dev"])["fused"]


def test_whole_tuned_blocks_become_lora_adapters_of_the_closest_rank_r_change(tiny_encoders, tmp_path):
    """as_lora: each tuned linear W0 + D becomes W0 + scaling B A with scaling B A the truncated SVD of D. D of
    rank 2 with singular values (3, 1) along orthonormal u_i, v_i: rank 2 gives the tuned model back (same weights,
    same outputs, also after a save and load, whose file holds the head, the adapters and the tuned biases and
    LayerNorms, not the linear weights); rank 1 keeps exactly 3 u_1 v_1^T (Eckart-Young), so the error left is the
    dropped 1 u_2 v_2^T."""
    from mmdemo.models import MultimodalClassifier

    te, ie = tiny_encoders
    dims = FeatureDims.of(te, ie)
    tuned = MultimodalClassifier("concat", "mvsa-single", ["pos", "neu", "neg"], "tiny-bert", "tiny-resnet",
                                 dims.to_dict(), finetune_text_layers=1).eval()
    g = torch.Generator().manual_seed(0)
    parts = {}
    with torch.no_grad():
        for name, m in tuned.text_encoder.blocks()[-1].named_modules():
            if isinstance(m, torch.nn.Linear):
                u = torch.linalg.qr(torch.randn(m.out_features, 2, generator=g))[0]
                v = torch.linalg.qr(torch.randn(m.in_features, 2, generator=g))[0]
                first, second = 3 * torch.outer(u[:, 0], v[:, 0]), torch.outer(u[:, 1], v[:, 1])
                m.weight += first + second
                m.bias += 0.1  # biases and LayerNorms are carried whole
                parts[name] = (m.weight.clone(), first, second)
            elif isinstance(m, torch.nn.LayerNorm):
                m.weight *= 1.5
    with torch.no_grad():
        text = te.encode(["the sun today", "rain and storm over the sea"], num_layers=2)

    def effective(model):  # {name: W0 + scaling B A} of the adapted block
        return {name: layer.base_layer.weight + layer.scaling["default"] * layer.lora_B["default"].weight
                @ layer.lora_A["default"].weight
                for name, layer in model.text_encoder.blocks()[-1].named_modules() if hasattr(layer, "lora_A")}

    exact = tuned.as_lora(2)
    assert exact.lora_rank == 2 and effective(exact).keys() == parts.keys()
    for name, w in effective(exact).items():
        torch.testing.assert_close(w, parts[name][0], atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(exact.tune_text(text).layers, tuned.tune_text(text).layers, atol=1e-4, rtol=0)
    for name, w in effective(tuned.as_lora(1)).items():
        whole, first, second = parts[name]
        torch.testing.assert_close(w, whole - second, atol=1e-5, rtol=0)
        assert abs(torch.linalg.matrix_norm(whole - w).item() - 1.0) < 1e-4

    from safetensors import safe_open

    from mmdemo.checkpoint import save_checkpoint

    save_checkpoint(exact, tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        saved = [k for k in f.keys() if k.startswith("text_encoder.")]
    assert any("lora_" in k for k in saved) and any("LayerNorm" in k for k in saved)
    assert not any(k.endswith("base_layer.weight") for k in saved)
    reloaded = load_checkpoint(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.tune_text(text).layers, tuned.tune_text(text).layers, atol=1e-4, rtol=0)
    merged = load_checkpoint(tmp_path).merge_adapters()  # for serving: the adapters folded into the blocks
    with torch.no_grad():
        torch.testing.assert_close(merged.tune_text(text).layers, tuned.tune_text(text).layers, atol=1e-4, rtol=0)
    assert all(m.merged for m in merged.text_encoder.modules() if hasattr(m, "merged"))
    save_checkpoint(reloaded, tmp_path / "again")  # a loaded copy saves the same tensors
    with safe_open(str(tmp_path / "again" / "model.safetensors"), "pt") as f:
        assert sorted(k for k in f.keys() if k.startswith("text_encoder.")) == sorted(saved)
    with pytest.raises(ValueError, match="tuned whole"):
        exact.as_lora(1)


def test_sweep_ranks_points_by_mean_dev_never_by_test_and_promotes_the_best(tmp_path, monkeypatch):
    import subprocess
    from pathlib import Path

    from trainer import sweep as sweep_mod

    assert sweep_mod.grid_points({"lr": [1e-3, 3e-4], "dropout": [0.5]}) == [
        {"lr": 1e-3, "dropout": 0.5}, {"lr": 3e-4, "dropout": 0.5}]
    # lr 3e-4 wins on test, lr 1e-3 on dev: the sweep must pick 1e-3.
    dev = {1e-3: [0.70, 0.72], 3e-4: [0.69, 0.70], "ft": [0.73, 0.73]}
    test = {1e-3: 0.60, 3e-4: 0.90, "ft": 0.50}

    def fake_run(cmd, **kwargs):
        out, seed = Path(cmd[cmd.index("--out") + 1]), int(cmd[cmd.index("--seeds") + 1])
        lr = json.loads(cmd[cmd.index("--set") + 1].split("=", 1)[1])
        if "--unfreeze-text-layers" in cmd:  # a fine-tuned point: best on dev, worst on test
            assert cmd[cmd.index("--unfreeze-text-layers") + 1] == "2"
            lr = "ft"
        run = out / "mvsa-single" / "concat" / f"seed{seed}"  # MVSA-Single selects on weighted F1
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"task": "mvsa-single", "multi_label": False}))
        (run / "metrics.json").write_text(json.dumps({
            "dev": {"fused": {"weighted_f1": dev[lr][seed]}}, "test": {"fused": {"weighted_f1": test[lr]}}}))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(sweep_mod.subprocess, "run", fake_run)
    result = sweep_mod.sweep("mvsa-single", "concat", {"lr": [1e-3, 3e-4]}, [0, 1], tmp_path / "sweep", jobs=2)
    assert result["best"] == {"lr": 1e-3}
    assert [round(p["dev_mean"], 3) for p in result["points"]] == [0.71, 0.695]
    assert json.loads((tmp_path / "sweep" / "mvsa-single" / "concat" / "sweep.json").read_text())["best"] == {"lr": 1e-3}
    assert "test" not in sweep_mod.sweep_table(result)
    dest = sweep_mod.promote(result, tmp_path / "sweep", tmp_path / "runs")
    assert sorted(p.name for p in dest.iterdir()) == ["seed0", "seed1"]
    assert json.loads((dest / "seed0" / "metrics.json").read_text())["dev"]["fused"]["weighted_f1"] == 0.70

    # A later sweep (fine-tuning as a grid key) is ranked together with the earlier points, on dev only.
    again = sweep_mod.sweep("mvsa-single", "concat", {"lr": [1e-3], "unfreeze_text_layers": [2]}, [0, 1],
                            tmp_path / "sweep", jobs=2)
    assert [p["tag"] for p in again["points"]] == ["lr=0.001_unfreeze_text_layers=2", "lr=0.001", "lr=0.0003"]
    assert again["best"] == {"lr": 1e-3, "unfreeze_text_layers": 2}
    assert sweep_mod.best_args(tmp_path / "sweep" / "mvsa-single" / "concat" / "sweep.json") == \
        "--set lr=0.001 --unfreeze-text-layers 2"

    # --resume keeps finished runs and continues the rest (their train command gets --resume).
    import shutil

    shutil.rmtree(tmp_path / "sweep" / "mvsa-single" / "concat" / "lr=0.0003" / "mvsa-single" / "concat" / "seed1")
    started = []
    monkeypatch.setattr(sweep_mod.subprocess, "run", lambda cmd, **kw: started.append(cmd) or fake_run(cmd, **kw))
    resumed = sweep_mod.sweep("mvsa-single", "concat", {"lr": [1e-3, 3e-4]}, [0, 1], tmp_path / "sweep", jobs=2,
                              resume=True)
    assert [(c[c.index("--seeds") + 1], "--resume" in c) for c in started] == [("1", True)]
    assert resumed["best"] == again["best"] and len(resumed["points"]) == 3


def test_paired_bootstrap_interval_on_fixed_numbers():
    from trainer.compare import paired_bootstrap

    t = lambda *v: torch.tensor(v, dtype=torch.float)  # noqa: E731
    always = paired_bootstrap({0: t(1, 1, 1, 1)}, {0: t(0, 0, 0, 0), 1: t(1, 1, 1, 1)})
    assert always["seeds"] == [0] and always["difference"] == 1 and always["low"] == always["high"] == 1
    # per-sample differences (+1, 0, 0, -1), averaged with a second seed where A and B tie: mean 0, an interval
    # around it that contains 0
    tie = paired_bootstrap({0: t(1, 0, 1, 0), 1: t(1, 1, 0, 0)}, {0: t(0, 0, 1, 1), 1: t(1, 1, 0, 0)}, samples=2000)
    assert tie["difference"] == 0 and tie["low"] < 0 < tie["high"] and tie["a"] == tie["b"] == 0.5
    with pytest.raises(ValueError, match="no seed"):
        paired_bootstrap({0: t(1)}, {1: t(1)})


def test_training_options_are_declared_once_on_the_run_spec(monkeypatch):
    """RunSpec declares each training option once: train's flags, the keys a sweep grid or preset may set beside
    head fields, and train_task's keywords are read off it, so a new option field is a flag without touching the
    parser; the older name of the tuned text layers still parses (recorded commands, presets, sweep grids)."""
    import argparse
    import dataclasses

    import trainer.spec as spec
    from trainer.__main__ import build_parser
    from trainer.sweep import TRAIN_OPTIONS, point_args

    def train_parser() -> argparse.ArgumentParser:
        sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
        return sub.choices["train"]

    names = {f.name for f in spec.OPTIONS}
    assert {"finetune_text_layers", "encoder_lr", "lora_rank", "text_encoder", "image_encoder", "image_cap",
            "balance_groups", "balance_classes", "event_adversarial", "image_dropout"} == names
    assert set(TRAIN_OPTIONS) == names | {"unfreeze_text_layers"}  # the sweep's train-option keys
    assert names <= {a.dest for a in train_parser()._actions}
    args = ["train", "--task", "mvsa-single", "--model", "concat"]
    unset = build_parser().parse_args(args)
    assert all(getattr(unset, n) is None for n in names)  # unset: the preset's value, else RunSpec's default
    for old in (["--unfreeze-text-layers", "2"], ["--finetune-text-layers", "2"]):
        assert build_parser().parse_args(args + old).finetune_text_layers == 2
    assert point_args({"unfreeze_text_layers": 2, "balance_groups": True}) == ["--unfreeze-text-layers", "2",
                                                                                "--balance-groups"]
    assert build_parser().parse_args(args + point_args({"finetune_text_layers": 1})).finetune_text_layers == 1
    defaults = spec.train_options(unfreeze_text_layers=3)
    assert defaults["finetune_text_layers"] == 3 and defaults["encoder_lr"] == spec.RunSpec.__dataclass_fields__[
        "encoder_lr"].default
    with pytest.raises(TypeError, match="unknown training options"):
        spec.train_options(finetune_layers=1)
    assert spec.UNSEEN_EVENT_OPTIONS == {"image_cap": 0, "balance_groups": False, "balance_classes": False,
                                         "event_adversarial": 0.0, "image_dropout": 0.0}
    assert spec.LATER_FIELDS == ("balance_classes",)  # LOEO digests of kept folds depend on it

    @dataclasses.dataclass
    class Wider(spec.RunSpec):
        label_smoothing: float = spec.option(0.0, "smooth the training labels by this much", metavar="EPS")

    monkeypatch.setattr(spec, "OPTIONS", [f for f in dataclasses.fields(Wider) if f.metadata.get("option")])
    wider = build_parser().parse_args(args + ["--label-smoothing", "0.1"])
    assert wider.label_smoothing == 0.1 and "smooth the training labels" in train_parser().format_help()
