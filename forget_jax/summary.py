"""The end-of-run summary: a small table a newcomer can read, and its TensorBoard scalars.

:func:`intervals` takes the 95% bootstrap intervals from the run's predictions files
(:mod:`forget_jax.analysis.stats`, the report's intervals); :func:`table` formats a results.json
dict with them; the forget ratio and the forget set's accuracy are its last lines.
"""

from __future__ import annotations

import pathlib
import sys

import jax

from forget_jax.analysis import stats

PHASES = (("pretrained", "pretrained"), ("finetuned", "fine-tuned"), ("forgotten", "forgotten"),
          ("relearned", "relearned"))
ROLES = ("train", "validation", "test")


def intervals(workdir, results: dict) -> dict[str, stats.Interval]:
    """``forget_gap`` / ``forget_ratio`` / ``forget_set`` intervals of a finished forget phase
    (from predictions/{finetuned,forgotten}/*.jsonl); {} when there is none."""
    pred = pathlib.Path(workdir) / "predictions"
    task, fs = results.get("eval_task", results.get("task")), results.get("forget_set", {})
    ft, fo = pred / "finetuned" / f"{task}.test.jsonl", pred / "forgotten" / f"{task}.test.jsonl"
    if "forgotten" not in results.get("accuracy", {}) or not (ft.is_file() and fo.is_file()):
        return {}
    out = {"forget_gap": stats.accuracy_interval(fo)}
    if "forget_ratio" in results:
        out["forget_ratio"] = stats.ratio_interval(ft, fo, results.get("forget_mode", "random"))
    fs_path = pred / "forgotten" / f"{fs.get('split')}.jsonl"
    if fs_path.is_file():
        out["forget_set"] = stats.accuracy_interval(fs_path)
    return out


def _ci(iv: stats.Interval | None, shift: float = 0.0) -> str:
    return "" if iv is None else f"  [95% CI {iv.lo - shift:.3f}, {iv.hi - shift:.3f}]"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h {s // 60 % 60:02d}m {s % 60:02d}s" if s >= 3600 else \
        f"{s // 60}m {s % 60:02d}s"


def table(results: dict, cis: dict[str, stats.Interval], wall_s: float, workdir) -> str:
    """The summary text of ``results`` (a results.json dict), the intervals of
    :func:`intervals`, this invocation's wall time and the workdir."""
    acc = results.get("accuracy", {})
    phases = [(k, name) for k, name in PHASES if k in acc]
    fs = results.get("forget_set", {})
    roles = [r for r in ROLES if any(r in acc[k] for k, _ in phases)]
    label = {r: r for r in roles}
    if "train" in label and fs.get("split") == f"{results.get('task')}.train":
        label["train"] = "train (forget set)"
    width = max([len(v) for v in label.values()] + [8])
    head = f"{'accuracy':<{width}}" + "".join(f"  {name:>10}" for _, name in phases)
    lines = [f"run complete: {results.get('task')}, model {results.get('model')}"
             + (f", forget method {results['forget_method']}" if "forget_method" in results
                else ""), head]
    for r in roles:
        lines.append(f"{label[r]:<{width}}" + "".join(
            f"  {acc[k][r]:>10.3f}" if r in acc[k] else f"  {'-':>10}" for k, _ in phases))
    root = pathlib.Path(workdir)
    lines += [f"wall time: {_duration(wall_s)} (this invocation)",
              f"results: {root / 'results.json'}  predictions: {root / 'predictions'}",
              f"tensorboard: tensorboard --logdir {root / 'tensorboard'}"]
    if "forget_gap" in results:
        lines.append(f"forget gap (forgotten test acc - 0.5): {results['forget_gap']:+.3f}"
                     + _ci(cis.get("forget_gap"), 0.5))
    if "forgotten" in fs.get("accuracy", {}):
        lines.append(f"forget set accuracy after forgetting: {fs['accuracy']['forgotten']:.3f}"
                     + _ci(cis.get("forget_set")) + f"  ({fs.get('split')}, n={fs.get('n')})")
    if "forget_ratio" in results:
        lines.append(f"forget ratio ({results.get('forget_mode', 'random')}): "
                     f"{results['forget_ratio']:.3f}" + _ci(cis.get("forget_ratio")))
    elif "forget_ratio_note" in results:
        lines.append(f"forget ratio: {results['forget_ratio_note']}")
    return "\n".join(lines)


def scalars(results: dict) -> dict[str, float]:
    """TensorBoard summary scalars: accuracy per phase and split, forget gap and ratio, the
    forget set's accuracy per phase."""
    out = {f"summary/accuracy/{k}/{r}": v for k, d in results.get("accuracy", {}).items()
           for r, v in d.items()}
    for k in ("forget_gap", "forget_ratio"):
        if k in results:
            out[f"summary/{k}"] = results[k]
    for k, v in results.get("forget_set", {}).get("accuracy", {}).items():
        out[f"summary/forget_set_accuracy/{k}"] = v
    return out


def report(workdir, results: dict, wall_s: float) -> None:
    """Prints the summary of a complete run to stdout (process 0; nothing for an incomplete
    one), after flushing stderr so the table ends the output."""
    if not results.get("complete") or jax.process_index() != 0:
        return
    text = table(results, intervals(workdir, results), wall_s, workdir)
    sys.stderr.flush()
    print(text, flush=True)
