"""Hashtag recommendation: multi-label tasks whose labels are hashtags.

"hashtags-mvsa" builds the task from the MVSA tweets (either MVSA layout, see `mvsa.py`), with the
same train/dev/test ids as the sentiment split:
  * hashtags are "#" + a word with at least one letter (Twitter's rule), case-folded: "#Love" -> "#love";
    "#ebay#world" is two tags;
  * every hashtag token is removed from the caption, inline ones too ("I #love it" -> "I it"), so the
    text never contains the answer; the words of a hashtag are not kept;
  * labels are the tags on >= `min_count` train posts (default 10), most frequent first, ties by
    name, at most `max_labels` (default 50); a tag only in dev/test is never a label;
    MVSA-Single's tags are sparse, so no threshold leaves several test posts per tag (at 20 the most
    frequent train tag, #love, has 1 of its 65 posts in test and 7 of the 24 tags none); what a threshold
    buys is test posts for the per-post metrics (P@k, A@k): 20 -> 24 tags, 352/38/33 train/dev/test posts;
    10 -> the 50 tags on >= 11 train posts (the cap binds), 601/68/61 posts;
  * posts without any label tag are dropped ("no_label_tag").

"harrison" reads HARRISON (Park et al. 2016) / CACNet-style lists from `root`:
    data_list.txt      one image path per line, relative to root
    tag_list.txt       space-separated tags of the same line's image ("#" optional)
    caption_list.txt   optional, one caption per line (HARRISON itself has none: text is "")
    vocab.txt          optional fixed vocabulary, one tag per line (HARRISON's 1k tags); otherwise
                       the labels are the tags on >= `min_count` images of the whole set (default 20),
                       most frequent first, at most `max_labels` (default: no cap)
  Images without a vocabulary tag are dropped ("no_label_tag"); a seeded 8:1:1 split (`seed`).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from trainer.datasets.base import (
    DatasetSplits,
    ReaderEntry,
    Sample,
    clean_text,
    make_splits,
    random_split,
    read_lines,
)
from trainer.datasets.mvsa import read_mvsa

# A run of hashtags: "#" not preceded by a word character or "&" (HTML entities like "&#39;"), then
# words joined by "#": "#ebay#world" is two tags, as its author meant (removing only "#ebay" would
# leave "#world" in the caption).
HASHTAG_RUN = re.compile(r"(?<![\w&])#\w+(?:#\w+)*")
_LETTER = re.compile(r"[^\W\d_]")


def _run_tags(run: str) -> list[str]:
    """'#Love#2015#x' -> ['#love', '#x']: tags need a letter ("#1" is not a tag, as on Twitter)."""
    return ["#" + word.casefold() for word in run[1:].split("#") if _LETTER.search(word)]


def extract_hashtags(text: str) -> list[str]:
    """Case-folded hashtags of a caption, in order of first occurrence, without repeats."""
    return list(dict.fromkeys(tag for run in HASHTAG_RUN.findall(text) for tag in _run_tags(run)))


def remove_hashtags(text: str) -> str:
    """The caption without its hashtag runs (a run without any tag, like "#1", stays)."""
    return clean_text(HASHTAG_RUN.sub(lambda m: " " if _run_tags(m.group()) else m.group(), text))


def frequent_tags(tag_lists: list[list[str]], min_count: int, max_labels: int | None) -> list[str]:
    """Tags on >= min_count items, most frequent first, ties by name, at most max_labels."""
    counts = Counter(tag for tags in tag_lists for tag in set(tags))
    ranked = sorted((tag for tag, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
    return ranked[:max_labels] if max_labels is not None else ranked


def _encode(tags: list[str], index: dict[str, int]) -> tuple[int, ...]:
    return tuple(sorted({index[t] for t in tags if t in index}))


MVSA_HASHTAGS_LAYOUT = ("an MVSA folder, either layout of the 'mvsa' reader; the labels are "
                        "the frequent hashtags of the captions.")


def read_hashtags_mvsa(root: Path, min_count: int = 10, max_labels: int | None = 50, multiple: bool = False,
                       seed: int = 0) -> DatasetSplits:
    root = Path(root)
    source = read_mvsa(root, multiple=multiple, seed=seed)
    tags = {s.id: extract_hashtags(s.text) for split in source.splits().values() for s in split}
    labels = frequent_tags([tags[s.id] for s in source.train], min_count, max_labels)
    index = {tag: i for i, tag in enumerate(labels)}

    skipped = Counter(source.skipped)
    splits: dict[str, list[Sample]] = {}
    for name, samples in source.splits().items():
        splits[name] = []
        for s in samples:
            label = _encode(tags[s.id], index)
            if not label:
                skipped["no_label_tag"] += 1
                continue
            splits[name].append(Sample(s.id, s.image, remove_hashtags(s.text), label, s.group))
    kwargs = {"min_count": min_count, "max_labels": max_labels, "multiple": multiple, "seed": seed}
    return make_splits("hashtags-mvsa", "hashtags-mvsa", root, kwargs, splits["train"], splits["dev"],
                       splits["test"], labels, True, skipped)


HARRISON_LAYOUT = ("data_list.txt (image path per line, relative to the folder) + tag_list.txt (space-separated "
                   "tags per line, same order) + optional caption_list.txt and vocab.txt.")


def read_harrison(root: Path, min_count: int = 20, max_labels: int | None = None, seed: int = 0) -> DatasetSplits:
    root = Path(root)
    images = [line.strip() for line in read_lines(root / "data_list.txt")]
    tag_lines = read_lines(root / "tag_list.txt")
    caption_path = root / "caption_list.txt"
    captions = read_lines(caption_path) if caption_path.is_file() else []
    # Trailing empty lines (a final newline) are not items.
    while images and not images[-1]:
        images.pop()
    skipped: Counter = Counter()

    items = []  # (line number, image path, tags, caption)
    for i, image_name in enumerate(images):
        if not image_name:
            skipped["bad_line"] += 1
            continue
        tags = _normalise_tags(tag_lines[i]) if i < len(tag_lines) else []
        caption = clean_text(captions[i]) if i < len(captions) else ""
        image = root / image_name
        if not image.is_file():
            skipped["missing_image"] += 1
            continue
        items.append((i, image, tags, caption))

    vocab_path = root / "vocab.txt"
    if vocab_path.is_file():
        vocab = [_normalise_tags(line)[:1] for line in read_lines(vocab_path)]
        labels = list(dict.fromkeys(tag[0] for tag in vocab if tag))
    else:
        labels = frequent_tags([tags for _, _, tags, _ in items], min_count, max_labels)
    index = {tag: i for i, tag in enumerate(labels)}

    samples = []
    for i, image, tags, caption in items:
        label = _encode(tags, index)
        if not label:
            skipped["no_label_tag"] += 1
            continue
        # The line number is the id: HARRISON's file names repeat across its per-tag folders.
        samples.append(Sample(str(i), image, caption, label))
    train, dev, test = random_split(samples, seed)
    kwargs = {"min_count": min_count, "max_labels": max_labels, "seed": seed, "vocab": vocab_path.is_file()}
    return make_splits("harrison", "harrison", root, kwargs, train, dev, test, labels, True, skipped)


def _normalise_tags(line: str) -> list[str]:
    """'#Love  cute ' -> ['#love', '#cute'] (the same '#tag' form as hashtags-mvsa)."""
    return list(dict.fromkeys("#" + t.lstrip("#").casefold() for t in line.split() if t.lstrip("#")))


ENTRIES = (ReaderEntry("hashtags-mvsa", read_hashtags_mvsa, MVSA_HASHTAGS_LAYOUT),
           ReaderEntry("harrison", read_harrison, HARRISON_LAYOUT))
