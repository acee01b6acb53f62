#!/usr/bin/env bash
# Issue 15: zero-shot accuracy of Gemma-3-270M beside SmolLM2-135M on the paper's 19 tasks
# (configs/eval.py: binarized, mean per-token log-likelihood, 0-shot; Gemma with BOS first),
# then the table (zero_shot_table.py -> $ZS_ROOT/zero_shot.md and .csv). Resumable: a task
# whose results.json is complete is skipped. Run from the repository root.
#   ZS_ROOT   output root (default runs/zero-shot), one eval workdir per <model>/<task>
#   DATA_DIR  task data (default ../shared/data)
#   LIMIT     test examples per task (default 200, as the studies; 0 = the whole test role)
#   TASKS     "+"-joined tasks (default: the paper's 19)
#   MODELS    "+"-joined named models (default smollm2-135m+gemma3-270m)
set -eu
ROOT=${ZS_ROOT:-runs/zero-shot}
DATA=${DATA_DIR:-../shared/data}
LIMIT=${LIMIT:-200}
ALL=piqa+arc_easy+arc_challenge+creak+boolq+sciq+pubmedqa+mathqa+toxigen+cola+mrpc+mnli+qnli+rte+wnli+cb+copa+wic+wsc
TASKS=${TASKS:-$ALL}
MODELS=${MODELS:-smollm2-135m+gemma3-270m}
for model in ${MODELS//+/ }; do
  for task in ${TASKS//+/ }; do
    out="$ROOT/$model/$task"
    if python -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])).get("complete") else 1)' \
        "$out/results.json" 2>/dev/null; then
      continue
    fi
    python main.py --config=configs/eval.py:task="$task",limit="$LIMIT",model="$model" \
      --config.data_dir="$DATA" --config.precision=float32 --workdir="$out"
  done
done
python studies/gemma3-cpu/zero_shot_table.py "$ROOT" "$TASKS" "$MODELS"
