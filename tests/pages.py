"""Shared helpers for the tests that serve the app: tiny random checkpoints, a served page, headless Chromium.

(A helpers module, not a test module: tests import from here, never from each other.)"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Iterator

import pytest
import torch

from mmdemo.checkpoint import save_checkpoint
from mmdemo.encoders import FeatureDims, create_image_encoder, create_text_encoder
from mmdemo.models import MultimodalClassifier

SENTIMENT = ["positive", "neutral", "negative"]
TASK = "mvsa-single"
CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "beach.jpg"
METRICS = {"dev": {"fused": {"accuracy": 0.6, "weighted_f1": 0.58}},
           "test": {h: {"accuracy": 0.61, "weighted_f1": 0.6, "macro_f1": 0.5} for h in ("fused", "text", "image")}}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def make_checkpoint(root: Path, model: str, task: str = TASK, text: str = "tiny-bert",
                    image: str = "tiny-resnet", labels: list[str] = SENTIMENT, metrics: dict | None = None,
                    seed: int = 0, **config) -> Path:
    """A tiny random-initialised checkpoint in root/<task>/<model>/ (`config`: extra MultimodalClassifier fields,
    e.g. calibration)."""
    te, ie = create_text_encoder(text), create_image_encoder(image)
    dims = FeatureDims.of(te, ie).__dict__
    torch.manual_seed(seed)
    clf = MultimodalClassifier(model=model, task=task, labels=labels, text_encoder=text, image_encoder=image,
                               dims={**dims, "image_grid": list(dims["image_grid"])}, **config)
    card = f"---\nlicense: apache-2.0\n---\n# {model} test card\n\nA tiny random network for tests.\n"
    return save_checkpoint(clf, root / task / model, metrics=metrics or METRICS, card=card)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(root: Path, max_batch: int = 8) -> Iterator[tuple[str, object]]:
    """(url, demo): the app over the checkpoints in `root`, on a free local port, in this process."""
    from mmdemo.app import build_demo

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a small shared CPU: oversubscribed threads are several times slower
    demo = build_demo(root, REPO / "examples", max_batch=max_batch)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        yield url, demo
    finally:
        demo.close()
        torch.set_num_threads(before)


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A headless Debian Chromium (playwright's Browser); skips the test where it is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(f"Debian Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def pick(page, elem_id: str, option: str) -> None:
    """Choose `option` in the gr.Dropdown #elem_id, as a person does: open it, click the option."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()
