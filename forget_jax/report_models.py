"""Appendix D: several models side by side, one sweep root per model.

The paper asks whether its finding holds across models (Appendix D). Each model's single-task
study is its own sweep root (``forget-<t>-on-<t>`` cells, CONTRACT.md); this module reads every
root's single-task rows (:func:`forget_jax.report_tables.single_task_rows`: the same point
values, seed means, bootstrap intervals and forget-ratio gate as that root's report) and puts
the models' forget ratios side by side per task. Command lines::

  python main.py --config=configs/report.py \\
      --config.models=smollm2-135m=sweeps/main,gemma3-270m=sweeps/gemma3 --workdir=sweeps/appD
  python -m forget_jax.report_models smollm2-135m=sweeps/main gemma3-270m=sweeps/gemma3 \\
      --out sweeps/appD

Writes ``<out>/report_models/models.md``, ``tables/appD_models.csv`` (one row per task, the
columns of each model prefixed by its label) and ``figures/appD_models_forget_ratio.png``
(grouped bars with 95% CIs; an undefined ratio, fine-tuning gain not significant, is marked).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forget_jax import report_tables as tables
from forget_jax import sweep
from forget_jax.analysis import cross_task, rundir, stats

FIGURE = "appD_models_forget_ratio"
TABLE = "appD_models.csv"
# Per model: the single-task row's columns that go into the side-by-side table.
COLUMNS = ("cell", "n_test", "pretrained_acc", "finetuned_acc", "forgotten_acc",
           "forget_ratio", "forget_ratio_lo", "forget_ratio_hi", "forget_set_acc",
           "epochs_forget")


def parse_models(items: str | Sequence[str]) -> dict[str, Path]:
    """``"a=/root/a,b=/root/b"`` (or a list of ``label=root``) -> {label: root}, in order.

    Raises:
        RunDirError: a malformed item, a repeated label, fewer than two models, or a root
            without a ``runs/`` directory.
    """
    if isinstance(items, str):
        items = [s for s in items.split(",") if s.strip()]
    out: dict[str, Path] = {}
    for item in items:
        label, sep, root = (s.strip() for s in item.partition("="))
        if not sep or not label or not root:
            raise rundir.RunDirError(item, "expected label=<sweep root> (e.g. gemma3=sweeps/g)")
        if label in out:
            raise rundir.RunDirError(root, f"model label {label!r} given twice")
        path = Path(root).absolute()
        if not (path / "runs").is_dir():
            raise rundir.RunDirError(path, f"({label}) is not a sweep root (no runs/ directory)")
        out[label] = path
    if len(out) < 2:
        raise rundir.RunDirError(",".join(items) or "models", "need at least two label=root")
    return out


def model_rows(roots: Mapping[str, Path], ivs: stats.PredictionIntervals,
               notes: list[str]) -> list[dict[str, Any]]:
    """appD_models.csv: one row per task (paper order) of any root, ``<label>_<column>`` per
    model (empty where that model has no complete single-task cell of the task)."""
    per_model = {}
    for label, root in roots.items():
        model_notes: list[str] = []
        rows = tables.single_task_rows(cross_task.read_runs(root, model_notes), ivs)
        notes += [f"{label}: {n}" for n in model_notes]
        per_model[label] = {r["task"]: r for r in rows}
        if not rows:
            notes.append(f"{label}: no complete `forget-<t>-on-<t>` cells under `{root}`")
    out = []
    for task in tables.task_order({t for rows in per_model.values() for t in rows}):
        row: dict[str, Any] = {"task": task}
        for label, rows in per_model.items():
            r = rows.get(task, {})
            row.update({f"{label}_{c}": r.get(c, "") for c in COLUMNS})
        out.append(row)
    return out


def plot_models(rows: Sequence[Mapping[str, Any]], labels: Sequence[str], path: Path) -> Path:
    """Grouped bars: per task, one forget-ratio bar per model, with 95% CIs."""
    from matplotlib.figure import Figure

    x = np.arange(len(rows))
    width = 0.8 / len(labels)
    fig = Figure(figsize=(max(6.0, 0.6 * len(rows) * len(labels) + 2), 3.8))
    ax = fig.subplots()
    for k, label in enumerate(labels):
        key = f"{label}_forget_ratio"
        sub = [{"v": r[key], "v_lo": r[f"{key}_lo"], "v_hi": r[f"{key}_hi"]} for r in rows]
        off = (k - (len(labels) - 1) / 2) * width
        ax.bar(x + off, tables._vals(sub, "v"), width, yerr=tables._err(sub, "v"), capsize=2,
               label=label, color=f"C{k}")
        for i, r in enumerate(rows):
            if r[key] == cross_task.UNDEFINED:
                ax.text(i + off, 0.0, "undef.", ha="center", va="bottom", fontsize=6,
                        rotation=90)
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_xticks(x, [r["task"] for r in rows], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("forget ratio (1 = fully forgotten; 95% CI)", fontsize=8)
    ax.set_title("Single-task forget ratio per task and model (Appendix D)")
    ax.legend(fontsize=7)
    return rundir.save_figure(fig, path)


def write_comparison(models: str | Sequence[str] | Mapping[str, Path], out: str | Path, *,
                     n_bootstrap: int = stats.N_RESAMPLES, seed: int = 0,
                     report_cmd: str = "") -> Path:
    """Writes ``<out>/report_models/`` (models.md, tables/, figures/); returns models.md."""
    from forget_jax.report import md_table

    roots = dict(models) if isinstance(models, Mapping) else parse_models(models)
    base = Path(out).absolute() / "report_models"
    notes: list[str] = []
    ivs = stats.PredictionIntervals(n_bootstrap, seed, notes)
    rows = model_rows(roots, ivs, notes)
    labels = list(roots)
    md = ["# Appendix D: forget ratio per task, models side by side\n",
          "".join(f"- `{label}`: sweep root `{root}`\n" for label, root in roots.items()),
          f"\nEach model's values are its root's single-task rows (the report's "
          f"`single_task.csv`: means over seeds, 95% percentile bootstrap intervals, "
          f"{n_bootstrap} resamples, seed {seed}; a forget ratio is `{cross_task.UNDEFINED}` "
          "where the fine-tuned test accuracy's lower bound is <= 0.5).\n"]
    if report_cmd:
        md.append(f"\nMade by: `{report_cmd}`\n")
    if rows:
        rundir.write_csv(rows, base / "tables" / TABLE)
        plot_models(rows, labels, base / "figures" / f"{FIGURE}.png")
        cols = ["task"] + [f"{m}_{c}" for m in labels for c in
                           ("finetuned_acc", "forgotten_acc", "forget_ratio")]
        md += [f"\n![{FIGURE}](figures/{FIGURE}.png)\n",
               f"\nTable: [`tables/{TABLE}`](tables/{TABLE})\n\n", md_table(rows, cols)]
    else:
        md.append(f"\n{FIGURE}: skipped: no model has complete single-task cells.\n")
    if notes:
        md.append("\n## Notes\n\n" + "".join(f"- {n}\n" for n in notes))
    return sweep.atomic_write_text(base / "models.md", "".join(md))


def main(config: Any, workdir: str) -> Path:
    """``configs/report.py`` with ``models`` set (report.main hands over): writes under
    ``--workdir``; ``n_bootstrap``/``seed`` as for one root's report."""
    out = Path(config.root or workdir).absolute()
    cmd = (f"python main.py --config=configs/report.py --config.models={config.models}"
           + "".join(f" --config.{k}={config[k]}" for k, d in (("n_bootstrap", 1000),
                                                                 ("seed", 0)) if config[k] != d)
           + f" --workdir={out}")
    path = write_comparison(config.models, out, n_bootstrap=config.n_bootstrap,
                            seed=config.seed, report_cmd=cmd)
    logging.info("model comparison written to %s", path)
    return path


def cli(argv: Sequence[str] | None = None) -> Path:
    """``python -m forget_jax.report_models label=root label=root --out DIR``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+", help="label=<sweep root>, one per model")
    p.add_argument("--out", required=True)
    p.add_argument("--n_bootstrap", type=int, default=stats.N_RESAMPLES)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    cmd = "python -m forget_jax.report_models " + " ".join(a.models) + f" --out {a.out}"
    return write_comparison(a.models, a.out, n_bootstrap=a.n_bootstrap, seed=a.seed,
                            report_cmd=cmd)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    try:
        print(cli())
    except rundir.RunDirError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
