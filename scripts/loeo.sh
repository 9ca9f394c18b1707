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
