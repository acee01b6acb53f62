"""Rows of the report's tables (single-task, cross-task, size, cells) and Fig. 3.1.

A *group* is the cells that differ only in their ``-s<seed>`` suffix. One function,
:func:`cell_row`, makes a table row from a group: with one cell it is that cell's row (per-seed
tables), with several the mean over seeds. Point values are results.json values (means over the
seeds); intervals are 95% bootstraps from the ``correct`` fields of the predictions files,
hierarchical over seeds (:func:`forget_jax.analysis.stats.bootstrap_hierarchical`).

Gating of the forget ratio: the ratio ``(ft - fo) / (ft - 1/2)`` (flipped: ``/ (2 ft - 1)``) is
shown only where the fine-tuned test accuracy's 95% interval lies above 0.5 (over the group's
seeds); otherwise the cell reads :data:`~forget_jax.analysis.cross_task.UNDEFINED`. Without the
fine-tuned predictions files the gate cannot be checked: ``ft_gain_significant`` is empty and the
results.json ratio is shown.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forget_jax import sweep
from forget_jax.analysis import cross_task, rundir, stats
from forget_jax.analysis.cross_task import UNDEFINED, Matrix, Run, build_matrix, group_name

PHASES = ("pretrained", "finetuned", "forgotten")
VARIANTS = {"forget": "literal", "fixed": "fixed", "flip": "flipped"}


def task_order(tasks: Sequence[str] | set[str]) -> list[str]:
    """Tasks in the paper's order (Appendix B), unknown ones after, alphabetically."""
    known = [t for t in sweep.PAPER_TASKS if t in tasks]
    return known + sorted(set(tasks) - set(known))


def groups(runs: Mapping[str, Run], kind: str) -> dict[str, list[Run]]:
    """Complete cells of ``kind`` by group name, each group sorted by seed."""
    out: dict[str, list[Run]] = defaultdict(list)
    for r in runs.values():
        if r.kind == kind and r.complete:
            out[group_name(r.name)].append(r)
    return {k: sorted(v, key=lambda r: r.seed) for k, v in out.items()}


def _mean(values: Sequence[Any]) -> float | str:
    """Mean of the values over seeds (the value itself when all agree); "" when a seed lacks it."""
    if not values or any(not isinstance(v, int | float) or isinstance(v, bool) for v in values):
        return ""
    return values[0] if len(set(values)) == 1 else float(np.mean(values))


def _with_ci(row: dict[str, Any], key: str, value: Any, ci: stats.Interval | None,
             shift: float = 0.0) -> None:
    row[key] = value
    row[f"{key}_lo"] = "" if ci is None else ci.lo - shift
    row[f"{key}_hi"] = "" if ci is None else ci.hi - shift


def _forget_set_path(r: Run) -> Path | None:
    split = r.results.get("forget_set", {}).get("split")
    return rundir.prediction_file(r.dir, "forgotten", split) if split else None


def cell_row(cells: Sequence[Run], ivs: stats.PredictionIntervals) -> dict[str, Any]:
    """A table row from a group of cells (one per seed): see the module docstring."""
    r0 = cells[0]
    res = [r.results for r in cells]
    mode = r0.results.get("forget_mode", "random")
    row: dict[str, Any] = {
        "forget_task": r0.a, "eval_task": r0.b, "variant": VARIANTS.get(r0.kind, r0.kind),
        "cell": group_name(r0.name) if len(cells) > 1 else r0.name,
        "seeds": "+".join(str(r.seed) for r in cells), "n_seeds": len(cells),
        "n_test": _mean([x.get("n_examples", {}).get("test") for x in res])}
    for phase in PHASES:
        preds = [r.predictions(phase) for r in cells]
        accs = [r.acc(phase) for r in cells]
        _with_ci(row, f"{phase}_acc", _mean(accs),
                 ivs.accuracy(preds, accs, f"{r0.name} {phase} test"))
    _with_ci(row, "forget_gap", _mean([x.get("forget_gap") for x in res]),
             ivs.accuracy([r.predictions("forgotten") for r in cells]), 0.5)
    ft_lo = row["finetuned_acc_lo"]
    row["ft_gain_significant"] = "" if ft_lo == "" else bool(ft_lo > 0.5)
    note = f"`{row['cell']}`: no fine-tuned test predictions, forget-ratio gate not checked"
    if ft_lo == "" and note not in ivs.notes:
        ivs.notes.append(note)
    ratio = _mean([x.get("forget_ratio") for x in res])
    ci = None
    if row["ft_gain_significant"] is False:
        ratio = UNDEFINED
    elif ratio != "":
        ci = ivs.ratio([r.predictions("finetuned") for r in cells],
                       [r.predictions("forgotten") for r in cells], mode)
    _with_ci(row, "forget_ratio", ratio, ci)
    row["forget_ratio_n_undefined_draws"] = "" if ci is None else ci.n_undefined
    fs = [x.get("forget_set", {}) for x in res]
    row["forget_set_split"] = fs[0].get("split", "")
    row["forget_set_n"] = _mean([f.get("n") for f in fs])
    _with_ci(row, "forget_set_acc", _mean([f.get("accuracy", {}).get("forgotten") for f in fs]),
             ivs.accuracy([_forget_set_path(r) for r in cells]))
    row["forget_set_confidence"] = _mean([f.get("confidence", {}).get("forgotten") for f in fs])
    for ph, key in (("finetune", "epochs_finetune"), ("forget", "epochs_forget")):
        row[key] = _mean([x.get("epochs", {}).get(ph) for x in res])
    row["forget_stop_rule"] = "+".join(sorted({str(x["forget_stop_rule"]) for x in res
                                               if "forget_stop_rule" in x}))
    for ph in ("finetune", "forget"):
        row[f"params_changed_{ph}"] = _mean(
            [(x.get("params_changed_fraction") or {}).get(ph) for x in res])
    row["n_forget_train"] = _mean([x.get("n_forget_train", x.get("n_examples", {}).get("train"))
                                   for x in res])  # older runs: the training-set size
    row["init_from"] = "+".join(sorted({Path(r.init_from).name for r in cells if r.init_from}))
    return row


