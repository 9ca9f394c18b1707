"""What the tests share (a helpers module, not a test module: tests import from here, never from each other): the
repository's paths; a small synthetic image + caption task that tiny encoders learn in seconds; tiny random
checkpoints; the app served on a free port and driven in headless Debian Chromium; small data-file writers."""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path
from typing import Iterator

import pytest
import torch
from PIL import Image

from mmdemo.checkpoint import save_checkpoint
from mmdemo.encoders import FeatureDims, create_image_encoder, create_text_encoder
from mmdemo.models import MultimodalClassifier
from trainer.datasets import DatasetSplits, Sample

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"  # the real datasets and papers, beside the repository
EXAMPLES = REPO_ROOT / "examples"
ASSETS = Path(__file__).resolve().parent / "assets"


# ---- a synthetic task ------------------------------------------------------------------------------------------

LABELS = ["sunny", "rainy"]


def synthetic_data(root, n_train=48, n_dev=16, n_test=16, corrupt=2) -> DatasetSplits:
    """Label = scene: warm images with sunny words vs cool images with rainy words (noisy pixels, shuffled words)."""
    rng = random.Random(0)
    words = {0: ["sun", "beach", "bright", "smile", "warm"], 1: ["rain", "storm", "cold", "grey", "wet"]}
    filler = ["the", "a", "today", "we", "went", "out", "look"]

    def sample(i: int, split: str) -> Sample:
        y = i % 2
        colour = (220, 140, 40) if y == 0 else (40, 90, 200)
        img = Image.new("RGB", (64, 64), tuple(max(0, min(255, c + rng.randint(-40, 40))) for c in colour))
        path = root / f"{split}_{i}.png"
        img.save(path)
        caption = " ".join(rng.sample(filler, 3) + rng.sample(words[y], 2))
        return Sample(f"{split}{i}", path, caption, y)

    splits = {s: [sample(i, s) for i in range(n)] for s, n in (("train", n_train), ("dev", n_dev), ("test", n_test))}
    for i in range(corrupt):  # unreadable images are counted, never fatal
        bad = root / f"corrupt_{i}.jpg"
        bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
        splits["train"].append(Sample(f"bad{i}", bad, "the sun", 0))
    return DatasetSplits("synthetic", splits["train"], splits["dev"], splits["test"], LABELS, False, {}, "v1")


def synthetic_features(root, tiny_encoders, n_train=32, n_dev=8, n_test=8):
    """(data, cached features, FeatureDims) of a small synthetic task through the tiny encoders, cached under root."""
    from trainer.features import cached_features

    data = synthetic_data(root, n_train=n_train, n_dev=n_dev, n_test=n_test, corrupt=0)
    te, ie = tiny_encoders
    feats = cached_features(data, te, ie, max_length=16, cache_dir=root / "cache", batch_size=16)
    return data, feats, FeatureDims.of(te, ie)


CAPTIONS = ["a happy dog running on the beach", "so sad", "what a day it is today, great weather!", "meh"]


def encode_examples(text_name: str, image_name: str, n: int = 4):
    """(FeatureDims, TextFeatures, ImageFeatures) of n fixed captions and random images through tiny encoders."""
    import torch

    from mmdemo.encoders import FeatureDims, create_image_encoder, create_text_encoder

    te, ie = create_text_encoder(text_name), create_image_encoder(image_name)
    torch.manual_seed(1)
    with torch.no_grad():
        text = te.encode(CAPTIONS[:n], num_layers=1)
        image = ie(torch.randn(n, 3, ie.image_size, ie.image_size))
    return FeatureDims.of(te, ie), text, image


def train_on_synthetic(tmp_path, data, monkeypatch, model: str, **overrides):
    """One seed of `model` through trainer.run.train_task on `data` with tiny encoders -> its run directory."""
    from trainer import run

    monkeypatch.setattr(run, "load_task_data", lambda task, data_dir=None: data)
    [out] = run.train_task("mvsa-single", model, [0], out=tmp_path / "runs", text_encoder="tiny-bert",
                           image_encoder="tiny-resnet", overrides=overrides, max_length=16,
                           cache_dir=tmp_path / "cache", progress=False)
    return out


