"""Leave-one-event-out (LOEO): the protocol for a task whose posts are judged on events never seen in training
(MediaEval 2016: 15 events with images, Hurricane Sandy about 65% of the posts, most events entirely fake).

Each event in turn is the test fold. The task's reader makes the fold (`leave_out=EVENT`): the validation events
(two events with both classes, never the test event) choose the epoch, and training reads every other event; no
event, hence no image, is in two of the three. The features come from the task's feature cache, cut by sample
id, so no fold encodes anything again. A seed's folds together predict every post once, as an unseen event: the
pooled metrics are computed over all those predictions; the per-event ones over each fold.

    python -m trainer train --task mediaeval2016 --model concat --protocol loeo --seeds 0 1 2
    python -m trainer train --task mediaeval2016 --model concat --protocol loeo --image-cap 1 --balance-groups

writes `<out>/<task>/<model>[-<variant>]/loeo/loeo.json`; `python -m trainer report --markdown` reads it
(`{{loeo ...}}` in docs/RESULTS.in.md). A LOEO run is 15 trainings per seed, hours for the slower heads on a CPU:
each finished fold keeps its predictions in `loeo/.folds/`, and the run's training state after every epoch, so that
`--resume` continues an interrupted run where it stopped (a fold trained for another recipe is trained again).
The same command with `--resume` started in several processes shares the folds: each fold is trained under a lock
(`flock`, POSIX), a process passes over the folds another holds and reads them back at the end, and the last process
to finish writes the report and removes `.folds/`. What stays beside the report is every post's held-out fused logits
per seed (`loeo/predictions.safetensors`, a few hundred kB): one temperature is fitted on them for the recipe
(`pooled_calibration`), which the checkpoint of the recipe carries (`trainer measure`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import statistics
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from mmdemo.atomic import save_tensors, write_text

from .datasets import DatasetSplits, load_task_data
from .features import CachedSplit, concat_splits
from .loop import predict_split, train
from .metrics import compute_metrics
from .spec import LATER_FIELDS, UNSEEN_EVENT_OPTIONS, RunSpec

try:
    import fcntl
except ImportError:  # Windows: a run's folds are not shared between processes
    fcntl = None


def fold_events(data: DatasetSplits) -> list[str]:
    """The task's events (sample groups), largest first."""
    sizes: dict[str, int] = {}
    for samples in data.splits().values():
        for s in samples:
            sizes[s.group] = sizes.get(s.group, 0) + 1
    return sorted(sizes, key=lambda e: (-sizes[e], e))


def fold(task: str, event: str, data_dir: str | None = None, validation: Sequence[str] = ()) -> DatasetSplits:
    """The reader's leave-one-event-out split for `event`, checked: the three parts share no event and no image.
    `event=""` leaves no event out (`all_events_split`). `validation`: the events that may validate, in order (the
    first two that are not `event`); empty: the reader's own."""
    data = load_task_data(task, data_dir, leave_out=event, **({"validation_events": tuple(validation)} if validation
                                                               else {}))
    parts = data.splits()
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        events = {s.group for s in parts[a]} & {s.group for s in parts[b]}
        images = {s.image for s in parts[a]} & {s.image for s in parts[b]} - {None}
        if events or images:
            raise ValueError(f"fold {event}: {a} and {b} share events {sorted(events)} / {len(images)} images")
    if {s.group for s in parts["test"]} != ({event} if event else set()):
        raise ValueError(f"fold {event}: its test part is not exactly that event")
    return data


def all_events_split(task: str, data_dir: str | None = None, validation: Sequence[str] = ()) -> DatasetSplits:
    """What the checkpoint of a recipe measured by leave-one-event-out trains on (`--protocol all-events`): every
    event but the validation events, which choose the epoch as in every fold; no test part, since the LOEO report
    is this recipe's measure on events never seen."""
    return fold(task, "", data_dir, validation)


def cut(pool: CachedSplit, data: DatasetSplits) -> dict[str, CachedSplit]:
    """The fold's train / dev / test features from the pooled cache, by sample id (samples the cache dropped,
    e.g. unreadable images, stay dropped)."""
    row = {i: k for k, i in enumerate(pool.ids)}
    out = {}
    for name, samples in data.splits().items():
        out[name] = pool.subset(torch.tensor([row[s.id] for s in samples if s.id in row], dtype=torch.long))
    return out


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 minimising the cross-entropy of softmax(logits / T). The
    cross-entropy is convex in 1/T, so a bounded scalar search over 1/T in [1e-6, 100] finds its minimum (gradient
    steps on log T stopped far from it on nearly separable folds); 1/T at its lower bound (T = 1e6) means that no
    temperature helps and the calibrated answer is 50/50 whatever the input."""
    from scipy.optimize import minimize_scalar

    z = logits.double()
    nll = lambda beta: torch.nn.functional.cross_entropy(z * beta, labels).item()  # noqa: E731
    return float(1.0 / minimize_scalar(nll, bounds=(1e-6, 100.0), method="bounded", options={"xatol": 1e-9}).x)


def calibration_error(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Expected calibration error (15 bins) of softmax(logits / T)."""
    from torchmetrics.functional import calibration_error as ece

    probs = (logits.float() / temperature).softmax(-1)
    return float(ece(probs, labels, task="multiclass", num_classes=probs.shape[-1], n_bins=15))


