"""The zero-shot table of run_zero_shot.sh: one row per task, per model its test accuracy with a
95% percentile-bootstrap interval (forget_jax.analysis.stats, 1000 resamples, seed 0) from the
eval run's predictions, and the number of test examples.

  python studies/gemma3-cpu/zero_shot_table.py ZS_ROOT TASKS MODELS

Reads ``ZS_ROOT/<model>/<task>/results.json`` and ``predictions/pretrained/<task>.test.jsonl``;
writes ``ZS_ROOT/zero_shot.csv`` and ``ZS_ROOT/zero_shot.md`` (a missing run is an empty cell
and a note). Exit 2 with an ``error:`` line when ZS_ROOT holds no complete run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from forget_jax import sweep  # noqa: E402
from forget_jax.analysis import rundir, stats  # noqa: E402
from forget_jax.report import md_table  # noqa: E402


def rows(root: Path, tasks: list[str], models: list[str], notes: list[str]) -> list[dict]:
    ivs = stats.PredictionIntervals(stats.N_RESAMPLES, 0, notes)
    out = []
    for task in tasks:
        row: dict = {"task": task}
        for model in models:
            d = root / model / task
            res = json.loads((d / "results.json").read_text()) if (
                d / "results.json").is_file() else {}
            acc = res.get("accuracy", {}).get("pretrained", {}).get("test") if res.get(
                "complete") else None
            if acc is None:
                notes.append(f"{model} / {task}: no complete run under `{d}`")
            ci = None if acc is None else ivs.accuracy(
                d / "predictions" / "pretrained" / f"{task}.test.jsonl", acc, f"{model} {task}")
            row[f"{model}_acc"] = "" if acc is None else acc
            row[f"{model}_acc_lo"] = "" if ci is None else ci.lo
            row[f"{model}_acc_hi"] = "" if ci is None else ci.hi
            row[f"{model}_n_test"] = res.get("n_examples", {}).get("test", "") if res else ""
        out.append(row)
    return out


def main(root: str, tasks: str, models: str) -> int:
    base, notes = Path(root), []
    model_list = models.split("+")
    table = rows(base, tasks.split("+"), model_list, notes)
    if all(r[f"{m}_acc"] == "" for r in table for m in model_list):
        print(f"error: no complete eval run under {base}/<model>/<task>", file=sys.stderr)
        return 2
    rundir.write_csv(table, base / "zero_shot.csv")
    cols = ["task"] + [f"{m}_{c}" for m in model_list for c in ("acc", "n_test")]
    md = (f"# Zero-shot test accuracy ({', '.join(model_list)})\n\n"
          "Binarized tasks (gold + one seeded distractor, chance 0.5), 0-shot, prediction = "
          "higher mean per-token log-likelihood (configs/eval.py, float32). 95% bootstrap "
          "intervals: zero_shot.csv (`_lo`/`_hi`).\n\n" + md_table(table, cols))
    if notes:
        md += "\nNotes:\n\n" + "".join(f"- {n}\n" for n in notes)
    sweep.atomic_write_text(base / "zero_shot.md", md)
    print(base / "zero_shot.md")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print("error: usage: zero_shot_table.py ZS_ROOT TASKS MODELS", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
