"""Weibo rumour / fake-news detection (Jin et al., ACM MM 2017), in the layout used by EANN (KDD 2018),
MCAN and HMCAN (github.com/yaqingwang/EANN-KDD18, data/weibo/dataformat.txt):

    tweets/train_nonrumor.txt, tweets/train_rumor.txt, tweets/test_nonrumor.txt, tweets/test_rumor.txt
        three lines per post:
          1. "tweet id|user name|tweet url|...": 15 "|"-separated metadata fields, the id first
          2. "image1 url|image2 url|null": image URLs ("null" is a placeholder)
          3. the text (may be empty)
    nonrumor_images/, rumor_images/   images named after the last part of their URL

As in EANN, an image is found by its URL's file name without extension, case-insensitively, in
either image folder; the post gets the first URL that has a file. Posts without one are dropped
("no_image"). Rumour = fake (1), non-rumour = real (0). The release has train and test only:
dev is a seeded 10% of train (`seed`, default 0), drawn per class so both keep the class ratio.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from trainer.datasets.base import (
    DatasetSplits,
    ImageIndex,
    ReaderEntry,
    Sample,
    clean_text,
    make_splits,
    read_lines,
)

LABELS = ["real", "fake"]
FILES = {("train", 0): "train_nonrumor.txt", ("train", 1): "train_rumor.txt",
         ("test", 0): "test_nonrumor.txt", ("test", 1): "test_rumor.txt"}

LAYOUT = ("tweets/{train,test}_{nonrumor,rumor}.txt (3 lines per post: 'id|...' metadata, image urls "
          "'url|url|null', text) + nonrumor_images/ and rumor_images/ named after the url's last part")


def read_weibo(root: Path, seed: int = 0, dev_fraction: float = 0.1) -> DatasetSplits:
    root = Path(root)
    images = _image_index(root)
    skipped: Counter = Counter()
    seen: set[str] = set()
    by_split: dict[str, list[Sample]] = {"train": [], "test": []}
    for (split, label), file_name in FILES.items():
        by_split[split] += _read_posts(root / "tweets" / file_name, label, images, seen, skipped)
    train, dev = _split_dev(by_split["train"], seed, dev_fraction)
    return make_splits("weibo", "weibo", root, {"seed": seed, "dev_fraction": dev_fraction}, train, dev,
                       by_split["test"], LABELS, False, skipped)


def _image_index(root: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for folder in ("nonrumor_images", "rumor_images"):
        for stem, path in ImageIndex(root / folder).stems.items():
            index.setdefault(stem, path)
    return index


def _read_posts(path: Path, label: int, images: dict[str, Path], seen: set[str],
                skipped: Counter) -> list[Sample]:
    lines = read_lines(path)
    if lines and lines[-1] == "":
        lines.pop()  # after the final newline
    while len(lines) % 3 and not lines[-1].strip():
        lines.pop()  # extra blank lines at the end (a post's last line, its text, may be blank)
    if len(lines) % 3:
        skipped["bad_line"] += len(lines) % 3  # a truncated last post
    samples = []
    for start in range(0, len(lines) - len(lines) % 3, 3):
        meta, urls, text = lines[start:start + 3]
        post_id = meta.split("|", 1)[0].strip()
        if not post_id:
            skipped["bad_line"] += 1
            continue
        if post_id in seen:
            skipped["duplicate_id"] += 1
            continue
        image = next((images[stem] for stem in _url_stems(urls) if stem in images), None)
        if image is None:
            skipped["no_image"] += 1
            continue
        seen.add(post_id)
        samples.append(Sample(post_id, image, clean_text(text), label))
    return samples


def _url_stems(urls: str) -> list[str]:
    """'http://ww3.sinaimg.cn/mw690/abc.jpg|null|' -> ['abc']"""
    stems = []
    for url in urls.split("|"):
        url = url.strip()
        if url and url.lower() != "null":
            stems.append(url.rsplit("/", 1)[-1].split(".", 1)[0].lower())
    return stems


def _split_dev(train: list[Sample], seed: int, fraction: float) -> tuple[list[Sample], list[Sample]]:
    """Hold out `fraction` of each class of train as dev, seeded."""
    rng = random.Random(seed)
    dev_ids: set[str] = set()
    for label in range(len(LABELS)):
        ids = sorted(s.id for s in train if s.label == label)
        rng.shuffle(ids)
        dev_ids.update(ids[:round(len(ids) * fraction)])
    return [s for s in train if s.id not in dev_ids], [s for s in train if s.id in dev_ids]


ENTRIES = (ReaderEntry("weibo", read_weibo, LAYOUT),)
