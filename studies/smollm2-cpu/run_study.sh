#!/usr/bin/env bash
# Issue 14: the SmolLM2-135M CPU study, exactly as pre-registered in PROTOCOL.md. Run from the
# repository root; rerunning the same command resumes (complete cells are skipped).
#   STUDY_ROOT  sweep root (default runs/study-smollm2, an ignored folder)
#   DATA_DIR    task data (default ../shared/data); keep the same value when resuming
set -eu
ROOT=${STUDY_ROOT:-runs/study-smollm2}
DATA=${DATA_DIR:-../shared/data}
CANDIDATES=arc_easy+piqa+sciq+creak+boolq+rte+qnli+wic  # PROTOCOL.md §3
CANDIDATES=$CANDIDATES+arc_challenge+cola+mnli+mrpc+toxigen  # §7, second round
BASE="limit=200;precision=mixed_bfloat16;finetune.lr=1e-2;finetune.max_epochs=4"
BASE="$BASE;forget.lr=3e-1;forget.max_epochs=6;relearn.lr=1e-2;relearn.max_epochs=3"
sweep() {
  local arg=$1; shift
  python main.py --config=configs/sweep.py:n_train=240,n_small=100,"$arg" \
    --config.data_dir="$DATA" --config.base="$BASE" --config.null_lr=3e-4 --workdir="$ROOT" "$@"
}
# 1. fine-tune every candidate (stage 0 of the single-task experiment)
sweep "experiment=single,tasks=$CANDIDATES,stage=0"
# 2. the selection rule (PROTOCOL.md §3): kept tasks, and the 4 cross-task tasks
mkdir -p "$ROOT/selection"
mapfile -t SEL < <(python studies/smollm2-cpu/select_tasks.py "$ROOT" "$CANDIDATES" "$ROOT/selection")
KEPT=${SEL[0]}; CROSS=${SEL[1]}
echo "kept: $KEPT; cross-task: $CROSS"
# 3. forgetting, in order of priority (each line resumable on its own)
NULL_TASKS=$(echo "$CROSS" | cut -d+ -f1,3)  # the most resilient and the most forgettable
sweep "experiment=single,tasks=$KEPT"
sweep "experiment=null,tasks=$NULL_TASKS"
sweep "experiment=flipped_diag+size,tasks=$KEPT"
sweep "experiment=cross_task_fixed+cross_task,tasks=$CROSS"
sweep "experiment=single,tasks=$KEPT,seeds=1" --config.analyses=False
# 4. the report
python main.py --config=configs/report.py --workdir="$ROOT"
