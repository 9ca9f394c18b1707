"""Did each CACNet checkpoint's cross-active weights leave their initialisation? (issue 47, section 1)

    python scripts/cacnet_drift.py                      # every bundled checkpoints/*/cacnet
    python scripts/cacnet_drift.py outputs/run/seed0    # any CACNet checkpoint directories

For each of the four cross-active matrices: max |w| against the initialisation's bound b = 1/sqrt(fan_in) (uniform on
[-b, b]: no weight beyond b before a step updates the matrix) and the std against b/sqrt(3) (the initial std).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from mmdemo.checkpoint import load_checkpoint
from mmdemo.hub import bundled_checkpoints
from mmdemo.models.cacnet import cross_active_drift


def main(paths: list[Path]) -> None:
    for path in paths:
        model = load_checkpoint(path)
        print(f"{path} ({model.task}, schedule {model.head.config.schedule}, variant {model.variant or '-'}):")
        moved = []
        for name, d in cross_active_drift(model.head).items():
            moved.append(d["moved"])
            print(f"  {name:20s} max|w| {d['max_abs']:.4f} (b {d['bound']:.4f})  std {d['std']:.4f} "
                  f"(b/sqrt3 {d['bound'] / math.sqrt(3):.4f})  {'moved' if moved[-1] else 'AT INITIALISATION'}")
        print(f"  -> {sum(moved)} of {len(moved)} cross-active matrices left their initialisation")


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:]]
    main(args or [models["cacnet"] for models in bundled_checkpoints(Path(__file__).resolve().parents[1] / "checkpoints").values() if "cacnet" in models])
