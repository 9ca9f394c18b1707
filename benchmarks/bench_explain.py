"""What Integrated Gradients' step escalation costs and buys on the bundled networks: for each network and example,
the word and pixel attributions at the app's first step count (no escalation) and as the app computes them (more
steps while they miss the logit's change by more than 5%, within `IG_BUDGET_S`). Prints a markdown table; asserts
nothing.

    python benchmarks/bench_explain.py                                   # mvsa-single: every bundled network
    python benchmarks/bench_explain.py --task hashtags --models mahfnet mggf --threads 2

With --deletion, what each map's deletion check (`explain.word_deletion` / `region_deletion`) costs against the
explanation it checks, as the app computes both: per network and map, the explanation's seconds, the check's seconds
for the first map of an input (it measures the random deletions, which every later map of that input shares) and
for a later map (its own top-k variant only; the words' check of a later click, whose top words are the same, runs
nothing, but is timed here as a new map too), and the Explain click as a whole (words + one image map). Prints the
check's lines too.

    python benchmarks/bench_explain.py --deletion --models cacnet mahfnet --threads 2

The deletion check over dev, per network and map (which map is faithful, not what it costs): `python -m trainer
faithfulness` (trainer/faithfulness.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_app import EXAMPLES  # noqa: E402  (the same three examples as the app benchmark)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="mvsa-single")
    ap.add_argument("--models", nargs="*", help="default: every bundled network of the task")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--examples", type=int, default=len(EXAMPLES))
    ap.add_argument("--deletion", action="store_true", help="time the deletion checks instead")
    ap.add_argument("--rounds", type=int, default=2, help="--deletion: rounds over the examples (median kept)")
    ap.add_argument("--draws", type=int, help="--deletion: random deletions a check averages (default: the app's)")
    args = ap.parse_args()
    if args.deletion:
        return deletion(args)

    import torch
    from PIL import Image

    from mmdemo import explain as X
    from mmdemo.app.handlers import DemoApp

    torch.set_num_threads(args.threads)
    app = DemoApp(REPO / "checkpoints")
    models = args.models or app.catalogue().get(args.task, [])
    print(f"task {args.task}, {args.threads} torch thread(s), budget {X.IG_BUDGET_S:.0f} s, tolerance "
          f"{X.IG_TOLERANCE:.0%}\n")
    print("| network | example | input | first try: steps, miss, s | as the app computes it: steps tried, miss, s "
          "| added s |")
    print("|---|---|---|---|---|---|")
    for model in models:
        p = app.load(args.task, model).predictor
        for name, caption in EXAMPLES[:args.examples]:
            image = Image.open(REPO / "examples" / name)
            p.predict(image, caption)  # the click's prediction: the held-fixed modality comes from it
            inputs, _ = p.prepare(image, caption)
            runs = {
                "words": lambda **kw: X.token_attributions(p.pipeline, inputs, n_steps=X.WORD_STEPS, **kw).convergence,
                "pixels": lambda **kw: X.integrated_gradients(p.pipeline, inputs, n_steps=X.PIXEL_STEPS,
                                                              return_convergence=True, **kw)[1],
            }
            limits = {"words": X.WORD_MAX_STEPS, "pixels": X.PIXEL_MAX_STEPS}
            for what, run in runs.items():
                t = time.perf_counter()
                first = run()
                t_first = time.perf_counter() - t
                t = time.perf_counter()
                app_way = run(max_steps=limits[what])
                t_app = time.perf_counter() - t
                if first is None:
                    print(f"| {model} | {name} | {what} | head does not read it | | |")
                    continue
                print(f"| {model} | {name} | {what} | {first.steps}, {first.relative:.1%}, {t_first:.2f} | "
                      f"{'/'.join(map(str, app_way.tried))}, {app_way.relative:.1%}"
                      f"{'' if app_way.reliable or app_way.small_change else ' (rough)'}, {t_app:.2f} | "
                      f"{t_app - t_first:+.2f} |", flush=True)


def deletion(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from mmdemo import explain as X
    from mmdemo.app.handlers import DemoApp

    torch.set_num_threads(args.threads)
    app = DemoApp(REPO / "checkpoints")
    models = args.models or app.catalogue().get(args.task, [])
    draws = args.draws or X.RANDOM_DRAWS
    print(f"task {args.task}, {args.threads} torch thread(s), {draws} random draws, medians over "
          f"{args.rounds} round(s) x {args.examples} example(s)\n")
    times: dict[tuple[str, str], list[tuple[float, float, float]]] = {}  # (network, map) -> (explain, first, later)
    lines: dict[tuple[str, str, str], str] = {}

    def timed(fn):
        t = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t

    for _ in range(args.rounds):
        for model in models:
            loaded = app.load(args.task, model)
            p = loaded.predictor
            for name, caption in EXAMPLES[:args.examples]:
                image = Image.open(REPO / "examples" / name)
                pred = p.predict(image, caption)  # the click's prediction (not timed): the app explains after it
                inputs, _ = p.prepare(image, caption)
                cls = p.labels.index(pred.top()[0])
                label = p.labels[cls]
                maps: dict[str, tuple] = {}  # map -> (explanation seconds, the map, its check: map -> Deletion)
                tok, t = timed(lambda: X.token_attributions(p.pipeline, inputs, target=cls,
                                                            max_steps=X.WORD_MAX_STEPS))
                maps["words (IG)"] = (t, X.word_scores(tok.tokens, tok.scores),
                                      lambda s: X.word_deletion(p.pipeline, inputs, s, target=cls, draws=draws))
                for mid in ("grad-cam", "integrated-gradients", "occlusion"):
                    (heat, _), t = timed(lambda: X.image_attribution(mid, p.pipeline, inputs, target=cls))
                    maps[mid] = (t, heat, lambda h: X.region_deletion(p.pipeline, inputs, h, target=cls, draws=draws))
                view, t = timed(lambda: X.words_to_image(pred.explain, loaded.signals, pred.tokens,
                                                         p.image_encoder.grid))
                if view is not None:
                    maps["attention"] = (t, view.weights, lambda w: X.region_deletion(p.pipeline, inputs, w,
                                                                                      target=cls, draws=draws))
                for what, (t_explain, scores, check) in maps.items():
                    X._HIDDEN.clear()  # the first map of this input: its random deletions are measured
                    result, t_first = timed(lambda: check(scores))
                    X._HIDDEN.clear()
                    check(np.max(scores) + 1 - np.asarray(scores))  # another map of this input came first (its top
                    # k: this map's last k, every score above 0, so that it runs the random deletions)
                    _, t_later = timed(lambda: check(scores))  # only this map's own top-k variant runs
                    times.setdefault((model, what), []).append((t_explain, t_first, t_later))
                    lines[model, name, what] = X.deletion_line(result, label, "words" if what.startswith("words")
                                                               else "image regions")
                print(f"{model} {name}: done", file=sys.stderr, flush=True)

    print("| network | map | explanation s | check s, first map of an input | check s, a later map | "
          "first / explanation | later / explanation |")
    print("|---|---|---:|---:|---:|---:|---:|")
    clicks: dict[str, list[tuple[float, float, float]]] = {}
    for (model, what), rows in times.items():
        e, f, l = (float(np.median(c)) for c in zip(*rows))
        ratios = f"{f / e:.0%} | {l / e:.0%}" if e >= 0.001 else "— | —"  # attention: the prediction's own maps
        print(f"| {model} | {what} | {e:.3f} | {f:.3f} | {l:.3f} | {ratios} |")
        if what.startswith("words"):
            continue
        words = times[model, "words (IG)"]
        w = [float(np.median(c)) for c in zip(*words)]
        clicks.setdefault(what, []).append((e + w[0], f + w[1], l + w[2]))
    print("\nThe Explain click (words + the image map, medians summed), over the networks: total seconds")
    print("\n| image map | explanation s | checks s, first map | checks s, a later map | first / explanation | "
          "later / explanation |")
    print("|---|---:|---:|---:|---:|---:|")
    for what, rows in clicks.items():
        e, f, l = (sum(c) for c in zip(*rows))
        print(f"| {what} | {e:.2f} | {f:.2f} | {l:.2f} | {f / e:.0%} | {l / e:.0%} |")
    print("\nThe lines (last round):")
    for (model, name, what), line in lines.items():
        print(f"- {model}, {name}, {what}: {line}")


if __name__ == "__main__":
    main()
