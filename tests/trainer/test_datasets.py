"""Tests of trainer.datasets: every reader on a tiny fixture in its published layout, plus the real
copies in ../shared/datasets (skipped only where that folder is absent)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from mmdemo.tasks import TASKS
from trainer.datasets import READERS, DatasetSplits, Sample, decode_text, load_task_data, random_split, task_data_dir
from trainer.datasets.hashtags import extract_hashtags, remove_hashtags
from trainer.datasets.hfm import parse_line
from trainer.datasets.mediaeval import event_of
from trainer.datasets.mvsa import majority, merge_text_image
from tests.helpers import MEDIAEVAL_HEADER, REPO_ROOT, assert_group_disjoint, write

POS, NEU, NEG = 0, 1, 2


# ---------------------------------------------------------------------------------------------
# Fixture helpers


def write_jpeg(path: Path, color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), color).save(path, "JPEG")
    return path


def ids(samples: list[Sample]) -> set[str]:
    return {s.id for s in samples}


def by_id(data: DatasetSplits) -> dict[str, Sample]:
    return {s.id: s for split in data.splits().values() for s in split}


# ---------------------------------------------------------------------------------------------
# Text decoding and shared helpers


def test_decode_text_utf8_bom_and_whitespace():
    assert decode_text("\ufeffhello\n\t  world  ".encode("utf-8")) == "hello world"
    assert decode_text("caf\u00e9 \u2026".encode("utf-8")) == "caf\u00e9 \u2026"
    assert decode_text(b"a\x00b\x07c\r\nd") == "a b c d"


def test_decode_text_invalid_utf8_falls_back():
    # MVSA's non-UTF-8 captions are GBK: b"\xa1\xad" is the ellipsis.
    assert decode_text(b"Can't wait \xa1\xad \n") == "Can't wait \u2026"
    # cp1252 / latin-1 text: an accented letter before a space is not valid GBK.
    assert decode_text(b"caf\xe9 au lait") == "caf\u00e9 au lait"
    assert decode_text(b"\x93quoted\x94 ") == "\u201cquoted\u201d"


def test_decode_text_never_raises():
    for raw in (bytes(range(256)), b"\xff\xfe\xfa", b"\x81", b"", b"\xe9"):
        assert isinstance(decode_text(raw), str)


def test_random_split_is_seeded_disjoint_and_8_1_1():
    samples = [Sample(str(i), None, "", 0) for i in range(100)]
    train, dev, test = random_split(samples, seed=0)
    assert (len(train), len(dev), len(test)) == (80, 10, 10)
    assert ids(train) | ids(dev) | ids(test) == ids(samples)
    assert not (ids(train) & ids(dev) or ids(train) & ids(test) or ids(dev) & ids(test))
    assert ids(random_split(list(reversed(samples)), seed=0)[1]) == ids(dev)  # independent of input order
    assert ids(random_split(samples, seed=1)[1]) != ids(dev)


def test_validate_rejects_duplicate_ids_and_bad_labels():
    a = Sample("1", None, "", 0)
    with pytest.raises(ValueError, match="twice"):
        DatasetSplits("x", [a], [a], [], ["a", "b"], False).validate()
    with pytest.raises(ValueError, match="out of range"):
        DatasetSplits("x", [Sample("1", None, "", 5)], [], [], ["a", "b"], False).validate()
    with pytest.raises(ValueError, match="sorted"):
        DatasetSplits("x", [Sample("1", None, "", (1, 0))], [], [], ["a", "b"], True).validate()


def test_every_task_has_a_reader():
    for task in TASKS.values():
        assert task.reader in READERS, task.name


def test_load_task_data_missing_dir_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as error:
        load_task_data("weibo", data_dir=missing)
    message = str(error.value)
    assert "'weibo'" in message and str(missing) in message and "rumor" in message


def test_a_task_names_its_folder_and_the_trainer_finds_it_under_the_data_root(tmp_path, monkeypatch):
    from trainer.datasets import DATA_ENV, DEFAULT_DATA_ROOT

    repo = REPO_ROOT
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert DEFAULT_DATA_ROOT == repo.parent / "shared" / "datasets"  # the checkout's own layout, no ".." left in
    assert task_data_dir("mvsa-single") == DEFAULT_DATA_ROOT / "mvsa-single"
    assert task_data_dir("hashtags") == DEFAULT_DATA_ROOT / "mvsa-single"  # two tasks, one dataset
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert task_data_dir("mediaeval2016") == tmp_path / "mediaeval2016"
    assert task_data_dir("mediaeval2016", tmp_path / "mine") == tmp_path / "mine"  # --data-dir: the folder itself
    mine = READERS["mvsa"](make_mvsa_splits(tmp_path / "mvsa-single"))
    assert load_task_data("mvsa-single").version == mine.version  # read from $MMDEMO_DATA/mvsa-single
    with pytest.raises(FileNotFoundError, match=DATA_ENV):
        load_task_data("weibo")


def test_the_library_does_not_know_where_the_data_is():
    """mmdemo names dataset folders; the repository layout (../shared, REPO_ROOT) is the trainer's business."""
    source = (REPO_ROOT / "mmdemo" / "tasks.py").read_text()
    assert "shared" not in source and "data_dir" not in source and "/" not in "".join(t.dataset for t in TASKS.values())


