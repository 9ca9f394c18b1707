"""Hyperparameter selection on dev: train every point of a small grid for several seeds, rank the points by
their mean dev score (the task's selection metric, fused head), never by test.

Each point is one `python -m trainer train` process (so points run in parallel, `--jobs`), writing its runs to
`<out>/<task>/<model>/<tag>/...`; `sweep.json` beside them lists every point's dev scores and the best one.
A point sets head config fields (`--set`) and RunSpec's training options (TRAIN_OPTIONS, trainer/spec.py:
fine-tuning the text encoder or not is a point like any other; an option's older name is kept in the point's tag
and flag). A later sweep of the same model and seeds adds its points to the earlier ones, so e.g. fine-tuned points
are ranked against the frozen ones on the same dev scores.

`protocol="loeo"` (MediaEval): each point is one leave-one-event-out run over all seeds (trainer/loeo.py), ranked
by its validation score, the mean over folds of the validation events' score (never a left-out event's): the
options made for unseen events (image cap, group balancing, event-adversarial lambda, image dropout) are chosen
this way. `protocol="all-events"` (MediaEval's bundles): each point x seed is trained on every event but the
validation events, ranked by its mean score on those events, the inputs that choose a MediaEval bundle's epoch
and seed.

The selection rules, stated once here and applied by `choose` to every sweep (docs/RESULTS.md quotes them):

1. The point with the highest mean dev score wins. Means that agree within TOLERANCE are a tie, and a tie goes to
   the point trained first (the earlier grid: an incumbent stays unless it is beaten).
2. Only for a sweep run with `--prefer-narrower FIELD,...` (a bundle's size): a point that differs from rule 1's
   winner only by smaller values of those width fields replaces it when its dev mean is at least the winner's mean
   minus the winner's std over seeds (within TOLERANCE); of those, the narrowest.
"""

from __future__ import annotations

import itertools
import json
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .run import REPO_ROOT, dev_scores, run_name
from .spec import TRAIN_OPTIONS  # grid keys that are `train` options (trainer/spec.py), not head config fields


# Dev scores are float32 fractions averaged over seeds: figures that agree to 1e-6 are equal, so a gap that equals
# a std to the last float bit is within it (MGGF on hashtags: 2/68 against 2/68, 0.02941175 vs 0.02941176).
TOLERANCE = 1e-6


def _order(result: dict) -> list[str]:
    """The tags of a sweep's points in the order they were trained (grid by grid)."""
    return [point_tag(p) for g in result["grids"] for p in grid_points(g)]


def _narrower(point: dict, than: dict, fields: list[str], defaults: dict) -> tuple | None:
    """`point`'s widths when it differs from `than` only by smaller values of `fields` (a field a point leaves out
    has the head's default), else None."""
    keys = (set(point) | set(than)) - set(fields)
    if any(point.get(k) != than.get(k) for k in keys):
        return None
    width = lambda p, f: p.get(f, defaults.get(f))  # noqa: E731
    mine, theirs = [width(point, f) for f in fields], [width(than, f) for f in fields]
    if None in mine or None in theirs or any(a > b for a, b in zip(mine, theirs)) or mine == theirs:
        return None
    return tuple(mine)


def choose(result: dict, defaults: dict | None = None) -> dict:
    """The row of `result["points"]` that the selection rules (module docstring) choose. `defaults`: the head's
    default config values, for rule 2's width fields that a point leaves out (default: the registered model's)."""
    rows, order = result["points"], _order(result)
    first = lambda r: order.index(r["tag"]) if r["tag"] in order else len(order)  # noqa: E731
    top = max(r["dev_mean"] for r in rows)
    winner = min((r for r in rows if r["dev_mean"] >= top - TOLERANCE), key=first)  # rule 1
    fields = result.get("prefer_narrower", [])
    if not fields:
        return winner
    if defaults is None:
        from dataclasses import asdict

        from mmdemo.models import get_model

        defaults = asdict(get_model(result["model"]).config(variant=result.get("variant", "")))
    floor = winner["dev_mean"] - winner["dev_std"] - TOLERANCE
    kept = [(w, first(r), r) for r in rows
            if r["dev_mean"] >= floor and (w := _narrower(r["point"], winner["point"], fields, defaults))]
    return min(kept, key=lambda k: k[:2])[2] if kept else winner  # rule 2: the narrowest, then the earliest


