"""Bundling: the best-on-dev seed of a run (or a checkpoint) into `checkpoints/<task>/<model>/`, in float16 without
its training-only state (or with its tuned text blocks as LoRA adapters), its dev score re-measured on that copy,
and how far to trust it measured (trainer/trust.py). `python -m trainer bundle` runs it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from mmdemo.atomic import replacing
from mmdemo.checkpoint import (CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, compact_checkpoint, load_checkpoint,
                               read_config, read_metrics, save_checkpoint)

from .loeo import check_recipe, pooled_features
from .loop import evaluate
from .run import best_seed_dir, checkpoint_features, checkpoint_selection_metric
from .trust import measure, write_trust


def own_dev(model, metrics: dict):
    """The dev features the checkpoint was selected on: the task's dev split, or, for a run whose recorded dev groups
    are not that split's (MediaEval: a run validated on other events), the samples of its own dev groups."""
    groups = metrics.get("data", {}).get("groups")
    if groups:
        from .datasets import load_task_data

        data = load_task_data(model.task)
        if sorted({s.group for s in data.dev}) != groups["dev"]:  # only then are train and test features read
            pool = pooled_features(checkpoint_features(model), data)
            wanted = set(groups["dev"])
            return pool.subset(torch.tensor([i for i, g in enumerate(pool.groups) if g in wanted], dtype=torch.long))
    return checkpoint_features(model, splits=("dev",))["dev"]


def bundle(run_dir: Path, dest: Path, compact: bool = True, dev=None, calibration: Path | None = None,
           lora_rank: int = 0, data_dir: str | None = None, cache_dir: Path | None = None) -> tuple[Path, str]:
    """Copy the best-on-dev seed of a run (or `run_dir` itself, when it is a checkpoint) into the bundled
    checkpoints directory, with its model card made anew from its config and metrics (the card the run wrote may
    predate the current card text). `compact`: float16 weights without the training-only state
    (`compact_checkpoint`); the dev metrics of the compact copy are measured (on `dev`, a CachedSplit, else the
    task's cached dev features) and recorded in its metrics.json ("bundle"), beside the run's float32 ones.
    Last, how far to trust it is measured and written into config.json, with the card (`trainer.trust`):
    `calibration`, a leave-one-event-out report of this recipe (loeo.json), gives a checkpoint trained on every
    event its recipe's unseen-event score and temperature. `lora_rank` r > 0: a run
    that tuned whole text blocks is bundled as rank-r LoRA adapters on the pretrained blocks instead
    (`MultimodalClassifier.as_lora`), a fraction of the size; its dev metrics are measured as for `compact`."""
    if (run_dir / CONFIG_FILE).is_file():  # a checkpoint itself (e.g. a bundled one, re-bundled in place)
        best, metric = run_dir, checkpoint_selection_metric(run_dir)
    else:
        best, metric = best_seed_dir(run_dir)
    # A bundled checkpoint bundled again in place with no new adapters keeps its weights and their record; only its
    # notes (calibration or held-out events' scores) and its card are made anew.
    config, metrics = read_config(best), read_metrics(best)
    notes_only = best.resolve() == dest.resolve() and "bundle" in metrics and not lora_rank
    if calibration is not None:  # a report of another recipe is refused before anything at dest is replaced
        check_recipe(json.loads(Path(calibration).read_text()), config, metrics)
    with replacing(dest, directory=True) as tmp:  # dest may be the source: copied first, then swapped whole
        shutil.copytree(best, tmp, dirs_exist_ok=True)
        copied = (tmp / WEIGHTS_FILE).stat().st_size
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if lora_rank:  # the adapters' weights and config replace the whole blocks'; the plots and the rest stay
            with tempfile.TemporaryDirectory(prefix=f".{dest.name}.", dir=dest.parent) as staging:
                small = save_checkpoint(load_checkpoint(tmp).as_lora(lora_rank), Path(staging) / "lora")
                for name in (CONFIG_FILE, WEIGHTS_FILE):
                    os.replace(small / name, tmp / name)
    if compact and not notes_only:
        _, after = compact_checkpoint(dest, torch.float16)
        model = load_checkpoint(dest)
        split = dev if dev is not None else own_dev(model, metrics)
        fused = evaluate(model, split)["fused"]
        metrics["bundle"] = {"dtype": "float16", "bytes": {"run": copied, "bundled": after},
                             **({"lora_rank": lora_rank} if lora_rank else {}),
                             "dev": {k: v for k, v in fused.items() if isinstance(v, float)}}
        (dest / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    write_trust(dest, *measure(dest, calibration, data_dir, cache_dir)[:2])  # config.json's "trust", and the card
    return best, metric