# ---------------------------------------------------------------------------------------------
# MVSA


def make_mvsa_splits(root: Path) -> Path:
    """CLMLF layout: splits/*.json + data/{id}.jpg (+ data/{id}.txt)."""
    items = {
        "train": [("1", "I #Love this", POS), ("2", "rainy #sad day #Love", NEG), ("3", None, NEU),
                  ("4", "#love #happy", POS), ("9", "no image here", POS)],
        "dev": [("5", "#happy again", POS), ("6", "#unseen tag", NEU)],
        "test": [("7", "#sad and #love", NEG)],
    }
    for split, rows in items.items():
        data = []
        for sample_id, text, label in rows:
            item = {"id": sample_id, "emotion_label": label}
            if text is not None:
                item["text"] = text
            data.append(item)
            if sample_id != "9":
                write_jpeg(root / "data" / f"{sample_id}.jpg")
        write(root / "splits" / f"{split}.json", json.dumps(data))
    write(root / "data" / "3.txt", b"fallback caption \xa1\xad")
    return root


def test_mvsa_split_files(tmp_path):
    data = READERS["mvsa"](make_mvsa_splits(tmp_path))
    assert data.name == "mvsa-single" and data.labels == ["positive", "neutral", "negative"]
    assert [len(s) for s in data.splits().values()] == [4, 2, 1]
    assert data.skipped == {"missing_image": 1}
    samples = by_id(data)
    assert samples["3"].text == "fallback caption \u2026"  # no text in the split file: data/3.txt
    assert samples["2"].label == NEG and samples["2"].image == tmp_path / "data" / "2.jpg"
    assert "total" in data.describe() and "missing_image=1" in data.describe()


def test_mvsa_merge_rules():
    assert merge_text_image("positive", "positive") == "positive"
    assert merge_text_image("neutral", "positive") == "positive"
    assert merge_text_image("negative", "neutral") == "negative"
    assert merge_text_image("positive", "negative") is None
    assert majority(["positive", None, "positive"]) == "positive"
    assert majority(["positive", "negative", None]) is None
    assert majority(["neutral", "positive", "negative"]) is None


def make_mvsa_original(root: Path, multiple: bool) -> Path:
    if multiple:
        lines = ["ID\ttext,image\ttext,image\ttext,image",
                 "1\tpositive,positive\tneutral,negative\tpositive,neutral",  # pos, neg, pos -> pos
                 "2\tpositive,negative\tnegative,negative\tpositive,positive",  # -, neg, pos -> drop
                 "3\tneutral,neutral\tneutral,positive\tnegative,neutral",  # neu, pos, neg -> drop
                 "4\tnegative,negative\tnegative,neutral\tpositive,positive",  # neg, neg, pos -> neg
                 "5\tneutral,neutral\tneutral,neutral\tpositive,negative",  # neu, neu, - -> neu
                 "6\tpositive,positive"]  # one annotator only: bad line
    else:
        lines = ["ID\ttext,image", "1\tpositive,positive", "2\tneutral,positive", "3\tnegative,neutral",
                 "4\tpositive,negative", "5\tneutral,neutral", "6\tpositive", "7\tnegative,negative",
                 "8\tpositive,neutral", "9\tneutral,negative", "10\tpositive,positive", "11\tnegative,negative",
                 "12\tneutral,neutral"]
    write(root / "labelResultAll.txt", "\n".join(lines) + "\n")
    for i in range(1, 13):
        if i != 12:
            write_jpeg(root / "data" / f"{i}.jpg")
        write(root / "data" / f"{i}.txt", f"caption {i}\n")
    write(root / "data" / "1.txt", b"invalid \xff\xfe utf-8 \xe9 caption\n")
    return root


