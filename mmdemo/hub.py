"""Pushing checkpoint directories to the Hugging Face Hub, and loading with fallback (the card: mmdemo.card).

A checkpoint directory is exactly what is pushed (config.json, model.safetensors, metrics.json, README.md,
plots). The app and Predictor resolve a (task, model) pair to a Hub repo when one is configured and
reachable, else to the bundled `<root>/<task>/<model>/` (the caller says where its checkpoints are: app.py and
the trainer pass the repository's checkpoints/), and say which one they used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import (CARD_FILE, CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, CheckpointError, check_compatible,
                         read_config)

HUB_CONFIG_ENV = "MMDEMO_HUB_REPOS"  # JSON {"task/model": "user/repo"} or a path to such a JSON file
UPLOAD_PATTERNS = [CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, CARD_FILE, "*.png"]

class HubError(RuntimeError):
    """The Hub cannot be used right now (offline, unreachable, no token), said before any work starts."""


# ---- pushing ------------------------------------------------------------------------------------------


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def check_hub_ready(token: str | None = None) -> str:
    """-> the token. Raises HubError before any upload work when offline, unreachable or without a token."""
    from huggingface_hub import get_token, whoami

    if _offline():
        raise HubError("HF_HUB_OFFLINE is set: the Hugging Face Hub is not used. Unset it to push.")
    token = token or get_token()
    if not token:
        raise HubError("No Hugging Face token: run `huggingface-cli login` or set HF_TOKEN, then push again.")
    try:
        whoami(token=token)
    except Exception as e:  # connection errors and 401s both end here
        raise HubError(f"The Hugging Face Hub is unreachable or rejected the token ({type(e).__name__}: {e}).") from e
    return token


def push_checkpoint(ckpt_dir: str | Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload one checkpoint directory to `repo_id`; returns the repo URL."""
    from huggingface_hub import HfApi

    ckpt_dir = Path(ckpt_dir)
    read_config(ckpt_dir)
    if not (ckpt_dir / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{ckpt_dir} has no {WEIGHTS_FILE}")
    token = check_hub_ready(token)
    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(ckpt_dir), repo_id=repo_id, allow_patterns=UPLOAD_PATTERNS,
                      commit_message=f"mmdemo checkpoint {ckpt_dir.name}")
    return str(url)


# ---- loading with fallback ---------------------------------------------------------------------------


def configured_repos() -> dict[str, str]:
    """{"task/model": "user/repo"} from MMDEMO_HUB_REPOS (inline JSON or a JSON file path)."""
    raw = os.environ.get(HUB_CONFIG_ENV, "").strip()
    if not raw:
        return {}
    text = Path(raw).read_text() if not raw.startswith("{") else raw
    return dict(json.loads(text))


def bundled_checkpoints(root: Path) -> dict[str, dict[str, Path]]:
    """{task: {model: directory}} for every bundled checkpoint directory with a config.json."""
    out: dict[str, dict[str, Path]] = {}
    for cfg in sorted(root.glob(f"*/*/{CONFIG_FILE}")):
        out.setdefault(cfg.parent.parent.name, {})[cfg.parent.name] = cfg.parent
    return out


def download(repo_id: str) -> Path:
    """A Hub checkpoint repo -> local snapshot directory (config, safetensors, metrics, card, plots only)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=UPLOAD_PATTERNS))
    except Exception as e:  # offline, unreachable, missing repo
        raise CheckpointError(f"could not fetch Hub repo {repo_id!r} ({type(e).__name__}: {e})") from e


@dataclass
class Resolved:
    path: Path
    source: str  # "hub:<repo>" or "bundled"
    note: str = ""  # why the fallback was taken, when it was


def resolve(task: str, model: str, root: Path) -> Resolved:
    """Hub repo when configured and reachable, else the bundled directory `root/task/model`; says which and why."""
    repo = configured_repos().get(f"{task}/{model}")
    note = ""
    if repo:
        try:
            path = download(repo)  # allow_patterns: never fetches pickles, even if a repo has them
            if (path / WEIGHTS_FILE).is_file():
                return Resolved(path, f"hub:{repo}")
            note = f"Hub repo {repo} has no {WEIGHTS_FILE}; using the bundled checkpoint"
        except CheckpointError as e:  # offline, unreachable, missing repo: all fall back
            note = f"Hub repo {repo} unavailable ({type(e.__cause__).__name__}); using the bundled checkpoint"
    path = root / task / model
    if not (path / CONFIG_FILE).is_file():
        raise CheckpointError(f"no checkpoint for task {task!r} and model {model!r}: "
                              f"{note + '; ' if note else ''}nothing bundled at {path}")
    return Resolved(path, "bundled", note)


def load(task: str, model: str, root: Path, **expect):
    """-> (MultimodalClassifier, Resolved) from the Hub repo configured for (task, model), else `root/task/model`.
    The checkpoint must be for `task` (and `expect` if given)."""
    from .checkpoint import load_checkpoint

    where = resolve(task, model, root)
    check_compatible(read_config(where.path), task=task, where=where.source)
    return load_checkpoint(where.path, task=task, **expect), where