def single_task_rows(runs: Mapping[str, Run], ivs: stats.PredictionIntervals,
                     per_seed: bool = False, kind: str = "forget") -> list[dict[str, Any]]:
    """single_task.csv (mean over seeds) or single_task_per_seed.csv: the diagonal cells of
    ``kind`` (``forget-<t>-on-<t>``; ``null-<t>`` for null_control.csv, ``flip-<t>-on-<t>``)."""
    diag = [g for g in groups(runs, kind).values() if g[0].a == g[0].b]
    pos = {t: i for i, t in enumerate(task_order({g[0].b for g in diag}))}
    diag.sort(key=lambda g: pos[g[0].b])
    cells = [[r] for g in diag for r in g] if per_seed else diag
    return [{"task": g[0].b, **cell_row(g, ivs)} for g in cells]


def flipped_vs_random_rows(runs: Mapping[str, Run], ivs: stats.PredictionIntervals
                           ) -> list[dict[str, Any]]:
    """flipped_vs_random.csv: per task with a ``flip-<t>-on-<t>`` cell, its forget ratio (and
    forget-set accuracy) beside the random-label ``forget-<t>-on-<t>`` of the same ``ft-<t>``."""
    rand = {r["task"]: r for r in single_task_rows(runs, ivs)}
    rows = []
    for f in single_task_rows(runs, ivs, kind="flip"):
        r = rand.get(f["task"], {})
        row: dict[str, Any] = {"task": f["task"], "seeds": f["seeds"],
                               "finetuned_acc": f["finetuned_acc"]}
        for tag, x in (("random", r), ("flipped", f)):
            row[f"cell_{tag}"] = x.get("cell", "")
            for key in ("forgotten_acc", "forget_ratio", "forget_ratio_lo", "forget_ratio_hi",
                        "forget_set_acc", "epochs_forget", "forget_stop_rule"):
                row[f"{key}_{tag}"] = x.get(key, "")
        rows.append(row)
    return rows


def cross_task_cells(runs: Mapping[str, Run], ivs: stats.PredictionIntervals
                     ) -> list[dict[str, Any]]:
    """cross_task_cells.csv: one row per literal/fixed cell and seed (diagonal included), plus
    the mean over seeds (``seeds`` like ``0+1``) of each group with several."""
    rows = [cell_row(c, ivs) for kind in ("forget", "fixed") for g in groups(runs, kind).values()
            for c in [[r] for r in g] + ([g] if len(g) > 1 else [])]
    pos = {t: i for i, t in enumerate(task_order({x for r in rows
                                                   for x in (r["forget_task"], r["eval_task"])}))}
    return sorted(rows, key=lambda r: (r["variant"] != "literal", pos[r["forget_task"]],
                                       pos[r["eval_task"]], r["seeds"]))


