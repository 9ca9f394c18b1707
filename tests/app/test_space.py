"""`python -m trainer space`: the Space's file set, built in a temporary directory, runs the app on its own: no
repository beside it, no ../shared, no network."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from trainer.space import SPACE_FILES, build_space


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_space_files_are_exactly_what_the_app_needs(tmp_path):
    import gradio
    from huggingface_hub import SpaceCard

    files = build_space(tmp_path / "space")
    top = {f.parts[0] for f in files}
    assert top == set(SPACE_FILES) | {"README.md", ".gitattributes"}
    assert not any("__pycache__" in f.parts or f.suffix == ".pyc" for f in files)
    assert any(f.name == "model.safetensors" for f in files)  # the bundled checkpoints travel
    card = SpaceCard.load(tmp_path / "space" / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert card.data.sdk_version == gradio.__version__  # pinned to the Gradio this was tested with
    assert card.data.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert "*.safetensors filter=lfs" in (tmp_path / "space" / ".gitattributes").read_text()
    with pytest.raises(FileExistsError):
        build_space(tmp_path / "space")  # never writes over a directory


@pytest.mark.slow
def test_the_space_runs_the_app_on_its_own_and_predicts(tmp_path):
    from gradio_client import Client, handle_file

    space = tmp_path / "space"
    build_space(space)
    assert not (tmp_path / "shared").exists()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMDEMO_", "PYTHONPATH"))}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_SERVER_PORT=str(port))
    log = (tmp_path / "app.log").open("w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "app.log").read_text()[-3000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "the Space's app did not start in 300 s"
                time.sleep(1)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        fused, text, image, verdict, signals, status, contributions = client.predict(
            handle_file(str(space / "examples" / "beach.jpg")), "Best day ever at the beach!", "mvsa-single",
            "hglnet", api_name="/predict")
        assert fused["label"] in ("positive", "neutral", "negative") and "mm-error" not in status
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
