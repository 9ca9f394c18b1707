"""Leave-one-event-out (trainer/loeo.py) and the sampling options made for unseen events (trainer/loop.py)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import WeightedRandomSampler

from mmdemo.encoders import ImageFeatures
from trainer.adversarial import reverse_gradient
from trainer.datasets import load_task_data
from trainer.features import concat_splits
from trainer.loeo import PREDICTIONS_FILE, all_events_split, calibration_error, fit_temperature, fold, fold_events
from trainer.loop import blank_images, sample_weights
from trainer.results import render
from trainer.run import train_task

from tests.helpers import MEDIAEVAL_HEADER, SHARED, assert_group_disjoint, synthetic_features, write


@pytest.mark.skipif(not (SHARED / "datasets" / "mediaeval2016").is_dir(), reason="needs ../shared/datasets")
def test_every_fold_of_the_real_task_keeps_events_and_images_apart():
    data = load_task_data("mediaeval2016")
    events = fold_events(data)
    assert len(events) == 15 and events[0] == "sandy"
    for event in events:
        f = fold("mediaeval2016", event)
        assert_group_disjoint(f)  # no event and no image in two of train / validation / test
        assert {s.group for s in f.test} == {event}
        assert f.dev and f.train and len({s.label for s in f.dev}) == 2  # validation events have both classes
        assert len(f.train) + len(f.dev) + len(f.test) == sum(len(s) for s in data.splits().values())
    # validation events named in order: each fold takes the first two it does not leave out
    f = fold("mediaeval2016", "nepal", validation=("nepal", "boston", "eclipse"))
    assert_group_disjoint(f)
    assert {s.group for s in f.dev} == {"boston", "eclipse"} and {s.group for s in f.test} == {"nepal"}
    everything = all_events_split("mediaeval2016")  # what a bundled checkpoint trains on: no event left out
    assert_group_disjoint(everything)
    assert not everything.test and {s.group for s in everything.dev} == {"eclipse", "garissa"}
    assert len(everything.train) + len(everything.dev) == sum(len(s) for s in data.splits().values())


def test_subset_of_the_concatenated_splits_gives_each_sample_back(tmp_path, tiny_encoders):
    _, feats, _ = synthetic_features(tmp_path, tiny_encoders)
    pool = concat_splits([feats["train"], feats["dev"], feats["test"]])
    assert len(pool) == sum(len(s) for s in feats.values())
    offset = len(feats["train"]) + len(feats["dev"])
    picked = pool.subset(torch.tensor([offset + 3, 2, offset + 1]))
    for (split, i), j in zip((("test", 3), ("train", 2), ("test", 1)), range(3)):
        a = feats[split].batch(torch.tensor([i]))
        b = picked.batch(torch.tensor([j]))
        assert picked.ids[j] == feats[split].ids[i]
        for x, y in ((a[0].layers, b[0].layers), (a[0].word_embeddings, b[0].word_embeddings),
                     (a[0].input_ids, b[0].input_ids), (a[1].patches, b[1].patches), (a[1].pooled, b[1].pooled),
                     (a[2], b[2])):
            assert torch.equal(x, y)


def test_image_cap_and_group_balance_weigh_what_they_say(tmp_path, tiny_encoders):
    _, feats, _ = synthetic_features(tmp_path, tiny_encoders)
    split = feats["train"].subset(torch.arange(12))
    # 12 posts over 3 images (7, 4 and 1 posts) and two groups
    split.image_index = torch.tensor([0] * 7 + [1] * 4 + [2])
    split.groups = ["a"] * 9 + ["b"] * 3
    assert sample_weights(split) is None  # default: every post once per epoch
    once = sample_weights(split, image_cap=1)
    per_image = torch.zeros(3, dtype=torch.float64).index_add_(0, split.image_index, once)
    assert torch.allclose(per_image, torch.full((3,), 1 / 3, dtype=torch.float64))  # each image equally likely
    capped = sample_weights(split, image_cap=2)  # images count min(n, 2) times: 2, 2, 1
    per_image = torch.zeros(3, dtype=torch.float64).index_add_(0, split.image_index, capped)
    assert torch.allclose(per_image, torch.tensor([0.4, 0.4, 0.2], dtype=torch.float64))
    balanced = sample_weights(split, balance_groups=True)
    assert balanced[:9].sum().item() == pytest.approx(0.5) and balanced[9:].sum().item() == pytest.approx(0.5)
    # and the sampler the trainer builds from them draws the images uniformly
    draws = torch.tensor(list(WeightedRandomSampler(once, 30_000, generator=torch.Generator().manual_seed(0))))
    freq = torch.bincount(split.image_index[draws], minlength=3) / 30_000
    assert torch.allclose(freq, torch.full((3,), 1 / 3), atol=0.015)
    split.groups = None
    with pytest.raises(ValueError, match="groups"):
        sample_weights(split, balance_groups=True)


def test_class_balance_weighs_every_class_the_same_after_the_image_cap(tmp_path, tiny_encoders):
    _, feats, _ = synthetic_features(tmp_path, tiny_encoders)
    split = feats["train"].subset(torch.arange(10))
    split.labels = torch.tensor([0] * 8 + [1] * 2)  # 8 fakes, 2 reals
    split.image_index = torch.tensor([0] * 6 + [1, 2] + [3, 4])  # one fake image shared by 6 posts
    even = sample_weights(split, balance_classes=True)
    assert torch.allclose(even, torch.tensor([1 / 16] * 8 + [1 / 4] * 2, dtype=torch.float64))
    # with the image cap first: the fakes count 3 images' worth (1 + 1 + 1), each real post 1, then halves
    capped = sample_weights(split, image_cap=1, balance_classes=True)
    assert torch.allclose(capped, torch.tensor([1 / 36] * 6 + [1 / 6] * 2 + [1 / 4] * 2, dtype=torch.float64))
    draws = torch.tensor(list(WeightedRandomSampler(even, 20_000, generator=torch.Generator().manual_seed(0))))
    assert (split.labels[draws] == 1).double().mean().item() == pytest.approx(0.5, abs=0.015)
    split.labels = torch.zeros(10, 2)
    with pytest.raises(ValueError, match="single-label"):
        sample_weights(split, balance_classes=True)


def make_events(root):
    """A MediaEval-shaped folder: six events (five with both classes), several posts per image; red images are
    fake, blue ones real, and the words say it too."""
    lines, k = [MEDIAEVAL_HEADER], 0
    for event, images in {"sandy": 4, "nepal": 2, "boston": 2, "eclipse": 2, "garissa": 2, "malaysia": 1}.items():
        for j in range(images):
            label = "real" if j % 2 and event != "malaysia" else "fake"
            image_id = f"{event}_{label}_{j:02d}"
            (root / "images").mkdir(parents=True, exist_ok=True)
            colour = (200, 30 + 20 * j, 30) if label == "fake" else (30, 30 + 20 * j, 200)
            Image.new("RGB", (64, 64), colour).save(root / "images" / f"{image_id}.jpg", "JPEG")
            for _ in range(3):
                k += 1
                words = "hoax fake photoshop" if label == "fake" else "news photo today"
                lines.append(f"{k}\t{words} {k}\t1\t{image_id}\tuser\tWed Apr 17 2013\t{label}")
    write(root / "posts.txt", "\n".join(lines))
    return root


def test_loeo_trains_every_fold_and_pools_each_post_once(tmp_path):
    root = make_events(tmp_path / "data")
    train_task("mediaeval2016", "concat", [0, 1], data_dir=str(root), out=tmp_path / "runs",
               text_encoder="tiny-bert", image_encoder="tiny-resnet", cache_dir=tmp_path / "cache", max_length=16,
               overrides={"epochs": 2, "batch_size": 8}, progress=False, protocol="loeo", image_cap=2,
               balance_groups=True, balance_classes=True)
    report = json.loads((tmp_path / "runs" / "mediaeval2016" / "concat" / "loeo" / "loeo.json").read_text())
    assert report["events"] == ["sandy", "boston", "eclipse", "garissa", "nepal", "malaysia"]
    assert sum(e["n"] for e in report["per_event"].values()) == 39  # every post predicted once, as unseen
    for seed in ("0", "1"):
        assert report["pooled_by_seed"][seed]["fused"]["n"] == 39
    fused = report["pooled"]["fused"]
    assert len(fused["macro_f1"]["values"]) == 2 and set(fused) >= {"f1_fake", "f1_real"}
    # every post's held-out prediction is kept beside the report, in the order of the events
    kept = load_file(tmp_path / "runs" / "mediaeval2016" / "concat" / "loeo" / PREDICTIONS_FILE)
    assert kept["fused.seed0"].shape == kept["fused.seed1"].shape == (39, 2)
    counts = torch.bincount(kept["event"].long()).tolist()
    assert counts == [report["per_event"][e]["n"] for e in report["events"]]
    labels = kept["labels"].long()
    for seed in (0, 1):  # the pooled scores are those of the kept predictions
        right = (kept[f"fused.seed{seed}"].argmax(-1) == labels).float().mean().item()
        assert right == pytest.approx(report["pooled_by_seed"][str(seed)]["fused"]["accuracy"])
        assert right == pytest.approx(fused["accuracy"]["values"][seed])
    # the recipe's one temperature minimises the cross-entropy of both seeds' held-out predictions together
    t = report["recipe_calibration"]["temperature"]
    both, target = torch.cat([kept["fused.seed0"], kept["fused.seed1"]]), labels.repeat(2)
    nll = lambda temp: torch.nn.functional.cross_entropy(both / temp, target).item()  # noqa: E731
    assert nll(t) <= min(nll(t * 1.2), nll(t / 1.2)) and report["recipe_calibration"]["n"] == 78
    assert report["per_event"]["malaysia"]["classes"] == ["fake"]
    assert report["per_event"]["sandy"]["dev_events"] == ["eclipse", "garissa"]
    assert report["options"]["image_cap"] == 2 and report["options"]["balance_groups"] is True
    assert report["options"]["balance_classes"] is True
    per_seed = [sum(report["per_event"][e]["dev_score"]["values"][k] for e in report["events"]) / 6 for k in (0, 1)]
    assert report["validation"]["values"] == pytest.approx(per_seed)  # what chooses: the folds' validation scores
    table = render("{{loeo runs mediaeval2016 concat}}", base=tmp_path)  # the RESULTS.md placeholder
    assert "| concat | 2 |" in table and "| malaysia | 3 | fake |" in table and "| sandy | 12 | fake, real |" in table
    with pytest.raises(ValueError, match="protocol"):
        train_task("mediaeval2016", "concat", [0], data_dir=str(root), protocol="kfold")
    train_task("mediaeval2016", "concat", [0], data_dir=str(root), out=tmp_path / "other", text_encoder="tiny-bert",
               image_encoder="tiny-resnet", cache_dir=tmp_path / "cache", max_length=16,
               overrides={"epochs": 1, "batch_size": 8}, progress=False, protocol="loeo",
               validation_events=("nepal", "boston", "eclipse"))
    other = json.loads((tmp_path / "other" / "mediaeval2016" / "concat" / "loeo" / "loeo.json").read_text())
    assert other["per_event"]["sandy"]["dev_events"] == ["boston", "nepal"]
    assert other["per_event"]["nepal"]["dev_events"] == ["boston", "eclipse"]


def test_an_interrupted_loeo_run_resumes_from_its_finished_folds(tmp_path, monkeypatch):
    """--resume reads back the folds an interrupted run finished, trains the rest, and writes the report an
    uninterrupted run writes; a fold kept for another recipe is trained again; the kept folds go with the report."""
    import trainer.loeo as loeo

    root = make_events(tmp_path / "data")
    common = dict(data_dir=str(root), text_encoder="tiny-bert", image_encoder="tiny-resnet",
                  cache_dir=tmp_path / "cache", max_length=16, progress=False, protocol="loeo")
    recipe = {"epochs": 2, "batch_size": 8}

    def report(out):
        return json.loads((out / "mediaeval2016" / "concat" / "loeo" / "loeo.json").read_text())

    train_task("mediaeval2016", "concat", [0], out=tmp_path / "whole", overrides=recipe, **common)
    real_train, calls, stop = loeo.train, [], {"at": 3}

    def train(*args, **kwargs):
        calls.append(args[0].data_version)
        if len(calls) == stop["at"]:
            raise RuntimeError("the machine went away")  # during the third fold
        return real_train(*args, **kwargs)

    monkeypatch.setattr(loeo, "train", train)
    out = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="went away"):
        train_task("mediaeval2016", "concat", [0], out=out, overrides=recipe, **common)
    folds = out / "mediaeval2016" / "concat" / "loeo" / ".folds"
    assert sorted(f.name for f in folds.glob("*.safetensors")) == ["boston.seed0.safetensors", "sandy.seed0.safetensors"]
    calls.clear()
    stop["at"] = None
    train_task("mediaeval2016", "concat", [0], out=out, overrides=recipe, resume=True, **common)
    assert len(calls) == 4  # nepal, eclipse, garissa, malaysia: the two finished folds were read back
    assert report(out)["pooled"] == report(tmp_path / "whole")["pooled"]
    assert report(out)["per_event"] == report(tmp_path / "whole")["per_event"]
    assert not folds.exists()
    # a kept fold of another recipe is not read back
    calls.clear()
    stop["at"] = 3
    with pytest.raises(RuntimeError, match="went away"):
        train_task("mediaeval2016", "concat", [0], out=out, overrides=recipe, **common)
    calls.clear()
    stop["at"] = None
    train_task("mediaeval2016", "concat", [0], out=out, overrides={**recipe, "epochs": 1}, resume=True, **common)
    assert len(calls) == 6 and report(out)["options"]["epochs"] == 1  # every fold trained again, for this recipe


def test_processes_running_the_same_loeo_command_share_its_folds(tmp_path, monkeypatch):
    """Two runs of one command with --resume (threads here: flock locks conflict between open files as between
    processes) train each fold once between them and give the report a single run gives; a fold whose lock holder
    dies without finishing it is trained by the run that waited for it."""
    import threading

    import trainer.loeo as loeo

    root = make_events(tmp_path / "data")
    common = dict(data_dir=str(root), text_encoder="tiny-bert", image_encoder="tiny-resnet",
                  cache_dir=tmp_path / "cache", max_length=16, progress=False, protocol="loeo",
                  overrides={"epochs": 2, "batch_size": 8})

    def report(out):
        return json.loads((out / "mediaeval2016" / "concat" / "loeo" / "loeo.json").read_text())

    train_task("mediaeval2016", "concat", [0, 1], out=tmp_path / "single", **common)
    real_train, one_at_a_time, both_started = loeo.train, threading.Lock(), threading.Barrier(2, timeout=60)
    calls, first_call = [], threading.local()

    def train(spec, *args, **kwargs):
        calls.append((spec.seed, spec.data_version, threading.current_thread().name))
        if not getattr(first_call, "seen", False):  # each run holds a fold before either trains one
            first_call.seen = True
            both_started.wait()
        with one_at_a_time:  # training itself in turn: the global RNG is shared by threads, not by processes
            return real_train(spec, *args, **kwargs)

    monkeypatch.setattr(loeo, "train", train)
    out = tmp_path / "shared"
    runs = [threading.Thread(target=train_task, args=("mediaeval2016", "concat", [0, 1]), name=name,
                             kwargs=dict(out=out, resume=True, **common)) for name in ("a", "b")]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=300)
    assert len(calls) == 12 and len({c[:2] for c in calls}) == 12  # 6 events x 2 seeds, each trained once
    assert {c[2] for c in calls} == {"a", "b"}
    assert report(out)["pooled"] == report(tmp_path / "single")["pooled"]
    assert report(out)["per_event"] == report(tmp_path / "single")["per_event"]
    assert not (out / "mediaeval2016" / "concat" / "loeo" / ".folds").exists()

    # a process that took sandy's fold and died: the lock goes with it, and the waiting run trains the fold
    monkeypatch.setattr(loeo, "train", real_train)
    out, calls = tmp_path / "died", []
    folds = out / "mediaeval2016" / "concat" / "loeo" / ".folds"
    folds.mkdir(parents=True)
    with loeo._held(folds / ".sandy.seed0.lock"):
        run = threading.Thread(target=train_task, args=("mediaeval2016", "concat", [0]),
                               kwargs=dict(out=out, resume=True, **common))
        run.start()
        for _ in range(600):
            if len(list(folds.glob("*.seed0.safetensors"))) == 5:
                break
            run.join(timeout=0.5)
        assert sorted(f.name.split(".")[0] for f in folds.glob("*.safetensors")) == sorted(
            ["boston", "eclipse", "garissa", "nepal", "malaysia"]) and run.is_alive()  # waiting for sandy
    run.join(timeout=300)
    sandy, single = report(out)["per_event"]["sandy"], report(tmp_path / "single")["per_event"]["sandy"]
    assert sandy["accuracy"]["values"] == single["accuracy"]["values"][:1]  # trained here, as a single run did
    assert not folds.exists()


def test_gradient_reversal_flips_and_scales_the_gradient_exactly():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    w = torch.tensor([0.5, 4.0, -1.0])
    y = reverse_gradient(x, 0.25)
    assert torch.equal(y, x)  # identity forward
    (y * w).sum().backward()
    assert torch.equal(x.grad, torch.tensor([-0.125, -1.0, 0.25]))  # -lambda * dL/dy


def test_event_adversarial_training_runs_and_logs_its_loss(tmp_path):
    root = make_events(tmp_path / "data")
    out = train_task("mediaeval2016", "concat", [0], data_dir=str(root), out=tmp_path / "runs",
                     text_encoder="tiny-bert", image_encoder="tiny-resnet", cache_dir=tmp_path / "cache",
                     max_length=16, overrides={"epochs": 2, "batch_size": 8}, progress=False, event_adversarial=0.5,
                     image_dropout=0.3)[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert all("event" in h["train_terms"] and h["train_terms"]["event"] > 0 for h in metrics["history"])
    assert metrics["training_for_unseen_events"]["event_adversarial"] == 0.5
    assert metrics["training_for_unseen_events"]["image_dropout"] == 0.3
    with pytest.raises(ValueError, match="fused representation"):
        train_task("mediaeval2016", "prior", [0], data_dir=str(root), out=tmp_path / "runs", text_encoder="tiny-bert",
                   image_encoder="tiny-resnet", cache_dir=tmp_path / "cache", max_length=16, progress=False,
                   overrides={"epochs": 1}, event_adversarial=0.5)


def test_temperature_scaling_undoes_a_known_overconfidence():
    torch.manual_seed(0)
    true_logits = torch.randn(4000, 2) * 1.5
    labels = torch.multinomial(true_logits.softmax(-1), 1).squeeze(1)  # labels drawn from softmax(true_logits)
    t = fit_temperature(true_logits * 3, labels)  # a model three times too sure of itself
    assert t == pytest.approx(3, rel=0.1)
    assert calibration_error(true_logits * 3, labels, t) < calibration_error(true_logits * 3, labels) / 2


def test_bundle_measures_how_far_to_trust_the_checkpoint(tmp_path, monkeypatch):
    """`trainer bundle` (and `trainer measure`) record in config.json the judged score against a guess, the spread of
    the answer over the inputs that chose the checkpoint and, for the checkpoint of a LOEO-measured recipe, the
    recipe's one temperature, labelled as the recipe's; the app's line says each of these truthfully."""
    import hashlib
    import shutil

    from mmdemo.checkpoint import read_config, read_trust
    from mmdemo.predict import Predictor
    from trainer.bundle import bundle
    import trainer.trust as trust_module
    from trainer.trust import measure, write_trust

    root = make_events(tmp_path / "data")
    common = dict(data_dir=str(root), out=tmp_path / "runs", text_encoder="tiny-bert", image_encoder="tiny-resnet",
                  cache_dir=tmp_path / "cache", max_length=16, overrides={"epochs": 2, "batch_size": 8}, progress=False)
    where = dict(data_dir=str(root), cache_dir=tmp_path / "cache")
    train_task("mediaeval2016", "concat", [0], protocol="loeo", image_cap=2, **common)
    report = tmp_path / "runs" / "mediaeval2016" / "concat" / "loeo" / "loeo.json"
    plain = train_task("mediaeval2016", "concat", [0], **common)[0]  # another recipe: no image cap
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "kept.txt").write_text("what was bundled before")
    with pytest.raises(ValueError, match="image_cap 0 here, 2 there"):
        bundle(plain.parent, tmp_path / "bad", compact=False, calibration=report, **where)
    assert (tmp_path / "bad" / "kept.txt").is_file()  # a refused report replaces nothing
    # without a report, a run of the task's split is judged on its own held-out test events, uncalibrated
    bundle(plain.parent, tmp_path / "plain", compact=False, **where)
    config = read_config(tmp_path / "plain")
    trust, test = read_trust(config), json.loads((plain / "metrics.json").read_text())["test"]["fused"]
    assert "calibration" not in config and trust.calibration is None
    assert trust.judged["whose"] == "checkpoint" and trust.judged["value"] == pytest.approx(test["macro_f1"])
    assert trust.judged["on"] == "the held-out events malaysia, nepal (9 posts)"
    assert trust.splits == {"dev": "validation events (eclipse, garissa)", "test": "held-out events (malaysia, nepal)"}
    # the floor: always answering the commonest class of those 9 posts (malaysia 3 fake; nepal 3 fake, 3 real)
    assert trust.judged["floor_name"] == "always answering fake"
    assert trust.judged["floor"] == pytest.approx((2 * 6 / 15 + 0) / 2)  # F1 of fake 2*6/(2*6+3), of real 0
    assert trust.spread["n"] == 12 and trust.spread["on"] == "the validation events eclipse, garissa (12 posts)"
    reliability = Predictor.from_checkpoint(tmp_path / "plain").reliability
    assert "not calibrated" in reliability and "this checkpoint scores macro F1" in reliability
    # the checkpoint of the measured recipe trains on every event but the validation ones, and has no test part
    run = train_task("mediaeval2016", "concat", [0], image_cap=2, protocol="all-events",
                     **{**common, "out": tmp_path / "capped"})[0]
    assert run == tmp_path / "capped" / "mediaeval2016" / "concat" / "all-events" / "seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert "test" not in metrics and metrics["data"]["sizes"]["test"] == 0
    assert metrics["data"]["groups"] == {"train": ["boston", "malaysia", "nepal", "sandy"],
                                         "dev": ["eclipse", "garissa"], "test": []}
    dest = tmp_path / "checkpoints" / "mediaeval2016" / "concat"
    bundle(run.parent, dest, compact=False, calibration=report, **where)
    config, loeo = read_config(dest), json.loads(report.read_text())
    trust = read_trust(config)
    assert trust.judged["whose"] == "recipe" and trust.judged["value"] == loeo["pooled"]["fused"]["macro_f1"]["mean"]
    assert trust.judged["on"].startswith("events training never saw (leave-one-event-out: each of the 6 events")
    assert trust.splits == {"dev": "validation events (eclipse, garissa)"}  # no test part
    # one temperature fitted on the recipe's pooled held-out predictions, never a mean of per-seed ones
    assert trust.calibration["whose"] == "recipe"
    assert trust.calibration["temperature"] == pytest.approx(loeo["recipe_calibration"]["temperature"])
    assert trust.calibration["ece_before"] == pytest.approx(loeo["recipe_calibration"]["ece_before"])
    card = (dest / "README.md").read_text()
    assert "the recipe's (a leave-one-event-out run of the same settings" in card
    assert "validation events (eclipse, garissa)" in card and "| dev |" not in card
    bundle(dest, dest, compact=False, **where)  # bundled again in place without a report: the recipe is remembered
    assert read_config(dest)["calibration"] == config["calibration"]

    p = Predictor.from_checkpoint(dest)
    image = Image.new("RGB", (64, 64), (200, 30, 30))
    pred = p.predict(image, "hoax fake photoshop")
    assert "this recipe (a leave-one-event-out run" in pred.reliability and "6 events" in pred.reliability
    if trust.carries_over:  # only the fused logits are scaled
        assert "calibrated" in pred.reliability and "text-only and image-only ones are not" in pred.reliability
    else:  # a temperature fitted without an event that does not help on it is not called calibration
        assert "does not carry over to a new event" in pred.reliability and "calibrated" not in pred.reliability
    scaled = torch.tensor(list(pred.probs["fused"].values())).log()
    p.classifier.calibration = {}  # the same input, uncalibrated
    raw = torch.tensor([p.predict(image, "hoax fake photoshop").probs["fused"][k] for k in pred.probs["fused"]]).log()
    t = config["calibration"]["temperature"]
    assert torch.allclose(scaled[0] - scaled[1], (raw[0] - raw[1]) / t, atol=1e-4)  # logit gap divided by T

    # A temperature that flattens every answer (as the mean of per-seed ones did): measured as uninformative, and the
    # app never calls it calibrated; measuring never touches the weights.
    flat = tmp_path / "flat"
    shutil.copytree(dest, flat)
    digest = hashlib.sha256((flat / "model.safetensors").read_bytes()).hexdigest()
    monkeypatch.setattr(trust_module, "recipe_calibration", lambda _: {**config["calibration"], "temperature": 1e7})
    trust, calibration, dev = measure(flat, **where)
    assert trust["informative"] is False and trust["spread"]["std"] < 1e-6 and dev["n"] == 12
    write_trust(flat, trust, calibration)
    line = Predictor.from_checkpoint(flat).reliability
    assert "does not change with the input" in line and "calibrated" not in line
    assert hashlib.sha256((flat / "model.safetensors").read_bytes()).hexdigest() == digest

    # The probe would measure it on its own training events: it skips it, and drops an older report of that name.
    from trainer.__main__ import main
    from mmdemo.checkpoint import read_metrics
    from trainer.loeo import trained_on_every_event

    assert trained_on_every_event(read_metrics(dest)) and not trained_on_every_event(read_metrics(tmp_path / "plain"))
    probed = tmp_path / "probe.json"
    probed.write_text(json.dumps({"mediaeval2016/concat": {"dev": {"n": 1}}, "mvsa-single/concat": {"dev": {"n": 2}}}))
    main(["probe", "--checkpoint", str(dest), "--splits", "dev", "--json", str(probed)])
    assert json.loads(probed.read_text()) == {"mvsa-single/concat": {"dev": {"n": 2}}}


