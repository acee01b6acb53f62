#!/usr/bin/env bash
# Regenerates a study report from the committed compact results alone (no checkpoints, no data):
# the sweep report (configs/report.py) and the claims' pre-registered readings (verdicts.py).
#   studies/smollm2-cpu/make_report.sh [RESULTS_DIR]   (default studies/smollm2-cpu/results)
# Run from the repository root, with ../shared/paper beside it (the paper's columns).
set -eu
R=${1:-studies/smollm2-cpu/results}
python main.py --config=configs/report.py --workdir="$R"
python studies/smollm2-cpu/verdicts.py "$R/report"