PREDICTIONS_FILE = "predictions.safetensors"


def pooled_calibration(logits: list[torch.Tensor], labels: torch.Tensor) -> dict:
    """One temperature for a recipe, fitted on its pooled held-out predictions (each seed's [N, C] fused logits, every
    post predicted by a model that never saw its event), with the calibration error of those predictions before
    and after. Never a mean of per-seed temperatures: a seed whose validation events push T towards infinity would
    make every answer of the recipe's checkpoint 50/50."""
    pooled, target = torch.cat(logits).float(), labels.repeat(len(logits))
    t = fit_temperature(pooled, target)
    return {"temperature": t, "n": int(len(target)), "seeds": len(logits),
            "ece_before": calibration_error(pooled, target), "ece_after": calibration_error(pooled, target, t)}


def _summary(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


@contextmanager
def _held(path: Path, shared: bool = False, wait: bool = True) -> Iterator[bool]:
    """An advisory lock on `path` -> True while held, or False at once if `wait` is off and another process holds
    it. flock: the system releases it when its process dies, so an interrupted run leaves no stale lock."""
    if fcntl is None:
        yield True
        return
    with open(path, "a") as f:
        try:
            fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _recipe(spec: RunSpec) -> str:
    """A digest of everything a fold's training depends on (the seed and the fold's data version included); an
    option added after folds were first kept (`LATER_FIELDS`) counts only when on, so those folds still resume."""
    fields = {k: v for k, v in dataclasses.asdict(spec).items() if k not in LATER_FIELDS or v}
    return hashlib.blake2b(json.dumps(fields, sort_keys=True, default=str).encode(), digest_size=8).hexdigest()


def _train_fold(spec: RunSpec, feats: dict[str, CachedSplit], data: DatasetSplits, folds_dir: Path, name: str,
                resume: bool, progress: bool) -> tuple[dict[str, torch.Tensor], dict]:
    """One fold -> (logits of the left-out event per head and of the validation events as "dev", with "labels" and
    "dev_labels"), the fold's entry of the report. Kept in `folds_dir/<name>.safetensors` once trained; with
    `resume`, a kept fold of the same recipe is read back, and an interrupted one continues from its state."""
    done, state = folds_dir / f"{name}.safetensors", folds_dir / f".{name}.state.safetensors"
    recipe = _recipe(spec)
    if resume and done.is_file():
        from safetensors import safe_open

        with safe_open(done, "pt") as f:
            meta = f.metadata()
        if meta.get("recipe") == recipe:
            return load_file(done), json.loads(meta["entry"])
        print(f"{name}: kept for another recipe, trained again", flush=True)
    if not resume:
        state.unlink(missing_ok=True)
    folds_dir.mkdir(parents=True, exist_ok=True)
    model, record = train(spec, feats, progress=progress, state_path=state)
    test_logits, _ = predict_split(model, feats["test"])
    out = {**test_logits, "labels": feats["test"].labels, "dev": predict_split(model, feats["dev"])[0]["fused"],
           "dev_labels": feats["dev"].labels}
    entry = {"test": {head: compute_metrics(lg, out["labels"], spec.labels, spec.multi_label)
                      for head, lg in test_logits.items()},
             "classes": sorted({spec.labels[int(y)] for y in out["labels"]}),
             "dev_events": sorted({s.group for s in data.dev}),
             "sizes": {k: len(v) for k, v in feats.items()}, "best_epoch": record["best_epoch"],
             "dev_score": max(h[f"dev_{spec.select_metric}"] for h in record["history"])}
    save_tensors(out, done, {"recipe": recipe, "entry": json.dumps(entry)})
    state.unlink(missing_ok=True)
    return out, entry


def run_loeo(task: str, spec: RunSpec, pool: CachedSplit, seeds: list[int], out: Path,
             data_dir: str | None = None, events: list[str] | None = None, progress: bool = False,
             resume: bool = False, validation: Sequence[str] = ()) -> dict:
    """Train `spec` once per fold and seed; write and return the LOEO report: per seed the pooled test metrics
    over all folds (fused, text-only and image-only heads) and per event its test metrics, with mean ± std over
    seeds of the pooled accuracy / macro F1 / per-class F1 and of each event's accuracy. `resume`: the folds an
    interrupted run finished are read back (module docstring). `validation`: the events that may validate a fold
    (`fold`); each fold's are recorded in the report."""
    events = events or fold_events(load_task_data(task, data_dir))
    splits = {e: fold(task, e, data_dir, validation) for e in events}  # read once; the features are cut per run (memory)
    folds_dir = out / ".folds"
    folds_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, event) for seed in seeds for event in events]
    with _held(folds_dir / ".run.lock", shared=True):  # every process of the run holds it until its report is made
        trained = _train_folds(jobs, spec, pool, splits, folds_dir, resume, progress)
        report, held_out = _report(spec, seeds, events, trained)
    # the last process of the run to finish writes the report and removes the folds (the others' runs are the same)
    with _held(folds_dir / ".run.lock", wait=False) as last:
        if last:
            save_tensors(held_out, out / PREDICTIONS_FILE, {"events": json.dumps(events), "seeds": json.dumps(seeds)})
            write_text(out / "loeo.json", json.dumps(report, indent=1, sort_keys=True) + "\n")
            shutil.rmtree(folds_dir, ignore_errors=True)  # the run is finished: its resumable state goes
    return report


