"""One `train` invocation: data -> cached features -> one run per seed -> checkpoint directories.

Each run writes `<out>/<task>/<model>[-<variant>]/seed<k>/` with config.json, model.safetensors,
metrics.json (dev and test, all three heads), README.md (model card), confusion.png and curves.png.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path

import torch

from mmdemo.checkpoint import read_config, read_metrics, save_checkpoint
from mmdemo.encoders import (DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER, FeatureDims, available_prior,
                             create_image_encoder, create_text_encoder)
from mmdemo.card import make_model_card
from mmdemo.models import MultimodalClassifier, get_model
from mmdemo.tasks import get_task

from .datasets import DatasetSplits, load_task_data
from .features import CachedSplit, cached_features
from .loop import evaluate, train
from .metrics import plot_confusion, plot_curves, selection_metric
from .spec import RunSpec, train_options

REPO_ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = REPO_ROOT / "outputs"  # every run lands here unless told otherwise (git-ignored)
RESULTS = REPO_ROOT / "results"  # committed evidence: changed only by --promote, bundle or an explicit --out
# split: the task's train / dev / test; loeo: leave one event out, every event in turn; all-events: every event but
# the validation events, nothing held out (the checkpoint of a recipe that loeo measured)
PROTOCOLS = ("split", "loeo", "all-events")


def run_name(model: str, variant: str = "") -> str:
    return f"{model}-{variant}" if variant else model


def load_features(task: str, text_encoder: str, image_encoder: str, data_dir: str | None = None,
                  max_length: int = 64, cache_dir: Path | None = None, finetune_text_layers: int = 0,
                  text_layers: int = 0, prior: str = "", splits: tuple[str, ...] = ("train", "dev", "test"),
                  data: DatasetSplits | None = None) -> tuple[DatasetSplits, dict[str, CachedSplit], FeatureDims]:
    """The task's cached features. `text_layers`: at least this many text layers (the cache holds what the
    registry declares); `prior`: attach that prior encoder's global vectors (it must be available here).
    `finetune_text_layers` n > 0: a model tunes the last n text layers. Where the encoder can start from hidden
    states the cache holds at least n + 1 layers and the model reruns its n blocks on the frozen output of the
    block below them; otherwise the raw captions are attached and the text encoder runs live every batch.
    `splits`: only these are loaded (and encoded, where the cache lacks them). `data`: these splits of the task
    instead of its reader's own (e.g. a leave-one-event-out fold)."""
    data = data or load_task_data(task, data_dir)
    te, ie = create_text_encoder(text_encoder), create_image_encoder(image_encoder)
    live_text = finetune_text_layers > 0 and not te.can_resume
    if finetune_text_layers > 0 and not live_text:
        text_layers = max(text_layers, finetune_text_layers + 1)
    feats = cached_features(data, te, ie, max_length=max_length, cache_dir=cache_dir, splits=tuple(splits),
                            text_layers=text_layers, prior=prior)
    if live_text:
        for name, split in feats.items():
            split.attach_texts(data.splits()[name])
    prior_dim = next(iter(feats.values())).prior_text.shape[1] if prior else 0
    return data, feats, FeatureDims.of(te, ie, prior_dim)


def checkpoint_features(model: MultimodalClassifier, data_dir: str | None = None, cache_dir: Path | None = None,
                        splits: tuple[str, ...] = ("train", "dev", "test"), data: DatasetSplits | None = None
                        ) -> dict[str, CachedSplit]:
    """The features a trained model reads on `splits` of its task: the encoders and text length it was trained
    with, its prior encoder's vectors, and what its fine-tuned text layers start from. What the head fitted on
    train is in the checkpoint, so evaluating dev or test never needs train."""
    _, feats, _ = load_features(model.task, model.text_encoder_name, model.image_encoder_name, data_dir,
                                model.max_length, cache_dir, finetune_text_layers=model.finetune_text_layers,
                                text_layers=model.text_layers, prior=model.prior_encoder, splits=splits, data=data)
    return feats


