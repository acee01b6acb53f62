"""Copies a sweep root's compact results into the repository (issue 14): per cell config.json,
results.json, history.jsonl, predictions without prompt and choice text, gzipped (ids join them back
to the data), per-epoch confidences, and the root's sweep.json. Never checkpoints. Activations only
for the single-task cells the report's analyses read (Fig. 4.1 predictors, 6.1 probes), as one
compressed float16 ``activations/<phase>.npz`` per phase (``rundir.write_activations_npz``),
keeping ``prompt_last`` for the train split only (the one split Fig. 4.1's total variance reads;
probes read ``answer_last``): ~4 MB per cell instead of 13 MB of float32 Orbax files.

  python studies/smollm2-cpu/export.py SWEEP_ROOT OUT_DIR [CELL ...]   (default: every cell)

The report then regenerates from OUT_DIR alone:
  python main.py --config=configs/report.py --workdir=OUT_DIR
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere in the repo
from forget_jax.analysis import rundir  # noqa: E402
from forget_jax.rundir import atomic_write_bytes  # noqa: E402

DROP = ("prompt", "choices")  # text: recoverable from the data by id
KEEP = {"prompt_last": ("train",)}  # activation fields kept only for some splits
PHASES = ("pretrained", "finetuned", "forgotten")


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
            text = "".join(json.dumps({k: v for k, v in r.items() if k not in DROP}) + "\n"
                           for r in rows)
            # gzip without a timestamp or name: the same rows give the same bytes
            atomic_write_bytes(out.with_name(out.name + ".gz"),
                               gzip.compress(text.encode("utf-8"), mtime=0))
        elif f.suffix == ".npz":  # per-epoch confidences: the same arrays, compressed
            with np.load(f) as z:
                arrays = {k: z[k] for k in z.files}
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            atomic_write_bytes(out, buf.getvalue())
        else:
            shutil.copy2(f, out)
    results = rundir.read_results(src)
    if dst.name.startswith("forget-") and rundir.is_single_task(results):
        for phase in PHASES:
            if rundir.has_activations(src, phase):
                rundir.write_activations_npz(rundir.read_activations(src, phase),
                                             dst / "activations" / f"{phase}.npz", keep=KEEP)


def main(root: str, out: str, *only: str) -> int:
    root_p, out_p = Path(root), Path(out)
    cells = sorted(d for d in (root_p / "runs").glob("*") if (d / "results.json").is_file()
                   and rundir.read_results(d).get("complete") and (not only or d.name in only))
    if not cells:
        print(f"error: no complete cells under {root_p / 'runs'}", file=sys.stderr)
        return 2
    for d in cells:
        export_cell(d, out_p / "runs" / d.name)
    if (root_p / "sweep.json").is_file() and not only:  # a slice is not the sweep
        shutil.copy2(root_p / "sweep.json", out_p / "sweep.json")
    if (root_p / "selection").is_dir():  # the selection rule's table (PROTOCOL.md §3)
        shutil.copytree(root_p / "selection", out_p / "selection", dirs_exist_ok=True)
    print(f"exported {len(cells)} cells to {out_p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