def _train_folds(jobs: list[tuple[int, str]], spec: RunSpec, pool: CachedSplit, splits: dict[str, DatasetSplits],
                 folds_dir: Path, resume: bool, progress: bool) -> dict[tuple[int, str], tuple[dict, dict]]:
    """Every (seed, event) fold -> (its predictions, its report entry). Several processes running the same command
    with `--resume` share the work: each fold is trained under its own lock, a process skips the folds another one
    holds and, at the end, waits for them and reads them back (or trains one itself if its process died)."""
    done, waiting = {}, []
    for job in jobs:
        with _held(folds_dir / f".{_fold_name(*job)}.lock", wait=False) as mine:
            if mine:
                done[job] = _fold_of(job, spec, pool, splits, folds_dir, resume, progress)
            else:
                waiting.append(job)
    for job in waiting:
        with _held(folds_dir / f".{_fold_name(*job)}.lock"):
            done[job] = _fold_of(job, spec, pool, splits, folds_dir, True, progress)
    return done


def _fold_name(seed: int, event: str) -> str:
    return f"{event}.seed{seed}"


def _fold_of(job: tuple[int, str], spec: RunSpec, pool: CachedSplit, splits: dict[str, DatasetSplits],
             folds_dir: Path, resume: bool, progress: bool) -> tuple[dict, dict]:
    seed, event = job
    data = splits[event]
    predicted, entry = _train_fold(replace(spec, seed=seed, data_version=data.version), cut(pool, data), data,
                                   folds_dir, _fold_name(seed, event), resume, progress)
    print(f"{spec.task} loeo {event} seed {seed}: test accuracy {entry['test']['fused']['accuracy']:.4f} "
          f"({entry['sizes']['test']} posts)", flush=True)
    return predicted, entry


