"""The report of a sweep root: report/report.md, figures/*.png and tables/*.csv (CONTRACT.md).

Command lines::

  python main.py --config=configs/report.py --workdir=<sweep root>
  python -m forget_jax.report <sweep root> [--paper_dir ../shared/paper] [--n_bootstrap 1000]

Every point value in a table is read from a cell's results.json (a mean over seeds where a
cell has several). The only numbers computed here are 95% percentile-bootstrap intervals
(``forget_jax.analysis.stats``) from the ``correct`` fields of the predictions files, shown as
error bars and ``_lo``/``_hi`` columns, and the significance gate of the forget ratio
(``forget_jax.report_tables``). Cells are found by their CONTRACT.md names under
``<root>/runs/``: ``forget-<A>-on-<B>`` (paper-literal; ``A == B`` is a single-task run),
``fixed-<A>-on-<B>`` (fixed budget), ``flip-<A>-on-<B>``, ``forget-<t>-n<k>`` (small forget
set) and the ``ft-*`` cells they start from, each optionally ``-s<seed>``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forget_jax import report_methods, report_models, sweep
from forget_jax import report_tables as tables
from forget_jax.analysis import cross_task, rundir, stats
from forget_jax.report_analyses import ANALYSES, Choices, run_analyses

FIGURES = ("fig3_1_accuracy_arrows", "fig3_1_forget_gap", "fig3_1_forget_ratio",
           "fig3_2_cross_task", "fig3_2_cross_task_fixed", "fig4_1_predictors", "fig5_1_orders",
           "fig6_1_probes", "appC_flipped")
PHASES = tables.PHASES
task_order = tables.task_order
md_table = tables.md_table
PAPER_CSV = "appendix_b_llama2_7b.csv"
DIAGONAL = ("single", "cross_task", "size")  # experiments that make forget-<t>-on-<t> cells


def read_paper(paper_dir: Path, notes: list[str]) -> dict[str, dict[str, str]]:
    """The paper's Appendix B values by task (empty, with a note, when the file is absent)."""
    path = paper_dir / PAPER_CSV
    if not path.is_file():
        notes.append(f"paper reference `{path}` not found: paper columns left empty")
        return {}
    with path.open(encoding="utf-8", newline="") as f:
        return {row["task"]: row for row in csv.DictReader(f)}


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
    "evaluate on B's test role. B's forget ratio uses B's fine-tuned accuracy. The diagonal "
    "A = B is the single-task experiment (the very same `forget-<t>-on-<t>` cells).\n\n"
    "**Two protocols.** *Paper-literal* (`forget-<A>-on-<B>`, Fig. 3.2): the forget phase stops "
    "when B's test accuracy falls below 0.5, as in the paper. It is the paper's protocol, but the "
    "stop watches the evaluated task, so part of \"forgetting is determined by the evaluated "
    "task\" is built into it: each column gets its own budget. *Fixed budget* "
    "(`fixed-<A>-on-<B>`): the same number of forget epochs everywhere, no test-based stop; the "
    "fair test of that claim. Compare the eval-task vs forget-task shares of the two matrices.\n\n"
    "**Forget set vs test.** `forget_set_acc` / `forget_set_confidence` are the forget (training) "
    "set's accuracy and mean gold confidence after forgetting. A forget set at chance with test "
    "accuracy still high is \"unforgettable\" generalization; a forget set still fitted to its "
    "original labels means the forget phase was too short (undertrained), not unforgettable.\n")
SIZE_READING = (
    "Small setting: `forget-<t>-n<k>` starts from the large fine-tuned cell (`init_from_small`) "
    "and forgets on a k-example subset; large setting: the single-task `forget-<t>-on-<t>`. Both "
    "start from the same fine-tuned model, so `finetuned_acc` is shown once. `ours_n_train_*` is "
    "the forget-set size each run used (results.json `n_forget_train`). Paper columns: "
    "Llama-2-7B, Appendix B.\n")


