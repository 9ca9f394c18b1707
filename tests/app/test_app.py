"""The Gradio app, served for real: gradio_client calls its API (predictions, explanations, compare view, model
panel, bad input), and headless Debian Chromium drives the page (marked `browser`).

One module-scoped server on a free local port serves every test; checkpoints are tiny random-initialised
networks written to a temporary directory."""

from __future__ import annotations

import html
import os
import re
import struct
import zlib
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from mmdemo.app import build_demo  # noqa: E402
from mmdemo.app.catalogue import NO_CHECKPOINT_HELP  # noqa: E402
from mmdemo.app.handlers import PREDICTED, DemoApp  # noqa: E402

from tests.helpers import CHROMIUM, EXAMPLE, REPO_ROOT, SENTIMENT as LABELS, TASK, free_port, make_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, checkpoints root, files dir): the app on a free local port, shared by every test here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a small shared CPU: oversubscribed threads are several times slower
    root = tmp_path_factory.mktemp("checkpoints")
    for model in ("concat", "text-only"):
        make_checkpoint(root, model)
    demo = build_demo(root)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                            quiet=True)
    yield url, root, tmp_path_factory.mktemp("files")
    demo.close()
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[0], verbose=False)


def _predict(client, image, caption: str | None, model: str = "concat"):
    from gradio_client import handle_file

    img = handle_file(str(image)) if image is not None else None
    return client.predict(img, caption, TASK, model, api_name="/predict")


def _assert_ok(result) -> None:
    fused, text, image, verdict, signals, status, contributions = result
    for head in (fused, text, image):
        assert head["label"] in LABELS, result
        assert len(head["confidences"]) == 3
    assert "modalities" in verdict and "mm-error" not in status
    # the measured modality contributions: every class, the fused prediction first, Shapley values that add up
    assert contributions["predicted"] == fused["label"] == contributions["classes"][0]["label"]
    for c in contributions["classes"]:
        assert abs(c["text"] + c["image"] - (c["both"] - c["neither"])) < 1e-4
    assert "Measured: how much each modality moved" in signals


# ---- the API -------------------------------------------------------------------------------------------------


def test_predict_gives_fused_text_and_image_labels(client):
    result = _predict(client, EXAMPLE, "Best day ever at the beach!")
    _assert_ok(result)
    assert "no interpretable fusion" in result[4]  # the concat baseline reports no fusion quantities


def _huge_png(path: Path, side: int = 30_000) -> Path:
    """A valid 1x1 PNG whose header claims side x side pixels: tests the size guard without the memory."""
    Image.new("RGB", (1, 1)).save(path)
    raw = bytearray(path.read_bytes())
    ihdr = raw[12:29]  # b"IHDR" + 13 bytes of data
    ihdr[4:12] = struct.pack(">II", side, side)
    raw[12:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(raw))
    return path


def test_bad_inputs_give_clear_messages_and_the_server_keeps_serving(server, client):
    files = server[2]
    not_image = files / "notes.png"
    not_image.write_text("this is not a picture")
    tiny = files / "tiny.png"
    Image.new("RGB", (4, 4), "red").save(tiny)
    cases = {
        "no image": (None, "a caption", "No image was given"),
        "empty caption": (EXAMPLE, "   ", "caption is empty"),
        "unreadable file": (not_image, "a caption", "could not be read as an image"),
        "tiny image": (tiny, "a caption", "only 4x4 pixels"),
        "huge image": (_huge_png(files / "huge.png"), "a caption", "too large"),
    }
    for name, (image, caption, message) in cases.items():
        fused, text, img, verdict, signals, status, contributions = _predict(client, image, caption)
        assert not fused and not contributions and "mm-error" in status, name
        assert message in status, (name, status)
        assert "Traceback" not in status
    _assert_ok(_predict(client, EXAMPLE, "still serving after bad input"))