def _report(spec: RunSpec, seeds: list[int], events: list[str],
            trained: dict[tuple[int, str], tuple[dict, dict]]) -> tuple[dict, dict[str, torch.Tensor]]:
    """The LOEO report of every fold's predictions and entries, and every post's held-out fused logits per seed."""
    per_seed, folds, calibration, held_out = {}, {}, {}, {}
    for seed in seeds:
        logits: dict[str, list[torch.Tensor]] = {}
        labels: list[torch.Tensor] = []
        val_logits, val_labels = [], []
        for event in events:
            predicted, entry = trained[seed, event]
            for head in entry["test"]:
                logits.setdefault(head, []).append(predicted[head])
            labels.append(predicted["labels"])
            val_logits.append(predicted["dev"])
            val_labels.append(predicted["dev_labels"])
            folds.setdefault(event, {})[seed] = entry
        target = torch.cat(labels)
        held_out[f"fused.seed{seed}"] = torch.cat(logits["fused"]).float()
        if "labels" in held_out and not torch.equal(held_out["labels"], target):
            raise RuntimeError("the seeds' folds predicted the posts in different orders")
        held_out["labels"] = target
        per_seed[seed] = {head: compute_metrics(torch.cat(lg), target, spec.labels, spec.multi_label)
                          for head, lg in logits.items()}
        if not spec.multi_label:  # one temperature from the validation folds, judged on the unseen events
            t = fit_temperature(torch.cat(val_logits), torch.cat(val_labels))
            test = torch.cat(logits["fused"])
            calibration[seed] = {"temperature": t, "ece": calibration_error(test, target),
                                 "ece_scaled": calibration_error(test, target, t)}
    pooled = {head: {"accuracy": _summary([per_seed[s][head]["accuracy"] for s in seeds]),
                     "macro_f1": _summary([per_seed[s][head]["macro_f1"] for s in seeds]),
                     **{f"f1_{c}": _summary([per_seed[s][head]["per_class_f1"][c] for s in seeds]) for c in spec.labels}}
              for head in per_seed[seeds[0]]}
    # What chooses between options: each seed's dev score averaged over the folds (validation events only).
    validation = _summary([statistics.mean(folds[e][s]["dev_score"] for e in events) for s in seeds])
    report = {"task": spec.task, "model": spec.model, "variant": spec.variant, "seeds": seeds, "events": events,
              "validation": {"metric": spec.select_metric, **validation},
              "options": {"text_encoder": spec.text_encoder, "image_encoder": spec.image_encoder,
                          **spec.unseen_event_options(), **spec.overrides,
                          "finetune_text_layers": spec.finetune_text_layers, "lora_rank": spec.lora_rank},
              "pooled": pooled, "pooled_by_seed": {str(s): per_seed[s] for s in seeds},
              "calibration": {k: _summary([calibration[s][k] for s in seeds]) for k in ("temperature", "ece",
                                                                                         "ece_scaled")}
              if calibration else {},
              # the recipe's one temperature, fitted on every seed's held-out predictions together
              "recipe_calibration": pooled_calibration([held_out[f"fused.seed{s}"] for s in seeds], held_out["labels"])
              if calibration else {},
              "per_event": {e: {"n": folds[e][seeds[0]]["test"]["fused"]["n"],
                                "classes": folds[e][seeds[0]]["classes"],
                                "accuracy": _summary([folds[e][s]["test"]["fused"]["accuracy"] for s in seeds]),
                                "macro_f1": _summary([folds[e][s]["test"]["fused"]["macro_f1"] for s in seeds]),
                                "dev_score": _summary([folds[e][s]["dev_score"] for s in seeds]),
                                "dev_events": folds[e][seeds[0]]["dev_events"]}
                            for e in events}}
    sizes = torch.tensor([folds[e][seeds[0]]["sizes"]["test"] for e in events])
    held_out["event"] = torch.arange(len(events)).repeat_interleave(sizes).to(torch.int16)  # index into "events"
    held_out["labels"] = held_out["labels"].to(torch.int16 if held_out["labels"].dim() == 1 else torch.uint8)
    return report, held_out


def trained_on_every_event(metrics: dict) -> bool:
    """True for a run of `--protocol all-events` (its metrics record its splits' events, and no test events): the
    task's dev and test splits are its own training and validation events."""
    groups = metrics.get("data", {}).get("groups")
    return bool(groups) and not groups["test"]


def check_recipe(report: dict, config: dict, record: dict) -> None:
    """Refuse a LOEO report that measured another recipe than this checkpoint's (model, variant, encoders, tuned
    layers, sampling, adversary, head settings) or, for a checkpoint trained on every event, that validated its
    folds on other events than the checkpoint's: its scores and temperature would not be this recipe's."""
    opts = report["options"]
    drawn = record.get("training_for_unseen_events", {})
    mine = {"model": config["model"], "variant": config.get("variant", ""), "text_encoder": config["text_encoder"],
            "image_encoder": config["image_encoder"], "finetune_text_layers": config.get("finetune_text_layers", 0),
            "lora_rank": config.get("lora_rank", 0), **{k: drawn.get(k, d) for k, d in UNSEEN_EVENT_OPTIONS.items()},
            **{k: config["head"][k] for k in opts if k in config.get("head", {})}}
    theirs = {"model": report["model"], "variant": report["variant"], **opts}
    differ = {k: (mine[k], theirs.get(k)) for k in mine if theirs.get(k, mine[k]) != mine[k]}
    if trained_on_every_event(record):  # validated on the events most of the folds validate on
        dev = record["data"]["groups"]["dev"]
        folds = [tuple(e["dev_events"]) for e in report["per_event"].values()]
        usual = max(set(folds), key=folds.count)
        if tuple(dev) != usual:
            differ["validation events"] = (dev, list(usual))
    if differ:
        raise ValueError("the leave-one-event-out report measured another recipe than this checkpoint's: "
                         + ", ".join(f"{k} {a!r} here, {b!r} there" for k, (a, b) in differ.items()))


def pooled_features(feats: dict[str, CachedSplit], data: DatasetSplits) -> CachedSplit:
    """The task's cached splits as one pool, each sample with its group (event) attached."""
    pool = concat_splits([feats[name] for name in ("train", "dev", "test")])
    pool.attach_groups([s for samples in data.splits().values() for s in samples])
    return pool
