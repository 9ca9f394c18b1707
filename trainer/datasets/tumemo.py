"""TumEmo: emotion of Tumblr image + text posts (Yang et al., MVAN 2020 / MGNNS, ACL 2021).

Two layouts of `root`; (a) wins when both are present.

(a) The MGNNS release (github.com/YangXiaocui1215/MGNNS, its `data/` folder), the split used by the
    papers that report TumEmo numbers:
        all_anno_json/{train,val,test}_all_anno.json   JSON lines: {"id": "82578", "text": "...",
                                                        "image": "data/image_data/val_image/82578.jpg",
                                                        "label": "fear", ...}
        image_data/{train,val,test}_image/{id}.jpg
    "image" is relative to the MGNNS repository, whose `data/` is `root`; it is looked up as
    root/image, then without its leading "data/", then as image_data/{split}_image/{id}.jpg.

(b) The unsplit release:
        all_data_id_and_label.txt   header line, then "id label" per line (label "Angry", ...)
        data/{id}.txt, data/{id}.jpg
    with a seeded 8:1:1 random split (`seed`, default 0).

Label names in the files ("fear", "Love", ...) map case-insensitively onto LABELS; unknown ones are
dropped ("bad_label").
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from trainer.datasets.base import (
    DatasetSplits,
    ReaderEntry,
    Sample,
    clean_text,
    existing,
    make_splits,
    random_split,
    read_lines,
    read_text_file,
)

LABELS = ["angry", "bored", "calm", "fearful", "happy", "loving", "sad"]
ALIASES = {"anger": "angry", "fear": "fearful", "love": "loving", "boredom": "bored", "sadness": "sad"}
SPLIT_FILES = {"train": "train_all_anno.json", "val": "val_all_anno.json", "test": "test_all_anno.json"}

LAYOUT = ("(a) all_anno_json/{train,val,test}_all_anno.json (JSON lines with id, text, image, label) + "
          "image_data/{split}_image/{id}.jpg, as in the MGNNS repository's data/; or (b) "
          "all_data_id_and_label.txt + data/{id}.txt + data/{id}.jpg")


def label_index(name: str) -> int | None:
    name = name.strip().lower()
    name = ALIASES.get(name, name)
    return LABELS.index(name) if name in LABELS else None


def read_tumemo(root: Path, seed: int = 0) -> DatasetSplits:
    root = Path(root)
    skipped: Counter = Counter()
    if (root / "all_anno_json").is_dir():
        seen: set[str] = set()
        train, dev, test = (_read_anno(root, split, f, seen, skipped) for split, f in SPLIT_FILES.items())
        kwargs: dict = {}
    elif (root / "all_data_id_and_label.txt").is_file():
        train, dev, test = random_split(_read_unsplit(root, skipped), seed)
        kwargs = {"seed": seed}
    else:
        raise FileNotFoundError(f"{root}: neither all_anno_json/ nor all_data_id_and_label.txt found. "
                                f"Expected layout: {LAYOUT}")
    return make_splits("tumemo", "tumemo", root, kwargs, train, dev, test, LABELS, False, skipped)


def _resolve_image(root: Path, split: str, sample_id: str, image: str) -> Path | None:
    candidates = []
    if image:
        candidates.append(root / image)
        if image.startswith("data/"):
            candidates.append(root / image[len("data/"):])
    candidates.append(root / "image_data" / f"{split}_image" / f"{sample_id}.jpg")
    return next((path for path in candidates if path.is_file()), None)


def _read_anno(root: Path, split: str, file_name: str, seen: set[str], skipped: Counter) -> list[Sample]:
    samples = []
    for line in read_lines(root / "all_anno_json" / file_name):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            sample_id = str(item["id"]).strip()
            label = label_index(str(item["label"]))
        except (ValueError, KeyError, TypeError):
            skipped["bad_line"] += 1
            continue
        if label is None:
            skipped["bad_label"] += 1
            continue
        if sample_id in seen:
            skipped["duplicate_id"] += 1
            continue
        image = _resolve_image(root, split, sample_id, str(item.get("image") or ""))
        if image is None:
            skipped["missing_image"] += 1
            continue
        seen.add(sample_id)
        text = item.get("text")
        samples.append(Sample(sample_id, image, clean_text(text) if isinstance(text, str) else "", label))
    return samples


def _read_unsplit(root: Path, skipped: Counter) -> list[Sample]:
    samples, seen = [], set()
    for line in read_lines(root / "all_data_id_and_label.txt")[1:]:  # first line is a header
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            skipped["bad_line"] += 1
            continue
        sample_id, label = fields[0], label_index(fields[1])
        if label is None:
            skipped["bad_label"] += 1
            continue
        if sample_id in seen:
            skipped["duplicate_id"] += 1
            continue
        image = existing(root / "data" / f"{sample_id}.jpg")
        if image is None:
            skipped["missing_image"] += 1
            continue
        seen.add(sample_id)
        samples.append(Sample(sample_id, image, read_text_file(root / "data" / f"{sample_id}.txt"), label))
    return samples


ENTRIES = (ReaderEntry("tumemo", read_tumemo, LAYOUT),)
