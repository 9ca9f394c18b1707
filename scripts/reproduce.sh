#!/usr/bin/env bash
# Every number in README's results tables comes from these commands (CPU, about an hour in all on 2 cores).
# The first command of each task encodes its features once into .cache/features/.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
T="python -m trainer"

for task in mvsa-single mediaeval2016; do
  for model in text-only image-only concat mggf hglnet; do
    $T train --task $task --model $model --seeds 0 1 2 --quiet
  done
  $T floor --task $task
  for model in concat mggf hglnet; do
    $T bundle --task $task --model $model
  done
done

# Ablation rows, one seed each, on mvsa-single.
for v in $(python -c "from mmdemo.models import get_model; print(' '.join(get_model('mggf').variants))"); do
  $T train --task mvsa-single --model mggf --variant "$v" --seeds 0 --quiet
done
for v in $(python -c "from mmdemo.models import get_model; print(' '.join(get_model('hglnet').variants))"); do
  $T train --task mvsa-single --model hglnet --variant "$v" --seeds 0 --quiet
done

# Tables (README "Results").
$T report --runs runs --split dev
$T report --runs runs --split test --heads fused text image
$T report --runs runs --split test --tasks mvsa-single --models mggf hglnet --variants
