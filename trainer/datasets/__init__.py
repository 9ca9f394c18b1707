"""Dataset readers: published on-disk layouts -> `DatasetSplits` of (image path, caption, label) samples.

    from trainer.datasets import load_task_data
    data = load_task_data("mvsa-single")        # default folder of the task, see mmdemo.tasks
    print(data.describe())

Each module reads one published format and says which in its docstring; importing the package
registers all of them in `READERS`.
"""

from trainer.datasets import cmcd, food101, hashtags, hfm, mediaeval, mvsa, tumemo, weibo, yelp  # noqa: F401  (register)
from trainer.datasets.base import (
    FALLBACK_ENCODINGS,
    LAYOUTS,
    READER_VERSION,
    READERS,
    DatasetSplits,
    Sample,
    clean_text,
    decode_text,
    load_task_data,
    random_split,
    task_data_dir,
)

__all__ = [
    "FALLBACK_ENCODINGS", "LAYOUTS", "READER_VERSION", "READERS", "DatasetSplits", "Sample", "clean_text",
    "decode_text", "load_task_data", "random_split", "task_data_dir",
]
