"""CMCD-I: topic classification of image + text tweets into 18 categories (as used by HGLNet).

No loader for CMCD-I is published with a fixed file layout, so this reader defines one, a plain
CSV export that any copy of the data converts to in a few lines:
    {train,dev,test}.csv    header with at least the columns id, text, image, label
                            (dev.csv may be named valid.csv or val.csv)
    image                   path relative to root, or a file name inside root/images/
Label names come from the data: the sorted set of the label column over all splits (numerically
when every label is an integer). Without a dev file, dev is a seeded 10% of train (`seed`).
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

COLUMNS = ("id", "text", "image", "label")
DEV_NAMES = ("dev.csv", "valid.csv", "val.csv")

LAYOUT = "{train,dev,test}.csv with columns id,text,image,label (image relative to the folder or in images/)"


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file with a header, decoded robustly."""
    return list(csv.DictReader(io.StringIO(decode_bytes(path.read_bytes()), newline="")))


def sorted_label_names(names: set[str]) -> list[str]:
    if names and all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def read_cmcd(root: Path, seed: int = 0) -> DatasetSplits:
    root = Path(root)
    dev_path = next((root / n for n in DEV_NAMES if (root / n).is_file()), None)
    rows = {"train": read_csv_rows(root / "train.csv"), "test": read_csv_rows(root / "test.csv"),
            "dev": read_csv_rows(dev_path) if dev_path else []}
    for split, split_rows in rows.items():
        missing = [c for c in COLUMNS if split_rows and c not in split_rows[0]]
        if missing:
            raise ValueError(f"{root}: {split} file lacks the columns {missing}; expected {list(COLUMNS)}")
    labels = sorted_label_names({(r["label"] or "").strip() for rs in rows.values() for r in rs} - {""})
    index = {name: i for i, name in enumerate(labels)}

    skipped: Counter = Counter()
    seen: set[str] = set()
    samples = {split: _samples(root, split_rows, index, seen, skipped) for split, split_rows in rows.items()}
    train, dev, test = samples["train"], samples["dev"], samples["test"]
    kwargs: dict = {}
    if dev_path is None:
        train, dev, _ = random_split(train, seed, fractions=(0.1, 0.0))
        kwargs = {"seed": seed}
    return make_splits("cmcd-i", "cmcd", root, kwargs, train, dev, test, labels, False, skipped)


def _samples(root: Path, rows: list[dict[str, str]], index: dict[str, int], seen: set[str],
             skipped: Counter) -> list[Sample]:
    samples = []
    for row in rows:
        sample_id, label, image_name = ((row.get(c) or "").strip() for c in ("id", "label", "image"))
        if not sample_id or not label:
            skipped["bad_line"] += 1
            continue
        if sample_id in seen:
            skipped["duplicate_id"] += 1
            continue
        image = (existing(root / image_name) or existing(root / "images" / image_name)) if image_name else None
        if image is None:
            skipped["missing_image"] += 1
            continue
        seen.add(sample_id)
        samples.append(Sample(sample_id, image, clean_text(row.get("text") or ""), index[label]))
    return samples


ENTRIES = (ReaderEntry("cmcd", read_cmcd, LAYOUT),)