def ratio_matrix(runs: Mapping[str, Run], kind: str, ivs: stats.PredictionIntervals
                 ) -> Matrix | None:
    """The seed-mean, gated forget ratios of the ``kind`` cells (``forget``/``fixed``/``flip``).

    Returns:
        The matrix, or None when there is no complete off-diagonal cell.
    """
    gs = list(groups(runs, kind).values())
    if not any(g[0].a != g[0].b for g in gs):
        return None
    ratios = {(g[0].a, g[0].b): cell_row(g, ivs)["forget_ratio"] for g in gs}
    entries = {k: None if v == "" else v for k, v in ratios.items()}
    return build_matrix(entries, task_order({t for pair in entries for t in pair}))


def size_rows(runs: Mapping[str, Run], ivs: stats.PredictionIntervals,
              paper: Mapping[str, Mapping[str, str]]) -> list[dict[str, Any]]:
    """size_100_vs_1000.csv: ``forget-<t>-n<k>`` (small forget set, from ``ft-<t>``) vs the
    single-task ``forget-<t>-on-<t>`` (both start from the same fine-tuned cell)."""
    large = {g[0].b: g for g in groups(runs, "forget").values() if g[0].a == g[0].b}
    small = groups(runs, "forget_small")
    pos = {t: i for i, t in enumerate(task_order({g[0].b for g in small.values()}))}
    rows = []
    for _, g in sorted(small.items(), key=lambda kv: (pos[kv[1][0].b], kv[0])):
        t = g[0].b
        s = cell_row(g, ivs)
        lg = cell_row(large[t], ivs) if t in large else None
        row: dict[str, Any] = {"task": t, "cell_small": s["cell"],
                               "cell_large": "" if lg is None else lg["cell"],
                               "init_from_small": s["init_from"], "seeds": s["seeds"]}
        for key in ("finetuned_acc", "finetuned_acc_lo", "finetuned_acc_hi"):
            row[key] = s[key]
        for tag, r in (("small", s), ("large", lg)):
            row[f"ours_n_train_{tag}"] = "" if r is None else r["n_forget_train"]
            for key in ("forgotten_acc", "forgotten_acc_lo", "forgotten_acc_hi"):
                row[key.replace("forgotten_acc", f"ours_forget_acc_{tag}")] = (
                    "" if r is None else r[key])
            row[f"ours_forget_ratio_{tag}"] = "" if r is None else r["forget_ratio"]
            row[f"ours_forget_set_acc_{tag}"] = "" if r is None else r["forget_set_acc"]
        for k in ("forget_acc_100", "forget_acc_1000"):
            row[f"paper_{k}"] = float(paper[t][k]) if t in paper else ""
        rows.append(row)
    return rows


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


def _err(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """``[2, n]`` error-bar lengths (0 where an interval or value is missing)."""
    out = np.zeros((2, len(rows)))
    for i, r in enumerate(rows):
        if isinstance(r[key], float) and r[f"{key}_lo"] != "":
            out[:, i] = max(r[key] - r[f"{key}_lo"], 0.0), max(r[f"{key}_hi"] - r[key], 0.0)
    return out


def _vals(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([r[key] if isinstance(r[key], float) else np.nan for r in rows])


def plot_single_task(rows: Sequence[Mapping[str, Any]], fig_dir: Path) -> list[Path]:
    """Figure 3.1: accuracy arrows (+ the forget set's accuracy after forgetting), forget-gap
    bars and forget-ratio bars (undefined ratios marked), with 95% CIs."""
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
    for key, off, c, fmt, label in (
            ("pretrained_acc", -dx, "gray", "o", "pretrained (test)"),
            ("finetuned_acc", 0.0, "tab:blue", "o", "fine-tuned (test)"),
            ("forgotten_acc", dx, "tab:red", "o", "after forgetting (test)"),
            ("forget_set_acc", 1.6 * dx, "tab:green", "x", "forget set after forgetting")):
        ax.errorbar(x + off, _vals(rows, key), yerr=_err(rows, key), fmt=fmt, ms=4, color=c,
                    capsize=2, lw=0.8, label=label)
    ax.axhline(0.5, color="k", ls="--", lw=0.8)
    ax.set_xticks(x, tasks, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (95% CI)")
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
        for i, r in enumerate(rows):
            if r[key] == UNDEFINED:
                ax.text(i, 0.0, "undefined\n(fine-tuning\ngain n.s.)", ha="center",
                        va="bottom", fontsize=7)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xlim(-0.6, len(rows) - 0.4)  # keep the slots of undefined (NaN) bars
        ax.set_xticks(x, tasks, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(label + " (95% CI)", fontsize=8)
        ax.set_title(f"{key.replace('_', ' ').capitalize()} per task (Fig. 3.1)")
        paths.append(rundir.save_figure(fig, fig_dir / f"{name}.png"))
    return paths


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
