"""docs/RESULTS.md, generated: `python -m trainer report --markdown` fills docs/RESULTS.in.md's placeholders from
the committed metrics.json / sweep.json / loeo.json / probe files, so no filled number can drift from the run it comes
from (a test regenerates the file and fails on any difference). Figures no committed file holds (speed, `trainer
compare`'s intervals, the papers') are quoted in the template with their command, outside that test.

Placeholders (ROOTS: one or more run directories joined by commas, whose seeds pool; MODEL: a registered model,
`model:variant` for an ablation row, or `logreg`):

    {{table ROOTS TASK MODEL,MODEL,... SPLIT.METRIC,...}}   a table, one row per model: mean ± std over seeds
    {{heads ROOTS TASK MODEL,...}}                         test accuracy / weighted F1 of the fused, text, image heads
    {{sweep PATH/sweep.json}}                              a sweep's dev ranking
    {{encoders ROOT TASK}}                                 the encoder experiment (scripts/encoders.sh)
    {{value ROOTS TASK MODEL SPLIT HEAD METRIC}}           one mean ± std, inside a sentence
    {{seeds ROOTS TASK MODEL SPLIT HEAD METRIC}}           each seed's value, inside a sentence
    {{cost ROOT KEY FIELD}}                                a figure from ROOT/costs.json (scripts/encoders_table.py)
    {{modalities PATH}}                                    the probe's modality report (`trainer probe --json PATH`)
    {{bundles ROOT,...}}                                   each checkpoint's storage, size and dev (run, stored copy)
    {{loeo ROOT TASK MODEL,...}}                           leave-one-event-out: pooled and per-event tables
    {{target REF LABEL=DIR,...}}                           LOEO recipes (DIR/loeo.json) against the text-only REF
                                                           (a label's underscores print as spaces)
    {{last ROOTS TASK MODEL KEY}}                          the last epoch's logged KEY, mean ± std over seeds
    {{json PATH KEY.KEY... [FORMAT]}}                      one figure of a committed JSON file (see `json_figure`)
    {{point PATH/sweep.json TAG}}                          one sweep point's dev mean ± std
    {{chosen PATH/sweep.json}}                             the point the selection rules choose (trainer/sweep.py)
    {{figure NAME KIND ARGS}}                              a picture (trainer/figures.py) with its numbers as a table:
        scores ROOTS TASK FLOOR MODEL,... SPLIT METRIC     each model's seeds, mean ± std, against the FLOOR model
        shares PATH                                        each bundle's measured caption / image share on dev
        events LABEL=DIR,...                               each recipe's macro F1 per held-out event (both classes)
        reliability DIR                                    a LOEO run's pooled held-out predictions, raw and scaled

The index (docs/RESULTS.in.md -> docs/RESULTS.md) and one page per topic (docs/results/TOPIC.in.md -> TOPIC.md) are
rendered alike; figures are drawn into docs/results/figures/ only when the pages are written (`write_results`), so
the freshness test compares the numbers behind each figure (its table) without drawing.
"""

from __future__ import annotations

import json
import os
import re
import statistics
from pathlib import Path

from mmdemo.atomic import write_text

from .report import collect, mean_std
from .run import REPO_ROOT
from .sweep import choose, sweep_table

DOCS = REPO_ROOT / "docs"
FIGURES = DOCS / "results" / "figures"
SHORT = {"accuracy": "acc", "weighted_f1": "wF1", "macro_f1": "macro F1"}
PLACEHOLDER = re.compile(r"\{\{(\w+) ([^}]*)\}\}")


def _runs(roots: str, task: str, model: str, base: Path) -> list[dict]:
    name, _, variant = model.partition(":")
    groups = collect([base / r for r in roots.split(",")])
    runs = groups.get((task, name, variant))
    if not runs:
        raise KeyError(f"no runs of {task}/{model} under {roots}")
    return sorted(runs, key=lambda m: m["seed"])


def _values(runs: list[dict], split: str, head: str, metric: str) -> list[float]:
    return [r[split][head][metric] for r in runs]


