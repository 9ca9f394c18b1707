#!/usr/bin/env bash
# LoRA adapters instead of whole tuned text layers (small checkpoints): each network's dev-chosen point
# (its preset) with the same tuned layers trained through LoRA adapters of rank 8 on every linear layer, 3 seeds,
# on MVSA-Single. The adapters' learning rate is chosen on dev from 1e-4 / 5e-4 on concat; the networks take
# concat's choice. Compare with the whole-layer rows (runs/, runs-encoders/) on dev.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
JOBS=${JOBS:-2}
S="python -m trainer sweep --task mvsa-single --seeds 0 1 2 --jobs $JOBS --out runs-lora"
$S --model concat --grid unfreeze_text_layers=2 lora_rank=8 encoder_lr=1e-4,5e-4 epochs=8
LR=$(python -c "import json; print(json.load(open('runs-lora/mvsa-single/concat/sweep.json'))['best']['encoder_lr'])")
$S --model mggf --grid dropout=0.5 lr=0.0005 unfreeze_text_layers=2 lora_rank=8 encoder_lr=$LR
$S --model hglnet --grid conv_channels=256 lr=0.001 weight_decay=0.1 unfreeze_text_layers=3 lora_rank=8 encoder_lr=$LR
