#!/usr/bin/env bash
# Fake news on events never seen in training: MediaEval 2016 leave-one-event-out (trainer/loeo.py), every event in
# turn as the test fold, epochs chosen on two other events with both classes. Frozen MiniLM-L6 + EfficientNet-Lite0
# (15 folds x 3 seeds of fine-tuning are beyond the 2-core CPU). Reports: runs-loeo/mediaeval2016/<model>/loeo/loeo.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
L="python -m trainer train --task mediaeval2016 --protocol loeo --seeds 0 1 2 --quiet"
for model in text-only image-only concat; do
  $L --model $model --out runs-loeo
done

# The options made for unseen events, chosen by the leave-one-event-out validation folds (never a left-out event):
# `trainer sweep --protocol loeo` trains each point as one LOEO run over the seeds and ranks the points by the mean
# validation macro F1 (runs-loeo-sweep/mediaeval2016/<model>/sweep.json). First the sampling (each image counted
# once, or every event weighing the same), then the event adversary's lambda and image dropout on the winner.
S="python -m trainer sweep --task mediaeval2016 --protocol loeo --seeds 0 1 2 --out runs-loeo-sweep --resume --jobs 2"
$S --model concat --grid image_cap=0,1 balance_groups=false,true
$S --model concat --grid $(python -c "
import json; b = json.load(open('runs-loeo-sweep/mediaeval2016/concat/sweep.json'))['best']
print(' '.join(f'{k}={str(v).lower()}' for k, v in b.items()))") event_adversarial=0,0.1,1 image_dropout=0,0.3

# The networks' rows, on the same frozen features and default sampling as the baselines above, each with its
# MediaEval head settings (`--preset best`, its text layers left frozen). 45 trainings each: on this 2-core CPU an
# HGLNet fold took 7 minutes with Sandy left out and over 20 with Nepal left out (every other event in training, about
# 75 s an epoch, up to 30 epochs); a run on the task's split takes 4-5 minutes for MGGF and CACNet, 13 for MAHFNet
# and 30 for INFIG, and a fold trains on more. So these are a day or more here and an hour or so on a GPU.
# `--resume` keeps every finished fold (loeo/.folds/) and the fold in training's last epoch, so a run continues
# across interruptions.
for model in hglnet mggf cacnet mahfnet infig; do
  $L --model $model --preset best --unfreeze-text-layers 0 --out runs-loeo --resume
done
