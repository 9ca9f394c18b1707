"""Results tables from checkpoint directories: model x task, mean ± std over seeds."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

METRICS = ("accuracy", "weighted_f1", "macro_f1")
ML_METRICS = ("precision@1", "recall@1", "accuracy@3", "precision@3", "recall@3")


def collect(roots: list[Path]) -> dict[tuple[str, str, str], list[dict]]:
    """{(task, model, variant): [metrics.json of each seed]} from <root>/<task>/<name>/seed*/metrics.json
    (and <root>/<task>/<model>/metrics.json for bundled checkpoints); several roots pool their seeds, and a run
    reached through two overlapping roots counts once."""
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for path in sorted({p.resolve() for root in roots for p in root.rglob("metrics.json")}):
        m = json.loads(path.read_text())
        if "dev" in m and "test" in m and "task" in m:
            groups[(m["task"], m["model"], m.get("variant", ""))].append(m)
    return groups


def mean_std(values: list[float]) -> str:
    """Fractions -> "mean ± std" in percent over seeds ("mean" for one seed)."""
    mean = statistics.mean(values) * 100
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {statistics.stdev(values) * 100:.2f}"


def table(runs: Path | list[Path], split: str = "test", head: str = "fused", tasks: list[str] | None = None,
          models: list[str] | None = None, variants: bool = False) -> str:
    roots = [runs] if isinstance(runs, Path) else runs
    groups = {k: v for k, v in collect(roots).items() if head in v[0][split]}  # logreg has no unimodal heads
    lines = []
    multi = {k: "precision@1" in v[0][split][head] for k, v in groups.items()}
    for is_ml in (False, True):
        names = ML_METRICS if is_ml else METRICS
        keys = [k for k in groups if multi[k] == is_ml and (tasks is None or k[0] in tasks)
                and (models is None or k[1] in models) and (variants or not k[2])]
        if not keys:
            continue
        lines += [f"| task | model | head | seeds | {split} " + f" | {split} ".join(names) + " |",
                  "|---" * (4 + len(names)) + "|"]
        for key in sorted(keys, key=lambda k: (k[0], k[1], k[2])):
            runs_ = groups[key]
            cells = [mean_std([r[split][head][m] for r in runs_]) for m in names]
            model = key[1] + (f" ({key[2]})" if key[2] else "")
            lines.append(f"| {key[0]} | {model} | {head} | {len(runs_)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) if lines else f"no metrics.json with dev and test under {', '.join(map(str, roots))}"


def _split_groups(metrics: dict, config: dict) -> dict | None:
    """The sample groups of each split the checkpoint was trained and tested on: recorded in its metrics.json, or,
    for a run from before they were, read from the task's data when that is the version it was trained on."""
    if "groups" in metrics.get("data", {}):
        return metrics["data"]["groups"]
    from .datasets import load_task_data
    from .run import split_groups

    try:
        data = load_task_data(config["task"])
    except (FileNotFoundError, KeyError, ValueError):
        return None
    return split_groups(data).get("groups") if data.version == config.get("data_version") else None


def _own_dev(model, metrics: dict):
    """The dev features the checkpoint was selected on: the task's dev split, or, for a run whose recorded dev groups
    are not that split's (MediaEval: a run validated on other events), the samples of its own dev groups."""
    from .run import checkpoint_features

    groups = metrics.get("data", {}).get("groups")
    if groups:
        from .datasets import load_task_data

        data = load_task_data(model.task)
        if sorted({s.group for s in data.dev}) != groups["dev"]:  # only then are train and test features read
            import torch

            from .loeo import pooled_features

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
    import torch

    from mmdemo.checkpoint import (CARD_FILE, CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, compact_checkpoint,
                                   load_checkpoint, read_config, read_metrics, save_checkpoint)
    from mmdemo.hub import make_model_card

    from .loop import evaluate
    from .run import best_seed_dir, checkpoint_selection_metric

    if (run_dir / CONFIG_FILE).is_file():  # a checkpoint itself (e.g. a bundled one, re-bundled in place)
        best, metric = run_dir, checkpoint_selection_metric(run_dir)
    else:
        best, metric = best_seed_dir(run_dir)
    # A bundled checkpoint bundled again in place with no new adapters keeps its weights and their record; only its
    # notes (calibration or held-out events' scores) and its card are made anew.
    config, metrics = read_config(best), read_metrics(best)
    notes_only = best.resolve() == dest.resolve() and "bundle" in metrics and not lora_rank
    # a report of another recipe is refused before anything at dest is replaced
    from .loeo import check_recipe

    if calibration is not None:
        check_recipe(json.loads(Path(calibration).read_text()), config, metrics)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))  # dest may be the source
    try:
        shutil.copytree(best, staging / "copy")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging / "copy", dest)
        copied = (dest / WEIGHTS_FILE).stat().st_size
        (dest / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if lora_rank:  # the adapters' weights and config replace the whole blocks'; the plots and the rest stay
            small = save_checkpoint(load_checkpoint(dest).as_lora(lora_rank), staging / "lora")
            for name in (CONFIG_FILE, WEIGHTS_FILE):
                os.replace(small / name, dest / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if compact and not notes_only:
        _, after = compact_checkpoint(dest, torch.float16)
        model = load_checkpoint(dest)
        split = dev if dev is not None else _own_dev(model, metrics)
        fused = evaluate(model, split)["fused"]
        metrics["bundle"] = {"dtype": "float16", "bytes": {"run": copied, "bundled": after},
                             **({"lora_rank": lora_rank} if lora_rank else {}),
                             "dev": {k: v for k, v in fused.items() if isinstance(v, float)}}
        (dest / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    from .trust import measure, write_trust

    write_trust(dest, *measure(dest, calibration, data_dir, cache_dir)[:2])  # config.json's "trust", and the card
    return best, metric
