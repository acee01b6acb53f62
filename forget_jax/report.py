"""The report of a sweep root: report/report.md, figures/*.png and tables/*.csv (CONTRACT.md).

Command lines::

  python main.py --config=configs/report.py --workdir=<sweep root>
  python -m forget_jax.report <sweep root> [--paper_dir ../shared/paper] [--n_bootstrap 1000]

Every value in a table is read from a cell's results.json. The only numbers computed here are
95% percentile-bootstrap intervals over test examples (``forget_jax.analysis.stats``) from the
``correct`` fields of ``predictions/<phase>/<task>.test.jsonl``, shown as error bars and ``_lo``/
``_hi`` columns. Cells are found by their CONTRACT.md names under ``<root>/runs/``:
``forget-<A>-on-<B>`` (random labels; ``A == B`` is a single-task run), ``flip-<A>-on-<B>``,
``forget-<t>-n<k>`` (small training set) and the ``ft-*`` cells they start from.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forget_jax import sweep
from forget_jax.analysis import cross_task, rundir, stats
from forget_jax.analysis.cross_task import Run

FIGURES = ("fig3_1_accuracy_arrows", "fig3_1_forget_gap", "fig3_1_forget_ratio",
           "fig3_2_cross_task", "fig4_1_predictors", "fig5_1_orders", "fig6_1_probes",
           "appC_flipped")
PHASES = ("pretrained", "finetuned", "forgotten")
PAPER_CSV = "appendix_b_llama2_7b.csv"
DIAGONAL = ("single", "cross_task", "size")  # experiments that make forget-<t>-on-<t> cells


def task_order(tasks: Sequence[str] | set[str]) -> list[str]:
    """Tasks in the paper's order (Appendix B), unknown ones after, alphabetically."""
    known = [t for t in sweep.PAPER_TASKS if t in tasks]
    return known + sorted(set(tasks) - set(known))


def _acc_ci(ivs: stats.PredictionIntervals, run: Run, phase: str) -> stats.Interval | None:
    return ivs.accuracy(run.predictions(phase), run.acc(phase), f"{run.name} {phase}")


def _ratio_ci(ivs: stats.PredictionIntervals, run: Run) -> stats.Interval | None:
    return ivs.ratio(run.predictions("finetuned"), run.predictions("forgotten"),
                     run.results.get("forget_mode", "random"))


def _with_ci(row: dict[str, Any], key: str, value: Any, ci: stats.Interval | None,
             shift: float = 0.0) -> None:
    row[key] = value
    row[f"{key}_lo"] = "" if ci is None else ci.lo - shift
    row[f"{key}_hi"] = "" if ci is None else ci.hi - shift


def single_task_rows(runs: Mapping[str, Run], ivs: stats.PredictionIntervals
                     ) -> list[dict[str, Any]]:
    """single_task.csv: one row per complete ``forget-<t>-on-<t>`` cell (Fig. 3.1)."""
    diag = {r.b: r for r in runs.values() if r.kind == "forget" and r.a == r.b and r.complete}
    rows = []
    for t in task_order(list(diag)):
        r = diag[t]
        row: dict[str, Any] = {"task": t, "cell": r.name,
                               "n_test": r.results.get("n_examples", {}).get("test", "")}
        for phase in PHASES:
            _with_ci(row, f"{phase}_acc", r.acc(phase), _acc_ci(ivs, r, phase))
        _with_ci(row, "forget_gap", r.results.get("forget_gap"), _acc_ci(ivs, r, "forgotten"), 0.5)
        ratio = r.results.get("forget_ratio")  # absent when fine-tuning did not beat chance
        _with_ci(row, "forget_ratio", ratio, None if ratio is None else _ratio_ci(ivs, r))
        epochs = r.results.get("epochs", {})
        row["epochs_finetune"], row["epochs_forget"] = epochs.get("finetune"), epochs.get("forget")
        rows.append(row)
    return rows


