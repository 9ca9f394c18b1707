"""Yelp multimodal restaurant reviews (VistaNet, Truong & Lauw, AAAI 2019; github.com/PreferredAI/vista-net).

Layout of `root` (the VistaNet data release):
    train.json, valid.json          JSON lines: {"_id": ..., "Text": "...", "Photos": [{"_id": ...}, ...],
                                    "Rating": 1..5, ...}; sentences in Text are separated by "|||"
    test/{city}_test.json           one test file per city ("Boston", "Los Angeles", ...), same fields;
                                    a single test.json is read instead when test/ is missing
    photos/{id[:2]}/{id}.jpg        (photos/{id}.jpg is accepted too)

Label = Rating - 1 (labels "1".."5"). A review keeps the first of its photos whose file exists
(VistaNet attends over up to 3; this library takes one image per sample); reviews with none are
dropped ("no_image"). group = the test file's city; "" for train and dev.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from trainer.datasets.base import DatasetSplits, ReaderEntry, Sample, clean_text, existing, make_splits, read_lines

LABELS = ["1", "2", "3", "4", "5"]
SENTENCE_DELIMITER = "|||"

LAYOUT = ("train.json, valid.json, test/{city}_test.json (or test.json): JSON lines with Text, Photos "
          "[{_id}], Rating + photos/{id[:2]}/{id}.jpg")


def read_yelp(root: Path) -> DatasetSplits:
    root = Path(root)
    skipped: Counter = Counter()
    seen: set[str] = set()
    train = _read_reviews(root, root / "train.json", "", seen, skipped)
    dev = _read_reviews(root, root / "valid.json", "", seen, skipped)
    test_files = sorted((root / "test").glob("*_test.json")) if (root / "test").is_dir() else []
    test = []
    for path in test_files or [root / "test.json"]:
        city = path.name[:-len("_test.json")] if path.name.endswith("_test.json") else ""
        test += _read_reviews(root, path, city, seen, skipped)
    return make_splits("yelp", "yelp", root, {}, train, dev, test, LABELS, False, skipped)


def _photo_path(root: Path, photo_id: str) -> Path | None:
    return existing(root / "photos" / photo_id[:2] / f"{photo_id}.jpg") or existing(root / "photos" / f"{photo_id}.jpg")


def _read_reviews(root: Path, path: Path, city: str, seen: set[str], skipped: Counter) -> list[Sample]:
    samples = []
    for n, line in enumerate(read_lines(path)):
        if not line.strip():
            continue
        try:
            review = json.loads(line)
            rating = int(review["Rating"])
            photos = [str(p["_id"]) for p in review.get("Photos") or []]
        except (ValueError, KeyError, TypeError):
            skipped["bad_line"] += 1
            continue
        if not 1 <= rating <= 5:
            skipped["bad_label"] += 1
            continue
        # Reviews without an _id get one from their file and line.
        review_id = str(review.get("_id") or f"{path.stem}:{n}")
        if review_id in seen:
            skipped["duplicate_id"] += 1
            continue
        image = next((p for p in (_photo_path(root, photo) for photo in photos) if p is not None), None)
        if image is None:
            skipped["no_image"] += 1
            continue
        seen.add(review_id)
        text = review.get("Text") if isinstance(review.get("Text"), str) else ""
        samples.append(Sample(review_id, image, clean_text(text.replace(SENTENCE_DELIMITER, " ")), rating - 1, city))
    return samples


ENTRIES = (ReaderEntry("yelp", read_yelp, LAYOUT),)
