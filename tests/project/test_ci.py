""".ci/run builds a fresh virtual environment of several GB: it must remove it when it exits, passed or failed. Run
here with stand-ins for python3 / pip / pytest / apt-get, so it takes a second and installs nothing."""

from __future__ import annotations

import os
import subprocess

import pytest
from tests.helpers import REPO_ROOT

CI = REPO_ROOT / ".ci" / "run"

PYTHON3 = """#!/bin/sh
# python3 -m venv DIR: a virtual environment whose python and pip do nothing; `python -m pytest` exits $FAKE_RC
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin" "$3/lib/site-packages"
  head -c 100000 /dev/zero > "$3/lib/site-packages/big.bin"
  printf 'PATH="%s/bin:$PATH"\\n' "$3" > "$3/bin/activate"
  printf '#!/bin/sh\\nif [ "$2" = "pytest" ]; then exit ${FAKE_RC:-0}; fi\\nexit 0\\n' > "$3/bin/python"
  cp "$3/bin/python" "$3/bin/pip"
  chmod +x "$3/bin/python" "$3/bin/pip"
  exit 0
fi
exit 1
"""


@pytest.mark.parametrize("pytest_rc", [0, 1])
def test_ci_removes_its_virtual_environment_whatever_the_result(tmp_path, pytest_rc):
    stubs, tmp = tmp_path / "bin", tmp_path / "tmp"
    stubs.mkdir()
    tmp.mkdir()
    (stubs / "python3").write_text(PYTHON3)
    (stubs / "apt-get").write_text("#!/bin/sh\nexit 1\n")  # never install anything from here
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "TMPDIR": str(tmp), "FAKE_RC": str(pytest_rc)}
    done = subprocess.run(["bash", str(CI)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == pytest_rc, done.stderr
    assert list(tmp.iterdir()) == []  # the virtual environment is gone