def split_groups(data: DatasetSplits) -> dict:
    """{"groups": {split: its sample groups}} for a task whose samples have groups (MediaEval: the events), else {}:
    what tells later whether the test part held out whole events (`trainer.trust.measure`)."""
    groups = {k: sorted({s.group for s in v} - {None}) for k, v in data.splits().items()}
    return {"groups": groups} if any(groups.values()) else {}


def write_run(model: MultimodalClassifier, record: dict, feats: dict[str, CachedSplit], data: DatasetSplits,
              out_dir: Path, seed: int, command: str) -> dict:
    """Evaluate on dev and test (the only place test is touched) and write the checkpoint directory. A split with
    no test part (`--protocol all-events`) records dev only."""
    tested = len(feats["test"]) > 0
    metrics = {
        "task": model.task, "model": model.model_name, "variant": model.variant, "seed": seed,
        "dev": evaluate(model, feats["dev"]), **({"test": evaluate(model, feats["test"])} if tested else {}),
        "data": {"version": data.version, "sizes": {k: len(v) for k, v in feats.items()}, **split_groups(data),
                 "skipped_by_reader": data.skipped, "skipped_unreadable": {k: v.skipped for k, v in feats.items()}},
        "command": command, **{k: v for k, v in record.items()},
    }
    save_checkpoint(model, out_dir, metrics=metrics)
    card = make_model_card(model.hub_config(), metrics, command)
    card.save(out_dir / "README.md")
    title = f"{model.task} / {run_name(model.model_name, model.variant)} / seed {seed}"
    if not model.multi_label:
        shown = "test" if tested else "dev"
        plot_confusion(metrics[shown]["fused"]["confusion_matrix"], model.labels, out_dir / "confusion.png",
                       f"{title} ({shown})")
    plot_curves(record["history"], record["selected_on"].split()[1], out_dir / "curves.png", title)
    return metrics