def test_concurrent_predictions_are_batched_and_each_gets_its_own_answer(server, client, monkeypatch):
    """/predict runs in Gradio's batch mode: requests that wait together are one `analyse_requests` (for any
    networks), and each client gets the answer its own input gets alone (or its own error: a bad input costs the
    others nothing)."""
    import threading
    import time

    from gradio_client import handle_file

    from mmdemo import predict

    sizes: list[int] = []
    first = threading.Event()
    real = predict.analyse_requests

    def spy(requests):
        sizes.append(len(requests))
        if not first.is_set():  # hold the first call, so that the other requests queue up behind it
            first.set()
            time.sleep(1.0)
        return real(requests)

    monkeypatch.setattr(predict, "analyse_requests", spy)
    captions = [f"request {i}: " + "sunny and happy " * i for i in range(6)] + ["   ", "still fine"]
    images = [EXAMPLE] * 8
    images[5] = None  # no image
    models = ["concat", "text-only"] * 4  # two networks in one batch
    app = DemoApp(server[1])
    expected = [app.predict_fn(Image.open(im) if im else None, c, TASK, m)
                for im, c, m in zip(images, captions, models)]
    sizes.clear()
    first.clear()
    jobs = [client.submit(handle_file(str(im)) if im else None, c, TASK, m, api_name="/predict")
            for im, c, m in zip(images, captions, models)]
    results = [j.result(timeout=120) for j in jobs]
    assert max(sizes) > 1 and sum(sizes) == 8, sizes
    for i, (got, want) in enumerate(zip(results, expected)):
        if want[0] is None:  # the bad inputs: their own message
            assert not got[0] and "mm-error" in got[5] and got[5] == want[5], (i, got[5])
            continue
        _assert_ok(got)
        confidences = {c["label"]: c["confidence"] for c in got[0]["confidences"]}
        assert got[0]["label"] == max(want[0], key=want[0].get), i
        assert np.allclose([confidences[k] for k in want[0]], list(want[0].values()), atol=1e-5), i
    assert sum(r[0] is None for r in expected) == 2


def test_the_rest_of_the_bad_input_battery(server, client):
    """Files that are not images get a message naming what is wrong; odd but valid images and captions (NUL, right
    to left, HTML, 100k characters) get a prediction, and HTML in a caption is never rendered as HTML."""
    files = server[2]
    jpeg = EXAMPLE.read_bytes()
    bad = {
        "zero.jpg": b"", "random.jpg": bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)),
        "drawing.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" '
                       b'height="64"/></svg>',
        "paper.pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF",
        "truncated.jpg": jpeg[: len(jpeg) // 3],
    }
    for name, content in bad.items():
        (files / name).write_bytes(content)
        *_, status, _ = _predict(client, files / name, "a caption")
        assert "mm-error" in status and ("could not be read" in status or "truncated" in status), (name, status)
        assert str(files) not in status
    Image.new("RGB", (1, 1)).save(files / "one.png")
    assert "only 1x1 pixels" in _predict(client, files / "one.png", "a caption")[5]
    Image.open(EXAMPLE).convert("L").save(files / "grey.png")
    _assert_ok(_predict(client, files / "grey.png", "black and white"))
    for caption in ("nul\x00 in\x00side", "مرحبا بالعالم، يوم جميل", "שלום עולם", "x" * 100_000,
                    "<script>alert(1)</script><b>bold</b> & <i>more</i>"):
        result = _predict(client, EXAMPLE, caption)
        _assert_ok(result)
        assert "<script>" not in result[5] and "<script>" not in result[4]


