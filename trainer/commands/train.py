"""python -m trainer train: one run per seed (or a leave-one-event-out run) of a model on a task."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..run import OUTPUTS
from .. import spec
from .common import encoder_flags, events, overrides

NAME = "train"
HELP = "train a model on a task (one run per seed)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--variant", default="", help="ablation row of the model (see mmdemo.models.get_model(M).variants)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a head config field")
    p.add_argument("--out", type=Path, default=OUTPUTS, help="where the runs go (git-ignored outputs/ by default)")
    p.add_argument("--push-to-hub", action="store_true", help="push the best-on-dev seed to --repo-id")
    p.add_argument("--repo-id", default="")
    p.add_argument("--private", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--resume", action="store_true",
                   help="continue interrupted runs from their last finished epoch (same result as uninterrupted)")
    p.add_argument("--preset", default="", help="the settings chosen on dev for this model and task (e.g. best: "
                   "the row of docs/RESULTS.md); flags and --set override its values")
    # every training option of RunSpec but the encoders (below, with the other flags of commands that encode)
    spec.add_option_flags(p, [f.name for f in spec.OPTIONS if f.name not in spec.ENCODER_OPTIONS])
    p.add_argument("--protocol", default="split", choices=["split", "loeo", "all-events"],
                   help="split: the task's train / dev / test; loeo: leave one event out, every event in turn "
                        "(trainer/loeo.py; writes loeo.json); all-events: every event but the validation events, "
                        "which choose the epoch, and no test part: the checkpoint to bundle with the loeo report of "
                        "the same recipe (trainer bundle --calibration)")
    p.add_argument("--validation-events", default="", metavar="E1,E2,...",
                   help="loeo / all-events: the events that may validate, in order; a fold takes the first two it "
                        "does not leave out (default: the task reader's, MediaEval: eclipse, garissa, boston)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: all cores); 1 is fastest for small heads")
    encoder_flags(p, unset=True)  # None: the preset's, else RunSpec's default


def run(a) -> None:
    from mmdemo.hub import check_hub_ready, push_checkpoint
    from mmdemo.models import get_model

    from ..run import torch_threads, train_task

    if a.push_to_hub:
        if not a.repo_id:
            raise SystemExit("--push-to-hub needs --repo-id USER/NAME")
        if a.protocol == "loeo":
            raise SystemExit("--protocol loeo trains one model per left-out event, none of which is the one to "
                             "publish: push a run trained on the task's split")
        check_hub_ready()  # fail before any work
    torch_threads(a.threads)
    # A preset is a dev-chosen point (head fields and train options); explicit flags and --set win over it, and
    # what neither sets keeps RunSpec's default.
    point = spec.canonical(get_model(a.model).preset(a.preset, a.task)) if a.preset else {}
    names = [f.name for f in spec.OPTIONS]
    head = {**{k: v for k, v in point.items() if k not in names}, **overrides(a.set)}
    chosen = {k: getattr(a, k) if getattr(a, k) is not None else point.get(k) for k in names}
    dirs = train_task(a.task, a.model, a.seeds, a.variant, a.data_dir, a.out, overrides=head,
                      max_length=a.max_length, cache_dir=a.cache_dir, progress=not a.quiet, resume=a.resume,
                      protocol=a.protocol, validation_events=events(a.validation_events),
                      **{k: v for k, v in chosen.items() if v is not None})
    if a.push_to_hub:
        from ..run import best_seed_dir

        best, _ = best_seed_dir(dirs[0].parent)
        print("pushed", best, "->", push_checkpoint(best, a.repo_id, private=a.private))
