"""MediaEval 2016 "Verifying Multimedia Use" (Boididou et al.): is the image of a tweet used fake or real?

Layout of `root` (the task's dev-set release):
    posts.txt                 TSV, header "post_id post_text user_id image_id(s) username timestamp label",
                              label "fake" or "real"; image_id(s) comma-separated
    images/{image_id}.jpg

A post gets the first of its image ids whose file exists; posts with none are dropped ("no_image":
some ids are videos or were never downloaded). An image id names its event before the first "_"
(boston_fake_03 -> boston).

Many posts share one image and the events differ in style, so the split is by event, never by post:
no event and hence no image occurs in two splits. Defaults on the shared copy (posts with an image):
    dev  = eclipse, garissa    143 fake / 211 real
    test = nepal, malaysia     666 fake / 1004 real
    train = the 11 other events (sandy, boston, samurai, sochi, ...)   6747 fake / 4645 real
Both classes occur in every split; the two held-out sets are events with both classes, plus one
fake-only event in test (malaysia), like the task's own held-out events. `leave_out="nepal"`
gives leave-one-event-out: that event is test, dev is the first two of LEAVE_OUT_DEV_EVENTS that
differ from it (or of `validation_events`), train is the rest. `leave_out=""` leaves no event out: dev is those validation events, test is
empty and train is every other event (what a checkpoint measured by leave-one-event-out is trained on).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
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

LABELS = ["real", "fake"]  # order of mmdemo.tasks: index 1 = fake
DEFAULT_DEV_EVENTS = ("eclipse", "garissa")
DEFAULT_TEST_EVENTS = ("nepal", "malaysia")
LEAVE_OUT_DEV_EVENTS = ("eclipse", "garissa", "boston")  # events with both classes
# MediaEval 2015 shipped Hurricane Sandy images in two batches; they are one event.
EVENT_ALIASES = {"sandyA": "sandy", "sandyB": "sandy"}

LAYOUT = ("posts.txt (TSV with header 'post_id post_text user_id image_id(s) username timestamp label', "
          "label fake/real) + images/{image_id}.jpg; the event is the image id before the first '_'.")


def event_of(image_id: str) -> str:
    prefix = image_id.split("_", 1)[0]
    return EVENT_ALIASES.get(prefix, prefix)


def read_mediaeval(root: Path, dev_events: Sequence[str] | None = None, test_events: Sequence[str] | None = None,
                   leave_out: str | None = None, validation_events: Sequence[str] | None = None) -> DatasetSplits:
    root = Path(root)
    if leave_out is not None:
        test_events = test_events or ((leave_out,) if leave_out else ())
        candidates = tuple(validation_events or LEAVE_OUT_DEV_EVENTS)
        dev_events = dev_events or tuple(e for e in candidates if e != leave_out)[:2]
    dev_events = tuple(dev_events or DEFAULT_DEV_EVENTS)
    test_events = tuple(DEFAULT_TEST_EVENTS if test_events is None else test_events)
    if set(dev_events) & set(test_events):
        raise ValueError(f"events {sorted(set(dev_events) & set(test_events))} are both dev and test events")

    skipped: Counter = Counter()
    samples = _read_posts(root, skipped)
    known = {s.group for s in samples}
    unknown = sorted(set(dev_events + test_events) - known)
    if unknown:
        raise ValueError(f"unknown events {unknown}; events with images: {', '.join(sorted(known))}")

    train = [s for s in samples if s.group not in dev_events + test_events]
    dev = [s for s in samples if s.group in dev_events]
    test = [s for s in samples if s.group in test_events]
    # Holds by construction (an image id names its event); checked because leakage here is silent.
    for a, b in ((train, dev), (train, test), (dev, test)):
        assert not {s.image for s in a} & {s.image for s in b}, "an image occurs in two splits"
    kwargs = {"dev_events": dev_events, "test_events": test_events}
    return make_splits("mediaeval2016", "mediaeval2016", root, kwargs, train, dev, test, LABELS, False, skipped)


def _read_posts(root: Path, skipped: Counter) -> list[Sample]:
    images = ImageIndex(root / "images")
    lines = read_lines(root / "posts.txt")
    header = [h.strip() for h in lines[0].split("\t")]
    if header != ["post_id", "post_text", "user_id", "image_id(s)", "username", "timestamp", "label"]:
        raise ValueError(f"{root / 'posts.txt'}: unexpected header {header}")
    samples, seen = [], set()
    for line in lines[1:]:
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            skipped["bad_line"] += 1
            continue
        post_id, text, _, image_ids, _, _, label = (f.strip() for f in fields)
        if label not in LABELS:
            skipped["bad_label"] += 1
            continue
        if post_id in seen:
            skipped["duplicate_id"] += 1
            continue
        image_id = next((i for i in (i.strip() for i in image_ids.split(",")) if images.get(f"{i}.jpg")), None)
        if image_id is None:
            skipped["no_image"] += 1
            continue
        seen.add(post_id)
        samples.append(Sample(post_id, images.get(f"{image_id}.jpg"), clean_text(text), LABELS.index(label),
                              group=event_of(image_id)))
    return samples


ENTRIES = (ReaderEntry("mediaeval2016", read_mediaeval, LAYOUT),)
