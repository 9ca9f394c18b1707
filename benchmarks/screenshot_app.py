"""Screenshot of the app after a real prediction on an example, for the README: docs/app.png.

    python benchmarks/screenshot_app.py [--model hglnet] [--out docs/app.png]

Uses the bundled checkpoints; when there are none, UNTRAINED concat and --model checkpoints with the default
encoders are written to a temp directory (the page layout is the point, not the numbers). Drives headless
Debian Chromium (/usr/bin/chromium) with playwright.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def main() -> None:
    from bench_app import _free_port, make_untrained_checkpoint
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    from mmdemo.app import build_demo
    from mmdemo.hub import bundled_checkpoints

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=REPO / "checkpoints")
    ap.add_argument("--model", default="", help="network to show (default: the app's default)")
    ap.add_argument("--example", type=int, default=3, help="which example row to click (0-based)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "app.png")
    a = ap.parse_args()

    root, tmp = a.root, None
    if not bundled_checkpoints(root):
        tmp = tempfile.TemporaryDirectory(prefix="mmdemo-shot-")
        root = Path(tmp.name)
        for model in {"concat", a.model or "concat"}:
            make_untrained_checkpoint(root, model)
        print(f"no checkpoint in {a.root}: using UNTRAINED checkpoints in {root}")
    demo = build_demo(root, REPO / "examples")
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=_free_port(), quiet=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900}, device_scale_factor=1)
            page.goto(url)
            if a.model:
                page.locator("#mm-model input").click()
                page.get_by_role("option", name=a.model, exact=True).click()
            page.locator("#mm-examples tr.tr-body").nth(a.example).click()
            # the example fills the inputs asynchronously: wait for both before predicting
            expect(page.locator("#mm-image img")).to_be_visible(timeout=30_000)
            expect(page.locator("#mm-caption textarea")).not_to_have_value("", timeout=30_000)
            page.wait_for_timeout(500)
            page.locator("#mm-run").click()
            expect(page.locator("#mm-fused")).to_contain_text("%", timeout=120_000)
            expect(page.locator("#mm-heatmap img")).to_be_visible(timeout=120_000)
            expect(page.locator("#mm-explain-note")).to_contain_text("Explaining", timeout=120_000)
            page.wait_for_timeout(1500)  # let the last images and transitions settle
            a.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(a.out), full_page=True)
            browser.close()
        # 256 colours: a third of the size, and the page's flat colours lose nothing visible
        shot = Image.open(a.out).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        shot.save(a.out, optimize=True)
        print(f"wrote {a.out}")
    finally:
        demo.close()
        if tmp:
            tmp.cleanup()


if __name__ == "__main__":
    main()