def test_mvsa_original_single_merge_and_drop(tmp_path):
    data = READERS["mvsa"](make_mvsa_original(tmp_path, multiple=False))
    assert data.skipped == {"bad_line": 1, "conflicting_labels": 1, "missing_image": 1}
    samples = by_id(data)
    assert set(samples) == {"1", "2", "3", "5", "7", "8", "9", "10", "11"}
    assert samples["2"].label == POS  # neutral text + positive image -> positive
    assert samples["3"].label == NEG  # negative text + neutral image -> negative
    assert samples["5"].label == NEU
    assert "4" not in samples  # positive text + negative image: conflicting, dropped
    assert isinstance(samples["1"].text, str) and samples["1"].text.startswith("invalid")
    assert samples["7"].text == "caption 7"
    # Seeded 8:1:1 split of the 9 kept pairs.
    assert [len(s) for s in data.splits().values()] == [7, 1, 1]
    again = READERS["mvsa"](tmp_path)
    assert ids(again.dev) == ids(data.dev) and again.version == data.version
    assert READERS["mvsa"](tmp_path, seed=3).version != data.version


def test_mvsa_original_multiple_majority_vote(tmp_path):
    data = READERS["mvsa"](make_mvsa_original(tmp_path, multiple=True), multiple=True)
    assert data.name == "mvsa-multiple"
    assert data.skipped == {"bad_line": 1, "no_majority": 2}
    assert {k: s.label for k, s in by_id(data).items()} == {"1": POS, "4": NEG, "5": NEU}


def test_mvsa_without_annotations_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="labelResultAll"):
        READERS["mvsa"](tmp_path)


# ---------------------------------------------------------------------------------------------
# MediaEval 2016

def make_mediaeval(root: Path) -> Path:
    posts = [  # (post id, image ids, label)
        ("1", "sandy_fake_01", "fake"), ("2", "sandy_real_01", "real"), ("3", "sandy_fake_01", "fake"),
        ("4", "boston_real_02", "real"), ("5", "boston_fake_03,boston_fake_04", "fake"),
        ("6", "eclipse_fake_01", "fake"), ("7", "eclipse_real_01", "real"), ("8", "garissa_real_01", "real"),
        ("9", "nepal_real_01", "real"), ("10", "nepal_fake_01", "fake"), ("11", "malaysia_fake_01", "fake"),
        ("12", "syrianboy_1", "fake"), ("13", "sandyB_real_05", "real"), ("14", "boston_fake_03", "maybe"),
    ]
    lines = [MEDIAEVAL_HEADER] + [f"{i}\tpost {i} #tag http://t.co/x\t99\t{images}\tuser\tWed Apr 17 2013\t{label}"
                                  for i, images, label in posts]
    lines.append("15\tbroken line with too few fields")
    write(root / "posts.txt", "\n".join(lines))  # no final newline, like the release
    for image_id in ("sandy_fake_01", "sandy_real_01", "boston_real_02", "boston_fake_04", "eclipse_fake_01",
                     "eclipse_real_01", "garissa_real_01", "nepal_real_01", "nepal_fake_01", "malaysia_fake_01",
                     "sandyB_real_05", "boston_fake_03"):
        if image_id != "boston_fake_03":
            write_jpeg(root / "images" / f"{image_id}.jpg")
    return root


def test_mediaeval_event_split(tmp_path):
    data = READERS["mediaeval2016"](make_mediaeval(tmp_path))
    assert data.labels == ["real", "fake"]
    assert data.skipped == {"bad_label": 1, "bad_line": 1, "no_image": 1}
    assert_group_disjoint(data)
    assert {s.group for s in data.dev} == {"eclipse", "garissa"}
    assert {s.group for s in data.test} == {"nepal", "malaysia"}
    assert {s.group for s in data.train} == {"sandy", "boston"}  # sandyB is the same event as sandy
    samples = by_id(data)
    assert samples["5"].image == tmp_path / "images" / "boston_fake_04.jpg"  # first id whose file exists
    assert samples["1"].label == 1 and samples["2"].label == 0
    assert samples["1"].text == "post 1 #tag http://t.co/x"


