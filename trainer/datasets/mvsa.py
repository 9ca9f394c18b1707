"""MVSA-Single and MVSA-Multiple (Niu et al., MMM 2016): sentiment of image + text tweets.

Two published layouts are read from `root`; (a) wins when both are present.

(a) CLMLF-style splits (Li et al., NAACL 2022; the copy in ../shared/datasets/mvsa-single):
        splits/{train,dev,test}.json   [{"id": "17", "text": "...", "emotion_label": 0}, ...]
        data/{id}.jpg
    Labels 0 positive, 1 neutral, 2 negative. The caption is the split file's cleaned text;
    data/{id}.txt (decoded robustly) only when an item has no text.

(b) the original release (MVSA_Single/ or MVSA/ as downloaded):
        data/{id}.jpg, data/{id}.txt
        labelResultAll.txt   Single:   header "ID<TAB>text,image", lines "17<TAB>positive,neutral"
                             Multiple: header "ID<TAB>text,image<TAB>text,image<TAB>text,image"
    Text and image labels are merged as in Xu & Mao (CIKM 2017) and CLMLF: per annotator, equal
    labels give that label; neutral with positive/negative gives the non-neutral one; positive
    against negative is a conflict. Single: conflicting pairs are dropped. Multiple: the label is
    the majority (>= 2 of 3) of the annotators' merged labels (a conflicting annotator casts no
    vote); without a majority the pair is dropped. The release has no split, so a seeded 8:1:1
    random split is made (`seed`, default 0); dev and test are 10% each.
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

LABELS = ["positive", "neutral", "negative"]
SPLIT_FILES = {"train": "train.json", "dev": "dev.json", "test": "test.json"}

LAYOUT = ("(a) splits/{train,dev,test}.json with items {id, text, emotion_label} (0 positive, 1 neutral, "
          "2 negative) + data/{id}.jpg; or (b) the original release: data/{id}.jpg + data/{id}.txt + "
          "labelResultAll.txt ('ID<TAB>text,image' per annotator).")


def read_mvsa(root: Path, multiple: bool = False, seed: int = 0) -> DatasetSplits:
    root = Path(root)
    name = "mvsa-multiple" if multiple else "mvsa-single"
    kwargs = {"multiple": multiple, "seed": seed}
    skipped: Counter = Counter()
    if (root / "splits" / SPLIT_FILES["train"]).is_file():
        kwargs.pop("seed")  # the split files fix the split
        train, dev, test = (_read_split_file(root, root / "splits" / f, skipped) for f in SPLIT_FILES.values())
    elif (root / "labelResultAll.txt").is_file():
        samples = _read_original_release(root, multiple, skipped)
        train, dev, test = random_split(samples, seed)
    else:
        raise FileNotFoundError(f"{root}: neither splits/train.json nor labelResultAll.txt found. "
                                f"Expected layout: {LAYOUT}")
    return make_splits(name, "mvsa", root, kwargs, train, dev, test, LABELS, False, skipped)


def _read_split_file(root: Path, path: Path, skipped: Counter) -> list[Sample]:
    samples = []
    for item in json.loads(path.read_bytes()):
        sample_id = str(item.get("id", "")).strip()
        label = item.get("emotion_label")
        if not sample_id or str(label) not in {"0", "1", "2"}:
            skipped["bad_item"] += 1
            continue
        image = existing(root / "data" / f"{sample_id}.jpg")
        if image is None:
            skipped["missing_image"] += 1
            continue
        text = clean_text(item["text"]) if isinstance(item.get("text"), str) else ""
        if not text:
            text = read_text_file(root / "data" / f"{sample_id}.txt")
        samples.append(Sample(sample_id, image, text, int(label)))
    return samples


def merge_text_image(text_label: str, image_label: str) -> str | None:
    """One annotator's text and image labels -> one label, or None when they conflict."""
    if text_label == image_label:
        return text_label
    if text_label == "neutral":
        return image_label
    if image_label == "neutral":
        return text_label
    return None  # positive against negative


def majority(labels: list[str | None]) -> str | None:
    """The label at least two annotators agree on, else None."""
    votes = Counter(label for label in labels if label is not None)
    if not votes:
        return None
    label, count = votes.most_common(1)[0]
    return label if count >= 2 else None


def _read_original_release(root: Path, multiple: bool, skipped: Counter) -> list[Sample]:
    n_annotators = 3 if multiple else 1
    samples = []
    for line in read_lines(root / "labelResultAll.txt"):
        fields = line.strip().split("\t")
        if not line.strip() or fields[0].strip().upper() == "ID":
            continue  # blank line or header
        pairs = [tuple(p.strip().lower() for p in field.split(",")) for field in fields[1:]]
        if len(pairs) != n_annotators or any(len(p) != 2 or not set(p) <= set(LABELS) for p in pairs):
            skipped["bad_line"] += 1
            continue
        merged = [merge_text_image(text_label, image_label) for text_label, image_label in pairs]
        label = majority(merged) if multiple else merged[0]
        if label is None:
            skipped["no_majority" if multiple else "conflicting_labels"] += 1
            continue
        sample_id = fields[0].strip()
        image = existing(root / "data" / f"{sample_id}.jpg")
        if image is None:
            skipped["missing_image"] += 1
            continue
        text = read_text_file(root / "data" / f"{sample_id}.txt")
        samples.append(Sample(sample_id, image, text, LABELS.index(label)))
    return samples


ENTRIES = (ReaderEntry("mvsa", read_mvsa, LAYOUT),)