def test_image_dropout_blanks_exactly_the_chosen_rows():
    image = ImageFeatures(torch.arange(24.0).view(2, 3, 4), torch.ones(2, 5), torch.ones(2, 2))
    blank = ImageFeatures(torch.full((1, 3, 4), -1.0), torch.zeros(1, 5), torch.full((1, 2), 7.0))
    out = blank_images(image, blank, torch.tensor([False, True]))
    assert torch.equal(out.patches[0], image.patches[0]) and (out.patches[1] == -1).all()
    assert torch.equal(out.pooled, torch.tensor([[1.0] * 5, [0.0] * 5]))
    assert torch.equal(out.logits, torch.tensor([[1.0, 1.0], [7.0, 7.0]]))
    no_patches = ImageFeatures(torch.zeros(2, 0, 4), torch.ones(2, 5))  # a head that reads the pooled vector only
    assert blank_images(no_patches, blank, torch.tensor([True, True])).patches.shape == (2, 0, 4)


def test_loeo_sweep_chooses_options_by_the_validation_folds_never_the_left_out_events(tmp_path, monkeypatch):
    import subprocess
    from pathlib import Path

    from trainer import sweep as sweep_mod

    # image_cap 1 wins on the validation folds, no cap on the left-out events: the sweep must pick the cap.
    validation = {"0": [0.80, 0.82], "1": [0.84, 0.86]}
    held_out = {"0": 0.90, "1": 0.40}
    started = []

    def fake_run(cmd, **kwargs):
        started.append(cmd)
        assert cmd[cmd.index("--protocol") + 1] == "loeo" and "--resume" not in cmd
        seeds = cmd[cmd.index("--seeds") + 1:cmd.index("--out")]
        cap = cmd[cmd.index("--image-cap") + 1]
        report = Path(cmd[cmd.index("--out") + 1]) / "mediaeval2016" / "concat" / "loeo"
        report.mkdir(parents=True)
        (report / "loeo.json").write_text(json.dumps({
            "validation": {"metric": "macro_f1", "values": validation[cap][:len(seeds)]},
            "pooled": {"fused": {"macro_f1": {"mean": held_out[cap]}}}}))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(sweep_mod.subprocess, "run", fake_run)
    out = tmp_path / "sweep"
    result = sweep_mod.sweep("mediaeval2016", "concat", {"image_cap": [0, 1]}, [0, 1], out, jobs=2, protocol="loeo")
    assert len(started) == 2  # one leave-one-event-out run per point, each over both seeds
    assert all(c[c.index("--seeds") + 1:c.index("--out")] == ["0", "1"] for c in started)
    assert result["best"] == {"image_cap": 1} and result["protocol"] == "loeo"
    assert [round(p["dev_mean"], 3) for p in result["points"]] == [0.85, 0.81]
    assert "validation" in result["selected_on"] and "LOEO validation folds" in sweep_mod.sweep_table(result)
    # --resume keeps a point whose report exists; a split sweep's earlier points are never ranked with these
    started.clear()
    again = sweep_mod.sweep("mediaeval2016", "concat", {"image_cap": [0, 1]}, [0, 1], out, resume=True,
                            protocol="loeo")
    assert started == [] and again["best"] == {"image_cap": 1} and len(again["points"]) == 2
    assert sweep_mod._earlier_points(out / "mediaeval2016" / "concat" / "sweep.json", [0, 1], set(), "split") == ([], [])
    # other validation events: passed to every run, recorded, and never ranked with the points of the default ones
    started.clear()
    other = sweep_mod.sweep("mediaeval2016", "concat", {"image_cap": [1]}, [0, 1], tmp_path / "other",
                            protocol="loeo", validation_events=("nepal", "boston"))
    assert started[0][started[0].index("--validation-events") + 1] == "nepal,boston"
    assert other["validation_events"] == ["nepal", "boston"]
    assert sweep_mod._earlier_points(out / "mediaeval2016" / "concat" / "sweep.json", [0, 1], set(), "loeo",
                                     ("nepal", "boston")) == ([], [])


