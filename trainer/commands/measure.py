"""python -m trainer measure: how far to trust a checkpoint (trainer/trust.py), written into its config.json."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "measure"
HELP = ("how far to trust a checkpoint: its answer's spread over the inputs that selected it, its judged score "
        "against a guess, its calibration; written into config.json (never the weights) and its card")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, nargs="+", required=True, metavar="DIR")
    p.add_argument("--loeo", type=Path, default=None, metavar="LOEO_JSON",
                   help="for a checkpoint trained on every event: the leave-one-event-out report of its recipe "
                        "(default: the one its config already names)")
    p.add_argument("--dry-run", action="store_true", help="print, write nothing")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", type=Path, default=None)


def run(a) -> None:
    from mmdemo.checkpoint import read_config, read_trust, reliability_line, validity_line

    from ..run import torch_threads
    from ..trust import measure, write_trust

    torch_threads(a.threads)
    for ckpt in a.checkpoint:
        trust, calibration, dev = measure(ckpt, a.loeo, a.data_dir, a.cache_dir)
        if not a.dry_run:
            write_trust(ckpt, trust, calibration)  # the recipe's reliability diagram: docs/results (trainer report)
        s = trust["spread"]
        print(f"{ckpt}: dev re-measured {dev.get('macro_f1', dev.get('precision@1')):.4f}; fused answer over "
              f"{s['on']}: std {s['std']:.3g}, top class {s['top_low']:.3f}-{s['top_high']:.3f} (5-95%)"
              + (f"; temperature {calibration['temperature']:.4g}, ECE {calibration['ece_before']:.4f} -> "
                 f"{calibration['ece_after']:.4f}" if calibration else ""))
        print("  " + reliability_line(read_trust({**read_config(ckpt), "trust": trust, "calibration": calibration})))
        for name, v in (trust.get("signals") or {}).items():
            print(f"  {name}: {validity_line(v)}")
