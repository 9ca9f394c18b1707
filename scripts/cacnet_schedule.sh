#!/usr/bin/env bash
# Issue 47, section 1: CACNet's two phase schedules chosen on dev. "per-iteration" (phase 1 then phase 2 on every
# mini-batch, the paper's reading) against "block" (phase 1 for the first 20% of the epochs, never again: how every
# CACNet before issue 47 was trained), at the two learning rates the earlier sweeps compared, seeds 0-2, frozen
# MiniLM-L6 + EfficientNet-Lite0 features from .cache/features/, ranked by mean dev weighted F1 (never test).
# Runs land in results/cacnet-schedule/<task>/cacnet[-variant]/<point>/ (only metrics.json, config.json and sweep.json
# are kept, .gitignore); `--resume` keeps finished runs and continues an interrupted one. Each sweep's chosen point
# is promoted to results/main/<task>/cacnet[-variant]/ (the rows of docs/RESULTS.md); the better of the two rows on mean dev is
# each task's `best` preset (mmdemo/models/cacnet.py), which scripts/networks.sh and scripts/hashtags.sh bundle.
# Then `python scripts/cacnet_drift.py results/cacnet-schedule/mvsa-single/cacnet/*/mvsa-single/cacnet/seed*` says
# whether each run's cross-active weights left their initialisation (it reads the weights, kept locally only).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
TASK=${TASK:-mvsa-single}
NICE=${NICE:-19}
S="nice -n $NICE python -m trainer sweep --task $TASK --seeds 0 1 2 --jobs 1 --threads 1 --out results/cacnet-schedule --resume \
  --promote --runs runs"
$S --model cacnet --grid lr=3e-4,1e-3 schedule=per-iteration,block
# Table 4's gamma = 1 control under both schedules: phase 1, then the whole network end to end (per-iteration at
# gamma 0.4-0.8 ran Case 2 on every MVSA-Single batch, so y itself was never trained; block at gamma = 1 is how the
# hashtag bundle was trained before issue 47)
$S --model cacnet --variant gamma-1 --grid lr=3e-4,1e-3 schedule=per-iteration,block
