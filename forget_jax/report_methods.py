"""The report's forgetting-methods section (issue 16): does each method's forgetting generalize?

Read from the ``method-<m>-<t>`` (paper stop rule) and ``method_fixed-<m>-<t>`` (fixed budget)
cells of the sweep's ``methods`` / ``methods_fixed`` experiments (forget_jax/sweep_cells.py),
one row per method, variant and task (the mean over seeds, as every report table:
:func:`forget_jax.report_tables.cell_row`):

* the generalization of forgetting: the forget set's accuracy before (``forget_set_acc_ft``)
  and after forgetting (``forget_set_acc``) beside the task's held-out test accuracy before
  (``finetuned_acc``) and after (``forgotten_acc``); ``forget_set_ratio`` and ``forget_ratio``
  are the same ratio ``(before - after) / (before - 1/2)`` on the forget set and on test.
  Neither is clipped: gradient ascent can push accuracy below chance, ratio > 1.
* the damage to other tasks: the test accuracy of each of the cell's ``eval_tasks`` before
  (the fine-tuned model, scored by the forget cell) and after forgetting; the main table has
  their means (``other_acc_before``, ``other_acc_after``, ``other_drop`` = before - after),
  ``methods_other_tasks.csv`` one row per other task.

Outputs: ``tables/methods.csv``, ``tables/methods_other_tasks.csv``,
``figures/methods_generalization.png`` (forget set vs test accuracy after forgetting, one
marker per method) and the markdown returned by :func:`section`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forget_jax import report_tables as tables
from forget_jax.analysis import rundir, stats
from forget_jax.analysis.cross_task import Run

KINDS = {"method": "literal", "method_fixed": "fixed"}  # cell kind -> variant
EXPERIMENTS = ("methods", "methods_fixed")
FIGURE = "methods_generalization"
COLUMNS = ["method", "variant", "task", "seeds", "finetuned_acc", "forgotten_acc",
           "forget_ratio", "forget_set_acc_ft", "forget_set_acc", "forget_set_ratio",
           "other_acc_before", "other_acc_after", "other_drop", "epochs_forget",
           "forget_stop_rule", "retain_tasks"]
READING = (
    "One cell per forgetting method and task, each started from `ft-<t>` and forgetting on "
    "the task's training set with the method's loss (`forget.method`). **Generalization of "
    "forgetting**: a method whose forget set falls to chance while the test accuracy stays up "
    "forgot the examples, not the task; `forget_set_ratio` vs `forget_ratio` compares the two "
    "(both `(before - after) / (before - 0.5)`, not clipped: > 1 = below chance, as gradient "
    "ascent can go). **Damage to other tasks**: the test accuracy of the cell's `eval_tasks` "
    "before and after forgetting (the unlearning field's utility); a retain set "
    "(`retain_tasks`) trains on other tasks' training sets and protects them, so read the "
    "damage of cells whose retain and eval tasks overlap with that in mind.\n")


def _ratio(before: Any, after: Any) -> float | str:
    if not isinstance(before, int | float) or not isinstance(after, int | float):
        return ""
    r = stats.forget_ratio(before, after)
    return "" if np.isnan(r) else float(r)


def _method_order(name: str) -> int:
    from forget_jax import methods

    return methods.METHODS.index(name) if name in methods.METHODS else len(methods.METHODS)


def rows(runs: Mapping[str, Run], ivs: stats.PredictionIntervals
         ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(methods.csv rows, methods_other_tasks.csv rows) from the complete method cells."""
    main, other = [], []
    grouped = [(kind, g) for kind in KINDS for g in tables.groups(runs, kind).values()]
    pos = {t: i for i, t in enumerate(tables.task_order({g[0].b for _, g in grouped}))}
    grouped.sort(key=lambda kg: (_method_order(kg[1][0].results.get("forget_method", "")),
                                 list(KINDS).index(kg[0]), pos[kg[1][0].b]))
    for kind, g in grouped:
        res = [r.results for r in g]
        base = tables.cell_row(g, ivs)
        row: dict[str, Any] = {
            "method": "+".join(sorted({x.get("forget_method", "random_labels") for x in res})),
            "variant": KINDS[kind], "task": g[0].b}
        row.update({k: base[k] for k in base if k not in ("variant", "forget_task",
                                                          "eval_task")})
        row["forget_set_acc_ft"] = tables._mean(
            [x.get("forget_set", {}).get("accuracy", {}).get("finetuned") for x in res])
        row["forget_set_ratio"] = _ratio(row["forget_set_acc_ft"], row["forget_set_acc"])
        row["retain_tasks"] = "+".join((res[0].get("retain_set") or {}).get("tasks", []))
        tasks = tables.task_order(set().union(*(x.get("eval_tasks", {}) for x in res)))
        befores, afters = [], []
        for t in tasks:
            accs = [x.get("eval_tasks", {}).get(t, {}) for x in res]
            before = tables._mean([a.get("finetuned") for a in accs])
            after = tables._mean([a.get("forgotten") for a in accs])
            drop = before - after if "" not in (before, after) else ""
            other.append({"method": row["method"], "variant": row["variant"],
                          "task": row["task"], "other_task": t, "seeds": row["seeds"],
                          "acc_before": before, "acc_after": after, "drop": drop,
                          "forget_ratio": _ratio(before, after), "cell": row["cell"]})
            if drop != "":
                befores.append(before)
                afters.append(after)
        row["other_tasks"] = "+".join(tasks)
        row["other_acc_before"] = float(np.mean(befores)) if befores else ""
        row["other_acc_after"] = float(np.mean(afters)) if afters else ""
        row["other_drop"] = (row["other_acc_before"] - row["other_acc_after"]) if befores else ""
        main.append(row)
    return main, other


