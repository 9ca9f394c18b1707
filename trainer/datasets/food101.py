"""UPMC Food-101 (Wang et al., ICME workshops 2015): recipe category from a food photo + the web page's title.

Layout of `root` (the release as unpacked):
    texts/train_titles.csv, texts/test_titles.csv   rows "image_name,text,label" (no header; a header
                                                    row starting with "image" is skipped)
    images/{train,test}/{label}/{image_name}
Labels are the sorted class names found in the data (101 in the release). The release has train
and test only: dev is a seeded 10% of train (`seed`, default 0).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

from trainer.datasets.base import (
    DatasetSplits,
    ReaderEntry,
    Sample,
    clean_text,
    decode_bytes,
    existing,
    make_splits,
    random_split,
)

LAYOUT = "texts/{train,test}_titles.csv (image_name,text,label) + images/{train,test}/{label}/{image_name}"


def read_food101(root: Path, seed: int = 0) -> DatasetSplits:
    root = Path(root)
    skipped: Counter = Counter()
    rows = {split: _read_rows(root / "texts" / f"{split}_titles.csv", skipped) for split in ("train", "test")}
    labels = sorted({label for split_rows in rows.values() for _, _, label in split_rows})
    index = {name: i for i, name in enumerate(labels)}

    samples: dict[str, list[Sample]] = {}
    for split, split_rows in rows.items():
        samples[split] = []
        for image_name, text, label in split_rows:
            # Image names are unique within a split only; the split makes the id unique.
            sample_id = f"{split}/{image_name}"
            image = existing(root / "images" / split / label / image_name)
            if image is None:
                skipped["missing_image"] += 1
                continue
            samples[split].append(Sample(sample_id, image, clean_text(text), index[label]))
    train, dev, _ = random_split(samples["train"], seed, fractions=(0.1, 0.0))
    return make_splits("food101", "food101", root, {"seed": seed}, train, dev, samples["test"], labels, False,
                       skipped)


def _read_rows(path: Path, skipped: Counter) -> list[tuple[str, str, str]]:
    rows, seen = [], set()
    for n, row in enumerate(csv.reader(io.StringIO(decode_bytes(path.read_bytes()), newline=""))):
        if not row:
            continue
        if n == 0 and row[0].strip().lower().startswith("image"):
            continue  # header
        if len(row) < 3 or not row[0].strip() or not row[-1].strip():
            skipped["bad_line"] += 1
            continue
        # A title with an unquoted comma spreads over several fields: the first is the image,
        # the last the label, everything between the text.
        image_name, label, text = row[0].strip(), row[-1].strip(), ",".join(row[1:-1])
        if image_name in seen:
            skipped["duplicate_id"] += 1
            continue
        seen.add(image_name)
        rows.append((image_name, text, label))
    return rows


ENTRIES = (ReaderEntry("food101", read_food101, LAYOUT),)
