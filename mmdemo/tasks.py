"""Task registry: what a task predicts (label names, single- or multi-label) and which reader loads it.

A task is independent of the network: every model in `mmdemo.models` can be trained on every task.
Readers live in `trainer.datasets` and are named here by string, so importing `mmdemo` never imports
the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    labels: tuple[str, ...]  # empty when the labels come from the data (hashtags: the frequent tags)
    multi_label: bool = False
    reader: str = ""  # key of trainer.datasets.READERS
    default_data_dir: str = ""  # relative to the repository root
    paper_metric: str = "weighted_f1"  # the F1 the papers report for this task
    reader_kwargs: dict = field(default_factory=dict)
    ordinal: bool = False  # labels listed in a meaningful order (sentiment positive..negative, ratings 1..5)
    # Judged on inputs of a kind training never saw (fake news: new events): the app offers first the network that
    # scores best there (its checkpoint's recorded Trust.judged), not the best on dev.
    judged_on_unseen: bool = False


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is registered twice")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None


register_task(Task(
    "mvsa-single", "Image-text sentiment of tweets (MVSA-Single, Niu et al. 2016)",
    ("positive", "neutral", "negative"), reader="mvsa",
    default_data_dir="../shared/datasets/mvsa-single", ordinal=True))
register_task(Task(
    "mvsa-multiple", "Image-text sentiment of tweets, three annotators (MVSA-Multiple)",
    ("positive", "neutral", "negative"), reader="mvsa", default_data_dir="data/mvsa-multiple",
    reader_kwargs={"multiple": True}, ordinal=True))
register_task(Task(
    "mediaeval2016", "Fake vs real image use in tweets (MediaEval 2016 Verifying Multimedia Use)",
    ("real", "fake"), reader="mediaeval2016", default_data_dir="../shared/datasets/mediaeval2016",
    paper_metric="macro_f1", judged_on_unseen=True))
register_task(Task(
    "hashtags", "Hashtag recommendation from image + caption (multi-label; tags from MVSA-Single)",
    (), multi_label=True, reader="hashtags-mvsa", default_data_dir="../shared/datasets/mvsa-single",
    paper_metric="precision@1"))
register_task(Task(
    "harrison", "Hashtag recommendation, HARRISON/CACNet-style lists (multi-label)",
    (), multi_label=True, reader="harrison", default_data_dir="data/harrison", paper_metric="precision@1"))
register_task(Task(
    "hfm", "Sarcasm detection in tweets (HFM, Cai et al. 2019)",
    ("not-sarcastic", "sarcastic"), reader="hfm", default_data_dir="data/hfm", paper_metric="macro_f1"))
register_task(Task(
    "tumemo", "Emotion of Tumblr posts (TumEmo, Yang et al. 2020)",
    ("angry", "bored", "calm", "fearful", "happy", "loving", "sad"), reader="tumemo",
    default_data_dir="data/tumemo"))
register_task(Task(
    "weibo", "Fake news detection on Weibo (Jin et al. 2017)",
    ("real", "fake"), reader="weibo", default_data_dir="data/weibo", paper_metric="macro_f1"))
register_task(Task(
    "yelp", "Review rating from text + photos (Yelp multimodal reviews)",
    ("1", "2", "3", "4", "5"), reader="yelp", default_data_dir="data/yelp", ordinal=True))
register_task(Task(
    "cmcd-i", "Tweet topic classification, 18 categories (CMCD-I, as used by HGLNet)",
    (), reader="cmcd", default_data_dir="data/cmcd-i"))
register_task(Task(
    "food101", "Recipe category from image + text (UPMC Food-101)",
    (), reader="food101", default_data_dir="data/food101", paper_metric="accuracy"))