def grid_points(grid: dict[str, list]) -> list[dict]:
    """{"lr": [1e-3, 3e-4], "dropout": [0.5]} -> [{"lr": 1e-3, "dropout": 0.5}, {"lr": 3e-4, "dropout": 0.5}]"""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def point_tag(point: dict) -> str:
    return "_".join(f"{k}={v}" for k, v in point.items()) or "defaults"


def point_args(point: dict) -> list[str]:
    """The `python -m trainer train` arguments of a point: {"lr": 1e-3, "finetune_text_layers": 2} ->
    ["--set", "lr=0.001", "--finetune-text-layers", "2"] (an older name gives its own flag, which train reads too)."""
    args = []
    for k, v in point.items():
        if k in TRAIN_OPTIONS and isinstance(v, bool):  # a switch: present or absent
            args += [TRAIN_OPTIONS[k]] if v else []
        else:
            args += [TRAIN_OPTIONS[k], str(v)] if k in TRAIN_OPTIONS else ["--set", f"{k}={json.dumps(v)}"]
    return args


def best_args(sweep_json: Path) -> str:
    """The best point of a sweep.json as `train` arguments (scripts/reproduce.sh reuses them)."""
    return " ".join(point_args(json.loads(Path(sweep_json).read_text())["best"]))


def _train_command(task: str, model: str, variant: str, point: dict, seeds: list[int], out: Path, threads: int,
                   protocol: str = "split", validation_events: tuple[str, ...] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "trainer", "train", "--task", task, "--model", model,
           "--seeds", *map(str, seeds), "--out", str(out), "--threads", str(threads), "--quiet", *point_args(point)]
    return (cmd + (["--variant", variant] if variant else []) + (["--protocol", protocol] if protocol != "split" else [])
            + (["--validation-events", ",".join(validation_events)] if validation_events else []))


def _runs(run_dir: Path, protocol: str) -> Path:
    """Where a point's runs are: `train --protocol all-events` puts its seeds in an all-events/ folder."""
    return run_dir / "all-events" if protocol == "all-events" else run_dir


def point_scores(run_dir: Path, protocol: str = "split") -> tuple[list[float], str]:
    """A point's selection scores, one per seed, and what they are: the fused dev score of each seed's run, or
    for a leave-one-event-out run each seed's validation score averaged over the folds."""
    if protocol == "loeo":
        v = json.loads((run_dir / "loeo" / "loeo.json").read_text())["validation"]
        return v["values"], v["metric"]
    by_seed, metric = dev_scores(run_dir)
    return list(by_seed.values()), metric


def _earlier_points(path: Path, seeds: list[int], tags: set[str], protocol: str = "split",
                    validation_events: tuple[str, ...] = ()) -> tuple[list[dict], list[dict]]:
    """(grids, rows) of an earlier sweep.json over the same seeds, protocol and validation events, minus the points
    being retrained."""
    if not path.is_file():
        return [], []
    old = json.loads(path.read_text())
    if (old["seeds"] != seeds or old.get("protocol", "split") != protocol
            or old.get("validation_events", []) != list(validation_events)):
        return [], []
    grids = old.get("grids") or [old["grid"]]
    return grids, [r for r in old["points"] if r["tag"] not in tags]