def train_task(task: str, model: str, seeds: list[int], variant: str = "", data_dir: str | None = None,
               out: Path = OUTPUTS, overrides: dict | None = None, max_length: int = 64, cache_dir: Path | None = None,
               progress: bool = True, resume: bool = False, protocol: str = "split",
               validation_events: tuple[str, ...] = (), text_encoder: str = DEFAULT_TEXT_ENCODER,
               image_encoder: str = DEFAULT_IMAGE_ENCODER, **options) -> list[Path]:
    """Train one run per seed into <out>/<task>/<model>[-<variant>]/seed<k>/. `text_encoder`, `image_encoder` and
    `options` are RunSpec's training options (trainer/spec.py; older names accepted), RunSpec's defaults for those
    not given. Each run keeps its state beside that directory after every epoch (`.seed<k>.state.safetensors`);
    with `resume`, a run whose state is there continues from its last finished epoch (a finished run's state is
    removed). `protocol="loeo"`: leave-one-event-out instead (trainer/loeo.py), its report in
    <out>/<task>/<model>[-<variant>]/loeo/loeo.json (`resume`: the folds an interrupted run finished are kept, and
    the fold it was training continues from its last finished epoch).
    `protocol="all-events"`: the checkpoint of a recipe that LOEO measured, trained on every event but the
    validation events (which choose the epoch) into <out>/<task>/<model>[-<variant>]/all-events/seed<k>/, with no
    test part: `trainer bundle --calibration` then adds the LOEO report's temperature and unseen-event scores.
    `validation_events` (loeo, all-events): the events that may validate, in order (a fold takes the first two that
    it does not leave out); empty: the task reader's."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")
    entry = get_model(model)
    needs = entry.head.needs(entry.config(overrides, variant))  # fails fast on unknown model / variant / field
    t = get_task(task)
    prior = available_prior(needs.prior)
    if needs.prior and not prior:
        print(f"{model} asks for the prior encoder {needs.prior!r}, whose weights are not available here: training it "
              f"without (the paper's w/o-prior row); the checkpoint records prior_encoder=''", flush=True)
    options = train_options(text_encoder=text_encoder, image_encoder=image_encoder, **options)
    data, feats, dims = load_features(task, options["text_encoder"], options["image_encoder"], data_dir, max_length,
                                      cache_dir, finetune_text_layers=options["finetune_text_layers"],
                                      text_layers=needs.text_layers, prior=prior)
    command = "python -m trainer " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[0].endswith(
        ("__main__.py", "trainer")) else ""
    metric = selection_metric(data.multi_label, t.paper_metric)
    base = RunSpec(task=task, model=model, labels=data.labels, multi_label=data.multi_label, dims=dims, variant=variant,
                   overrides=overrides or {}, max_length=max_length, data_version=data.version, select_metric=metric,
                   ordinal=t.ordinal, prior_encoder=prior, **options)
    if base.balance_groups or base.event_adversarial:
        feats["train"].attach_groups(data.train)
    if protocol == "loeo":
        from .loeo import pooled_features, run_loeo

        out_dir = out / task / run_name(model, variant) / "loeo"
        report = run_loeo(task, base, pooled_features(feats, data), seeds, out_dir, data_dir, progress=progress,
                          resume=resume, validation=validation_events)
        fused = report["pooled"]["fused"]
        print(f"{task} {run_name(model, variant)} leave-one-event-out, seeds {seeds}: pooled accuracy "
              f"{fused['accuracy']['mean']:.4f} ± {fused['accuracy']['std']:.4f}, macro F1 {fused['macro_f1']['mean']:.4f}"
              f" ± {fused['macro_f1']['std']:.4f} -> {out_dir / 'loeo.json'}", flush=True)
        return [out_dir]
    root = out / task / run_name(model, variant)
    if protocol == "all-events":
        from .loeo import all_events_split, cut, pooled_features

        everything = all_events_split(task, data_dir, validation_events)
        feats, data = cut(pooled_features(feats, data), everything), everything
        base, root = replace(base, data_version=data.version), root / "all-events"
    written = []
    for seed in seeds:
        spec = replace(base, seed=seed)
        out_dir = root / f"seed{seed}"
        state = out_dir.with_name(f".{out_dir.name}.state.safetensors")
        state.parent.mkdir(parents=True, exist_ok=True)
        if not resume:
            state.unlink(missing_ok=True)
        elif state.is_file():
            print(f"{task} {run_name(model, variant)} seed {seed}: resuming from {state}", flush=True)
        clf, record = train(spec, feats, progress=progress, state_path=state)
        m = write_run(clf, record, feats, data, out_dir, seed, command)
        state.unlink(missing_ok=True)
        key = "accuracy" if not data.multi_label else "precision@1"
        tested = f"test {key} {m['test']['fused'][key]:.4f}" if "test" in m else "no test part"
        print(f"{task} {run_name(model, variant)} seed {seed}: dev {metric} {m['dev']['fused'][metric]:.4f} | "
              f"{tested} | best epoch {record['best_epoch']}/{record['epochs_run']} | "
              f"{record['train_seconds']:.0f}s -> {out_dir}", flush=True)
        written.append(out_dir)
    return written


def dev_scores(run_dir: Path) -> tuple[dict[Path, float], str]:
    """-> ({seed directory: its fused DEV score}, the task's selection metric) for the trained seeds of a run."""
    seeds = sorted(p for p in run_dir.glob("seed*") if (p / "metrics.json").is_file())
    if not seeds:
        raise FileNotFoundError(f"no trained seeds under {run_dir}")
    metric = checkpoint_selection_metric(seeds[0])
    return {p: read_metrics(p)["dev"]["fused"][metric] for p in seeds}, metric


def checkpoint_selection_metric(ckpt_dir: Path) -> str:
    """The dev metric a checkpoint's task selects on (its config says the task)."""
    cfg = read_config(ckpt_dir)
    return selection_metric(cfg["multi_label"], get_task(cfg["task"]).paper_metric)


def best_seed_dir(run_dir: Path) -> tuple[Path, str]:
    """-> (the seed directory with the best DEV score, the metric); test is never used to choose."""
    scores, metric = dev_scores(run_dir)
    return max(scores, key=scores.get), metric


def torch_threads(n: int) -> None:
    """Intra-op threads. Small heads on cached features are latency-bound: one thread is fastest (measured
    with 2 threads: several times slower per batch on a 2-core machine); encoding benefits from all cores."""
    import os

    torch.set_num_threads(n if n > 0 else max(1, len(os.sched_getaffinity(0))))
