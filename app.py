"""mmdemo's Gradio app: `python app.py` (offline, no flags) or as a Hugging Face Space, unchanged.

The page is built by mmdemo.app from the bundled checkpoints in checkpoints/<task>/<model>/ (another directory
with MMDEMO_CHECKPOINTS, or Hub repos named in MMDEMO_HUB_REPOS). GRADIO_SERVER_NAME / GRADIO_SERVER_PORT set
the address (Spaces set the name to 0.0.0.0); the default is Gradio's 127.0.0.1, port 7860. MMDEMO_MAX_BATCH caps
how many waiting /predict requests one batched pass answers (default 8; 1 answers them one by one).
"""

import logging
import os
from pathlib import Path

from mmdemo.app import build_demo

HERE = Path(__file__).resolve().parent  # the repository: its checkpoints/ and examples/ are the page's

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    checkpoints = Path(os.environ.get("MMDEMO_CHECKPOINTS") or HERE / "checkpoints")
    demo = build_demo(checkpoints, HERE / "examples", max_batch=int(os.environ.get("MMDEMO_MAX_BATCH", "8")))
    demo.queue(default_concurrency_limit=1)  # one model call at a time: explanations are CPU-heavy
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), prevent_thread_lock=True)
    # The page is served; torch, the model code and the first network load now, in the background
    demo.mmdemo_app.preload()
    demo.block_thread()