def test_odd_image_modes_and_long_captions_are_handled(server, client):
    files = server[2]
    rgb = Image.open(EXAMPLE).convert("RGB")
    frames = [rgb.resize((64, 48)), rgb.resize((64, 48)).rotate(180)]
    odd = {
        "cmyk.jpg": lambda p: rgb.convert("CMYK").save(p),
        "rgba.png": lambda p: rgb.convert("RGBA").save(p),
        "grey16.png": lambda p: Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 15).astype(np.uint16)).save(p),
        "palette.png": lambda p: rgb.convert("P").save(p),
        "animated.gif": lambda p: frames[0].save(p, save_all=True, append_images=frames[1:], duration=100),
    }
    for name, write in odd.items():
        write(files / name)
        _assert_ok(_predict(client, files / name, f"odd mode {name}"))
    long = _predict(client, EXAMPLE, "so happy " * 400)
    _assert_ok(long)
    assert "only the first" in long[5] and "mm-info" in long[5]  # a note, not an error
    from gradio_client import handle_file

    _, _, note = client.predict(handle_file(str(EXAMPLE)), "so happy " * 400, TASK, "concat", "grad-cam", "fused",
                                PREDICTED, api_name="/explain")
    assert "only the first" in note and "cut to the first" in note  # the explanation says it read a cut caption
    emoji = _predict(client, EXAMPLE, "😀😀🎉")  # the tokenizer reads emoji as [UNK]: a prediction, and why
    _assert_ok(emoji)
    assert "knows none of the caption" in html.unescape(emoji[5])
    _, words, note = client.predict(handle_file(str(EXAMPLE)), "great day 🎉", TASK, "concat", "grad-cam", "fused",
                                    PREDICTED, api_name="/explain")
    assert "1 of the caption" in html.unescape(note) and "unknown to the text encoder" in note


def test_explain_api_returns_heatmap_and_word_attributions(client):
    from gradio_client import handle_file

    heat, words, note = client.predict(handle_file(str(EXAMPLE)), "Best day ever at the beach", TASK, "concat",
                                       "grad-cam", "fused", PREDICTED, api_name="/explain")
    assert Path(heat).is_file() and min(Image.open(heat).size) >= 224
    tokens = [w["token"] for w in words if w["class_or_confidence"] is not None]
    assert tokens[:2] == ["best", "day"] and "beach" in tokens and "[CLS]" not in tokens
    assert "the fused prediction" in note and "mm-error" not in note
    # the network has no attention: the method says so instead of failing
    heat, _, note = client.predict(handle_file(str(EXAMPLE)), "a caption", TASK, "concat", "attention", "fused",
                                   PREDICTED, api_name="/explain")
    assert heat is None and "no text ↔ image attention" in note


def test_compare_runs_every_network_of_the_task(client):
    from gradio_client import handle_file

    table, note = client.predict(handle_file(str(EXAMPLE)), "Best day ever", TASK, api_name="/compare")
    assert [row[0] for row in table["data"]] == ["concat", "text-only"]
    assert all(row[1].split(" ")[0] in LABELS for row in table["data"]) and note == ""


def test_compare_gives_a_broken_network_its_own_row(tmp_path, monkeypatch, caplog):
    """The compare view is one predict_requests over the task's networks: a checkpoint that cannot load, or a head
    that fails, gets a message in its own row and the other networks still answer; a bad input is one message."""
    for model in ("concat", "hglnet", "mggf"):
        make_checkpoint(tmp_path, model)
    (tmp_path / TASK / "mggf" / "model.safetensors").write_bytes(b"not a checkpoint")
    app = DemoApp(tmp_path)

    def fails(*args, **kwargs):
        raise RuntimeError("head exploded")

    monkeypatch.setattr(app.load(TASK, "hglnet").predictor.classifier.head, "forward", fails)
    table, note = app.compare_fn(str(EXAMPLE), "Best day ever", TASK)
    rows = {row[0]: row for row in table.values.tolist()}
    assert note == "" and set(rows) == {"concat", "hglnet", "mggf"}
    assert rows["concat"][1].split(" ")[0] in LABELS and rows["concat"][-1] > 0
    assert "hglnet prediction failed unexpectedly (RuntimeError)" in rows["hglnet"][1]
    assert "head exploded" in caplog.text  # the traceback is in the server log, not on the page
    assert "mggf prediction failed" in rows["mggf"][1] and rows["mggf"][2] == ""
    table, note = app.compare_fn(None, "Best day ever", TASK)
    assert "mm-error" in note and "No image was given" in html.unescape(note) and table.empty


