"""Task registry: what a task predicts (label names, single- or multi-label) and which reader loads it.

A task is independent of the network: every model in `mmdemo.models` can be trained on every task.
Readers live in `trainer.datasets` and are named here by string, so importing `mmdemo` never imports
the trainer. A task names its dataset's folder, not where that folder is: the trainer finds it under its data
root (`--data-dir`, `MMDEMO_DATA`; trainer/datasets/base.py). `TASKS` below is the one list of tasks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    labels: tuple[str, ...]  # empty when the labels come from the data (hashtags: the frequent tags)
    multi_label: bool = False
    reader: str = ""  # key of trainer.datasets.READERS
    dataset: str = ""  # the dataset's folder under the trainer's data root (several tasks may read one)
    paper_metric: str = "weighted_f1"  # the F1 the papers report for this task
    reader_kwargs: dict = field(default_factory=dict)
    ordinal: bool = False  # labels listed in a meaningful order (sentiment positive..negative, ratings 1..5)
    # Judged on inputs of a kind training never saw (fake news: new events): the app offers first the network that
    # scores best there (its checkpoint's recorded Trust.judged), not the best on dev.
    judged_on_unseen: bool = False


TASKS: dict[str, Task] = {task.name: task for task in (
    Task(
        "mvsa-single", "Image-text sentiment of tweets (MVSA-Single, Niu et al. 2016)",
        ("positive", "neutral", "negative"), reader="mvsa",
        dataset="mvsa-single", ordinal=True),
    Task(
        "mvsa-multiple", "Image-text sentiment of tweets, three annotators (MVSA-Multiple)",
        ("positive", "neutral", "negative"), reader="mvsa", dataset="mvsa-multiple",
        reader_kwargs={"multiple": True}, ordinal=True),
    Task(
        "mediaeval2016", "Fake vs real image use in tweets (MediaEval 2016 Verifying Multimedia Use)",
        ("real", "fake"), reader="mediaeval2016", dataset="mediaeval2016",
        paper_metric="macro_f1", judged_on_unseen=True),
    Task(
        "hashtags", "Hashtag recommendation from image + caption (multi-label; tags from MVSA-Single)",
        (), multi_label=True, reader="hashtags-mvsa", dataset="mvsa-single",
        paper_metric="precision@1"),
    Task(
        "harrison", "Hashtag recommendation, HARRISON/CACNet-style lists (multi-label)",
        (), multi_label=True, reader="harrison", dataset="harrison", paper_metric="precision@1"),
    Task(
        "hfm", "Sarcasm detection in tweets (HFM, Cai et al. 2019)",
        ("not-sarcastic", "sarcastic"), reader="hfm", dataset="hfm", paper_metric="macro_f1"),
    Task(
        "tumemo", "Emotion of Tumblr posts (TumEmo, Yang et al. 2020)",
        ("angry", "bored", "calm", "fearful", "happy", "loving", "sad"), reader="tumemo",
        dataset="tumemo"),
    Task(
        "weibo", "Fake news detection on Weibo (Jin et al. 2017)",
        ("real", "fake"), reader="weibo", dataset="weibo", paper_metric="macro_f1"),
    Task(
        "yelp", "Review rating from text + photos (Yelp multimodal reviews)",
        ("1", "2", "3", "4", "5"), reader="yelp", dataset="yelp", ordinal=True),
    Task(
        "cmcd-i", "Tweet topic classification, 18 categories (CMCD-I, as used by HGLNet)",
        (), reader="cmcd", dataset="cmcd-i"),
    Task(
        "food101", "Recipe category from image + text (UPMC Food-101)",
        (), reader="food101", dataset="food101", paper_metric="accuracy"),
)}


_registering = threading.Lock()


def register_task(task: Task) -> Task:
    """Add a task that `TASKS` does not list (your own data, a test)."""
    with _registering:
        if task.name in TASKS:
            raise ValueError(f"task {task.name!r} is registered twice")
        TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