def test_mediaeval_leave_one_event_out_and_overrides(tmp_path):
    root = make_mediaeval(tmp_path)
    data = READERS["mediaeval2016"](root, leave_out="eclipse")
    assert {s.group for s in data.test} == {"eclipse"}
    assert {s.group for s in data.dev} == {"garissa", "boston"}
    assert_group_disjoint(data)
    data = READERS["mediaeval2016"](root, dev_events=["boston"], test_events=["sandy"])
    assert {s.group for s in data.train} == {"eclipse", "garissa", "nepal", "malaysia"}
    assert_group_disjoint(data)
    with pytest.raises(ValueError, match="unknown events"):
        READERS["mediaeval2016"](root, dev_events=["atlantis"])
    with pytest.raises(ValueError, match="both dev and test"):
        READERS["mediaeval2016"](root, dev_events=["nepal"], test_events=["nepal"])


def test_mediaeval_event_names():
    assert event_of("boston_fake_03") == "boston"
    assert event_of("columbianChemicals_fake_1") == "columbianChemicals"
    assert event_of("sandyA_fake_29") == "sandy"


# ---------------------------------------------------------------------------------------------
# Hashtags


def test_extract_and_remove_hashtags():
    text = "I #Love this! #love #happy_days &#39; #123 a#b (#Joy) #été #ebay#World#2015"
    assert extract_hashtags(text) == ["#love", "#happy_days", "#joy", "#été", "#ebay", "#world"]
    assert remove_hashtags(text) == "I this! &#39; #123 a#b ( )"


def test_hashtags_mvsa(tmp_path):
    root = make_mvsa_splits(tmp_path)
    data = READERS["hashtags-mvsa"](root, min_count=2)
    # Train tag counts (posts): #love 3, #happy 1, #sad 1 -> only #love is frequent.
    assert data.labels == ["#love"] and data.multi_label
    assert [len(s) for s in data.splits().values()] == [3, 0, 1]
    assert data.skipped == {"missing_image": 1, "no_label_tag": 3}
    samples = by_id(data)
    assert samples["1"].text == "I this" and samples["1"].label == (0,)
    assert samples["2"].text == "rainy day"
    assert samples["7"].text == "and"
    data = READERS["hashtags-mvsa"](root, min_count=1)
    assert data.labels == ["#love", "#happy", "#sad"]  # by frequency, then name; #unseen is dev-only
    assert by_id(data)["2"].label == (0, 2) and by_id(data)["5"].label == (1,)
    assert "#" not in " ".join(s.text for split in data.splits().values() for s in split)
    assert READERS["hashtags-mvsa"](root, min_count=1, max_labels=2).labels == ["#love", "#happy"]
    # Same ids in the same splits as the sentiment task.
    mvsa = READERS["mvsa"](root)
    for name, split in data.splits().items():
        assert ids(split) <= ids(mvsa.splits()[name])


def make_harrison(root: Path) -> Path:
    images = [f"instagram_dataset/{tag}/image_{i}.jpg" for i, tag in enumerate(["love"] * 6 + ["food"] * 4)]
    tags = ["love cute", "love", "#Love cute", "love me", "love", "love cute"] + ["food yum", "food", "food", "food"]
    for path in images[:-1]:  # the last image is missing
        write_jpeg(root / path)
    write(root / "data_list.txt", "\n".join(images) + "\n")
    write(root / "tag_list.txt", "\n".join(tags) + "\n")
    return root


def test_harrison(tmp_path):
    root = make_harrison(tmp_path)
    data = READERS["harrison"](root, min_count=3)
    assert data.labels == ["#love", "#cute", "#food"]
    assert data.skipped == {"missing_image": 1}
    assert len(data) == 9 and [len(s) for s in data.splits().values()] == [7, 1, 1]
    assert by_id(data)["2"].label == (0, 1) and by_id(data)["0"].label == (0, 1)
    assert all(s.text == "" for s in data.train)
    write(root / "vocab.txt", "food\nyum\n")
    write(root / "caption_list.txt", "\n".join(f"caption {i}" for i in range(10)))
    data = READERS["harrison"](root)
    assert data.labels == ["#food", "#yum"]
    assert data.skipped == {"missing_image": 1, "no_label_tag": 6}
    assert by_id(data)["6"].label == (0, 1) and by_id(data)["6"].text == "caption 6"


