"""Checkpoint directories: config.json + model.safetensors + metrics.json + README.md (model card).

This is the layout PyTorchModelHubMixin writes and reads, so the same directory is bundled in
`checkpoints/<task>/<model>/`, pushed to the Hub, and loaded back. Only safetensors are ever read.

Reading a checkpoint's config and metrics needs no torch (the app lists its networks and serves its page before
torch loads); the functions that touch weights import it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from .models import MultimodalClassifier

CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, CARD_FILE = "config.json", "model.safetensors", "metrics.json", "README.md"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, in a format we refuse to read, or does not match what was asked for."""


def save_checkpoint(model: MultimodalClassifier, out_dir: str | Path, metrics: dict | None = None,
                    card: str | None = None) -> Path:
    """Write the checkpoint directory atomically: everything goes to a temporary directory beside it, which then
    replaces it, so an interrupted save (Ctrl-C, kill, full disk) leaves the previous checkpoint or none, never
    a partial one that reads as complete."""
    out = Path(out_dir)
    if out.is_dir() and any(out.iterdir()) and not (out / CONFIG_FILE).is_file():
        raise CheckpointError(f"{out} holds other files and no checkpoint: choose an empty or new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, config=model.hub_config())
        if metrics is not None:
            (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        if card is not None:
            (tmp / CARD_FILE).write_text(card)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def compact_checkpoint(ckpt_dir: str | Path, dtype: torch.dtype | None = None) -> tuple[int, int]:
    """Shrink a checkpoint for bundling and serving, in place: drop the state only further training reads (the
    head's `training_state`: momentum encoders, queues) and store float32 tensors as `dtype` (kept float32 where a
    value would not fit; default float16). Loading casts them back to float32. Returns the weights file's (old, new)
    size in bytes."""
    import torch
    from safetensors.torch import load_file, save_file

    dtype = dtype or torch.float16
    path = Path(ckpt_dir) / WEIGHTS_FILE
    model = load_checkpoint(ckpt_dir)
    training = {f"head.{k}" for k in model.head.training_state()}
    state, before = load_file(str(path)), path.stat().st_size
    small = {}
    for key, t in state.items():
        if key in training:
            continue
        cast = t.to(dtype) if t.dtype == torch.float32 else t
        small[key] = cast if torch.isfinite(cast).all() or not torch.isfinite(t).all() else t
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(small, str(tmp), metadata={"format": "pt", "dtype": str(dtype).removeprefix("torch.")})
    os.replace(tmp, path)
    return before, path.stat().st_size


def read_config(ckpt_dir: str | Path) -> dict:
    path = Path(ckpt_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG_FILE} in {ckpt_dir}: not an mmdemo checkpoint directory")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from e


def read_metrics(ckpt_dir: str | Path) -> dict:
    path = Path(ckpt_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def missing_prior(config: dict) -> str:
    """The prior encoder a checkpoint's head asks for but was built without, e.g. CLIP where its weights were not
    available ("" when none is missing, or when the config does not name a known model)."""
    from .models import get_model

    try:
        entry = get_model(config["model"])
        wanted = entry.head.needs(entry.config(config.get("head"), config.get("variant", ""))).prior
    except (KeyError, ValueError, TypeError):
        return ""
    return wanted if wanted != config.get("prior_encoder", "") else ""


def check_compatible(config: dict, *, task: str | None = None, text_encoder: str | None = None,
                     image_encoder: str | None = None, labels: list[str] | None = None, where: str = "") -> None:
    """Refuse a checkpoint whose task, encoders or labels differ from the request, naming the mismatch."""
    wanted = {"task": task, "text_encoder": text_encoder, "image_encoder": image_encoder, "labels": labels}
    for key, want in wanted.items():
        if want is not None and config.get(key) != want:
            raise CheckpointError(f"checkpoint {where} has {key}={config.get(key)!r} but {want!r} was requested")


def load_checkpoint(ckpt_dir: str | Path, **expect) -> MultimodalClassifier:
    """Load a local checkpoint directory (safetensors only), after checking it against `expect`
    (task=, text_encoder=, image_encoder=, labels=)."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"checkpoint directory {ckpt_dir} does not exist")
    config = read_config(ckpt_dir)
    check_compatible(config, where=str(ckpt_dir), **expect)
    if not (ckpt_dir / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"no {WEIGHTS_FILE} in {ckpt_dir}; mmdemo reads safetensors only and never unpickles "
                              f"(.bin/.pt/.pth files are refused)")
    from .models import MultimodalClassifier

    try:
        return MultimodalClassifier.from_pretrained(ckpt_dir, strict=True).eval()
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {ckpt_dir} does not match its config.json "
                              f"(model {config.get('model')!r}): {e}") from e