def _err(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """``[2, n]`` error-bar lengths (0 where an interval is missing)."""
    out = np.zeros((2, len(rows)))
    for i, r in enumerate(rows):
        if r[f"{key}_lo"] != "" and r[key] is not None:
            out[:, i] = max(r[key] - r[f"{key}_lo"], 0.0), max(r[f"{key}_hi"] - r[key], 0.0)
    return out


def _vals(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=np.float64)


def plot_single_task(rows: Sequence[Mapping[str, Any]], fig_dir: Path) -> list[Path]:
    """Figure 3.1: accuracy arrows, forget-gap bars and forget-ratio bars, with 95% CIs."""
    from matplotlib.figure import Figure

    tasks = [r["task"] for r in rows]
    x = np.arange(len(rows))
    width = max(6.0, 0.55 * len(rows) + 2)
    fig = Figure(figsize=(width, 4.2))
    ax = fig.subplots()
    pre, ft, fo = (_vals(rows, f"{p}_acc") for p in PHASES)
    dx = 0.22  # pretrained at x - dx, fine-tuned at x, forgotten at x + dx
    for i in x:
        for (x0, y0), (x1, y1), c in (((i - dx, pre[i]), (i, ft[i]), "tab:blue"),
                                      ((i, ft[i]), (i + dx, fo[i]), "tab:red")):
            if not np.isnan(y0) and not np.isnan(y1):
                ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops={
                    "arrowstyle": "-|>", "color": c, "lw": 1.6, "shrinkA": 3, "shrinkB": 3})
    for key, off, c, label in (("pretrained_acc", -dx, "gray", "pretrained"),
                               ("finetuned_acc", 0.0, "tab:blue", "fine-tuned"),
                               ("forgotten_acc", dx, "tab:red", "after forgetting")):
        ax.errorbar(x + off, _vals(rows, key), yerr=_err(rows, key), fmt="o", ms=3.5, color=c,
                    capsize=2, lw=0.8, label=label)
    ax.axhline(0.5, color="k", ls="--", lw=0.8)
    ax.set_xticks(x, tasks, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (95% CI)")
    ax.set_title("Single-task forgetting: pretrained -> fine-tuned -> forgotten (Fig. 3.1)")
    ax.legend(fontsize=7, loc="lower left")
    paths = [rundir.save_figure(fig, fig_dir / "fig3_1_accuracy_arrows.png")]
    for key, name, label in (
            ("forget_gap", "fig3_1_forget_gap", "forget gap = acc after forgetting - 0.5"),
            ("forget_ratio", "fig3_1_forget_ratio", "forget ratio (1 = fully forgotten)")):
        fig = Figure(figsize=(width, 3.6))
        ax = fig.subplots()
        ax.bar(x, _vals(rows, key), yerr=_err(rows, key), capsize=2,
               color="tab:orange" if key == "forget_gap" else "tab:purple")
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xticks(x, tasks, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(label + " (95% CI)", fontsize=8)
        ax.set_title(f"{key.replace('_', ' ').capitalize()} per task (Fig. 3.1)")
        paths.append(rundir.save_figure(fig, fig_dir / f"{name}.png"))
    return paths


def read_paper(paper_dir: Path, notes: list[str]) -> dict[str, dict[str, str]]:
    """The paper's Appendix B values by task (empty, with a note, when the file is absent)."""
    path = paper_dir / PAPER_CSV
    if not path.is_file():
        notes.append(f"paper reference `{path}` not found: paper columns left empty")
        return {}
    with path.open(encoding="utf-8", newline="") as f:
        return {row["task"]: row for row in csv.DictReader(f)}


def size_rows(runs: Mapping[str, Run], ivs: stats.PredictionIntervals,
              paper: Mapping[str, Mapping[str, str]]) -> list[dict[str, Any]]:
    """size_100_vs_1000.csv: forget accuracy with the small vs the default training set."""
    small = {r.b: r for r in runs.values() if r.kind == "forget_small" and r.complete}
    large = {r.b: r for r in runs.values() if r.kind == "forget" and r.a == r.b and r.complete}
    rows = []
    for t in task_order(list(small)):
        row: dict[str, Any] = {"task": t}
        for tag, r in (("small", small[t]), ("large", large.get(t))):
            row[f"ours_n_train_{tag}"] = "" if r is None else r.results.get(  # forget set
                "n_forget_train", r.results.get("n_examples", {}).get("train", ""))
            _with_ci(row, f"ours_forget_acc_{tag}", None if r is None else r.acc("forgotten"),
                     None if r is None else _acc_ci(ivs, r, "forgotten"))
            row[f"ours_forget_ratio_{tag}"] = "" if r is None else r.results.get("forget_ratio")
        for k in ("forget_acc_100", "forget_acc_1000"):
            row[f"paper_{k}"] = float(paper[t][k]) if t in paper else ""
        rows.append(row)
    return rows


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return "" if v is None else str(v)


def md_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A markdown table of ``rows`` (floats to 3 decimals)."""
    if not rows:
        return "(no rows)\n"
    cols = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# --- analyses of other chapters (Fig. 4.1, 5.1, 6.1) -------------------------------------------


def _stated(module: Any) -> str:
    """The "Choices the report must state" part of an analysis module's docstring."""
    marker = "Choices the report must state:"
    _, found, choices = (module.__doc__ or "").partition(marker)
    return f"\nChoices (from `{module.__name__}`):\n\n{choices.strip()}\n" if found else ""


def _predictors(dirs: Sequence[Path], fig: Path, table: Path, seed: int) -> str:
    from forget_jax.analysis import predictors

    rows = predictors.predictor_table(dirs)
    corr = predictors.predictor_correlations(rows)
    rundir.write_csv(rows, table)
    predictors.plot_predictors(rows, corr, fig)
    ex_table = table.with_name(table.stem + "_example_level.csv")
    text = ("\nExample level, per task: fine-tuned confidence vs. forgotten (wrong after "
            "forgetting) over the training examples the fine-tuned model got right ")
    try:
        examples = predictors.example_level(dirs)
    except rundir.RunDirError as e:  # e.g. no forgotten train predictions: say so, keep Fig 4.1
        text += f"skipped: {e}\n"
    else:
        rundir.write_csv(examples, ex_table)
        text += f"([`tables/{ex_table.name}`](tables/{ex_table.name})):\n\n" + md_table(examples)
    return ("Correlation of each predictor with the forget ratio across tasks:\n\n"
            + md_table(corr) + text + _stated(predictors))


def _orders(dirs: Sequence[Path], fig: Path, table: Path, seed: int) -> str:
    from forget_jax.analysis import orders

    rows = orders.order_table(dirs)
    rundir.write_csv(rows, table)
    orders.plot_orders(dirs, fig, seed=seed)
    return md_table(rows) + _stated(orders)


def _probes(dirs: Sequence[Path], fig: Path, table: Path, seed: int) -> str:
    from forget_jax.analysis import probes

    rows = probes.probe_table(dirs)
    rundir.write_csv(rows, table)
    probes.plot_probes(rows, fig)
    return md_table(rows) + _stated(probes)


# (figure, table, title, files each single-task cell needs, how to get them, function)
ANALYSES: tuple[tuple[str, str, str, tuple[str, ...], str, Callable[..., str]], ...] = (
    ("fig4_1_predictors", "predictors.csv", "Fig. 4.1: predictors of the forget ratio",
     ("activations/finetuned", "predictions/finetuned"),
     "activations (sweep analyses=True, the default)", _predictors),
    ("fig5_1_orders", "orders.csv", "Fig. 5.1: forgetting order vs learning order",
     ("predictions/epochs/forget.npz", "predictions/epochs/relearn.npz"),
     "a relearn phase (sweep analyses=True, the default)", _orders),
    ("fig6_1_probes", "probes.csv", "Fig. 6.1: linear probes after forgetting",
     tuple(f"activations/{p}" for p in PHASES),
     "activations of every phase (sweep analyses=True; the pretrained ones must reach the "
     "forget cell from its ft cell)", _probes),
)


def run_analyses(diag: Sequence[Run], out: Path, seed: int) -> dict[str, str]:
    """Runs each analysis on the single-task cells that have its inputs; never raises.

    Returns:
        ``{figure name: markdown body}``, a ``skipped:``/``failed:`` line where it did not run.
    """
    dirs = [r.dir for r in diag]
    bodies = {}
    for fig, table, _, needs, how, fn in ANALYSES:
        ready = [d for d in dirs if all((d / n).exists() for n in needs)]
        if not dirs:
            bodies[fig] = "skipped: no complete single-task cells (`forget-<t>-on-<t>`)."
            continue
        if not ready:
            bodies[fig] = (f"skipped: no single-task cell has {', '.join(needs)}; rerun the "
                           f"cells with {how}.")
            continue
        try:
            body = fn(ready, out / "figures" / f"{fig}.png", out / "tables" / table, seed)
        except Exception as e:  # an analysis failure must not take the report down
            logging.exception("report: %s failed", fig)
            bodies[fig] = f"failed: {type(e).__name__}: {e}"
            continue
        used = f"Used {len(ready)} of {len(dirs)} single-task cells"
        if len(ready) < len(dirs):
            used += f" (the others lack {', '.join(needs)})"
        bodies[fig] = (f"![{fig}](figures/{fig}.png)\n\nTable: [`tables/{table}`](tables/{table})"
                       f". {used}.\n\n{body}")
    return bodies


def wall_seconds(run_dir: Path, phases: Sequence[str]) -> float | None:
    """Sum of history.jsonl ``seconds`` over the given training phases (None without any).

    Each line's ``seconds`` is the time of that epoch (training + its per-epoch evaluation, as
    phases.py measures it); model loading and the phase-end evaluations are not included.
    """
    path = run_dir / "history.jsonl"
    if not path.is_file():
        return None
    secs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill mid-write
        if isinstance(rec, dict) and rec.get("phase") in phases and "seconds" in rec:
            secs.append(float(rec["seconds"]))
    return sum(secs) if secs else None


def cell_rows(root: Path, runs: Mapping[str, Run], index: Mapping[str, Any] | None
              ) -> list[dict[str, Any]]:
    """One row per cell (indexed or found on disk): status, wall time, the command that ran it."""
    entries = {e["name"]: e for e in (index or {}).get("cells", [])}
    rows = []
    for name in list(entries) + [n for n in runs if n not in entries]:
        e, d = entries.get(name, {}), root / "runs" / name
        kind = cross_task.cell_kind(name)
        phases = ("finetune",) if kind == "ft" else ("forget", "relearn")
        cmd = ""
        if "config_overrides" in e:
            cell = sweep.Cell(name, e["config_overrides"], tuple(e.get("deps", ())))
            cmd = "`" + sweep.cell_command(cell, root) + "`"
        rows.append({"cell": name, "status": sweep.disk_status(d),
                     "history_seconds": wall_seconds(d, phases),
                     "runner_seconds": e.get("seconds"), "command": cmd})
    return rows


def _commands(index: Mapping[str, Any] | None, experiments: Sequence[str]) -> list[str]:
    """Recorded sweep commands whose experiment list includes one of ``experiments``."""
    out = []
    for cmd in (index or {}).get("commands", []):
        m = re.search(r"experiment=([\w+]+)", cmd)
        if m is None or set(m.group(1).split("+")) & set(experiments):
            out.append(cmd)
    return out


def _made_by(index: Mapping[str, Any] | None, experiments: Sequence[str], report_cmd: str) -> str:
    cmds = _commands(index, experiments) or ["(cells made outside the sweep runner, or no "
                                             "sweep.json; see the cells table)"]
    runs = "; ".join(f"`{c}`" if c.startswith("python") else c for c in cmds)
    return f"Made by: runs {runs}; drawn by `{report_cmd}`.\n"


# --- the report -------------------------------------------------------------------------------

READING = (
    "**Cross-task cell A -> B (our reading of Section 3).** Start from the checkpoint fine-tuned "
    "on B (cell `ft-<B>`), run the forget phase on A's training set with random labels, and "
    "evaluate on B's test role. B's forget ratio uses B's fine-tuned accuracy, and the forget "
    "stop rule (test accuracy < 0.5) watches B. The diagonal A = B is the single-task experiment "
    "(the very same `forget-<t>-on-<t>` cells).\n")
SIZE_READING = (
    "Our reading of Appendix B: in the small setting both phases use the small training set "
    "(`ft-<t>-n100` fine-tunes on it, `forget-<t>-n100` forgets on it); the large setting is the "
    "single-task run. The paper states only that 100 examples are used for forgetting. "
    "`ours_n_train_*` is the training-set size each run actually used (a `runlocal` budget caps "
    "it). Paper columns: Llama-2-7B, Appendix B.\n")


def _section(title: str, body: str) -> str:
    return f"## {title}\n\n{body}\n"


def write_report(root: str | Path, *, paper_dir: str | Path | None = None,
                 n_bootstrap: int = stats.N_RESAMPLES, seed: int = 0,
                 report_cmd: str = "") -> Path:
    """Writes ``<root>/report/`` (report.md, figures/, tables/) from the cells on disk.

    Args:
        root: the sweep root.
        paper_dir: holds ``appendix_b_llama2_7b.csv``; default ``<repo>/../shared/paper``.
        n_bootstrap: bootstrap resamples per interval.
        seed: bootstrap (and plotting jitter) seed.
        report_cmd: the command line shown as the maker of figures and tables.

    Returns:
        The path of report.md.
    """
    root = Path(root).absolute()
    if not (root / "runs").is_dir() and not (root / "sweep.json").is_file():
        raise rundir.RunDirError(root, "is not a sweep root (no runs/ directory, no sweep.json)")
    out = root / "report"
    for stale in [*(out / "figures").glob("*.png"), *(out / "tables").glob("*.csv")]:
        stale.unlink()  # nothing this run cannot draw may survive from an earlier report
    paper_dir = Path(paper_dir) if paper_dir else sweep.REPO.parent / "shared" / "paper"
    report_cmd = report_cmd or f"python main.py --config=configs/report.py --workdir={root}"
    notes: list[str] = []
    runs = cross_task.read_runs(root, notes)
    index = sweep.load_index(root)
    ivs = stats.PredictionIntervals(n_bootstrap, seed, notes)
    md = [f"# Unforgettable generalization: report of `{root}`\n",
          f"Sweep: `{(index or {}).get('name', '(no sweep.json)')}`. Intervals: 95% percentile "
          f"bootstrap over test examples ({n_bootstrap} resamples, seed {seed}) from "
          "`predictions/<phase>/<task>.test.jsonl`; every point value is read from the cells' "
          "results.json.\n", READING]

    single = single_task_rows(runs, ivs)
    body = _made_by(index, DIAGONAL, report_cmd)
    if single:
        rundir.write_csv(single, out / "tables" / "single_task.csv")
        plot_single_task(single, out / "figures")
        body += "".join(f"\n![{f}](figures/{f}.png)\n" for f in FIGURES[:3])
        body += "\nTable: [`tables/single_task.csv`](tables/single_task.csv)\n\n" + md_table(
            single, ["task", "pretrained_acc", "finetuned_acc", "forgotten_acc", "forget_gap",
                     "forget_ratio", "epochs_finetune", "epochs_forget"])
    else:
        body += "".join(f"\n{f}: skipped: no complete `forget-<t>-on-<t>` cells.\n"
                        for f in FIGURES[:3])
    md.append(_section("Fig. 3.1: single-task forgetting", body))

    random_m = cross_task.ratio_matrix(runs, "forget", task_order)
    body = _made_by(index, ("cross_task",), report_cmd)
    if random_m is not None:
        ordered = cross_task.upgma_ordered(random_m)
        rundir.write_csv(cross_task.matrix_table(ordered),
                         out / "tables" / "cross_task_forget_ratio.csv")
        cross_task.plot_cross_task(ordered, out / "figures" / "fig3_2_cross_task.png")
        body += ("\n![fig3_2_cross_task](figures/fig3_2_cross_task.png)\n\nTable: "
                 "[`tables/cross_task_forget_ratio.csv`](tables/cross_task_forget_ratio.csv) "
                 "(rows: forget task A; columns: eval task B).\n\nOrdering: rows and columns "
                 "separately by UPGMA (`scipy.cluster.hierarchy.linkage(method='average')`), "
                 "euclidean distance between rows (resp. columns) of the forget-ratio matrix; "
                 "missing cells filled by their column mean for the clustering only.\n\n"
                 + md_table(cross_task.matrix_table(ordered)))
        shares = cross_task.effect_shares(random_m)
        body += ("\nShare of the matrix's sum of squares explained by the eval task (columns) "
                 "vs the forget task (rows): "
                 + (", ".join(f"{k} {v:.2f}" for k, v in shares.items()) if shares else
                    "n/a (incomplete matrix)") + ".\n\nOwn-task vs other-task forgetting per "
                 "eval task:\n\n" + md_table(cross_task.diagonal_summary(random_m)))
    else:
        body += "\nfig3_2_cross_task: skipped: no complete `forget-<A>-on-<B>` cells with A != B.\n"
    md.append(_section("Fig. 3.2: cross-task forgetting", body))

    size = size_rows(runs, ivs, read_paper(paper_dir, notes))
    body = _made_by(index, ("size",), report_cmd) + "\n" + SIZE_READING
    if size:
        rundir.write_csv(size, out / "tables" / "size_100_vs_1000.csv")
        body += ("\nTable: [`tables/size_100_vs_1000.csv`](tables/size_100_vs_1000.csv)\n\n"
                 + md_table(size, ["task", "ours_n_train_small", "ours_forget_acc_small",
                                   "ours_n_train_large", "ours_forget_acc_large",
                                   "paper_forget_acc_100", "paper_forget_acc_1000"]))
    else:
        body += "\nsize_100_vs_1000.csv: skipped: no complete `forget-<t>-n<k>` cells.\n"
    md.append(_section("Appendix B: 100 vs 1000 training examples", body))

    flipped_m = cross_task.ratio_matrix(runs, "flip", task_order)
    body = _made_by(index, ("flipped", "cross_task"), report_cmd)
    if flipped_m is not None:
        ordered = cross_task.upgma_ordered(flipped_m)
        rundir.write_csv(cross_task.matrix_table(ordered),
                         out / "tables" / "appC_flipped_forget_ratio.csv")
        cross_task.plot_flipped_vs_random(flipped_m, random_m,
                                          out / "figures" / "appC_flipped.png")
        body += ("\nForget ratio with flipped labels: (ft - fo) / (ft - (1 - ft)). Both panels "
                 "in the random matrix's UPGMA orders where it covers the flipped tasks."
                 "\n\n![appC_flipped](figures/appC_flipped.png)\n\nTable: "
                 "[`tables/appC_flipped_forget_ratio.csv`](tables/appC_flipped_forget_ratio.csv)"
                 "\n\n" + md_table(cross_task.matrix_table(ordered)))
    else:
        body += "\nappC_flipped: skipped: no complete `flip-<A>-on-<B>` cells with A != B.\n"
    md.append(_section("Appendix C: flipped labels", body))

    diag = [runs[r["cell"]] for r in single]
    for (fig, _, title, *_), text in zip(ANALYSES, run_analyses(diag, out, seed).values(),
                                         strict=True):
        md.append(_section(f"{title} (`{fig}`)", _made_by(index, DIAGONAL, report_cmd)
                           + "\n" + text))

    cells = cell_rows(root, runs, index)
    hist = sum(r["history_seconds"] or 0.0 for r in cells)
    runner = [r["runner_seconds"] for r in cells if r["runner_seconds"] is not None]
    body = (f"Total wall time of the runs (sum of history.jsonl `seconds`, i.e. training epochs "
            f"with their per-epoch evaluation, over each cell's own training phases): {hist:.1f} "
            f"s = {hist / 3600:.2f} h.\n\n")
    if runner:
        body += (f"Whole-cell wall time measured by the sweep runner (sweep.json `seconds`, incl. "
                 f"loading and phase-end evaluation; {len(runner)} cells): {sum(runner):.1f} s."
                 "\n\n")
    body += md_table(cells)
    if index and index.get("commands"):
        body += "\nSweep commands:\n\n" + "".join(f"- `{c}`\n" for c in index["commands"])
    md.append(_section("Cells, wall time and commands", body))
    if notes:
        md.append(_section("Notes", "".join(f"- {n}\n" for n in notes)))
    return sweep.atomic_write_text(out / "report.md", "\n".join(md))


def main(config: Any, workdir: str) -> Path:
    """Entry point of ``configs/report.py`` (main.py calls it when ``config.job == "report"``)."""
    root = Path(config.root or workdir).absolute()
    cmd = "python main.py --config=configs/report.py" + "".join(
        f" --config.{k}={config[k]}" for k, d in (("paper_dir", ""), ("n_bootstrap", 1000),
                                                    ("seed", 0)) if config[k] != d)
    cmd += f" --workdir={root}"
    path = write_report(root, paper_dir=config.paper_dir or None,
                        n_bootstrap=config.n_bootstrap, seed=config.seed, report_cmd=cmd)
    logging.info("report written to %s", path)
    return path


def cli(argv: Sequence[str] | None = None) -> Path:
    """``python -m forget_jax.report <root> [--paper_dir D] [--n_bootstrap N] [--seed S]``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root")
    p.add_argument("--paper_dir", default="")
    p.add_argument("--n_bootstrap", type=int, default=stats.N_RESAMPLES)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    cmd = f"python -m forget_jax.report {a.root}" + "".join(
        f" --{k} {v}" for k, v in vars(a).items() if k != "root" and v != p.get_default(k))
    return write_report(a.root, paper_dir=a.paper_dir or None, n_bootstrap=a.n_bootstrap,
                        seed=a.seed, report_cmd=cmd)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(cli())