# ---------------------------------------------------------------------------------------------
# HFM sarcasm


def make_hfm(root: Path) -> Path:
    write(root / "text" / "train.txt", "\n".join([
        "['101', 'what a great day <user> # not', 1]",
        "['102', \"it 's raining again\", 0]",
        "['103', 'this is sarcasm obviously', 1]",  # keyword filter
        "__import__('os').system('touch PWNED')",  # never evaluated
        "['104', 'no image for this one', 0]",
    ]) + "\n")
    write(root / "text" / "valid2.txt", "['201', 'oh sure', 0, 1]\n['202', 'fine', 1, 0]\n")
    write(root / "text" / "test2.txt", b"['301', 'caf\xe9 bad bytes', 1, 1]\n['101', 'duplicate id', 0, 0]\n")
    for sample_id in ("101", "102", "103", "201", "202", "301"):
        write_jpeg(root / "dataset_image" / f"{sample_id}.jpg")
    return root


def test_hfm(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = READERS["hfm"](make_hfm(tmp_path))
    assert data.labels == ["not-sarcastic", "sarcastic"]
    assert data.skipped == {"bad_line": 1, "duplicate_id": 1, "keyword_filter": 1, "missing_image": 1}
    assert not (tmp_path / "PWNED").exists()
    samples = by_id(data)
    assert samples["201"].label == 1 and samples["202"].label == 0  # the last element, the human label
    assert samples["301"].text == "caf\u00e9 bad bytes"
    assert ids(data.train) == {"101", "102"}
    assert "103" in ids(READERS["hfm"](tmp_path, keyword_filter=False).train)


def test_hfm_parse_line_uses_literals_only():
    assert parse_line("['1', 'text', 0]") == ("1", "text", 0)
    assert parse_line("['1', 'text', 0, 1]") == ("1", "text", 1)
    assert parse_line("open('x').read()") is None
    assert parse_line("['1', 'text', 2]") is None
    assert parse_line("['1', 'text'") is None


# ---------------------------------------------------------------------------------------------
# TumEmo


def test_tumemo_mgnns_layout(tmp_path):
    rows = {"train": [("1", "angry"), ("2", "fear"), ("3", "Love"), ("4", "surprised")],
            "val": [("5", "bored")], "test": [("6", "sad"), ("7", "calm")]}
    for split, items in rows.items():
        lines = []
        for sample_id, label in items:
            image = f"data/image_data/{split}_image/{sample_id}.jpg"
            lines.append(json.dumps({"id": sample_id, "text": f"text {sample_id}", "image": image, "label": label,
                                     "places": [1], "objects": []}))
            if sample_id != "7":
                write_jpeg(tmp_path / "image_data" / f"{split}_image" / f"{sample_id}.jpg")
        write(tmp_path / "all_anno_json" / f"{split}_all_anno.json", "\n".join(lines) + "\n")
    data = READERS["tumemo"](tmp_path)
    assert data.labels == list(TASKS["tumemo"].labels)
    assert data.skipped == {"bad_label": 1, "missing_image": 1}
    assert [s.label for s in data.train] == [0, 3, 5]  # angry, fear -> fearful, Love -> loving
    assert ids(data.dev) == {"5"} and ids(data.test) == {"6"}


def test_tumemo_unsplit_release(tmp_path):
    labels = ["Angry", "Bored", "Calm", "Fear", "Happy", "Love", "Sad"] * 2
    lines = ["id label"] + [f"{i} {name}" for i, name in enumerate(labels)]
    write(tmp_path / "all_data_id_and_label.txt", "\n".join(lines) + "\n")
    for i in range(len(labels)):
        write_jpeg(tmp_path / "data" / f"{i}.jpg")
        write(tmp_path / "data" / f"{i}.txt", f"post {i}")
    data = READERS["tumemo"](tmp_path)
    assert data.skipped == {} and [len(s) for s in data.splits().values()] == [12, 1, 1]
    assert by_id(data)["3"].label == 3 and by_id(data)["3"].text == "post 3"


# ---------------------------------------------------------------------------------------------
# Weibo


def make_weibo(root: Path) -> Path:
    def post(post_id: str, urls: str, text: str) -> str:
        return f"{post_id}|user|http://weibo.com/x|u|2015|1|0|0|0|7|0|10|10|10|web\n{urls}\n{text}\n"

    files = {
        "train_nonrumor.txt": [post(f"n{i}", f"http://ww1.sinaimg.cn/mw690/N{i}.jpg|null|", f"真新闻 {i}")
                               for i in range(10)],
        "train_rumor.txt": [post(f"r{i}", f"http://ww2.sinaimg.cn/mw690/gone{i}.jpg|http://x/R{i}.gif|null|",
                                 f"谣言 {i}") for i in range(10)],
        "test_nonrumor.txt": [post("tn", "http://x/TN.jpg|null|", "")],
        "test_rumor.txt": [post("tr", "null|", "no image"), post("tr2", "http://x/TR2.jpg|null|", "text")],
    }
    for name, posts in files.items():
        write(root / "tweets" / name, "".join(posts))
    for i in range(10):
        write_jpeg(root / "nonrumor_images" / f"n{i}.jpg")
        write_jpeg(root / "rumor_images" / f"r{i}.gif")  # found by name without extension
    write_jpeg(root / "nonrumor_images" / "tn.jpg")
    write_jpeg(root / "rumor_images" / "tr2.jpg")
    return root


def test_weibo(tmp_path):
    data = READERS["weibo"](make_weibo(tmp_path))
    assert data.labels == ["real", "fake"]
    assert data.skipped == {"no_image": 1}
    assert len(data.train) == 18 and len(data.dev) == 2
    assert sorted(s.label for s in data.dev) == [0, 1]  # 10% of each class
    samples = by_id(data)
    assert samples["r3"].image == tmp_path / "rumor_images" / "r3.gif" and samples["r3"].label == 1
    assert samples["n2"].text == "真新闻 2" and samples["tn"].text == ""
    assert ids(data.test) == {"tn", "tr2"}
    assert ids(READERS["weibo"](tmp_path).dev) == ids(data.dev)


# ---------------------------------------------------------------------------------------------
# Yelp


def make_yelp(root: Path) -> Path:
    def review(review_id: str, rating: int, photos: list[str]) -> str:
        return json.dumps({"_id": review_id, "UserId": "u", "Text": "great food .|||slow service !",
                           "Photos": [{"_id": p, "Label": "food"} for p in photos], "Rating": rating})

    write(root / "train.json", "\n".join([review("a", 5, ["ph1"]), review("b", 1, ["missing", "ph2"]),
                                          review("c", 3, ["missing"]), "{not json"]) + "\n")
    write(root / "valid.json", review("d", 2, ["ph3"]) + "\n")
    write(root / "test" / "Boston_test.json", review("e", 4, ["ph4"]) + "\n")
    write(root / "test" / "Los Angeles_test.json", review("f", 5, ["ph5"]) + "\n")
    for photo in ("ph1", "ph2", "ph3", "ph4", "ph5"):
        write_jpeg(root / "photos" / photo[:2] / f"{photo}.jpg")
    return root


def test_yelp(tmp_path):
    data = READERS["yelp"](make_yelp(tmp_path))
    assert data.labels == ["1", "2", "3", "4", "5"]
    assert data.skipped == {"bad_line": 1, "no_image": 1}
    samples = by_id(data)
    assert samples["a"].label == 4 and samples["b"].label == 0
    assert samples["b"].image == tmp_path / "photos" / "ph" / "ph2.jpg"
    assert samples["a"].text == "great food . slow service !"
    assert {s.group for s in data.test} == {"Boston", "Los Angeles"} and samples["a"].group == ""


# ---------------------------------------------------------------------------------------------
# CMCD-I and UPMC Food-101


def test_cmcd(tmp_path):
    header = "id,text,image,label\n"
    rows = [f't{i},"text, {i}",images/t{i}.jpg,{"sports" if i % 2 else "news"}' for i in range(20)]
    rows.append("t99,no image,images/none.jpg,news")
    write(tmp_path / "train.csv", header + "\n".join(rows) + "\n")
    write(tmp_path / "test.csv", (header + "x1,caf\u00e9,x1.jpg,travel\n").encode("cp1252"))  # not UTF-8
    for i in range(20):
        write_jpeg(tmp_path / "images" / f"t{i}.jpg")
    write_jpeg(tmp_path / "images" / "x1.jpg")
    data = READERS["cmcd"](tmp_path)
    assert data.labels == ["news", "sports", "travel"]
    assert data.skipped == {"missing_image": 1}
    assert (len(data.train), len(data.dev), len(data.test)) == (18, 2, 1)
    assert by_id(data)["t1"].text == "text, 1" and by_id(data)["t1"].label == 1
    assert by_id(data)["x1"].text == "caf\u00e9"


def test_food101(tmp_path):
    rows = {"train": [(f"apple_pie_{i}.jpg", f"best apple pie {i}", "apple_pie") for i in range(10)]
            + [(f"sushi_{i}.jpg", f"sushi, recipe {i}", "sushi") for i in range(10)],
            "test": [("sushi_100.jpg", "sushi test", "sushi"), ("ramen_1.jpg", "ramen", "ramen")]}
    for split, split_rows in rows.items():
        lines = [f'{image},"{text}",{label}' for image, text, label in split_rows]
        write(tmp_path / "texts" / f"{split}_titles.csv", "\n".join(lines) + "\n")
        for image, _, label in split_rows:
            if image != "ramen_1.jpg":
                write_jpeg(tmp_path / "images" / split / label / image)
    data = READERS["food101"](tmp_path)
    assert data.labels == ["apple_pie", "ramen", "sushi"]
    assert data.skipped == {"missing_image": 1}
    assert (len(data.train), len(data.dev), len(data.test)) == (18, 2, 1)
    assert by_id(data)["train/sushi_3.jpg"].text == "sushi, recipe 3"
    assert by_id(data)["test/sushi_100.jpg"].label == 2


# ---------------------------------------------------------------------------------------------
# The real data in ../shared/datasets (CI has it beside the checkout)

MVSA_DIR = task_data_dir("mvsa-single")
MEDIAEVAL_DIR = task_data_dir("mediaeval2016")


@pytest.fixture(scope="module")
def mvsa_single() -> DatasetSplits:
    return load_task_data("mvsa-single")


@pytest.fixture(scope="module")
def mediaeval() -> DatasetSplits:
    return load_task_data("mediaeval2016")


@pytest.mark.skipif(not MVSA_DIR.is_dir(), reason=f"{MVSA_DIR} is absent")
def test_real_mvsa_single(mvsa_single):
    data = mvsa_single
    assert data.name == "mvsa-single" and data.labels == ["positive", "neutral", "negative"]
    assert (len(data.train), len(data.dev), len(data.test)) == (3611, 450, 450)
    assert data.label_counts("train") == [2147, 376, 1088]
    assert data.label_counts("dev") == data.label_counts("test") == [268, 47, 135]
    assert data.skipped == {}
    assert all(s.image is not None and s.image.suffix == ".jpg" for s in data.train[:50])
    assert load_task_data("mvsa-single").version == data.version


@pytest.mark.skipif(not MVSA_DIR.is_dir(), reason=f"{MVSA_DIR} is absent")
def test_real_hashtags(mvsa_single):
    data = load_task_data("hashtags")
    assert data.multi_label and 10 <= len(data.labels) <= 50
    assert all(label.startswith("#") for label in data.labels)
    counts = data.label_counts("train")
    assert all(n >= 10 for n in counts) and counts == sorted(counts, reverse=True)
    for name, split in data.splits().items():
        assert ids(split) <= ids(mvsa_single.splits()[name])
        assert not any(extract_hashtags(s.text) for s in split)


@pytest.mark.skipif(not MEDIAEVAL_DIR.is_dir(), reason=f"{MEDIAEVAL_DIR} is absent")
def test_real_mediaeval(mediaeval):
    data = mediaeval
    assert data.labels == ["real", "fake"]
    assert len(data) == 13416 and data.skipped == {"no_image": 15629 - 13416}
    assert_group_disjoint(data)
    for name in ("train", "dev", "test"):
        assert all(n > 0 for n in data.label_counts(name)), name
    assert Counter(s.label for split in data.splits().values() for s in split) == {1: 7556, 0: 5860}


@pytest.mark.skipif(not MEDIAEVAL_DIR.is_dir(), reason=f"{MEDIAEVAL_DIR} is absent")
def test_real_mediaeval_leave_one_event_out():
    data = load_task_data("mediaeval2016", leave_out="sandy")
    assert {s.group for s in data.test} == {"sandy"}
    assert_group_disjoint(data)
    assert all(n > 0 for n in data.label_counts("dev"))
