"""All-or-nothing writes: everything goes to a temporary path beside the target, which then replaces it
(os.replace), so a kill, Ctrl-C or full disk mid-write leaves the previous version or none, never half of one that
reads as complete. Checkpoint directories, training states, the feature cache and generated docs all write this way.

No torch at import (the app reads checkpoints' configs before torch loads); `save_tensors` imports it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@contextmanager
def replacing(path: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside `path` (a fresh directory when `directory`) to write into; when the block
    finishes, it replaces `path` whole; when the block fails, it is removed and `path` is left as it was. An
    existing directory is moved aside first (os.replace cannot overwrite a non-empty one), then removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) if directory else \
        path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        if directory and path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if directory:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """A text file, replaced whole."""
    with replacing(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """One safetensors file (string metadata in its header), replaced whole. Tensors that share memory with one
    written before them (tied weights) are written as copies, which safetensors requires."""
    from safetensors.torch import save_file

    seen, flat = set(), {}
    for key, t in tensors.items():
        t = t.detach().contiguous()
        ptr = t.untyped_storage().data_ptr()
        flat[key] = t.clone() if ptr and ptr in seen else t
        seen.add(ptr)
    with replacing(path) as tmp:
        save_file(flat, str(tmp), metadata=metadata)
    return Path(path)
