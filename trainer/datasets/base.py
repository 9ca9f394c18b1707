"""Common types and helpers of the dataset readers.

A reader turns one published on-disk layout into a `DatasetSplits`: three lists of `Sample`s
(image path + caption + label), the label names, and how many raw items it dropped and why.
Readers only check that image files exist (cheap); decoding errors are counted later by the
feature extractor.

Each reader module declares `ENTRIES` (`ReaderEntry`: the key that `mmdemo.tasks.Task.reader` names, the
function, the layout it expects); `trainer.datasets` lists the modules and builds `READERS` from them. A reader
is called as `READERS[key](root, **task.reader_kwargs, **user_kwargs)`; `load_task_data` does that for a task
name, with `root` from `task_data_dir` (an explicit folder, else the task's folder under `data_root()`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmdemo.inputs import FALLBACK_ENCODINGS, clean_text, decode_bytes, decode_text

# Bump when a reader's output changes for the same files (it is part of every `version`).
READER_VERSION = "1"

SPLIT_NAMES = ("train", "dev", "test")

Label = int | tuple[int, ...]


@dataclass(frozen=True)
class Sample:
    id: str  # unique within the dataset
    image: Path | None  # None when the post has no image file (readers drop and count those)
    text: str  # caption, always a valid str
    label: Label  # class index; for multi-label a sorted tuple of label indices
    group: str = ""  # event / source used for group splits (mediaeval: event name)


@dataclass
class DatasetSplits:
    name: str
    train: list[Sample]
    dev: list[Sample]
    test: list[Sample]
    labels: list[str]  # index = class id
    multi_label: bool
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> samples dropped by the reader
    version: str = ""  # short content hash, a cache key for features computed from these splits

    def splits(self) -> dict[str, list[Sample]]:
        return {"train": self.train, "dev": self.dev, "test": self.test}

    def __len__(self) -> int:
        return len(self.train) + len(self.dev) + len(self.test)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def label_counts(self, split: str) -> list[int]:
        """Samples per label in one split (multi-label: a sample counts once for each of its labels)."""
        counts = [0] * len(self.labels)
        for sample in self.splits()[split]:
            for index in label_indices(sample.label):
                counts[index] += 1
        return counts

    def validate(self) -> None:
        """Raise ValueError on duplicate ids or labels out of range: reader bugs, not data problems."""
        seen: set[str] = set()
        for split, samples in self.splits().items():
            for sample in samples:
                if sample.id in seen:
                    raise ValueError(f"{self.name}: sample id {sample.id!r} occurs twice (in {split})")
                seen.add(sample.id)
                if self.multi_label != isinstance(sample.label, tuple):
                    raise ValueError(f"{self.name}: label {sample.label!r} of {sample.id!r} does not match "
                                     f"multi_label={self.multi_label}")
                indices = label_indices(sample.label)
                if any(not 0 <= i < len(self.labels) for i in indices):
                    raise ValueError(f"{self.name}: label {sample.label!r} of {sample.id!r} is out of range")
                if self.multi_label and (not indices or list(indices) != sorted(set(indices))):
                    raise ValueError(f"{self.name}: multi-label {sample.label!r} of {sample.id!r} must be a "
                                     "non-empty sorted tuple without repeats")

    def describe(self) -> str:
        """Counts per split and per label, and the reader's skipped counts, as a small table."""
        kind = "multi-label" if self.multi_label else "single-label"
        lines = [f"{self.name}: {len(self)} samples, {len(self.labels)} labels ({kind}), version {self.version}"]
        width = max([len("total")] + [len(name) for name in self.labels])
        lines.append(f"  {'':<{width}} " + " ".join(f"{s:>7}" for s in SPLIT_NAMES))
        lines.append(f"  {'total':<{width}} " + " ".join(f"{len(self.splits()[s]):>7}" for s in SPLIT_NAMES))
        per_split = {s: self.label_counts(s) for s in SPLIT_NAMES}
        for index, name in enumerate(self.labels):
            lines.append(f"  {name:<{width}} " + " ".join(f"{per_split[s][index]:>7}" for s in SPLIT_NAMES))
        skipped = ", ".join(f"{reason}={n}" for reason, n in sorted(self.skipped.items())) or "none"
        lines.append(f"  skipped: {skipped}")
        return "\n".join(lines)


def label_indices(label: Label) -> tuple[int, ...]:
    return label if isinstance(label, tuple) else (label,)


# ---------------------------------------------------------------------------------------------
# Text decoding

# Decoding lives in mmdemo.inputs so the app and the readers decode captions the same way.


def read_text_file(path: Path) -> str:
    """A caption file decoded robustly; "" when the file is missing."""
    try:
        return decode_text(path.read_bytes())
    except OSError:
        return ""


def read_lines(path: Path) -> list[str]:
    """Lines of a text file, each decoded robustly on its own (one bad line does not spoil the file)."""
    return [decode_bytes(line).rstrip("\r") for line in path.read_bytes().split(b"\n")]


# ---------------------------------------------------------------------------------------------
# Building splits


