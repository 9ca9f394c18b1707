"""`python -m trainer space --repo-id USER/NAME`: deploy the app as a Hugging Face Space in one command.

The Space gets exactly what `python app.py` needs and nothing else: app.py, mmdemo/, the bundled checkpoints/,
examples/, requirements.txt, and a README.md whose front matter pins the Gradio version this code was tested
with. `upload_folder` moves the weights through LFS/Xet (no git-lfs needed); `.gitattributes` marks them so
the Space's own git history treats them as LFS files too.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from mmdemo.checkpoint import read_config
from mmdemo.card import BASE_MODELS
from mmdemo.hub import bundled_checkpoints, check_hub_ready, configured_repos

from .run import REPO_ROOT

SPACE_FILES = ("app.py", "mmdemo", "checkpoints", "examples", "requirements.txt")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".DS_Store")
LFS_PATTERNS = ("*.safetensors", "*.png", "*.jpg", "*.jpeg")


def space_readme(root: Path = REPO_ROOT) -> str:
    """README.md with the Space's front matter: the repo's own, plus the tested Gradio and Python versions and the
    Hub models the app reads (the bundled checkpoints' base encoders, the configured checkpoint repos)."""
    import gradio
    from huggingface_hub import SpaceCard

    card = SpaceCard((root / "README.md").read_text())
    card.data.sdk, card.data.app_file = "gradio", "app.py"
    card.data.sdk_version = gradio.__version__
    card.data.python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    models = set(configured_repos().values())
    for task in bundled_checkpoints(root / "checkpoints").values():
        for ckpt in task.values():
            config = read_config(ckpt)
            models |= {BASE_MODELS[k] for k in (config["text_encoder"], config["image_encoder"]) if k in BASE_MODELS}
    if models:
        card.data.models = sorted(models)
    return str(card)


def build_space(dest: Path, root: Path = REPO_ROOT) -> list[Path]:
    """Write the Space's files into `dest` (which must be empty or absent); -> the files, relative to dest."""
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty")
    for name in SPACE_FILES:
        src = root / name
        if not src.exists():
            raise FileNotFoundError(f"{src} is missing: the Space needs it")
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=IGNORE)
        else:
            shutil.copy2(src, dest / name)
    (dest / "README.md").write_text(space_readme(root))
    (dest / ".gitattributes").write_text("".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS))
    return sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file())


def deploy_space(repo_id: str, private: bool = False, token: str | None = None, root: Path = REPO_ROOT) -> str:
    """Create (or update) the Gradio Space `repo_id` with the app; -> its URL. Fails before any work when the Hub
    is not reachable (the same message as `push`)."""
    from huggingface_hub import HfApi

    token = check_hub_ready(token)
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        files = build_space(Path(tmp) / "space", root)
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(Path(tmp) / "space"), repo_id=repo_id, repo_type="space",
                          commit_message=f"mmdemo: app, {sum(1 for f in files if f.parts[0] == 'checkpoints')} "
                                         "checkpoint files", delete_patterns=["*"])
    return f"https://huggingface.co/spaces/{repo_id}"