def _label(model: str) -> str:
    name, _, variant = model.partition(":")
    return f"{name} ({variant})" if variant else name


def table(roots: str, task: str, models: str, columns: str, base: Path) -> str:
    cols = [c.split(".") for c in columns.split(",")]
    lines = ["| model | seeds | " + " | ".join(f"{s} {SHORT.get(m, m)}" for s, m in cols) + " |",
             "|---" * (2 + len(cols)) + "|"]
    for model in models.split(","):
        runs = _runs(roots, task, model, base)
        cells = [mean_std(_values(runs, s, "fused", m)) for s, m in cols]
        lines.append(f"| {_label(model)} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def heads(roots: str, task: str, models: str, base: Path) -> str:
    lines = ["| model | fused | text-only head | image-only head |", "|---|---|---|---|"]
    for model in models.split(","):
        runs = _runs(roots, task, model, base)
        cells = [f"{statistics.mean(_values(runs, 'test', h, 'accuracy')) * 100:.2f} / "
                 f"{statistics.mean(_values(runs, 'test', h, 'weighted_f1')) * 100:.2f}" for h in ("fused", "text", "image")]
        lines.append(f"| {_label(model)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def encoders(root: str, task: str, base: Path) -> str:
    """Every point of the encoder sweeps: dev (what chose) and test, training time, and the costs that
    scripts/encoders_table.py measured (`costs.json`: predict p50, checkpoint size, encode time)."""
    root_dir = base / root
    costs = json.loads((root_dir / "costs.json").read_text()) if (root_dir / "costs.json").is_file() else {}
    lines = ["| model | text + image encoder | tuned text layers | encoder lr | seeds | dev wF1 | dev acc | test wF1 | "
             "test acc | train s / run | predict p50 ms | checkpoint MB |", "|---" * 12 + "|"]
    for sweep in sorted((root_dir / task).glob("*/sweep.json")):
        result = json.loads(sweep.read_text())
        for point in result["points"]:
            run_dir = root_dir / point["runs"] / result["model"]
            runs = [json.loads(p.read_text()) for p in sorted(run_dir.glob("seed*/metrics.json"))]
            config = json.loads(next(run_dir.glob("seed*/config.json")).read_text())
            cost = costs.get("points", {}).get(f"{result['model']}/{point['tag']}", {})
            tuned = config["finetune_text_layers"]
            lines.append(
                f"| {result['model']} | {config['text_encoder']} + {config['image_encoder']} | {tuned} | "
                f"{point['point'].get('encoder_lr', '–') if tuned else '–'} | {len(runs)} | "
                f"{mean_std(_values(runs, 'dev', 'fused', 'weighted_f1'))} | "
                f"{mean_std(_values(runs, 'dev', 'fused', 'accuracy'))} | "
                f"{mean_std(_values(runs, 'test', 'fused', 'weighted_f1'))} | "
                f"{mean_std(_values(runs, 'test', 'fused', 'accuracy'))} | "
                f"{statistics.mean(r['train_seconds'] for r in runs):.0f} | "
                f"{cost.get('predict_p50_ms', float('nan')):.0f} | {cost.get('checkpoint_mb', float('nan')):.1f} |")
    if costs.get("encode"):
        lines += ["", "| encoder pair | encode captions, s per 1,000 | encode images, s per 1,000 |", "|---|---|---|"]
        lines += [f"| {pair} | {c['text_s']:.1f} | {c['image_s']:.1f} |" for pair, c in sorted(costs["encode"].items())]
    return "\n".join(lines)


def bundles(roots: str, base: Path) -> str:
    """Every checkpoint under ROOTS (<root>/<task>/<model>/, e.g. checkpoints): how its weights are stored, their
    size, and the dev score it was chosen on, of the run and of the stored copy (`trainer bundle` measures it)."""
    lines = ["| checkpoint | text encoder in the file | stored | MiB | dev: run → stored copy |",
             "|---|---|---|---:|---|"]
    for root in roots.split(","):
        for path in sorted((base / root).glob("*/*/metrics.json")):
            metrics, config = json.loads(path.read_text()), json.loads((path.parent / "config.json").read_text())
            stored = metrics.get("bundle", {})  # absent: copied as trained
            n, rank = config.get("finetune_text_layers", 0), config.get("lora_rank", 0)
            if not n:
                text = "none (frozen)"
            elif stored.get("lora_rank"):
                text = f"{n} blocks tuned whole, as rank-{rank} adapters"
            else:
                text = f"{n} blocks, LoRA rank {rank}" if rank else f"{n} whole tuned blocks"
            metric = metrics["selected_on"].split()[1]  # "dev weighted_f1 (fused)"
            dev = f"{metric} {metrics['dev']['fused'][metric] * 100:.2f}"
            if stored:
                dev += f" → {stored['dev'][metric] * 100:.2f}"
            size = stored["bytes"]["bundled"] if stored else (path.parent / "model.safetensors").stat().st_size
            lines.append(f"| {root}/{path.parent.parent.name}/{path.parent.name} | {text} | "
                         f"{stored.get('dtype', 'float32, as trained')} | {size / 2**20:.1f} | {dev} |")
    return "\n".join(lines)


def _rho(x: float | None) -> str:
    return "–" if x is None or x != x else f"{x:+.2f}"  # None / NaN: a constant signal


def modalities(path: str, base: Path) -> str:
    """What each network draws on (`python -m trainer probe --bundled --json PATH`): the measured Shapley text share
    and values of the predicted class, the perceptual scores, and each of the network's own signals against them."""
    reports = json.loads((base / path).read_text())
    lines = ["| task / network | split | text share (Shapley) | φ text | φ image | interaction | perceptual: image | "
             "perceptual: text | the network's own signals: spread (sd), Spearman ρ with the text share, "
             "matched → image-shuffled mean |", "|---" * 9 + "|"]
    for name, splits in sorted(reports.items()):
        for split, r in sorted(splits.items()):
            s, p = r["shapley"], r["perceptual"]
            own = "; ".join(f"{key} {v['mean']:.3f} (sd {v['std']:.3f}), ρ {_rho(v['spearman_text_share'])}, "
                            f"{v['mean']:.3f} → {v['shuffled_mean']:.3f}" for key, v in r["signals"].items()) or "–"
            lines.append(f"| {name} | {split} | {s['text_share']['mean']:.2f} ± {s['text_share']['std']:.2f} | "
                         f"{s['text']['mean']:+.2f} | {s['image']['mean']:+.2f} | {s['interaction']['mean']:+.2f} | "
                         f"{p['image']['mean'] * 100:+.1f} ± {p['image']['std'] * 100:.1f} | "
                         f"{p['text']['mean'] * 100:+.1f} ± {p['text']['std'] * 100:.1f} | {own} |")
    return "\n".join(lines)


def validity(roots: str, base: Path) -> str:
    """Every bundled checkpoint's own signals, as `trainer measure` stored their validity in its config.json
    (`mmdemo.checkpoint.Trust.signals`): spread over the inputs that selected it, flat or not, Spearman rho with
    the measured caption share, and the mean on real pairs against pairs with another post's image."""
    lines = ["| checkpoint | signal | over | 5–95% range | changes with the input | ρ with the caption share | "
             "mean: real → mismatched pairs |", "|---|---|---|---|---|---:|---|"]
    for root in roots.split(","):
        for path in sorted((base / root).glob("*/*/config.json")):
            signals = (json.loads(path.read_text()).get("trust") or {}).get("signals") or {}
            for name, v in signals.items():
                rho = v["spearman_text_share"]
                lines.append(f"| {path.parent.parent.name}/{path.parent.name} | {name} | {v['n']:,} | "
                             f"{v['p05']:.3g} – {v['p95']:.3g} | {'no' if v['flat'] else 'yes'} | "
                             f"{'–' if v['flat'] else _rho(rho)} | "
                             f"{v['mean']:.3g} → {v['shuffled_mean']:.3g} |")
    return "\n".join(lines)


def faithfulness(path: str, base: Path) -> str:
    """Which explanation is faithful for which network (`python -m trainer faithfulness --json PATH`): per network
    and map, the mean gain of hiding the map's top k over k random (points of the explained class's probability)
    and on how many posts the map beat random deletion."""
    from .faithfulness import MAPS

    reports = json.loads((base / path).read_text())
    names = {"words": "words (IG)", "grad-cam": "Grad-CAM", "integrated-gradients": "Integrated Gradients",
             "occlusion": "Occlusion", "attention": "attention"}
    lines = ["| task / network | posts | " + " | ".join(names[m] for m in MAPS) + " |",
             "|---|---:|" + "---:|" * len(MAPS)]
    for key, r in sorted(reports.items()):
        cells = []
        for m in MAPS:
            v = r["maps"].get(m)
            cells.append("–" if v is None or v["gain_mean"] is None else
                         f"{v['gain_mean'] * 100:+.1f} ({v['beat']}/{v['checked']})")
        lines.append(f"| {key} | {r['posts']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def loeo(root: str, task: str, models: str, base: Path) -> str:
    """Leave-one-event-out reports (`train --protocol loeo`, ROOT/TASK/MODEL/loeo/loeo.json): every post predicted
    once as an unseen event; pooled metrics, the validation score that chooses between recipes, the temperature
    each seed fitted on its validation folds (never averaged into one: they differ by orders of magnitude), the one
    temperature a bundle of the recipe would carry (`trainer.trust.recipe_calibration`, where the run kept its
    predictions), then each held-out event's accuracy (macro F1 where the event has both classes)."""
    from .trust import recipe_calibration

    reports = {m: json.loads((base / root / task / m / "loeo" / "loeo.json").read_text()) for m in models.split(",")}
    first = next(iter(reports.values()))
    labels = [k.removeprefix("f1_") for k in first["pooled"]["fused"] if k.startswith("f1_")]
    pct = lambda s: f"{s['mean'] * 100:.2f} ± {s['std'] * 100:.2f}"  # noqa: E731
    lines = ["| model | seeds | pooled accuracy | pooled macro F1 | " + " | ".join(f"F1 {c}" for c in labels)
             + " | validation " + SHORT.get(first["validation"]["metric"], first["validation"]["metric"])
             + " | temperature fitted on each seed's validation folds | one temperature fitted on the pooled "
               "held-out predictions: calibration error raw → scaled → each event's fit without it |",
             "|---" * (4 + len(labels)) + "|---|---|---|"]
    for m, r in reports.items():
        f, cal = r["pooled"]["fused"], r.get("calibration")
        pooled = recipe_calibration(base / root / task / m / "loeo")
        scaled = (" / ".join(f"{t:.3g}" for t in cal["temperature"]["values"]) if cal else "–") + " | " + (
            f"T = {pooled['temperature']:.3g}: {pooled['ece_before']:.3f} → {pooled['ece_after']:.3f} → "
            f"{pooled['ece_after_unseen']:.3f}" if pooled else "– (predictions not kept)")
        lines.append(f"| {m} | {len(r['seeds'])} | {pct(f['accuracy'])} | {pct(f['macro_f1'])} | "
                     + " | ".join(pct(f[f'f1_{c}']) for c in labels) + f" | {pct(r['validation'])} | {scaled} |")
    lines += ["", "| held-out event | posts | classes | " + " | ".join(reports) + " |", "|---" * (3 + len(reports)) + "|"]
    for e in first["events"]:
        info = first["per_event"][e]
        both = len(info["classes"]) > 1
        cells = [pct(r["per_event"][e]["accuracy"]) + (f" ({pct(r['per_event'][e]['macro_f1'])})" if both else "")
                 for r in reports.values()]
        lines.append(f"| {e} | {info['n']} | {', '.join(info['classes'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target(reference: str, recipes: str, base: Path) -> str:
    """The unseen-events target of each LOEO recipe (DIR holds its loeo.json), against text-only's report REF: its
    fused pooled macro F1 at least text-only's (the difference per seed, over the seeds both have), and above a fair
    coin on every event with both classes (a coin's macro F1 is at most 50% whatever the event's mix of classes)."""
    read = lambda d: json.loads((base / d / "loeo.json").read_text())  # noqa: E731
    f1 = lambda rep, s: rep["pooled_by_seed"][str(s)]["fused"]["macro_f1"]  # noqa: E731
    ref = read(reference)
    lines = ["| recipe | seeds | pooled macro F1 | minus text-only's | events with both classes at or under a coin "
             "(macro F1) | target met |", "|---|---|---|---|---|---|"]
    for item in recipes.split(","):
        label, _, path = item.partition("=")
        label = label.replace("_", " ")
        r = read(path)
        seeds = [s for s in r["seeds"] if s in ref["seeds"]]  # paired: the same seed, the same folds
        if not seeds:
            raise ValueError(f"{path}: seeds {r['seeds']}, text-only's report has {ref['seeds']}: none paired")
        diff = [f1(r, s) - f1(ref, s) for s in seeds]
        low = [f"{e} {v['macro_f1']['mean'] * 100:.1f}" for e, v in r["per_event"].items()
               if len(v["classes"]) > 1 and v["macro_f1"]["mean"] <= 0.5]
        met = statistics.mean(diff) >= 0 and not low
        lines.append(f"| {label} | {len(r['seeds'])} | {mean_std(r['pooled']['fused']['macro_f1']['values'])} | "
                     f"{mean_std(diff)} | {', '.join(low) or 'none'} | {'yes' if met else 'no'} |")
    return "\n".join(lines)


def json_value(path: Path, keys: str):
    """The entry at dot path KEYS (an integer indexes a list) of a JSON file."""
    value = json.loads(Path(path).read_text())
    for key in keys.split("."):
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def json_figure(path: str, keys: str, fmt: str = "%.2f", base: Path = REPO_ROOT) -> str:
    """A figure of a committed JSON file (a loeo.json, a metrics.json, the probe's report): KEYS is a dot path
    (an integer indexes a list). FORMAT "%SPEC" prints a fraction as a percentage with SPEC (e.g. %.1f), any other
    SPEC the raw value (.3f, +.2f, .2g). A {"mean", "std"} entry prints "mean ± std", a list its values joined."""
    value = json_value(base / path, keys)
    scale, spec = (100, fmt[1:]) if fmt.startswith("%") else (1, fmt)
    one = lambda v: format(v * scale, spec)  # noqa: E731
    if isinstance(value, dict):
        return f"{one(value['mean'])} ± {format(value['std'] * scale, spec.lstrip('+'))}"
    if isinstance(value, list):
        return ", ".join(map(one, value))
    return one(value)


def sweep_point(path: str, tag: str, base: Path = REPO_ROOT) -> str:
    """A sweep point's dev (or LOEO validation) score, mean ± std over seeds, in percent."""
    row = next((r for r in json.loads((base / path).read_text())["points"] if r["tag"] == tag), None)
    if row is None:
        raise KeyError(f"{path} has no point {tag}")
    return f"{row['dev_mean'] * 100:.2f} ± {row['dev_std'] * 100:.2f}"


def reliability_bins(loeo_dir: Path, bins: int = 15, least: int = 20) -> tuple[list, dict]:
    """A reliability diagram's points for a recipe's pooled held-out predictions, raw and after the recipe's one
    temperature (`trainer.trust.recipe_calibration`): per bin of the top class's probability (bins of fewer than
    `least` predictions left out), the mean probability, how often the top class was right, and the count."""
    import torch
    from safetensors.torch import load_file

    from .loeo import PREDICTIONS_FILE
    from .trust import recipe_calibration

    kept = load_file(str(loeo_dir / PREDICTIONS_FILE))
    seeds = sorted(k for k in kept if k.startswith("fused."))
    logits, target = torch.cat([kept[k] for k in seeds]).float(), kept["labels"].long().repeat(len(seeds))
    cal = recipe_calibration(loeo_dir)
    curves = []
    for t, label in ((1.0, f"raw (ECE {cal['ece_before']:.3f})"),
                     (cal["temperature"], f"T = {cal['temperature']:.3g} (ECE {cal['ece_after']:.3f})")):
        p = (logits / t).softmax(-1)
        conf, right = p.max(-1).values, (p.argmax(-1) == target).float()
        which = torch.clamp((conf * bins).long(), max=bins - 1)
        curves.append((label, [(conf[which == b].mean().item(), right[which == b].mean().item(),
                                int((which == b).sum())) for b in range(bins) if (which == b).sum() >= least]))
    return curves, cal


def _figure_block(path: Path, title: str, table_lines: list[str], page_dir: Path) -> str:
    """The picture's markdown (linked relative to its page) and its numbers, folded under it."""
    link = os.path.relpath(path, page_dir)
    return (f"![{title}]({link})\n\n<details><summary>The figure's numbers</summary>\n\n" + "\n".join(table_lines)
            + "\n\n</details>")


def figure(name: str, kind: str, *args: str, base: Path, page_dir: Path, figures_dir: Path, draw: bool) -> str:
    """{{figure NAME KIND ARGS}}: the rows of the picture, as a table, and (draw) the picture itself, drawn into
    figures_dir/NAME.png."""
    from . import figures

    path = figures_dir / f"{name}.png"
    if kind == "scores":  # ROOTS TASK FLOOR MODEL,... SPLIT METRIC
        roots, task, floor_model, models, split, metric = args
        values = lambda m: _values(_runs(roots, task, m, base), split, "fused", metric)  # noqa: E731
        rows = [(_label(m), values(m)) for m in models.split(",")]
        floor = values(floor_model)
        score = f"{split} {SHORT.get(metric, metric)}"
        title = f"{task}: {score} of the fused prediction"
        table_lines = [f"| model | {score}: mean ± std | seeds |", "|---|---|---|"]
        table_lines += [f"| {label} | {mean_std(v)} | {', '.join(f'{x * 100:.2f}' for x in v)} |"
                        for label, v in [(f"{floor_model} (floor)", floor)] + rows]
        if draw:
            figures.scores([(label, [x * 100 for x in v]) for label, v in rows], [x * 100 for x in floor],
                           f"floor: {floor_model}", f"{score} (%)", title, path)
    elif kind == "shares":  # PATH: the probe's report of the bundles
        reports = json.loads((base / args[0]).read_text())
        rows = [(name_, r["dev"]["shapley"]["text_share"]) for name_, r in sorted(reports.items()) if "dev" in r]
        title = "What each bundled network's answer draws on, measured (dev)"
        table_lines = ["| checkpoint | caption share: mean ± std over dev | image share |", "|---|---|---|"]
        table_lines += [f"| {n} | {v['mean']:.2f} ± {v['std']:.2f} | {1 - v['mean']:.2f} |" for n, v in rows]
        if draw:
            figures.shares([(n, v["mean"]) for n, v in rows], title, path)
    elif kind == "events":  # LABEL=DIR,...: each DIR holds a loeo.json
        recipes = [item.partition("=") for item in args[0].split(",")]
        reports = [(label.replace("_", " "), json.loads((base / d / "loeo.json").read_text()))
                   for label, _, d in recipes]
        first = reports[0][1]
        both = [e for e in first["events"] if len(first["per_event"][e]["classes"]) > 1]
        series = [(label, [r["per_event"][e]["macro_f1"]["mean"] for e in both],
                  [r["per_event"][e]["macro_f1"]["std"] for e in both]) for label, r in reports]
        title = "Macro F1 on each event left out of training (events with both classes)"
        table_lines = ["| held-out event | posts | " + " | ".join(label for label, _, _ in series) + " |",
                       "|---" * (2 + len(series)) + "|"]
        table_lines += [f"| {e} | {first['per_event'][e]['n']} | " + " | ".join(
            f"{m[i] * 100:.1f} ± {sd[i] * 100:.1f}" for _, m, sd in series) + " |" for i, e in enumerate(both)]
        if draw:
            figures.events(both, series, 0.5, "macro F1 (mean ± std over seeds); a fair coin scores at most 0.5",
                           title, path)
    elif kind == "reliability":  # DIR: a leave-one-event-out run that kept its held-out predictions
        curves, cal = reliability_bins(base / args[0])
        title = "Reliability on held-out events, seeds pooled"
        table_lines = ["| predictions | bin: mean top-class probability | how often the top class was right | posts |",
                       "|---|---|---|---|"]
        table_lines += [f"| {label} | {c:.3f} | {r:.3f} | {n:,} |" for label, points in curves for c, r, n in points]
        if draw:
            figures.reliability(curves, title, path)
    else:
        raise ValueError(f"unknown figure kind {kind}")
    return _figure_block(path, title, table_lines, page_dir)


def render(template: str, base: Path = REPO_ROOT, page_dir: Path = DOCS, figures_dir: Path = FIGURES,
           draw: bool = False) -> str:
    """TEMPLATE with its placeholders filled; page_dir is where the page will live (figure links are relative to
    it); draw: also draw its figures into figures_dir."""
    def fill(match: re.Match) -> str:
        kind, args = match.group(1), match.group(2).split()
        if kind == "figure":
            return figure(*args, base=base, page_dir=page_dir, figures_dir=figures_dir, draw=draw)
        if kind == "table":
            return table(*args, base=base)
        if kind == "heads":
            return heads(*args, base=base)
        if kind == "sweep":
            return sweep_table(json.loads((base / args[0]).read_text()))
        if kind == "encoders":
            return encoders(*args, base=base)
        if kind == "modalities":
            return modalities(*args, base=base)
        if kind == "bundles":
            return bundles(*args, base=base)
        if kind == "validity":
            return validity(*args, base=base)
        if kind == "faithfulness":
            return faithfulness(*args, base=base)
        if kind == "mean":  # {{mean GLOB KEYS}}: mean ± std over the JSON files GLOB matches, in percent
            values = [json_value(path, args[1]) for path in sorted(base.glob(args[0]))]
            if not values:
                raise FileNotFoundError(f"{{{{mean}}}}: no file matches {args[0]}")
            return mean_std(values)
        if kind == "compare":  # `python -m trainer compare ... --json PATH`
            from .compare import compare_sentence

            return compare_sentence(json.loads((base / args[0]).read_text()))
        if kind == "loeo":
            return loeo(*args, base=base)
        if kind == "target":
            return target(*args, base=base)
        if kind == "json":
            return json_figure(*args, base=base)
        if kind == "point":
            return sweep_point(*args, base=base)
        if kind == "chosen":
            return "`" + choose(json.loads((base / args[0]).read_text()))["tag"] + "`"
        if kind == "cost":  # a figure scripts/encoders_table.py measured: {{cost ROOT KEY FIELD}}
            root, key, field = args
            return f"{json.loads((base / root / 'costs.json').read_text())['points'][key][field]:g}"
        if kind == "last":  # the last epoch's logged value, e.g. {{last runs mvsa-single cacnet dev_weighted_f1}}
            roots, task, model, key = args
            return mean_std([r["history"][-1][key] for r in _runs(roots, task, model, base)])
        if kind in ("value", "seeds"):
            roots, task, model, split, head, metric = args
            values = _values(_runs(roots, task, model, base), split, head, metric)
            return mean_std(values) if kind == "value" else ", ".join(f"{v * 100:.2f}" for v in values)
        raise ValueError(f"unknown placeholder {{{{{kind} ...}}}}")

    header = ("<!-- Generated by `python -m trainer report --markdown` from its template (the .in.md beside it, or "
              "docs/RESULTS.in.md) and the files it names; edit the template, not this file. -->\n\n")
    return header + PLACEHOLDER.sub(fill, template)


def pages(docs: Path = DOCS) -> list[tuple[Path, Path]]:
    """(template, page) pairs: the index, then one page per topic."""
    topics = sorted((docs / "results").glob("*.in.md"))
    return [(docs / "RESULTS.in.md", docs / "RESULTS.md")] + [(t, t.with_name(t.name[:-len(".in.md")] + ".md"))
                                                              for t in topics]


def write_results(docs: Path = DOCS) -> list[Path]:
    """Every page and its figures, from the committed files."""
    written = []
    for template, page in pages(docs):
        write_text(page, render(template.read_text(), page_dir=page.parent, draw=True))
        written.append(page)
    return written
