#!/usr/bin/env bash
# Issue 16: the CPU forgetting-methods study (PROTOCOL.md in this folder). NOT YET RUN.
# Run from the repository root AFTER the main study (studies/smollm2-cpu/run_study.sh) has made
# its fine-tuned cells; it only reads them. Rerunning resumes (complete cells are skipped).
#   MAIN_ROOT  the main study's sweep root (default runs/study-smollm2; read-only here)
#   STUDY_ROOT this study's root (default runs/study-methods)
#   DATA_DIR   task data (default ../shared/data); the main study's value
set -eu
MAIN=$(realpath "${MAIN_ROOT:-runs/study-smollm2}")
ROOT=${STUDY_ROOT:-runs/study-methods}
DATA=${DATA_DIR:-../shared/data}
# the main study's candidates, as its selection table lists them (both rounds, its PROTOCOL §3, §7)
[ -f "$MAIN/selection/selection.csv" ] || { echo "error: $MAIN/selection/selection.csv missing: run the main study's selection first" >&2; exit 2; }
CANDIDATES=$(python -c "import csv,sys; print('+'.join(r['task'] for r in csv.DictReader(open(sys.argv[1]))))" "$MAIN/selection/selection.csv")
# The main study's model, precision, sizes and fine-tune budget (studies/smollm2-cpu/PROTOCOL.md)
BASE="limit=200;precision=mixed_bfloat16;finetune.lr=1e-2;finetune.max_epochs=4"
BASE="$BASE;forget.max_epochs=6"
METHODS=grad_ascent+npo+simnpo+rmu   # random_labels keeps the main study's lr 3e-1
GRID="1e-2 3e-2 1e-1 3e-1"           # PROTOCOL.md §3, ascending
sweep() {  # sweep ROOT ARG FORGET_LR [flags]
  local root=$1 arg=$2 lr=$3; shift 3
  python main.py --config=configs/sweep.py:n_train=240,"$arg" --config.data_dir="$DATA" \
    --config.base="$BASE;forget.lr=$lr" --config.retain="$RETAIN" --config.analyses=False \
    --workdir="$root" "$@"
}
link_ft() {  # link_ft ROOT TASK...: the main study's complete ft-<t> cells, read through links
  mkdir -p "$1/runs"; local root=$1; shift
  for t in "$@"; do
    python -c "import json,sys; sys.exit(0 if json.load(open('$MAIN/runs/ft-$t/results.json')).get('complete') else 1)" \
      || { echo "error: $MAIN/runs/ft-$t is not a complete fine-tuned cell" >&2; exit 2; }
    [ -e "$root/runs/ft-$t" ] || ln -s "$MAIN/runs/ft-$t" "$root/runs/ft-$t"
  done
}
# 1. tasks (PROTOCOL.md §2): the main study's 4 cross-task tasks (2 resilient, 2 forgettable by
#    Appendix B); the retain task: the first kept task that is not one of them
mkdir -p "$ROOT/selection"
mapfile -t SEL < <(python studies/smollm2-cpu/select_tasks.py "$MAIN" "$CANDIDATES" "$ROOT/selection")
KEPT=${SEL[0]}; TASKS=${SEL[1]}
# (with <= 4 kept tasks none is left over: then the first candidate outside them, PROTOCOL.md §2)
RETAIN=$(python -c "k='$KEPT'.split('+'); c='$TASKS'.split('+'); a='$CANDIDATES'.split('+'); print(next(t for t in k + a if t not in c))")
echo "tasks: $TASKS; retain: $RETAIN"
link_ft "$ROOT" ${TASKS//+/ }
# 2. per-method lr (PROTOCOL.md §3): fixed budget of 6 epochs on the most resilient task; the
#    smallest grid lr whose forget-set accuracy (training examples, true labels) ends <= 0.6
CAL=$(echo "$TASKS" | cut -d+ -f1)
declare -A LR
todo=$METHODS
for lr in $GRID; do
  [ -n "$todo" ] || break
  croot="$ROOT/calibration/lr$lr"; link_ft "$croot" "$CAL"
  sweep "$croot" "experiment=methods_fixed,tasks=$CAL" "$lr" --config.methods="$todo"
  left=""
  for m in ${todo//+/ }; do
    acc=$(python -c "import json; print(json.load(open('$croot/runs/method_fixed-$m-$CAL/results.json'))['forget_set']['accuracy']['forgotten'])")
    echo "calibration: $m lr $lr forget-set accuracy $acc" | tee -a "$ROOT/calibration/log.txt"
    if python -c "import sys; sys.exit(0 if $acc <= 0.6 else 1)"; then LR[$m]=$lr; else left="$left+$m"; fi
  done
  todo=${left#+}
done
for m in ${todo//+/ }; do LR[$m]=3e-1; echo "calibration: $m never <= 0.6: lr 3e-1 (the grid's largest)" | tee -a "$ROOT/calibration/log.txt"; done
# 3. the study: paper stop rule (test < 0.5), then the fixed budget, one sweep per lr
sweep "$ROOT" "experiment=methods,tasks=$TASKS" 3e-1 --config.methods=random_labels
for m in ${METHODS//+/ }; do sweep "$ROOT" "experiment=methods,tasks=$TASKS" "${LR[$m]}" --config.methods="$m"; done
sweep "$ROOT" "experiment=methods_fixed,tasks=$TASKS" 3e-1 --config.methods=random_labels
for m in ${METHODS//+/ }; do sweep "$ROOT" "experiment=methods_fixed,tasks=$TASKS" "${LR[$m]}" --config.methods="$m"; done
# 4. the report (its "Forgetting methods" section)
python main.py --config=configs/report.py --workdir="$ROOT"