def test_all_events_sweep_ranks_recipes_by_the_validation_events_a_bundle_is_chosen_on(tmp_path, monkeypatch):
    """protocol "all-events": each point x seed trains on every event but the validation ones and is ranked by its
    score on those; the runs sit where `train --protocol all-events` puts them, and a finished one is kept."""
    import subprocess
    from pathlib import Path

    from trainer import sweep as sweep_mod

    scores = {"true": [0.30, 0.50], "false": [0.28, 0.29]}  # the recipe with the LayerNorm wins on its validation events
    started = []

    def fake_run(cmd, **kwargs):
        started.append(cmd)
        assert cmd[cmd.index("--protocol") + 1] == "all-events"
        assert cmd[cmd.index("--validation-events") + 1] == "nepal,boston,eclipse"
        seed = cmd[cmd.index("--seeds") + 1]
        norm = json.loads(cmd[cmd.index("--set") + 1].split("=", 1)[1])
        run = Path(cmd[cmd.index("--out") + 1]) / "mediaeval2016" / "mggf" / "all-events" / f"seed{seed}"
        run.mkdir(parents=True)
        write(run / "config.json", json.dumps({"task": "mediaeval2016", "multi_label": False}))
        write(run / "metrics.json", json.dumps({"dev": {"fused": {"macro_f1": scores[str(norm).lower()][int(seed)]}}}))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(sweep_mod.subprocess, "run", fake_run)
    args = ("mediaeval2016", "mggf", {"feature_norm": [True, False]}, [0, 1], tmp_path / "sweep")
    result = sweep_mod.sweep(*args, protocol="all-events", validation_events=("nepal", "boston", "eclipse"))
    assert len(started) == 4 and result["best"] == {"feature_norm": True}
    assert [round(p["dev_mean"], 3) for p in result["points"]] == [0.4, 0.285]
    assert "validation events" in result["selected_on"] and "validation events" in sweep_mod.sweep_table(result)
    started.clear()
    again = sweep_mod.sweep(*args, protocol="all-events", validation_events=("nepal", "boston", "eclipse"),
                            resume=True)
    assert started == [] and again["points"] == result["points"]