def random_split(samples: Iterable[Sample], seed: int, fractions: tuple[float, float] = (0.1, 0.1)
                 ) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Seeded (train, dev, test) split; dev and test take `fractions` of the samples.

    Samples are sorted by id before shuffling, so the split depends on the seed and the set of
    samples only, not on the order of lines in the annotation files.
    """
    samples = list(samples)
    ids = sorted(s.id for s in samples)
    random.Random(seed).shuffle(ids)
    n_dev = round(len(ids) * fractions[0])
    n_test = round(len(ids) * fractions[1])
    dev_ids, test_ids = set(ids[:n_dev]), set(ids[n_dev:n_dev + n_test])
    # Each part keeps the input order.
    train = [s for s in samples if s.id not in dev_ids and s.id not in test_ids]
    return train, [s for s in samples if s.id in dev_ids], [s for s in samples if s.id in test_ids]


def compute_version(reader: str, root: Path, kwargs: dict, labels: Sequence[str],
                    splits: dict[str, list[Sample]]) -> str:
    """Short sha1 over the reader's output (ids, image paths relative to root, texts, labels, split).

    Hashing what the reader produced covers every input that changes it (annotation files, which
    images exist, reader arguments, reader code through READER_VERSION) and stays stable when the
    dataset folder moves. Image bytes are not hashed: replace an image in place and the feature
    cache will not notice.
    """
    digest = hashlib.sha1()
    header = {"reader_version": READER_VERSION, "reader": reader, "labels": list(labels),
              "kwargs": {k: kwargs[k] for k in sorted(kwargs)}}
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for split in SPLIT_NAMES:
        for s in splits[split]:
            image = "" if s.image is None else _relative(s.image, root)
            record = [split, s.id, image, s.text, list(label_indices(s.label)), s.group]
            digest.update(json.dumps(record, ensure_ascii=False).encode())
            digest.update(b"\n")
    return digest.hexdigest()[:12]


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def make_splits(name: str, reader: str, root: Path, kwargs: dict, train: list[Sample], dev: list[Sample],
                test: list[Sample], labels: Sequence[str], multi_label: bool,
                skipped: Counter) -> DatasetSplits:
    """Assemble, validate and version a reader's output."""
    splits = {"train": train, "dev": dev, "test": test}
    result = DatasetSplits(
        name=name, train=train, dev=dev, test=test, labels=list(labels), multi_label=multi_label,
        skipped={reason: n for reason, n in sorted(skipped.items()) if n},
        version=compute_version(reader, root, kwargs, labels, splits))
    result.validate()
    return result


class ImageIndex:
    """Existence checks for the image files of one folder, listed once instead of stat-ing each path.

    Keys are file names; `by_stem` also finds a file by its name without extension, lower-cased,
    for releases that name images after URLs with varying extensions (Weibo).
    """

    def __init__(self, folder: Path, recursive: bool = False):
        self.folder = folder
        files = folder.rglob("*") if recursive else folder.glob("*")
        self.paths: dict[str, Path] = {}
        self.stems: dict[str, Path] = {}
        if folder.is_dir():
            for path in sorted(files):
                if path.is_file():
                    key = path.relative_to(folder).as_posix() if recursive else path.name
                    self.paths[key] = path
                    self.stems.setdefault(path.stem.lower(), path)

    def get(self, name: str) -> Path | None:
        return self.paths.get(name)

    def by_stem(self, stem: str) -> Path | None:
        return self.stems.get(stem.lower())

    def __len__(self) -> int:
        return len(self.paths)


def existing(path: Path) -> Path | None:
    return path if path.is_file() else None


# ---------------------------------------------------------------------------------------------
# Registry entries and the data root

Reader = Callable[..., DatasetSplits]


@dataclass(frozen=True)
class ReaderEntry:
    """What a reader module declares in its `ENTRIES`; trainer.datasets lists the modules and builds `READERS`."""

    key: str  # what `mmdemo.tasks.Task.reader` names
    read: Reader  # called as read(root, **task.reader_kwargs, **user_kwargs)
    layout: str  # one paragraph: the files it expects under root


DATA_ENV = "MMDEMO_DATA"
# The library names a dataset's folder (`Task.dataset`); where those folders are is the trainer's setting. This
# default is the layout of the repository's own checkout, next to it: ../shared/datasets.
DEFAULT_DATA_ROOT = Path(os.path.normpath(Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"))


def data_root() -> Path:
    """The folder that holds the datasets' folders (mvsa-single/, mediaeval2016/, ...): $MMDEMO_DATA when set,
    else DEFAULT_DATA_ROOT."""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT)


def task_data_dir(task_name: str, data_dir: str | Path | None = None) -> Path:
    """The folder a task reads: `data_dir` (that dataset's own folder, `--data-dir`) if given, else the task's
    dataset folder under `data_root()`."""
    from mmdemo.tasks import get_task

    task = get_task(task_name)
    if data_dir is not None:
        return Path(data_dir)
    return data_root() / task.dataset