def test_model_panel_and_model_list(client):
    info = client.predict(TASK, "concat", api_name="/model_info")
    for text in ("bundled checkpoint", "tiny-bert", "tiny-resnet", "Test metrics", "0.6100", "concat test card"):
        assert text in info, text
    assert "license: apache" not in info  # the card's YAML front matter is not shown
    models = client.predict(TASK, api_name="/models")  # a dropdown update: the task's networks, best on dev first
    assert [c[0] for c in models["choices"]] == ["concat", "text-only"] and models["value"] == "concat"


def test_a_checkpoint_without_a_test_part_says_why():
    from mmdemo.render import metrics_table

    assert "No test part" in metrics_table({"dev": {}, "data": {"sizes": {"train": 9, "dev": 3, "test": 0}}})
    assert "No test metrics recorded" in metrics_table({})


def test_unknown_model_is_a_message(server, client):
    status = html.unescape(_predict(client, EXAMPLE, "hello", model="hglnet-missing")[5])
    assert "no checkpoint for task 'mvsa-single' and model 'hglnet-missing'" in status
    status = html.unescape(client.predict(None, "hello", "no-such-task", "concat", api_name="/predict")[5])
    assert "mm-error" in status and "no-such-task" in status
    _assert_ok(_predict(client, EXAMPLE, "still serving"))


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory):
    """A second server: two tasks with different labels, each with a network that has attention maps."""
    root = tmp_path_factory.mktemp("two-tasks")
    for task, labels in (("mvsa-single", LABELS), ("mediaeval2016", ["real", "fake"])):
        for model in ("concat", "hglnet"):
            make_checkpoint(root, model, task, labels=labels)
    demo = build_demo(root)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    from gradio_client import Client

    yield Client(url, verbose=False)
    demo.close()


def test_every_endpoint_takes_every_value_the_page_can_produce(two_tasks):
    """The page's choices depend on the task and the input; the API accepts each of them for every task (a
    non-default class, word and region), and every output has a name."""
    from gradio_client import handle_file

    image = handle_file(str(EXAMPLE))
    for task, labels in (("mvsa-single", LABELS), ("mediaeval2016", ["real", "fake"])):
        fused, *_, status, _ = two_tasks.predict(image, "Best day ever", task, "hglnet", api_name="/predict")
        assert fused["label"] in labels and "mm-error" not in status
        heat, _, note = two_tasks.predict(image, "Best day ever", task, "hglnet", "grad-cam", "text", labels[-1],
                                          api_name="/explain")
        assert heat is not None and "mm-error" not in note and labels[-1] in note
        word, region, heat, words, note = two_tasks.predict(image, "Best day ever", task, "hglnet", "2: day",
                                                            "row 1, col 2", api_name="/attention")
        assert word["value"] == "2: day" and region["value"] == "row 1, col 2", (word, region)
        assert heat is not None and "mm-error" not in note and "row 1, col 2" in note
    api = two_tasks.view_api(print_info=False, return_format="dict")
    names = [r["label"] for e in api["named_endpoints"].values() for r in e["returns"]]
    assert names and not [n for n in names if not n or n.startswith("value_")], names


def test_no_checkpoint_explains_how_to_train(tmp_path):
    demo = build_demo(tmp_path)  # builds without any checkpoint
    app: DemoApp = demo.mmdemo_app
    assert app.catalogue() == {}
    status = app.predict_fn(Image.open(EXAMPLE), "hello", None, None)[5]
    assert "No trained checkpoint" in status and "python -m trainer train --task mvsa-single --model concat" in status
    assert "python -m trainer bundle --task mvsa-single --model concat" in NO_CHECKPOINT_HELP
    assert "python -m trainer train" in app.model_info_fn(None, None)


