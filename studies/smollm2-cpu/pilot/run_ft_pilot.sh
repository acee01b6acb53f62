#!/usr/bin/env bash
# Issue 14 fine-tune-only pilot: 2 tasks x 2 fine-tune lrs; validation accuracy decides, never test.
# Run from the repository root; resumable (rerun to continue). Made on commit 08255fa.
set -u
for task in arc_easy rte; do
  for lr in 3e-3 1e-2; do
    wd=runs/pilot/ft-$task-lr$lr
    python main.py --config=configs/forget.py:task=$task,n_train=240 --config.stop_after=finetune \
      --config.limit=200 --config.finetune.lr=$lr --config.finetune.max_epochs=4 \
      --config.precision=mixed_bfloat16 --workdir=$wd
  done
done