NULL_READING = (
    "`null-<t>`: the single-task forget phase from the same `ft-<t>` with the forget learning "
    "rate ~0 (sweep `null_lr`) and a fixed budget of `forget.max_epochs` epochs. Its forget "
    "ratio's 95% interval must include 0; if it does not, accuracies move for a reason other "
    "than the forget update (label leakage, nondeterministic scoring).\n")


def _section(title: str, body: str) -> str:
    return f"## {title}\n\n{body}\n"


_SINGLE_COLS = ["task", "n_seeds", "finetuned_acc", "ft_gain_significant", "forgotten_acc",
                "forget_set_acc", "forget_set_confidence", "forget_gap", "forget_ratio",
                "epochs_forget", "forget_stop_rule", "params_changed_finetune",
                "params_changed_forget"]


def _matrix_section(m: cross_task.Matrix | None, out: Path, fig: str, table: str,
                    what: str) -> str:
    """Heatmap, table and variance shares of one cross-task matrix (or a skipped line)."""
    if m is None:
        return f"\n{fig}: skipped: no complete {what} cells with A != B.\n"
    ordered = cross_task.upgma_ordered(m)
    rundir.write_csv(cross_task.matrix_table(ordered), out / "tables" / table)
    cross_task.plot_cross_task(ordered, out / "figures" / f"{fig}.png")
    # the gate depends on B's fine-tuning only, so undefined cells fill whole columns: the shares
    # are taken over the eval tasks with a ratio
    keep = [b for j, b in enumerate(m.cols) if not np.isnan(m.values[:, j]).all()]
    shares = cross_task.effect_shares(m.reindex(m.rows, keep))
    dropped = [b for b in m.cols if b not in keep]
    over = f" (eval tasks without any ratio left out: {', '.join(dropped)})" if dropped else ""
    shares_csv = table.replace(".csv", "_shares.csv")
    rundir.write_csv([{**(shares or {}), "eval_tasks_left_out": "+".join(dropped)}],
                     out / "tables" / shares_csv)
    return (f"\n![{fig}](figures/{fig}.png)\n\nTable: [`tables/{table}`](tables/{table}) "
            "(rows: forget task A; columns: eval task B; mean over seeds).\n\n"
            + md_table(cross_task.matrix_table(ordered))
            + "\nShare of the matrix's sum of squares explained by the eval task (columns) "
            f"vs the forget task (rows){over} ([`tables/{shares_csv}`](tables/{shares_csv})): "
            + (", ".join(f"{k} {v:.2f}" for k, v in shares.items()) if shares else
               "n/a (missing or undefined cells, or no variance at all)")
            + ".\n\nOwn-task vs other-task forgetting per eval task:\n\n"
            + md_table(cross_task.diagonal_summary(m)))


