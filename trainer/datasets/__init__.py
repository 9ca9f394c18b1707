"""Dataset readers: published on-disk layouts -> `DatasetSplits` of (image path, caption, label) samples.

    from trainer.datasets import load_task_data
    data = load_task_data("mvsa-single")        # $MMDEMO_DATA/mvsa-single, else ../shared/datasets/mvsa-single
    print(data.describe())

Each module reads one published format, says which in its docstring and declares its readers in `ENTRIES`;
importing a module registers nothing. `FORMATS` below is the one list of reader modules, and `READERS` / `LAYOUTS`
are built from it while this package is imported (atomic under Python's import lock). A new format is one module
plus its line in `FORMATS`.
"""

from __future__ import annotations

from pathlib import Path

from trainer.datasets import cmcd, food101, hashtags, hfm, mediaeval, mvsa, tumemo, weibo, yelp
from trainer.datasets.base import (
    DATA_ENV,
    DEFAULT_DATA_ROOT,
    FALLBACK_ENCODINGS,
    READER_VERSION,
    DatasetSplits,
    Reader,
    ReaderEntry,
    Sample,
    clean_text,
    data_root,
    decode_text,
    random_split,
    task_data_dir,
)

FORMATS = (cmcd, food101, hashtags, hfm, mediaeval, mvsa, tumemo, weibo, yelp)

READERS: dict[str, Reader] = {}
LAYOUTS: dict[str, str] = {}  # reader key -> one-paragraph description of the expected files
for _format in FORMATS:
    for _entry in _format.ENTRIES:
        if _entry.key in READERS:
            raise ValueError(f"reader {_entry.key!r} is declared twice")
        READERS[_entry.key], LAYOUTS[_entry.key] = _entry.read, _entry.layout
del _format, _entry


def load_task_data(task_name: str, data_dir: str | Path | None = None, **kwargs) -> DatasetSplits:
    """Read the data of a registered task: resolves the Task, its folder (`task_data_dir`) and reader, calls the
    reader.

    `kwargs` override the task's `reader_kwargs` (e.g. `seed=1`, `min_count=10`, `leave_out="nepal"`).
    """
    from mmdemo.tasks import get_task

    task = get_task(task_name)
    if task.reader not in READERS:
        raise KeyError(f"task {task_name!r} names reader {task.reader!r}, which is not registered; "
                       f"known readers: {', '.join(sorted(READERS))}")
    root = task_data_dir(task_name, data_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"data for task {task_name!r} not found: {root} is not a directory. Pass data_dir=... (the trainer's "
            f"--data-dir), set {DATA_ENV} to a folder holding {task.dataset}/, or put the dataset there. "
            f"Expected layout ({task.reader}): {LAYOUTS[task.reader]}")
    splits = READERS[task.reader](root, **{**task.reader_kwargs, **kwargs})
    if task.labels and tuple(splits.labels) != task.labels:
        raise ValueError(f"reader {task.reader!r} returned labels {splits.labels}, but task {task_name!r} "
                         f"declares {list(task.labels)}")
    splits.name = task.name
    return splits


__all__ = [
    "DATA_ENV", "DEFAULT_DATA_ROOT", "FALLBACK_ENCODINGS", "FORMATS", "LAYOUTS", "READER_VERSION", "READERS",
    "DatasetSplits", "ReaderEntry", "Sample", "clean_text", "data_root", "decode_text", "load_task_data",
    "random_split", "task_data_dir",
]
