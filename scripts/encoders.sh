#!/usr/bin/env bash
# Do the larger offline encoders pay? MiniLM-L6 vs MPNet-base (text) with EfficientNet-Lite0, frozen and with the
# last text layers tuned, for concat and HGLNet (the best network on dev), 3 seeds each, on MVSA-Single; one Lite2
# row. Every point is ranked on dev only (sweep.json); `python scripts/encoders_table.py` measures what each costs
# (results/encoders/costs.json) and `python -m trainer report --markdown` puts the table in docs/RESULTS.md. Needs
# `pip install -r requirements-large.txt`. On the 2-core CPU this takes about two and a half hours (an MPNet
# fine-tuning run 15-40 minutes), so the two lanes below run side by side.
# Settings: each model's dev-chosen MiniLM point (scripts/reproduce.sh), the same for both encoders: concat tunes
# two layers at encoder_lr 5e-5 over 8 epochs, HGLNet three at 5e-5 with weight decay 0.1. HGLNet's MiniLM row of
# that point is its sweep's (results/sweep/mvsa-single/hglnet, the text encoder run live); every other row is here.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
# --resume: runs that finished are kept and interrupted ones continue, so the script can be rerun after a stop.
S="python -m trainer sweep --task mvsa-single --seeds 0 1 2 --out results/encoders --resume"
TEXT="text_encoder=minilm-l6,mpnet-base"

# Frozen encoders (the feature cache of each pair is built once, by the first run that needs it).
$S --jobs 2 --model concat --grid $TEXT
$S --jobs 2 --model hglnet --grid $TEXT conv_channels=256 lr=0.001
# The last text layers tuned, on cached hidden states.
$S --jobs 2 --model concat --grid text_encoder=minilm-l6 unfreeze_text_layers=2 encoder_lr=5e-5 epochs=8
(   # lane 1: concat with MPNet, then the Lite2 row (concat, frozen, with the 260 px image encoder)
    $S --jobs 1 --model concat --grid text_encoder=mpnet-base unfreeze_text_layers=2 encoder_lr=5e-5 epochs=8
    $S --jobs 1 --model concat --grid image_encoder=efficientnet-lite2
) &
# lane 2: HGLNet with MPNet
$S --jobs 1 --model hglnet --grid text_encoder=mpnet-base conv_channels=256 lr=0.001 weight_decay=0.1 \
    unfreeze_text_layers=3 encoder_lr=5e-5
wait