def write_report(root: str | Path, *, paper_dir: str | Path | None = None,
                 n_bootstrap: int = stats.N_RESAMPLES, seed: int = 0,
                 report_cmd: str = "", choices: Choices | None = None,
                 shown_as: str = "") -> Path:
    """Writes ``<root>/report/`` (report.md, figures/, tables/) from the cells on disk.

    Args:
        root: the sweep root.
        paper_dir: holds ``appendix_b_llama2_7b.csv``; default ``<repo>/../shared/paper``.
        n_bootstrap: bootstrap resamples per interval.
        seed: bootstrap (and plotting jitter) seed.
        report_cmd: the command line shown as the maker of figures and tables.
        choices: readings of the paper's ambiguities (default :class:`Choices`).
        shown_as: how the report names the root (default: its absolute path); a committed
            report names its root relative to the repository, so it regenerates byte-identically
            from any checkout.

    Returns:
        The path of report.md.
    """
    choices = choices or Choices()
    root = Path(root).absolute()
    shown_as = shown_as or str(root)
    if not (root / "runs").is_dir() and not (root / "sweep.json").is_file():
        raise rundir.RunDirError(root, "is not a sweep root (no runs/ directory, no sweep.json)")
    out = root / "report"
    for stale in [*(out / "figures").glob("*.png"), *(out / "tables").glob("*.csv")]:
        stale.unlink()  # nothing this run cannot draw may survive from an earlier report
    paper_dir = Path(paper_dir) if paper_dir else sweep.REPO.parent / "shared" / "paper"
    report_cmd = report_cmd or f"python main.py --config=configs/report.py --workdir={shown_as}"
    notes: list[str] = []
    runs = cross_task.read_runs(root, notes)
    index = sweep.load_index(root)
    ivs = stats.PredictionIntervals(n_bootstrap, seed, notes)
    md = [f"# Unforgettable generalization: report of `{shown_as}`\n",
          f"Sweep: `{(index or {}).get('name', '(no sweep.json)')}`. Intervals: 95% percentile "
          f"bootstrap ({n_bootstrap} resamples, seed {seed}) over test examples from "
          "`predictions/<phase>/<task>.test.jsonl` (forget set: "
          "`predictions/forgotten/<forget_set.split>.jsonl`), hierarchical over seeds; every "
          "point value is read from the cells' results.json.\n", READING,
          _section("Choices", choices.markdown())]

    single = tables.single_task_rows(runs, ivs)
    body = _made_by(index, DIAGONAL, report_cmd)
    if single:
        rundir.write_csv(single, out / "tables" / "single_task.csv")
        rundir.write_csv(tables.single_task_rows(runs, ivs, per_seed=True),
                         out / "tables" / "single_task_per_seed.csv")
        tables.plot_single_task(single, out / "figures")
        body += "".join(f"\n![{f}](figures/{f}.png)\n" for f in FIGURES[:3])
        body += ("\nTable: [`tables/single_task.csv`](tables/single_task.csv) (mean over seeds; "
                 "per seed: [`tables/single_task_per_seed.csv`](tables/single_task_per_seed.csv))"
                 "\n\n" + md_table(single, _SINGLE_COLS))
    else:
        body += "".join(f"\n{f}: skipped: no complete `forget-<t>-on-<t>` cells.\n"
                        for f in FIGURES[:3])
    md.append(_section("Fig. 3.1: single-task forgetting", body))

    body = _made_by(index, ("cross_task",), report_cmd) + (
        "\nOrdering: rows and columns separately by UPGMA "
        "(`scipy.cluster.hierarchy.linkage(method='average')`), euclidean distance between rows "
        "(resp. columns) of the forget-ratio matrix; missing or undefined cells filled by their "
        "column mean for the clustering only.\n\n### Paper-literal (stop when B's test < 0.5)\n")
    random_m = tables.ratio_matrix(runs, "forget", ivs)
    body += _matrix_section(random_m, out, "fig3_2_cross_task", "cross_task_forget_ratio.csv",
                            "`forget-<A>-on-<B>`")
    body += "\n### Fixed budget (no test-based stop)\n"
    body += _matrix_section(tables.ratio_matrix(runs, "fixed", ivs), out,
                            "fig3_2_cross_task_fixed", "cross_task_forget_ratio_fixed.csv",
                            "`fixed-<A>-on-<B>`")
    cells = tables.cross_task_cells(runs, ivs)
    if cells:
        rundir.write_csv(cells, out / "tables" / "cross_task_cells.csv")
        body += ("\n### Every cell: forget set vs test\n\nTable: "
                 "[`tables/cross_task_cells.csv`](tables/cross_task_cells.csv) (one row per cell "
                 "and seed, and the seed mean of cells with several seeds)\n\n" + md_table(cells, [
                     "forget_task", "eval_task", "variant", "seeds", "finetuned_acc",
                     "forgotten_acc", "forget_set_acc", "forget_set_confidence", "forget_ratio",
                     "epochs_forget", "forget_stop_rule"]))
    md.append(_section("Fig. 3.2: cross-task forgetting", body))

    size = tables.size_rows(runs, ivs, read_paper(paper_dir, notes))
    body = _made_by(index, ("size",), report_cmd) + "\n" + SIZE_READING
    if size:
        rundir.write_csv(size, out / "tables" / "size_100_vs_1000.csv")
        body += ("\nTable: [`tables/size_100_vs_1000.csv`](tables/size_100_vs_1000.csv)\n\n"
                 + md_table(size, ["task", "init_from_small", "finetuned_acc",
                                   "ours_n_train_small", "ours_forget_acc_small",
                                   "ours_n_train_large", "ours_forget_acc_large",
                                   "paper_forget_acc_100", "paper_forget_acc_1000"]))
    else:
        body += "\nsize_100_vs_1000.csv: skipped: no complete `forget-<t>-n<k>` cells.\n"
    md.append(_section("Appendix B: 100 vs 1000 training examples", body))

    flipped_m = tables.ratio_matrix(runs, "flip", ivs)
    body = _made_by(index, ("flipped", "flipped_diag", "cross_task"), report_cmd)
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
    flip_diag = tables.flipped_vs_random_rows(runs, ivs)
    if flip_diag:
        rundir.write_csv(flip_diag, out / "tables" / "flipped_vs_random.csv")
        body += ("\nThe diagonal, flipped vs random labels from the same fine-tuned cell. Table: "
                 "[`tables/flipped_vs_random.csv`](tables/flipped_vs_random.csv)\n\n"
                 + md_table(flip_diag, [
                     "task", "finetuned_acc", "forgotten_acc_random", "forget_ratio_random",
                     "forget_set_acc_random", "forgotten_acc_flipped", "forget_ratio_flipped",
                     "forget_set_acc_flipped", "epochs_forget_flipped"]))
    md.append(_section("Appendix C: flipped labels", body))

    null = tables.single_task_rows(runs, ivs, kind="null")
    body = _made_by(index, ("null",), report_cmd) + "\n" + NULL_READING
    if null:
        rundir.write_csv(null, out / "tables" / "null_control.csv")
        body += ("\nTable: [`tables/null_control.csv`](tables/null_control.csv)\n\n"
                 + md_table(null, ["task", "cell", "finetuned_acc", "forgotten_acc",
                                   "forget_ratio", "forget_ratio_lo", "forget_ratio_hi",
                                   "forget_set_acc", "epochs_forget", "params_changed_forget"]))
    else:
        body += "\nnull_control.csv: skipped: no complete `null-<t>` cells.\n"
    md.append(_section("Null control", body))
    md.append(_section("Forgetting methods (issue 16)", _made_by(
        index, report_methods.EXPERIMENTS, report_cmd) + report_methods.section(
            runs, ivs, out)))

    # the per-task analyses read one cell per task: the lowest seed of each single-task group
    diag = [g[0] for g in tables.groups(runs, "forget").values() if g[0].a == g[0].b]
    undefined = [r.name for r in diag
                 if tables.cell_row([r], ivs)["forget_ratio"] == cross_task.UNDEFINED]
    bodies = run_analyses(diag, out, seed, choices, undefined)
    for (fig, _, title, *_), text in zip(ANALYSES, bodies.values(), strict=True):
        md.append(_section(f"{title} (`{fig}`)", _made_by(index, DIAGONAL, report_cmd)
                           + "\n" + text))

    cells = tables.cell_rows(root, runs, index)
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
    if config.get("models"):  # Appendix D: one sweep root per model
        return report_models.main(config, workdir)
    shown = str(config.root or workdir)  # as typed: a relative root stays relative in report.md
    root = Path(shown).absolute()
    defaults = {"paper_dir": "", "n_bootstrap": 1000, "seed": 0,
                **dataclasses.asdict(Choices())}
    cmd = "python main.py --config=configs/report.py" + "".join(
        f" --config.{k}={config[k]}" for k, d in defaults.items() if config[k] != d)
    cmd += f" --workdir={shown}"
    choices = Choices(**{f.name: config[f.name] for f in dataclasses.fields(Choices)})
    path = write_report(root, paper_dir=config.paper_dir or None,
                        n_bootstrap=config.n_bootstrap, seed=config.seed, report_cmd=cmd,
                        choices=choices, shown_as=shown)
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
                        seed=a.seed, report_cmd=cmd, shown_as=a.root)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(cli())
