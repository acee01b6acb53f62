"""Copies a sweep root's compact results into the repository (issue 14): per cell config.json,
results.json, history.jsonl, predictions without prompt and choice text (ids join them back to
the data), per-epoch confidences, and the root's sweep.json. Never checkpoints or activations.

  python studies/smollm2-cpu/export.py SWEEP_ROOT OUT_DIR

The report then regenerates from OUT_DIR alone:
  python main.py --config=configs/report.py --workdir=OUT_DIR
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

DROP = ("prompt", "choices")  # text: recoverable from the data by id


def export_cell(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "results.json", "history.jsonl"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    for f in sorted((src / "predictions").rglob("*")):
        if not f.is_file():
            continue
        out = dst / f.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        if f.suffix == ".jsonl":
            rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
            out.write_text("".join(json.dumps({k: v for k, v in r.items() if k not in DROP})
                                   + "\n" for r in rows))
        else:
            shutil.copy2(f, out)


def main(root: str, out: str) -> int:
    root_p, out_p = Path(root), Path(out)
    cells = sorted(d for d in (root_p / "runs").glob("*") if (d / "results.json").is_file())
    if not cells:
        print(f"error: no cells with results.json under {root_p / 'runs'}", file=sys.stderr)
        return 2
    for d in cells:
        export_cell(d, out_p / "runs" / d.name)
    if (root_p / "sweep.json").is_file():
        shutil.copy2(root_p / "sweep.json", out_p / "sweep.json")
    print(f"exported {len(cells)} cells to {out_p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