def test_target_pairs_seeds_against_text_only_and_names_events_at_a_coin(tmp_path):
    def report(path, by_seed, events):
        (tmp_path / path).mkdir(parents=True)
        (tmp_path / path / "loeo.json").write_text(json.dumps({
            "seeds": [0, 1], "pooled": {"fused": {"macro_f1": {"values": by_seed}}},
            "pooled_by_seed": {str(s): {"fused": {"macro_f1": v}} for s, v in enumerate(by_seed)},
            "per_event": {e: {"classes": c, "macro_f1": {"mean": m}} for e, (c, m) in events.items()}}))

    both = ["fake", "real"]
    report("text", [0.50, 0.52], {"nepal": (both, 0.8)})
    report("a", [0.55, 0.49], {"nepal": (both, 0.51), "sochi": (["fake"], 0.1)})  # +0.01 on average, no event lost
    report("b", [0.60, 0.60], {"nepal": (both, 0.5), "boston": (both, 0.7)})  # ahead, but nepal at a coin
    rows = render("{{target text A=a,B=b}}", base=tmp_path).splitlines()[-2:]
    assert rows[0] == "| A | 2 | 52.00 ± 4.24 | 1.00 ± 5.66 | none | yes |"
    assert rows[1] == "| B | 2 | 60.00 ± 0.00 | 9.00 ± 1.41 | nepal 50.0 | no |"
    report("c", [0.6, 0.7], {})  # seeds 0 and 2: paired with text-only's seed 0 only
    c = json.loads((tmp_path / "c" / "loeo.json").read_text())
    c["seeds"], c["pooled_by_seed"] = [0, 2], {"0": c["pooled_by_seed"]["0"], "2": c["pooled_by_seed"]["1"]}
    (tmp_path / "c" / "loeo.json").write_text(json.dumps(c))
    assert render("{{target text C=c}}", base=tmp_path).splitlines()[-1] == ("| C | 2 | 65.00 ± 7.07 | 10.00 | none "
                                                                            "| yes |")
    c["seeds"], c["pooled_by_seed"] = [2], {"2": c["pooled_by_seed"]["2"]}
    (tmp_path / "c" / "loeo.json").write_text(json.dumps(c))
    with pytest.raises(ValueError, match="none paired"):
        render("{{target text C=c}}", base=tmp_path)


def test_a_folds_recipe_digest_stays_what_it_was(tiny_encoders):
    """A kept fold resumes only while its recipe digest is unchanged, so the digest of a fixed spec is pinned (the
    values the digest gave before RunSpec declared its options with metadata); an option added later counts only
    when on."""
    from mmdemo.encoders import FeatureDims
    from trainer.loeo import _recipe
    from trainer.loop import RunSpec

    base = dict(task="mediaeval2016", model="mggf", labels=["fake", "real"], multi_label=False,
                text_encoder="minilm-l6", image_encoder="efficientnet-lite0", dims=FeatureDims.of(*tiny_encoders))
    assert _recipe(RunSpec(**base)) == _recipe(RunSpec(**base, balance_classes=False)) == "7088d51309b29920"
    assert _recipe(RunSpec(**base, seed=2, finetune_text_layers=2, encoder_lr=1e-4,
                           overrides={"hidden": 128})) == "493777bc972772f7"
    assert _recipe(RunSpec(**base, balance_classes=True, image_cap=1)) == "d94164e4396e0a71"