# ---- tiny checkpoints and the served page ----------------------------------------------------------------------

SENTIMENT = ["positive", "neutral", "negative"]
TASK = "mvsa-single"
CHROMIUM = Path("/usr/bin/chromium")
EXAMPLE = EXAMPLES / "beach.jpg"
METRICS = {"dev": {"fused": {"accuracy": 0.6, "weighted_f1": 0.58}},
           "test": {h: {"accuracy": 0.61, "weighted_f1": 0.6, "macro_f1": 0.5} for h in ("fused", "text", "image")}}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def make_checkpoint(root: Path, model: str, task: str = TASK, text: str = "tiny-bert",
                    image: str = "tiny-resnet", labels: list[str] = SENTIMENT, metrics: dict | None = None,
                    seed: int = 0, **config) -> Path:
    """A tiny random-initialised checkpoint in root/<task>/<model>/ (`config`: extra MultimodalClassifier fields,
    e.g. calibration)."""
    te, ie = create_text_encoder(text), create_image_encoder(image)
    dims = FeatureDims.of(te, ie).__dict__
    torch.manual_seed(seed)
    clf = MultimodalClassifier(model=model, task=task, labels=labels, text_encoder=text, image_encoder=image,
                               dims={**dims, "image_grid": list(dims["image_grid"])}, **config)
    card = f"---\nlicense: apache-2.0\n---\n# {model} test card\n\nA tiny random network for tests.\n"
    return save_checkpoint(clf, root / task / model, metrics=metrics or METRICS, card=card)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(root: Path, max_batch: int = 8) -> Iterator[tuple[str, object]]:
    """(url, demo): the app over the checkpoints in `root`, on a free local port, in this process."""
    from mmdemo.app import build_demo

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a small shared CPU: oversubscribed threads are several times slower
    demo = build_demo(root, EXAMPLES, max_batch=max_batch)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        yield url, demo
    finally:
        demo.close()
        torch.set_num_threads(before)


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A headless Debian Chromium (playwright's Browser); skips the test where it is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(f"Debian Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def pick(page, elem_id: str, option: str) -> None:
    """Choose `option` in the gr.Dropdown #elem_id, as a person does: open it, click the option."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def make_classifier(te, ie, model: str = "concat", **kw) -> MultimodalClassifier:
    """An untrained MultimodalClassifier of the sentiment task over the encoders te, ie."""
    return MultimodalClassifier(model=model, task="mvsa-single", labels=SENTIMENT, text_encoder=te.name,
                                image_encoder=ie.name, dims=FeatureDims.of(te, ie).to_dict(), **kw)


def features(te, ie, n: int = 3):
    """(TextFeatures, ImageFeatures) of n fixed captions and flat-colour images."""
    captions = ["good day", "what a terrible, awful experience today", "ok"][:n]
    images = [Image.new("RGB", (64, 64), (40 * i, 90, 200 - 40 * i)) for i in range(n)]
    return te.encode(captions, num_layers=min(4, te.num_layers)), ie.encode(images)


# ---- data files ------------------------------------------------------------------------------------------------

MEDIAEVAL_HEADER = "post_id\tpost_text\tuser_id\timage_id(s)\tusername\ttimestamp\tlabel"


def write(path: Path, content: str | bytes) -> Path:
    """Write a file (text as UTF-8), making its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def assert_group_disjoint(data: DatasetSplits) -> None:
    """No event and no image in two splits."""
    events = {name: {s.group for s in split} for name, split in data.splits().items()}
    images = {name: {s.image for s in split} for name, split in data.splits().items()}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not events[a] & events[b], (a, b, events[a] & events[b])
        assert not images[a] & images[b], (a, b)
