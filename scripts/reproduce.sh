#!/usr/bin/env bash
# Every number in README's results tables comes from these commands. The baselines ran on the 2-core CPU (minutes);
# the HGLNet / MGGF sweeps, ablations and MediaEval runs ran on one H100 (about 10 minutes with 12 runs in
# parallel; several hours on 2 CPU cores). The first command of each task encodes its features once into .cache/features/.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
T="python -m trainer"
JOBS=${JOBS:-2}

for task in mvsa-single mediaeval2016; do
  for model in text-only image-only concat; do
    $T train --task $task --model $model --seeds 0 1 2 --quiet
  done
  $T floor --task $task
done

# The networks' head hyperparameters are chosen on MVSA-Single dev (mean weighted F1 over seeds 0-2, never test);
# the best point's three runs are promoted to runs/ (the README rows).
$T sweep --task mvsa-single --model hglnet --grid conv_channels=0,256 lr=0.001,0.0003 --seeds 0 1 2 --jobs $JOBS --promote
$T sweep --task mvsa-single --model mggf --grid dropout=0.3,0.5 lr=0.0005,0.0002 --seeds 0 1 2 --jobs $JOBS --promote
best() { python -c "from trainer.sweep import best_args; print(best_args('runs-sweep/mvsa-single/$1/sweep.json'))"; }
H=$(best hglnet); M=$(best mggf)

# MediaEval with the same settings, and the ablation rows (one seed each) on MVSA-Single.
$T train --task mediaeval2016 --model hglnet --seeds 0 1 2 --quiet $H
$T train --task mediaeval2016 --model mggf --seeds 0 1 2 --quiet $M
for v in $(python -c "from mmdemo.models import get_model; print(' '.join(get_model('hglnet').variants))"); do
  $T train --task mvsa-single --model hglnet --variant "$v" --seeds 0 --quiet $H
done
for v in $(python -c "from mmdemo.models import get_model; print(' '.join(get_model('mggf').variants))"); do
  $T train --task mvsa-single --model mggf --variant "$v" --seeds 0 --quiet $M
done

for task in mvsa-single mediaeval2016; do
  for model in concat mggf hglnet; do
    $T bundle --task $task --model $model
  done
done

# Tables (README "Results").
$T report --sweeps runs-sweep
$T report --runs runs --split dev
$T report --runs runs --split test --heads fused text image
$T report --runs runs --split test --tasks mvsa-single --models mggf hglnet --variants
$T report --runs runs --split dev --tasks mvsa-single --models mggf hglnet --variants
$T probe --checkpoint checkpoints/mvsa-single/mggf --split dev
