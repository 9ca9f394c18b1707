"""Which explanation is faithful for which network, measured over dev: the deletion check the app prints under each
map (`mmdemo.explain.word_deletion` / `region_deletion`), run over a checkpoint's dev posts, per map.

For each post: the fused head's predicted class; each map the app draws for it (Integrated Gradients on the words,
Grad-CAM, Integrated Gradients and Occlusion on the image, the network's text->image attention where it has one),
computed as the app computes it; then the k most highlighted words or regions hidden against k random ones (mean of
`explain.RANDOM_DRAWS` draws). The gain is (probability with k random hidden) - (probability with the top k hidden):
> 0 where the map points at what the network uses more than random picks would.

    python -m trainer faithfulness --checkpoint checkpoints/mvsa-single/* --posts 30 --json results/probe/faithfulness.json

The posts are spread evenly over the dev split the checkpoint recorded (for a MediaEval bundle trained on every
event: its validation events), only posts with an image and a non-empty caption (what the app explains).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

MAPS = ("words", "grad-cam", "integrated-gradients", "occlusion", "attention")


def dev_posts(ckpt: Path, n: int) -> tuple[list, str]:
    """n posts with an image and a caption, spread evenly over the dev split the checkpoint recorded, and plain words
    for them."""
    from mmdemo.checkpoint import read_config, read_metrics

    from .trust import recorded_data, split_words

    config, metrics = read_config(ckpt), read_metrics(ckpt)
    data = recorded_data(config["task"], metrics, version=config.get("data_version", ""))
    dev = [s for s in data.dev if s.image is not None and s.text.strip()]  # what the app can explain
    picked = [dev[round(i * len(dev) / n)] for i in range(n)] if len(dev) > n else dev
    return picked, split_words(data, "dev", len(dev))


def checks(predictor, image: Image.Image, caption: str, maps: tuple[str, ...]) -> dict:
    """{map: Deletion or None} for one post, every map as the app computes it, on the fused predicted class."""
    from mmdemo import explain as X

    p = predictor
    pred = p.predict(image, caption)
    inputs, _ = p.prepare(image, caption)
    target = p.labels.index(pred.top()[0])
    out = {}
    if "words" in maps:
        tok = X.token_attributions(p.pipeline, inputs, target=target, max_steps=X.WORD_MAX_STEPS)
        out["words"] = X.word_deletion(p.pipeline, inputs, X.word_scores(tok.tokens, tok.scores), target=target)
    for method in ("grad-cam", "integrated-gradients", "occlusion"):
        if method in maps:
            heat, _ = X.image_attribution(method, p.pipeline, inputs, target=target)
            out[method] = X.region_deletion(p.pipeline, inputs, heat, target=target)
    if "attention" in maps:
        view = X.words_to_image(pred.explain, p.classifier.head.signals, pred.tokens, p.image_encoder.grid)
        if view is not None:
            out["attention"] = X.region_deletion(p.pipeline, inputs, view.weights, target=target)
    return out


def faithfulness(ckpt: Path, posts: int, maps: tuple[str, ...] = MAPS) -> dict:
    """The deletion check of every map over `posts` dev posts of one checkpoint: per map the mean and sd of the gain
    (in probability), on how many posts the map beat random deletion (by more than `explain.MIN_GAIN`), and on how
    many a check could run (none where the map highlights nothing towards the class)."""
    from mmdemo import explain as X
    from mmdemo.predict import Predictor

    predictor = Predictor.from_checkpoint(ckpt)
    picked, words = dev_posts(ckpt, posts)
    found: dict[str, list] = {m: [] for m in maps}
    start = time.perf_counter()
    for post in picked:
        image = Image.open(post.image).convert("RGB")
        for m, check in checks(predictor, image, post.text, maps).items():
            found[m].append(check)
    out = {"posts": len(picked), "on": f"{len(picked)} posts spread over {words}", "draws": X.RANDOM_DRAWS,
           "seconds": round(time.perf_counter() - start, 1), "maps": {}}
    for m, found_m in found.items():
        done = [c for c in found_m if c is not None]
        if not found_m:  # the network draws no such map (attention of a network without cross-attention)
            continue
        gains = [c.gain for c in done]
        out["maps"][m] = {"checked": len(done), "beat": sum(c.beats_random for c in done),
                          "gain_mean": statistics.mean(gains) if gains else None,
                          "gain_std": statistics.stdev(gains) if len(gains) > 1 else None,
                          "before": float(np.mean([c.before for c in done])) if done else None,
                          "top": float(np.mean([c.top for c in done])) if done else None,
                          "random": float(np.mean([c.random_mean for c in done])) if done else None}
    return out


def run(checkpoints: list[Path], posts: int, maps: tuple[str, ...], out: Path | None) -> dict:
    """Measure each checkpoint and merge the results into `out` (keyed "task/model"), written after each one."""
    from mmdemo.checkpoint import read_config

    results = json.loads(out.read_text()) if out and out.is_file() else {}
    for ckpt in checkpoints:
        config = read_config(ckpt)
        key = f"{config['task']}/{config['model']}"
        results[key] = faithfulness(Path(ckpt), posts, maps)
        print(f"{key}: " + "; ".join(f"{m} {v['gain_mean'] * 100:+.1f} ({v['beat']}/{v['checked']})"
                                     if v["gain_mean"] is not None else f"{m} –"
                                     for m, v in results[key]["maps"].items()), file=sys.stderr, flush=True)
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(dict(sorted(results.items())), indent=1) + "\n")
    return results
