"""A small synthetic image + caption task that tiny encoders learn in seconds (shared by the trainer tests)."""

import random

from PIL import Image

from trainer.datasets import DatasetSplits, Sample

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
    from mmdemo.encoders import FeatureDims
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
