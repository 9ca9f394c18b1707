"""Hyperparameter selection on dev: train every point of a small grid for several seeds, rank the points by
their mean dev score (the task's selection metric, fused head), never by test.

Each point is one `python -m trainer train` process (so points run in parallel, `--jobs`), writing its runs to
`<out>/<task>/<model>/<tag>/...`; `sweep.json` beside them lists every point's dev scores and the best one.
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


def grid_points(grid: dict[str, list]) -> list[dict]:
    """{"lr": [1e-3, 3e-4], "dropout": [0.5]} -> [{"lr": 1e-3, "dropout": 0.5}, {"lr": 3e-4, "dropout": 0.5}]"""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def point_tag(point: dict) -> str:
    return "_".join(f"{k}={v}" for k, v in point.items()) or "defaults"


def _train_command(task: str, model: str, variant: str, point: dict, seed: int, out: Path, threads: int,
                   extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "trainer", "train", "--task", task, "--model", model, "--seeds", str(seed),
           "--out", str(out), "--threads", str(threads), "--quiet", *extra]
    if variant:
        cmd += ["--variant", variant]
    for k, v in point.items():
        cmd += ["--set", f"{k}={json.dumps(v)}"]
    return cmd


def sweep(task: str, model: str, grid: dict[str, list], seeds: list[int], out: Path, variant: str = "",
          jobs: int = 1, threads: int = 1, extra: list[str] | None = None) -> dict:
    """Train every (point, seed) and rank the points by mean dev score. Returns the sweep.json content."""
    points = grid_points(grid)
    root = out / task / run_name(model, variant)
    jobs_list = [(p, s) for p in points for s in seeds]

    def one(job: tuple[dict, int]) -> int:
        point, seed = job
        tag = point_tag(point)
        cmd = _train_command(task, model, variant, point, seed, root / tag, threads, extra or [])
        done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
        print(f"{tag} seed {seed}: " + ("done" if done.returncode == 0 else done.stderr.strip()[-2000:]),
              flush=True)  # each run's own line also shows test, which a sweep must not look at
        return done.returncode

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        codes = list(pool.map(one, jobs_list))
    if any(codes):
        raise RuntimeError(f"{sum(c != 0 for c in codes)} of {len(codes)} sweep runs failed (output above)")

    rows = []
    for point in points:
        tag = point_tag(point)
        by_seed, metric = dev_scores(root / tag / task / run_name(model, variant))
        scores = list(by_seed.values())
        rows.append({"point": point, "tag": tag, "metric": metric, "dev": scores, "dev_mean": statistics.mean(scores),
                     "dev_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                     "runs": str((root / tag / task).relative_to(out))})
    rows.sort(key=lambda r: -r["dev_mean"])
    result = {"task": task, "model": model, "variant": variant, "seeds": seeds, "grid": grid, "points": rows,
              "best": rows[0]["point"], "selected_on": f"mean dev {rows[0]['metric']} (fused) over seeds"}
    (root / "sweep.json").write_text(json.dumps(result, indent=2))
    return result


def sweep_table(result: dict) -> str:
    """Dev scores only: a sweep never looks at test."""
    lines = [f"| {result['task']} / {run_name(result['model'], result['variant'])} | dev {result['points'][0]['metric']}"
             f" (mean ± std, {len(result['seeds'])} seeds) |", "|---|---|"]
    for r in result["points"]:
        lines.append(f"| {r['tag']} | {r['dev_mean'] * 100:.2f} ± {r['dev_std'] * 100:.2f} |")
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