def test_picking_a_network_says_it_is_loading_then_ready(tmp_path):
    make_checkpoint(tmp_path, "concat")
    app = DemoApp(tmp_path)
    assert "Loading concat for mvsa-single" in app.loading_fn(TASK, "concat")
    ready = app.ready_fn(TASK, "concat")
    assert "mm-ok" in ready and "is ready (bundled checkpoint)" in ready
    assert app.loading_fn(TASK, "concat") == ""  # loaded once: nothing to wait for
    assert "mm-error" in app.ready_fn(TASK, "no-such-network")
    assert app.loading_fn(TASK, None) == app.ready_fn(None, "concat") == ""


def test_every_explanation_hands_its_freed_memory_back(tmp_path, monkeypatch):
    import mmdemo.app.handlers as handlers
    from mmdemo import memory

    assert memory._LIBC_MALLOC_TRIM is not None  # glibc here: the benchmark's before/after is real
    calls = []
    monkeypatch.setattr(handlers, "release_memory", lambda: calls.append(1))
    make_checkpoint(tmp_path, "concat")
    app = DemoApp(tmp_path)
    heat, _, note = app.explain_fn(Image.open(EXAMPLE), "hello there", TASK, "concat", "grad-cam")
    assert heat is not None and "mm-error" not in note and calls == [1]
    _, _, note = app.explain_fn(None, "hello there", TASK, "concat", "grad-cam")  # bad input: still released
    assert "mm-error" in note and calls == [1, 1]


def test_the_page_is_built_without_torch():
    """`python app.py` serves its page before torch loads: building it imports no model code (the first network
    loads in the background once the page is served, `DemoApp.preload`)."""
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from mmdemo.app import build_demo; build_demo(Path('checkpoints')); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'captum', 'transformers')"
            " or m in ('mmdemo.predict', 'mmdemo.models', 'mmdemo.encoders')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


# ---- the page in a real browser -------------------------------------------------------------------------


