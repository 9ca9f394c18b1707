"""Results tables from checkpoint directories: model x task, mean ± std over seeds."""

from __future__ import annotations

import json
import statistics
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
