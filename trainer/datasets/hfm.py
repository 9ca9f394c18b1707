"""HFM / MMSD sarcasm detection in tweets (Cai et al., ACL 2019;
github.com/headacheboy/data-of-multimodal-sarcasm-detection).

Layout of `root` (the repository, with the images unpacked next to `text/`):
    text/train.txt     one Python list literal per line: ['682716753374351360', 'tweet text', 1]
    text/valid2.txt    ['id', 'tweet text', hashtag_label, human_label]
    text/test2.txt     same as valid2.txt
    dataset_image/{id}.jpg
The label is the last element of each list (text/Readme.MD: in valid/test the one before it is the
label from the hashtags, the last is the human-checked one); 1 = sarcastic. Lines are parsed with
ast.literal_eval only, never eval or pickle.

Like the authors' loader (codes/loadData.py), tweets whose whitespace tokens include one of
FILTER_WORDS are dropped ("keyword_filter"; `keyword_filter=False` keeps them): words such as
"sarcasm" label the tweet by themselves.
"""

from __future__ import annotations

import ast
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

LABELS = ["not-sarcastic", "sarcastic"]
SPLIT_FILES = {"train": "train.txt", "dev": "valid2.txt", "test": "test2.txt"}
FILTER_WORDS = frozenset({"sarcasm", "sarcastic", "reposting", "<url>", "joke", "humour", "humor", "jokes",
                          "irony", "ironic", "exgag"})

LAYOUT = ("text/{train,valid2,test2}.txt with one Python list literal per line ['id', 'text', ..., label] "
          "+ dataset_image/{id}.jpg")


def read_hfm(root: Path, keyword_filter: bool = True) -> DatasetSplits:
    root = Path(root)
    images = ImageIndex(root / "dataset_image")
    skipped: Counter = Counter()
    seen: set[str] = set()
    splits = {name: _read_split(root / "text" / f, images, keyword_filter, seen, skipped)
              for name, f in SPLIT_FILES.items()}
    return make_splits("hfm", "hfm", root, {"keyword_filter": keyword_filter}, splits["train"], splits["dev"],
                       splits["test"], LABELS, False, skipped)


def parse_line(line: str) -> tuple[str, str, int] | None:
    """"['id', 'text', ..., label]" -> (id, text, label), or None when the line is not such a list."""
    try:
        item = ast.literal_eval(line)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not isinstance(item, (list, tuple)) or len(item) < 3 or not isinstance(item[1], str):
        return None
    label = item[-1]
    if isinstance(label, bool) or not isinstance(label, int) or label not in (0, 1):
        return None
    return str(item[0]).strip(), item[1], label


def _read_split(path: Path, images: ImageIndex, keyword_filter: bool, seen: set[str],
                skipped: Counter) -> list[Sample]:
    samples = []
    for line in read_lines(path):
        if not line.strip():
            continue
        parsed = parse_line(line.strip())
        if parsed is None or not parsed[0]:
            skipped["bad_line"] += 1
            continue
        sample_id, text, label = parsed
        if keyword_filter and FILTER_WORDS & set(text.split()):
            skipped["keyword_filter"] += 1
            continue
        if sample_id in seen:
            skipped["duplicate_id"] += 1
            continue
        image = images.get(f"{sample_id}.jpg")
        if image is None:
            skipped["missing_image"] += 1
            continue
        seen.add(sample_id)
        samples.append(Sample(sample_id, image, clean_text(text), label))
    return samples


ENTRIES = (ReaderEntry("hfm", read_hfm, LAYOUT),)
