"""python -m trainer {train,sweep,eval,measure,floor,report,bundle,bench,probe,faithfulness,compare,push,space,data} ...

Examples:
  python -m trainer train --task mvsa-single --model concat --seeds 0 1 2
  python -m trainer train --task mvsa-single --model hglnet --variant no-gga --seeds 0
  python -m trainer eval --checkpoint checkpoints/mvsa-single/concat
  python -m trainer floor --task mvsa-single
  python -m trainer sweep --task mvsa-single --model hglnet --grid lr=1e-3,3e-4 --seeds 0 1 2 --jobs 2
  python -m trainer sweep --task mvsa-single --model hglnet --grid unfreeze_text_layers=2 encoder_lr=2e-5,5e-5
  python -m trainer sweep --task mediaeval2016 --model concat --protocol loeo --grid image_cap=0,1 image_dropout=0,0.3
  python -m trainer report --runs results/main
  python -m trainer report --markdown                           # docs/RESULTS.md from the committed runs
  python -m trainer bundle --task mvsa-single --model concat
  python -m trainer bench --task mvsa-single
  python -m trainer probe --checkpoint checkpoints/mvsa-single/mggf --splits dev   # what it draws on, measured
  python -m trainer faithfulness --checkpoint checkpoints/mvsa-single/* --posts 30  # each heatmap's deletion check
  python -m trainer compare --task mvsa-single --models hglnet concat --split test  # paired bootstrap interval
  python -m trainer push --checkpoint checkpoints/mvsa-single/concat --repo-id USER/NAME
  python -m trainer space --repo-id USER/NAME                   # the app + bundled checkpoints as a Space
"""

from __future__ import annotations

import argparse
import sys

from .commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    """One sub-parser per module of trainer/commands/."""
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        p = sub.add_parser(command.NAME, help=command.HELP)
        command.add_arguments(p)
        p.set_defaults(fn=command.run)
    return parser


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    from mmdemo.checkpoint import CheckpointError
    from mmdemo.hub import HubError

    try:
        a.fn(a)
    except (HubError, CheckpointError, FileNotFoundError, FileExistsError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