def sweep(task: str, model: str, grid: dict[str, list], seeds: list[int], out: Path, variant: str = "",
          jobs: int = 1, threads: int = 1, resume: bool = False, protocol: str = "split",
          validation_events: tuple[str, ...] = (), prefer_narrower: tuple[str, ...] = ()) -> dict:
    """Train every (point, seed) and rank the points (with those of an earlier sweep of the same model, seeds and
    protocol) by mean dev score. Returns the sweep.json content. `resume`: runs that finished are kept, not trained
    again, and interrupted ones continue from their last finished epoch. protocol "loeo": one leave-one-event-out
    run per point (all seeds), ranked by its validation folds (`validation_events`: which events may validate, as
    for `train --validation-events`). `prefer_narrower`: width fields for rule 2 (module docstring), kept in
    sweep.json with those of an earlier sweep."""
    points = grid_points(grid)
    root = out / task / run_name(model, variant)
    # a leave-one-event-out run trains every seed on every fold; its report is written when all are done
    jobs_list = [(p, seeds) for p in points] if protocol == "loeo" else [(p, [s]) for p in points for s in seeds]

    def one(job: tuple[dict, list[int]]) -> int:
        point, run_seeds = job
        tag, name = point_tag(point), " ".join(map(str, run_seeds))
        run_dir = _runs(root / tag / task / run_name(model, variant), protocol)
        finished = run_dir / ("loeo/loeo.json" if protocol == "loeo" else f"seed{run_seeds[0]}/metrics.json")
        if resume and finished.is_file():
            print(f"{tag} seed {name}: done before", flush=True)
            return 0
        cmd = _train_command(task, model, variant, point, run_seeds, root / tag, threads, protocol, validation_events)
        cmd += ["--resume"] if resume else []
        done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
        print(f"{tag} seed {name}: " + ("done" if done.returncode == 0 else done.stderr.strip()[-2000:]),
              flush=True)  # each run's own line also shows test, which a sweep must not look at
        return done.returncode

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        codes = list(pool.map(one, jobs_list))
    if any(codes):
        raise RuntimeError(f"{sum(c != 0 for c in codes)} of {len(codes)} sweep runs failed (output above)")

    grids, rows = _earlier_points(root / "sweep.json", seeds, {point_tag(p) for p in points}, protocol,
                                  validation_events)
    if (root / "sweep.json").is_file() and rows:
        earlier = json.loads((root / "sweep.json").read_text()).get("prefer_narrower", [])
        prefer_narrower = tuple(dict.fromkeys([*earlier, *prefer_narrower]))
    for point in points:
        tag = point_tag(point)
        scores, metric = point_scores(_runs(root / tag / task / run_name(model, variant), protocol), protocol)
        rows.append({"point": point, "tag": tag, "metric": metric, "dev": scores, "dev_mean": statistics.mean(scores),
                     "dev_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                     "runs": str((root / tag / task).relative_to(out))})
    rows.sort(key=lambda r: -r["dev_mean"])
    selected_on = {"loeo": f"mean over seeds of the validation events' {rows[0]['metric']} (fused), averaged over "
                           f"the leave-one-event-out folds",
                   "all-events": f"mean over seeds of the validation events' {rows[0]['metric']} (fused), trained on "
                                 f"every other event"}.get(protocol, f"mean dev {rows[0]['metric']} (fused) over seeds")
    result = {"task": task, "model": model, "variant": variant, "seeds": seeds, "protocol": protocol,
              **({"validation_events": list(validation_events)} if validation_events else {}),
              **({"prefer_narrower": list(prefer_narrower)} if prefer_narrower else {}),
              "grids": grids + [grid], "points": rows, "selected_on": selected_on}
    result["best"] = choose(result)["point"]
    (root / "sweep.json").write_text(json.dumps(result, indent=2))
    return result


def sweep_table(result: dict) -> str:
    """Dev scores only: a sweep never looks at test."""
    split = {"loeo": "LOEO validation folds", "all-events": "validation events"}.get(result.get("protocol"), "dev")
    lines = [f"| {result['task']} / {run_name(result['model'], result['variant'])} | {split} {result['points'][0]['metric']}"
             f" (mean ± std, {len(result['seeds'])} seeds) |", "|---|---|"]
    pick = choose(result)  # by the rules, whatever the file's "best" says (a test holds the two equal)
    for r in result["points"]:
        chosen = " (chosen)" if r is pick else ""
        lines.append(f"| {r['tag']}{chosen} | {r['dev_mean'] * 100:.2f} ± {r['dev_std'] * 100:.2f} |")
    return "\n".join(lines)


def promote(result: dict, out: Path, runs: Path) -> Path:
    """Copy the best point's seed directories to <runs>/<task>/<model>[-<variant>]/ (what `report` and `bundle`
    read), replacing earlier runs there."""
    best = next(r for r in result["points"] if r["point"] == result["best"])
    name = run_name(result["model"], result["variant"])
    src, dest = out / best["runs"] / name, runs / result["task"] / name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    return dest