def plot(rows_: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Forget-set accuracy (x) vs test accuracy (y) after forgetting, one colour per method,
    filled = paper stop rule, open = fixed budget; arrows from the fine-tuned point."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 5.2))
    ax = fig.subplots()
    names = list(dict.fromkeys(r["method"] for r in rows_))
    colours = {m: f"C{i % 10}" for i, m in enumerate(names)}
    num = lambda v: v if isinstance(v, int | float) else np.nan  # noqa: E731
    for r in rows_:
        x0, y0 = num(r["forget_set_acc_ft"]), num(r["finetuned_acc"])
        x, y = num(r["forget_set_acc"]), num(r["forgotten_acc"])
        c = colours[r["method"]]
        if not np.isnan([x0, y0, x, y]).any():
            ax.annotate("", xy=(x, y), xytext=(x0, y0), arrowprops={
                "arrowstyle": "-|>", "color": c, "lw": 0.7, "alpha": 0.5})
        ax.scatter([x], [y], color=c if r["variant"] == "literal" else "none", edgecolors=c,
                   s=36)
        ax.annotate(r["task"], (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    for m in names:
        ax.scatter([], [], color=colours[m], label=m)
    lo = min([0.0] + [num(r[k]) for r in rows_ for k in ("forget_set_acc", "forgotten_acc")
                      if not np.isnan(num(r[k]))])
    ax.plot([lo, 1], [lo, 1], color="gray", lw=0.6, ls=":")
    ax.axhline(0.5, color="k", ls="--", lw=0.6)
    ax.axvline(0.5, color="k", ls="--", lw=0.6)
    ax.set_xlabel("forget-set accuracy after forgetting")
    ax.set_ylabel("test accuracy after forgetting")
    ax.set_title("Does forgetting generalize? (filled: stop at test < 0.5; open: fixed budget)",
                 fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    return rundir.save_figure(fig, path)


def section(runs: Mapping[str, Run], ivs: stats.PredictionIntervals, out: Path) -> str:
    """Writes the tables and the figure under ``out``; returns the section's markdown body
    (a "skipped" line without method cells)."""
    main, other = rows(runs, ivs)
    if not main:
        return "\nmethods.csv: skipped: no complete `method-<m>-<t>` cells.\n"
    rundir.write_csv(main, out / "tables" / "methods.csv")
    body = (f"\n{READING}\n![{FIGURE}](figures/{FIGURE}.png)\n\nTable: "
            "[`tables/methods.csv`](tables/methods.csv)\n\n" + tables.md_table(main, COLUMNS))
    plot(main, out / "figures" / f"{FIGURE}.png")
    if other:
        rundir.write_csv(other, out / "tables" / "methods_other_tasks.csv")
        body += ("\nDamage to other tasks, per other task. Table: "
                 "[`tables/methods_other_tasks.csv`](tables/methods_other_tasks.csv)\n\n"
                 + tables.md_table(other, ["method", "variant", "task", "other_task", "acc_before",
                                    "acc_after", "drop"]))
    return body
