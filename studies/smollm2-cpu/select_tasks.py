"""Issue 14 task selection (PROTOCOL.md §3), run after the fine-tuning cells, before forgetting.

Writes ``<out>/selection.csv`` (one row per candidate: validation accuracies, baseline, paired
95% gain interval, kept) and prints two "+"-joined task lists: the kept tasks, and the 4
cross-task tasks (the 2 kept tasks with the highest and the 2 with the lowest forgotten accuracy
in the paper's Appendix B, ties in Appendix B order). Exit 1 with an `error:` line when fewer
than 6 tasks are kept.

  python studies/smollm2-cpu/select_tasks.py ROOT CANDIDATES OUT_DIR
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from forget_jax.analysis import rundir, selection  # noqa: E402

PAPER_CSV = REPO.parent / "shared" / "paper" / "appendix_b_llama2_7b.csv"


def main(root: str, candidates: str, out_dir: str) -> int:
    rows = [selection.gain_row(Path(root) / "runs" / f"ft-{t}", t, n_resamples=10000)
            for t in candidates.split("+")]
    rundir.write_csv(rows, Path(out_dir) / "selection.csv")
    kept = [r["task"] for r in rows if r["kept"]]
    if len(kept) < 2:
        print(f"error: only {len(kept)} tasks kept ({'+'.join(kept)}); PROTOCOL.md §7 needs 2",
              file=sys.stderr)
        return 1
    if len(kept) < 6:
        print(f"deviation: {len(kept)} tasks kept ({'+'.join(kept)}), below the issue's 6 "
              "(PROTOCOL.md §7)", file=sys.stderr)
    with PAPER_CSV.open(newline="") as f:
        rows_paper = list(csv.DictReader(f))
    paper = [r["task"] for r in rows_paper]
    acc = {r["task"]: float(r["forget_acc_1000"]) for r in rows_paper}
    ordered = sorted(kept, key=lambda t: (-acc[t], paper.index(t)))
    low = sorted(kept, key=lambda t: (acc[t], paper.index(t)))
    cross = ordered[:2] + [t for t in low if t not in ordered[:2]][:2]
    print("+".join(kept))
    print("+".join(cross))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
