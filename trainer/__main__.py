"""python -m trainer {train,sweep,eval,measure,floor,report,bundle,bench,probe,faithfulness,compare,push,space,data} ...

Examples:
  python -m trainer train --task mvsa-single --model concat --seeds 0 1 2
  python -m trainer train --task mvsa-single --model hglnet --variant no-gga --seeds 0
  python -m trainer eval --checkpoint checkpoints/mvsa-single/concat
  python -m trainer floor --task mvsa-single
  python -m trainer sweep --task mvsa-single --model hglnet --grid lr=1e-3,3e-4 --seeds 0 1 2 --jobs 2
  python -m trainer sweep --task mvsa-single --model hglnet --grid unfreeze_text_layers=2 encoder_lr=2e-5,5e-5
  python -m trainer sweep --task mediaeval2016 --model concat --protocol loeo --grid image_cap=0,1 image_dropout=0,0.3
  python -m trainer report --runs results/main
  python -m trainer report --markdown                           # docs/RESULTS.md from the committed runs
  python -m trainer bundle --task mvsa-single --model concat
  python -m trainer bench --task mvsa-single
  python -m trainer probe --checkpoint checkpoints/mvsa-single/mggf --splits dev   # what it draws on, measured
  python -m trainer faithfulness --checkpoint checkpoints/mvsa-single/* --posts 30  # each heatmap's deletion check
  python -m trainer compare --task mvsa-single --models hglnet concat --split test  # paired bootstrap interval
  python -m trainer push --checkpoint checkpoints/mvsa-single/concat --repo-id USER/NAME
  python -m trainer space --repo-id USER/NAME                   # the app + bundled checkpoints as a Space
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .faithfulness import MAPS
from .run import OUTPUTS, REPO_ROOT, RESULTS


def _value(text: str):
    """--set values: JSON when it parses (numbers, true/false, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(pairs: list[str], flag: str, form: str) -> dict[str, str]:
    """["lr=1e-3", ...] -> {"lr": "1e-3", ...}; `form` names the expected shape in the error."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"{flag} expects {form}, got {pair!r}")
        k, v = pair.split("=", 1)
        out[k.strip()] = v
    return out


def _overrides(pairs: list[str]) -> dict:
    return {k: _value(v) for k, v in _pairs(pairs, "--set", "key=value").items()}


def _encoder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-encoder", default="minilm-l6")
    p.add_argument("--image-encoder", default="efficientnet-lite0")
    p.add_argument("--max-length", type=int, default=64, help="text tokens read by the encoder")
    p.add_argument("--data-dir", default=None, help="dataset folder (default: the task's, see mmdemo.tasks)")
    p.add_argument("--cache-dir", type=Path, default=None, help="feature cache (default: .cache/features)")


def _events(names: str) -> tuple[str, ...]:
    """--validation-events "nepal,boston" -> ("nepal", "boston"); "" -> () (the task reader's own)."""
    return tuple(e for e in names.split(",") if e)


def cmd_train(a) -> None:
    from mmdemo.hub import check_hub_ready, push_checkpoint

    from mmdemo.models import get_model

    from .run import torch_threads, train_task
    from .sweep import TRAIN_OPTIONS

    if a.push_to_hub:
        if not a.repo_id:
            raise SystemExit("--push-to-hub needs --repo-id USER/NAME")
        if a.protocol == "loeo":
            raise SystemExit("--protocol loeo trains one model per left-out event, none of which is the one to "
                             "publish: push a run trained on the task's split")
        check_hub_ready()  # fail before any work
    torch_threads(a.threads)
    # A preset is a dev-chosen point (head fields and train options); explicit flags and --set win over it, and
    # what neither sets keeps train_task's default.
    point = get_model(a.model).preset(a.preset, a.task) if a.preset else {}
    overrides = {**{k: v for k, v in point.items() if k not in TRAIN_OPTIONS}, **_overrides(a.set)}
    chosen = {k: getattr(a, k) if getattr(a, k) is not None else point.get(k) for k in TRAIN_OPTIONS}
    options = {("finetune_text_layers" if k == "unfreeze_text_layers" else k): v for k, v in chosen.items()
               if v is not None}
    dirs = train_task(a.task, a.model, a.seeds, a.variant, a.data_dir, a.out, overrides=overrides,
                      max_length=a.max_length, cache_dir=a.cache_dir, progress=not a.quiet, resume=a.resume,
                      protocol=a.protocol, validation_events=_events(a.validation_events),
                      **options)
    if a.push_to_hub:
        from .run import best_seed_dir

        best, _ = best_seed_dir(dirs[0].parent)
        print("pushed", best, "->", push_checkpoint(best, a.repo_id, private=a.private))


def cmd_eval(a) -> None:
    from mmdemo.checkpoint import load_checkpoint, read_metrics

    from .loop import evaluate
    from .trust import recorded_splits

    model = load_checkpoint(a.checkpoint)
    # the checkpoint's own splits: for a run trained on every event, its validation events are "dev" and it has no test
    splits = recorded_splits(model, read_metrics(a.checkpoint), tuple(a.splits), a.data_dir, a.cache_dir)
    for name in a.splits:
        if name not in splits:
            print(f"{name:5s} none: this checkpoint trained on every event but its validation events")
    res = {name: evaluate(model, split) for name, (split, _) in splits.items()}
    for name, r in res.items():
        print(f"{name:5s} = {splits[name][1]}")
        for head in ("fused", "text", "image"):
            shown = {k: round(v, 4) for k, v in r[head].items() if isinstance(v, float)}
            print(f"{name:5s} {head:6s} {shown}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


def cmd_measure(a) -> None:
    from mmdemo.checkpoint import read_config, read_trust, reliability_line, validity_line

    from .run import torch_threads
    from .trust import measure, reliability_diagram, write_trust

    torch_threads(a.threads)
    for ckpt in a.checkpoint:
        trust, calibration, dev = measure(ckpt, a.loeo, a.data_dir, a.cache_dir)
        if not a.dry_run:
            write_trust(ckpt, trust, calibration)
            if calibration and trust["judged"].get("whose") == "recipe":  # beside the recipe's report
                print("  reliability diagram:", reliability_diagram(
                    (REPO_ROOT / trust["judged"]["source"]).parent,
                    (REPO_ROOT / trust["judged"]["source"]).parent / "reliability.png"))
        s = trust["spread"]
        print(f"{ckpt}: dev re-measured {dev.get('macro_f1', dev.get('precision@1')):.4f}; fused answer over "
              f"{s['on']}: std {s['std']:.3g}, top class {s['top_low']:.3f}-{s['top_high']:.3f} (5-95%)"
              + (f"; temperature {calibration['temperature']:.4g}, ECE {calibration['ece_before']:.4f} -> "
                 f"{calibration['ece_after']:.4f}" if calibration else ""))
        print("  " + reliability_line(read_trust({**read_config(ckpt), "trust": trust, "calibration": calibration})))
        for name, v in (trust.get("signals") or {}).items():
            print(f"  {name}: {validity_line(v)}")


def cmd_floor(a) -> None:
    from mmdemo.tasks import get_task

    from .floor import logistic_floor
    from .run import load_features

    data, feats, _ = load_features(a.task, a.text_encoder, a.image_encoder, a.data_dir, a.max_length, a.cache_dir)
    m = logistic_floor(feats, data.labels, get_task(a.task).paper_metric, a.task, a.out / a.task / "logreg")
    for split in ("dev", "test"):
        f = m[split]["fused"]
        print(f"logreg {a.task} {split}: acc {f['accuracy']:.4f} wF1 {f['weighted_f1']:.4f} mF1 {f['macro_f1']:.4f} (C={m['C']})")


def cmd_sweep(a) -> None:
    from .sweep import promote, sweep, sweep_table

    grid = {k: [_value(v) for v in values.split(",")] for k, values in _pairs(a.grid, "--grid", "key=v1,v2,...").items()}
    result = sweep(a.task, a.model, grid, a.seeds, a.out, a.variant, a.jobs, a.threads, resume=a.resume,
                   protocol=a.protocol, validation_events=_events(a.validation_events),
                   prefer_narrower=tuple(f for f in a.prefer_narrower.split(",") if f))
    print(sweep_table(result))
    print("best (dev):", json.dumps(result["best"]))
    if a.promote:
        print("promoted ->", promote(result, a.out, a.runs))


def cmd_report(a) -> None:
    from .report import table
    from .sweep import best_args, sweep_table

    if a.markdown:  # docs/RESULTS.md from its template and the committed metrics
        from .results import write_results

        print("wrote", write_results())
        return
    if a.sweeps:  # dev-only tables of `sweep` runs
        for path in sorted(a.sweeps.rglob("sweep.json")):
            print(sweep_table(json.loads(path.read_text())) + f"\n\nbest (dev): {best_args(path)}\n")
        return
    for head in a.heads:
        print(table(a.runs, a.split, head, a.tasks, a.models, a.variants))


def cmd_bundle(a) -> None:
    from mmdemo.checkpoint import read_metrics

    from .report import bundle
    from .run import run_name

    dest = a.dest / a.task / a.model
    source = a.checkpoint or a.runs / a.task / run_name(a.model, a.variant)
    best, metric = bundle(source, dest, compact=not a.float32,
                          calibration=a.calibration, lora_rank=a.lora_rank)
    print(f"bundled {best} -> {dest} (best dev {metric})")
    small = read_metrics(dest).get("bundle")
    if small:
        run = read_metrics(best)["dev"]["fused"]
        shown = ", ".join(f"{k} {run[k]:.4f} -> {v:.4f}" for k, v in small["dev"].items() if k in run)
        lora = f", whole tuned blocks as rank-{a.lora_rank} LoRA adapters" if a.lora_rank else ""
        print(f"  float16{lora}, training-only state left out: {small['bytes']['run'] / 2**20:.1f} -> "
              f"{small['bytes']['bundled'] / 2**20:.1f} MiB; dev {shown}")


def cmd_bench(a) -> None:
    from .bench import bench

    bench(a.task, a.model, a.text_encoder, a.image_encoder, a.samples, a.max_length, a.data_dir)


def cmd_faithfulness(a) -> None:
    from .faithfulness import run
    from .run import torch_threads

    torch_threads(a.threads)
    run(a.checkpoint, a.posts, tuple(a.maps), a.json)


def cmd_probe(a) -> None:
    from mmdemo.checkpoint import load_checkpoint, read_config, read_metrics
    from mmdemo.hub import bundled_checkpoints

    from .loeo import trained_on_every_event
    from .probe import modality_report, reference_of, text_shares
    from .run import checkpoint_features

    paths = ([p for models in bundled_checkpoints().values() for p in models.values()] if a.bundled
             else [Path(p) for p in a.checkpoint])
    if not paths:
        raise SystemExit("name --checkpoint DIR [DIR ...] or --bundled")
    if a.compare_references:  # which reference gives the answer that least depends on the training seed
        import torch
        from torchmetrics.functional import spearman_corrcoef

        from mmdemo.contrib import REFERENCES

        models = [load_checkpoint(p) for p in paths]
        split = a.splits[0]
        feats = checkpoint_features(models[0], a.data_dir, a.cache_dir, splits=("train", split))
        print(f"text share of the predicted class on {split}, per input: Spearman correlation between the "
              f"{len(models)} checkpoints (pairs), for each reference")
        for kind in REFERENCES:
            shares = [text_shares(m, feats[split], reference_of(m, kind, feats["train"])) for m in models]
            rhos = [spearman_corrcoef(shares[i], shares[j]).item() for i in range(len(shares)) for j in range(i)]
            print(f"| {kind} | {sum(rhos) / len(rhos):.3f} | {' '.join(f'{r:.3f}' for r in rhos)} | mean share "
                  f"{torch.stack(shares).mean():.3f} |")
        return
    results, unprobed = {}, []
    for path in paths:
        if trained_on_every_event(read_metrics(path)):
            print(f"{path}: trained on every event of its task but its validation events, so every split of the task "
                  "is its training data: not probed (its measure on unseen events is its leave-one-event-out report)")
            config = read_config(path)
            unprobed.append(f"{config['task']}/{config['model']}")
            continue
        model = load_checkpoint(path)
        train = ("train",) if a.reference == "mean" else ()
        feats = checkpoint_features(model, a.data_dir, a.cache_dir, splits=tuple(dict.fromkeys(train + tuple(a.splits))))
        ref = reference_of(model, a.reference, feats.get("train"))
        for split in a.splits:
            r = modality_report(model, feats[split], ref, a.shuffles, a.seed)
            results.setdefault(f"{model.task}/{model.model_name}", {})[split] = r
            s, p = r["shapley"], r["perceptual"]
            print(f"\n{path} on {split} ({r['n']} pairs, {r['metric']} {r['score']:.4f}, reference {r['reference']})")
            print(f"  text share of the predicted class: {s['text_share']['mean']:.3f} ± {s['text_share']['std']:.3f}"
                  f" | phi text {s['text']['mean']:+.3f}, image {s['image']['mean']:+.3f}, interaction "
                  f"{s['interaction']['mean']:+.3f}")
            print(f"  perceptual score ({a.shuffles} shuffles): image {p['image']['mean']:+.4f} ± {p['image']['std']:.4f}"
                  f", text {p['text']['mean']:+.4f} ± {p['text']['std']:.4f}")
            for key, sig in r["signals"].items():
                print(f"  {key}: {sig['mean']:.4f} ± {sig['std']:.4f} (5-95%: {sig['p05']:.3f}-{sig['p95']:.3f}), "
                      f"Spearman with text share {sig['spearman_text_share']:+.3f}, image-shuffled mean "
                      f"{sig['shuffled_mean']:.4f} (higher for {sig['shuffled_higher_fraction']:.0%})")
    if a.json:  # merged into what the file holds: probing one new checkpoint keeps the others' reports
        a.json.parent.mkdir(parents=True, exist_ok=True)
        merged = json.loads(a.json.read_text()) if a.json.is_file() else {}
        for name, splits in results.items():
            merged.setdefault(name, {}).update(splits)
        for name in unprobed:  # an earlier report of that name was another checkpoint's
            merged.pop(name, None)
        a.json.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")


def cmd_compare(a) -> None:
    from .compare import compare_sentence, hits, paired_bootstrap
    from .run import run_name

    def run_dir(spec: str) -> Path:  # MODEL[:VARIANT] under --runs, or a run directory (holding seed*/)
        if Path(spec).is_dir():
            return Path(spec)
        model, _, variant = spec.partition(":")
        return a.runs / a.task / run_name(model, variant)

    runs = [hits(run_dir(s), a.split, a.data_dir, a.cache_dir) for s in a.models]
    r = {"task": a.task, "split": a.split, "models": a.models, **paired_bootstrap(*runs, samples=a.samples)}
    print(f"{a.task} {a.split}: {compare_sentence(r)}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(r, indent=1) + "\n")


def cmd_push(a) -> None:
    from mmdemo.hub import push_checkpoint

    print(push_checkpoint(a.checkpoint, a.repo_id, private=a.private))


def cmd_space(a) -> None:
    from .space import build_space, deploy_space

    if a.build:
        files = build_space(a.build)
        print(f"{len(files)} files -> {a.build} (nothing uploaded)")
        return
    if not a.repo_id:
        raise SystemExit("space needs --repo-id USER/NAME (or --build DIR to only write the files)")
    print(deploy_space(a.repo_id, private=a.private))


def cmd_data(a) -> None:
    from .datasets import load_task_data

    print(load_task_data(a.task, a.data_dir).describe())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model on a task (one run per seed)")
    p.add_argument("--task", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--variant", default="", help="ablation row of the model (see mmdemo.models.get_model(M).variants)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a head config field")
    p.add_argument("--out", type=Path, default=OUTPUTS, help="where the runs go (git-ignored outputs/ by default)")
    p.add_argument("--push-to-hub", action="store_true", help="push the best-on-dev seed to --repo-id")
    p.add_argument("--repo-id", default="")
    p.add_argument("--private", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--resume", action="store_true",
                   help="continue interrupted runs from their last finished epoch (same result as uninterrupted)")
    p.add_argument("--preset", default="", help="the settings chosen on dev for this model and task (e.g. best: "
                   "the row of docs/RESULTS.md); flags and --set override its values")
    p.add_argument("--unfreeze-text-layers", type=int, default=None, metavar="N",
                   help="fine-tune the last N text-encoder layers (BERT family, MPNet: on the cached output of the block "
                        "below them, so a step runs N blocks; other encoders run live on the captions)")
    p.add_argument("--encoder-lr", type=float, default=None, help="learning rate of the unfrozen text layers (2e-5)")
    p.add_argument("--lora-rank", type=int, default=None,
                   help="> 0: tune the unfrozen text layers through LoRA adapters of this rank (a checkpoint stores "
                        "the adapters, not the layers); 0: tune the whole layers")
    p.add_argument("--image-cap", type=int, default=None, metavar="K",
                   help="draw training posts so that an image shared by n posts counts min(n, K) times per epoch")
    p.add_argument("--balance-groups", action="store_true", default=None,
                   help="draw training posts so that every group (MediaEval: event) weighs the same in total")
    p.add_argument("--balance-classes", action="store_true", default=None,
                   help="draw training posts so that every class weighs the same in total (after --image-cap and "
                        "--balance-groups): the head learns no class prior")
    p.add_argument("--event-adversarial", type=float, default=None, metavar="LAMBDA",
                   help="> 0: EANN-style event-adversarial training with this lambda (a discriminator of the training "
                        "events on the fused representation, through gradient reversal; trainer/adversarial.py)")
    p.add_argument("--image-dropout", type=float, default=None, metavar="P",
                   help="replace each training post's image by the blank one with probability P (modality dropout)")
    p.add_argument("--protocol", default="split", choices=["split", "loeo", "all-events"],
                   help="split: the task's train / dev / test; loeo: leave one event out, every event in turn "
                        "(trainer/loeo.py; writes loeo.json); all-events: every event but the validation events, "
                        "which choose the epoch, and no test part: the checkpoint to bundle with the loeo report of "
                        "the same recipe (trainer bundle --calibration)")
    p.add_argument("--validation-events", default="", metavar="E1,E2,...",
                   help="loeo / all-events: the events that may validate, in order; a fold takes the first two it "
                        "does not leave out (default: the task reader's, MediaEval: eclipse, garissa, boston)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: all cores); 1 is fastest for small heads")
    _encoder_args(p)
    p.set_defaults(fn=cmd_train, text_encoder=None, image_encoder=None)  # None: the preset's, else the default

    p = sub.add_parser("eval", help="evaluate a checkpoint directory on the splits it recorded")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--splits", nargs="+", default=["dev", "test"], choices=["train", "dev", "test"],
                   help="the checkpoint's own: dev chose its epoch and seed (for a run trained on every event, its "
                        "validation events), test it never saw (none for such a run)")
    p.add_argument("--json", default="")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("measure", help="how far to trust a checkpoint: its answer's spread over the inputs that "
                       "selected it, its judged score against a guess, its calibration; written into config.json "
                       "(never the weights) and its card")
    p.add_argument("--checkpoint", type=Path, nargs="+", required=True, metavar="DIR")
    p.add_argument("--loeo", type=Path, default=None, metavar="LOEO_JSON",
                   help="for a checkpoint trained on every event: the leave-one-event-out report of its recipe "
                        "(default: the one its config already names)")
    p.add_argument("--dry-run", action="store_true", help="print, write nothing")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.set_defaults(fn=cmd_measure)

    p = sub.add_parser("floor", help="logistic regression on the frozen features (a fair floor)")
    p.add_argument("--task", required=True)
    p.add_argument("--out", type=Path, default=OUTPUTS)
    _encoder_args(p)
    p.set_defaults(fn=cmd_floor)

    p = sub.add_parser("report", help="markdown table, mean ± std over seeds")
    p.add_argument("--runs", type=Path, nargs="+", default=[OUTPUTS],
                   help="run directories; several pool their seeds (e.g. results/main results/extra)")
    p.add_argument("--split", default="test", choices=["dev", "test"])
    p.add_argument("--heads", nargs="+", default=["fused"], choices=["fused", "text", "image"])
    p.add_argument("--tasks", nargs="+", default=None)
    p.add_argument("--models", nargs="+", default=None)
    p.add_argument("--variants", action="store_true", help="include ablation variants")
    p.add_argument("--markdown", action="store_true",
                   help="write docs/RESULTS.md: docs/RESULTS.in.md with its placeholders filled from the runs")
    p.add_argument("--sweeps", type=Path, default=None, metavar="DIR",
                   help="print the dev tables of the hyperparameter sweeps under DIR (e.g. results/sweep) instead")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("sweep", help="choose head hyperparameters on dev: a grid x seeds, ranked by mean dev score")
    p.add_argument("--task", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--variant", default="")
    p.add_argument("--grid", nargs="+", default=[], metavar="KEY=V1,V2",
                   help="head config values to try, and the train options unfreeze_text_layers / encoder_lr / lora_rank / "
                        "text_encoder / image_encoder")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=OUTPUTS / "sweep")
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--promote", action="store_true", help="copy the best point's runs into --runs")
    p.add_argument("--runs", type=Path, default=RESULTS / "main", help="where --promote puts them (committed rows)")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs that finished, continue the interrupted ones, train the rest")
    p.add_argument("--protocol", choices=("split", "loeo"), default="split",
                   help="split: each point x seed on the task's split, ranked by mean dev score; loeo: each point one "
                        "leave-one-event-out run over the seeds, ranked by its validation folds (never a left-out event)")
    p.add_argument("--validation-events", default="", metavar="E1,E2,...",
                   help="loeo: the events that may validate, in order (as for train)")
    p.add_argument("--prefer-narrower", default="", metavar="FIELD,...",
                   help="width fields (e.g. hidden): a narrower point within one std of the winner replaces it "
                        "(rule 2 of trainer/sweep.py)")
    p.set_defaults(fn=cmd_sweep)

    p = sub.add_parser("bundle", help="copy the best-on-dev seed into checkpoints/<task>/<model>")
    p.add_argument("--task", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--variant", default="")
    p.add_argument("--runs", type=Path, default=OUTPUTS, help="the runs to read (results/main: the committed rows)")
    p.add_argument("--dest", type=Path, default=REPO_ROOT / "checkpoints")
    p.add_argument("--float32", action="store_true", help="copy the weights as trained (default: float16, without "
                   "the state only further training reads; dev is re-measured and recorded)")
    p.add_argument("--calibration", type=Path, default=None, metavar="LOEO_JSON",
                   help="a leave-one-event-out report of the same recipe (train --protocol loeo): its temperature "
                        "and unseen-event scores go into the checkpoint, and the app shows them")
    p.add_argument("--checkpoint", type=Path, default=None, metavar="DIR",
                   help="bundle this checkpoint, or the best seed of this run directory, instead of the best seed "
                        "of --runs (it may be the bundled one itself: `--checkpoint checkpoints/TASK/MODEL --lora-rank "
                        "R` shrinks it in place; without --lora-rank only its notes and card are made anew)")
    p.add_argument("--lora-rank", type=int, default=0, metavar="R",
                   help="a run that tuned whole text blocks is bundled as rank-R LoRA adapters on the pretrained "
                        "blocks: each weight's change cut to its top R singular directions (dev is re-measured)")
    p.set_defaults(fn=cmd_bundle)

    p = sub.add_parser("bench", help="feature-extraction throughput; an epoch from cache vs re-encoding")
    p.add_argument("--task", default="mvsa-single")
    p.add_argument("--model", default="concat")
    p.add_argument("--samples", type=int, default=256)
    _encoder_args(p)
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("faithfulness", help="which explanation is faithful for which network: the app's deletion "
                       "check of every map over a checkpoint's dev posts")
    p.add_argument("--checkpoint", type=Path, nargs="+", required=True, metavar="DIR")
    p.add_argument("--posts", type=int, default=30, help="dev posts, spread evenly over the split")
    p.add_argument("--maps", nargs="+", default=list(MAPS), choices=MAPS)
    p.add_argument("--json", type=Path, default=None, help="merge the results into this file")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(fn=cmd_faithfulness)

    p = sub.add_parser("probe", help="what a network draws on: Shapley shares, perceptual scores, and its own "
                                     "signals against them (and on matched vs shuffled pairs)")
    p.add_argument("--checkpoint", nargs="*", default=[])
    p.add_argument("--bundled", action="store_true", help="every bundled checkpoint")
    p.add_argument("--splits", nargs="+", default=["dev"], choices=["train", "dev", "test"])
    p.add_argument("--reference", default="blank", choices=["mean", "blank"],
                   help="what stands in for a missing modality (mmdemo.contrib; the app's: blank)")
    p.add_argument("--shuffles", type=int, default=5, help="shuffles for the perceptual score")
    p.add_argument("--compare-references", action="store_true",
                   help="with several checkpoints of one run (its seeds): how much each reference's per-input "
                        "answer depends on the seed")
    p.add_argument("--json", type=Path, default=None, help="write the reports into this file (merged with what it holds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.set_defaults(fn=cmd_probe)

    p = sub.add_parser("compare", help="paired bootstrap interval of the accuracy difference of two models (same "
                                       "seeds, same samples); needs the runs' weights")
    p.add_argument("--task", required=True)
    p.add_argument("--models", nargs=2, required=True, metavar="MODEL[:VARIANT]|RUN_DIR",
                   help="two models under --runs, or run directories (each holding seed*/ with weights)")
    p.add_argument("--split", default="test", choices=["dev", "test"])
    p.add_argument("--runs", type=Path, default=OUTPUTS, help="the runs to read (results/main: the committed rows)")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--json", type=Path, default=None,
                   help="also write the result here (docs/RESULTS.in.md cites it: {{compare PATH}})")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.set_defaults(fn=cmd_compare)

    p = sub.add_parser("push", help="upload a checkpoint directory to the Hugging Face Hub")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--repo-id", required=True)
    p.add_argument("--private", action="store_true")
    p.set_defaults(fn=cmd_push)

    p = sub.add_parser("space", help="deploy the app with the bundled checkpoints as a Hugging Face Space")
    p.add_argument("--repo-id", help="USER/NAME of the Space (created if it does not exist)")
    p.add_argument("--private", action="store_true")
    p.add_argument("--build", type=Path, metavar="DIR", help="only write the Space's files into DIR, upload nothing")
    p.set_defaults(fn=cmd_space)

    p = sub.add_parser("data", help="print a task's dataset summary")
    p.add_argument("--task", required=True)
    p.add_argument("--data-dir", default=None)
    p.set_defaults(fn=cmd_data)

    a = parser.parse_args(argv)
    from mmdemo.checkpoint import CheckpointError
    from mmdemo.hub import HubError

    try:
        a.fn(a)
    except (HubError, CheckpointError, FileNotFoundError, FileExistsError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
