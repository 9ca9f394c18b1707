#!/usr/bin/env bash
# LoRA adapters instead of whole tuned text layers (small checkpoints): each network's dev-chosen point (its
# preset) with the same tuned layers trained through LoRA adapters of rank 8 on every linear layer, 3 seeds, on
# MVSA-Single. The adapters' learning rate is chosen on dev from 1e-4 / 5e-4 on concat; the networks take concat's
# choice. Compared with the whole-layer rows (runs/) on dev: `python -m trainer report --runs runs runs-lora
# --split dev --tasks mvsa-single` (docs/RESULTS.md "Small checkpoints"). On the 2-core CPU: about 15 minutes a
# concat or MGGF run and 30 an HGLNet run with two at a time, so about 2 hours in all.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
S="python -m trainer sweep --task mvsa-single --seeds 0 1 2 --out runs-lora --resume --threads 1"
$S --jobs 2 --model concat --grid unfreeze_text_layers=2 lora_rank=8 encoder_lr=1e-4,5e-4 epochs=8
LR=$(python -c "import json; print(json.load(open('runs-lora/mvsa-single/concat/sweep.json'))['best']['encoder_lr'])")
# HGLNet (two runs at a time) and MGGF (one) side by side
$S --jobs 2 --model hglnet --grid conv_channels=256 lr=0.001 weight_decay=0.1 unfreeze_text_layers=3 lora_rank=8 \
    encoder_lr=$LR &
$S --jobs 1 --model mggf --grid dropout=0.5 lr=0.0005 unfreeze_text_layers=2 lora_rank=8 encoder_lr=$LR
wait

# The bundles whose text blocks were tuned whole (concat, HGLNet and MGGF on MVSA-Single and MediaEval) shipped as
# LoRA adapters: `trainer bundle --lora-rank R` replaces each tuned weight's change by its top R singular directions
# (the closest rank-R change, `MultimodalClassifier.as_lora`), keeps the tuned biases and LayerNorms, and re-measures
# dev. No training: a few seconds each, from the whole-block bundles of commit efeb4ad. Rank 32 goes to
# runs-lora/rank32 (its config and metrics only, for the comparison in docs/RESULTS.md), rank 64 into checkpoints/.
WHOLE=$(mktemp -d)
git archive efeb4ad checkpoints/{mvsa-single,mediaeval2016}/{concat,hglnet,mggf} | tar -x -C "$WHOLE"
for tm in {mvsa-single,mediaeval2016}/{concat,hglnet,mggf}; do
    B="python -m trainer bundle --task ${tm%/*} --model ${tm#*/} --checkpoint $WHOLE/checkpoints/$tm"
    $B --dest "$WHOLE/rank32" --lora-rank 32
    mkdir -p "runs-lora/rank32/$tm" && cp "$WHOLE/rank32/$tm"/{config,metrics}.json "runs-lora/rank32/$tm/"
    $B --lora-rank 64
done
rm -rf "$WHOLE"