@pytest.mark.browser
def test_page_in_headless_chromium(server):
    if not CHROMIUM.exists():
        pytest.skip(f"Debian Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    url = server[0]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            # on opening, the status says the first network is ready, and its panel is filled in
            expect(page.locator("#mm-status")).to_contain_text("is ready", timeout=30_000)
            page.get_by_role("tab", name="Model").click()
            expect(page.locator("#mm-model-info")).to_contain_text("Test metrics", timeout=30_000)
            page.get_by_role("tab", name="Explanation").click()
            page.locator("#mm-image input[type=file]").set_input_files(str(EXAMPLE))
            expect(page.locator("#mm-image img")).to_be_visible(timeout=30_000)  # the upload has landed
            page.locator("#mm-caption textarea").fill("Best day ever at the beach!")
            page.locator("#mm-run").click()
            expect(page.locator("#mm-fused")).to_contain_text(re.compile("|".join(LABELS)), timeout=30_000)
            heat = page.locator("#mm-heatmap img")
            expect(heat).to_be_visible(timeout=30_000)
            assert heat.evaluate("img => img.complete && img.naturalWidth") > 0
            expect(page.locator("#mm-verdict")).to_contain_text("modalities")
        finally:
            browser.close()


def test_a_multi_label_answer_lists_every_suggested_label_per_head():
    from mmdemo.predict import Prediction
    from mmdemo.render import verdict_html

    def ranked(d):
        return dict(sorted(d.items(), key=lambda kv: -kv[1]))

    pred = Prediction(["#love", "#happy", "#winter", "#snow"], {
        "fused": ranked({"#love": 0.81, "#happy": 0.62, "#winter": 0.1, "#snow": 0.05}),
        "text": ranked({"#love": 0.7, "#happy": 0.2, "#winter": 0.1, "#snow": 0.3}),
        "image": ranked({"#love": 0.2, "#happy": 0.1, "#winter": 0.4, "#snow": 0.3})}, {}, [], multi_label=True)
    banner = re.sub(r"</?b>", "", html.unescape(verdict_html(pred)))
    assert "fused → #love (81%), #happy (62%);" in banner  # both labels above 50%, not a forced single class
    assert "text only → #love (70%);" in banner
    assert "image only → #winter (40%), #snow (30%), #love (20%)" in banner  # none above 50%: the top 3
    assert "disagree" in banner and "mm-warn" in banner


@pytest.mark.parametrize("model", ["concat", "hglnet"])  # without, and with text <-> image attention
def test_a_click_predicts_once_and_its_explanation_and_attention_read_that_analysis(tmp_path, monkeypatch, model):
    """A click of Predict and explain, through the handlers as the page wires them (`on_page`): the head's prediction
    pass runs once and the upload is decoded once; the explanation and the attention panel read the click's
    analysis (the page's `Answer`), so that with predicting and decoding broken after /predict they still answer."""
    import mmdemo.inputs
    import mmdemo.predict
    from mmdemo.app.handlers import ALL_REGIONS, ALL_WORDS, Answer
    from mmdemo.predict import Predictor

    make_checkpoint(tmp_path, model)
    app = DemoApp(tmp_path)
    head = app.load(TASK, model).predictor.classifier.head
    calls = {"prediction": 0, "head": 0, "decode": 0}
    predict_encoded, forward, load_image = Predictor._predict_encoded, head.forward, mmdemo.inputs.load_image

    def counted_prediction(*args, **kwargs):
        calls["prediction"] += 1
        before = calls["head"]
        out = predict_encoded(*args, **kwargs)
        assert calls["head"] == before + 1  # one head pass answers the input and its four coalitions
        return out

    def counted_forward(*args, **kwargs):
        calls["head"] += 1
        return forward(*args, **kwargs)

    def counted_decode(image):
        calls["decode"] += 1
        return load_image(image)

    monkeypatch.setattr(Predictor, "_predict_encoded", counted_prediction)
    monkeypatch.setattr(head, "forward", counted_forward)
    for module in (mmdemo.inputs, mmdemo.predict):
        monkeypatch.setattr(module, "load_image", counted_decode)
    explain, attention = app.on_page(app.explain_fn, 3), app.on_page(app.attention_fn, 5)
    image, caption = Image.open(EXAMPLE), "what a lovely day at the beach"

    *panels, answer = (column[0] for column in app.predict_batch_fn([image], [caption], [TASK], [model], ["page"]))
    assert isinstance(answer, Answer) and panels[0] and "mm-error" not in panels[5]
    heat, words, note = explain(image, caption, TASK, model, "grad-cam", "fused", PREDICTED, "page", answer)
    assert "mm-error" not in note and heat is not None
    *_, attention_note = attention(image, caption, TASK, model, ALL_WORDS, ALL_REGIONS, "page", answer)
    assert "mm-error" not in attention_note
    assert calls["prediction"] == 1 and calls["decode"] == 1, calls

    def broken(*args, **kwargs):
        raise AssertionError("the explanation or the attention step predicted or decoded again")

    monkeypatch.setattr(Predictor, "_predict_encoded", broken)
    for module in (mmdemo.inputs, mmdemo.predict):
        monkeypatch.setattr(module, "load_image", broken)
    heat, _, note = explain(image, caption, TASK, model, "occlusion", "fused", PREDICTED, "page", answer)
    assert heat is not None and "mm-error" not in note
    assert "mm-error" not in attention(image, caption, TASK, model, ALL_WORDS, ALL_REGIONS, "page", answer)[4]
    # an API caller (no page) analyses its own input: here, with predicting broken, it says so
    assert "mm-error" in explain(image, caption, TASK, model, "grad-cam", "fused", PREDICTED, "", None)[2]
