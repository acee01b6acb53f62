#!/usr/bin/env bash
# Issue 14 forget-lr calibration: one resilient task (arc_easy), from the pilot's fine-tuned
# model (lr 1e-2), random labels, a fixed budget of 3 forget epochs (forget.stop_rule=fixed: no
# test-based stop). The choice is made by the forget set's accuracy (its own training examples,
# true labels) reaching ~chance; test accuracy is recorded but never used. Run from the repo root;
# resumable (rerun to continue).
set -u
# 1e-3 and 1e-2 first; 3e-2 and 1e-1 added after both left the forget set at .88, 3e-1 after
# 1e-1 left it at .72 (1e-4, the
# paper's, was not run: a step moves the weights at most lr, so it cannot move more than 1e-3).
for lr in 1e-3 1e-2 3e-2 1e-1 3e-1; do
  wd=runs/calib/forget-arc_easy-lr$lr
  python main.py --config=configs/forget.py:task=arc_easy,n_train=240 \
    --config.init_from=runs/pilot/ft-arc_easy-lr1e-2 --config.limit=200 \
    --config.finetune.lr=1e-2 --config.finetune.max_epochs=4 \
    --config.forget.lr=$lr --config.forget.max_epochs=3 --config.forget.stop_rule=fixed \
    --config.precision=mixed_bfloat16 --workdir=$wd
done
