"""The report's analyses of the paper's other chapters (Fig. 4.1 predictors, 5.1 orders, 6.1
probes) over the single-task cells, and the readings of the paper's ambiguities they state.

:func:`run_analyses` runs each analysis on the cells that have its inputs (activations as Orbax
or as the compact ``.npz`` copy a study commits, per-epoch predictions) and never raises: a
missing input or a failure becomes a ``skipped:``/``failed:`` line in the report.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from forget_jax.analysis import cross_task, rundir
from forget_jax.analysis.cross_task import Run
from forget_jax.report_tables import PHASES, md_table


@dataclasses.dataclass(frozen=True)
class Choices:
    """Readings of the paper's ambiguities (configs/report.py; defaults = most likely reading).

    Attributes:
        order_inclusive: §5 text (<= 0.6 forgotten, >= 0.6 learned) vs strict (Fig. 5.1 caption).
        include_epoch0: whether a phase's starting state can be the forget/learn time.
        variance_phase: whose hidden states give the total variance (Fig. 4.1).
    """

    order_inclusive: bool = True
    include_epoch0: bool = True
    variance_phase: str = "finetuned"

    def markdown(self) -> str:
        return (
            "- Order thresholds (Fig. 5.1): "
            + ("inclusive, <= 0.6 forgotten / >= 0.6 learned (§5 text)" if self.order_inclusive
               else "strict, < 0.6 forgotten / > 0.6 learned (Fig. 5.1 caption)")
            + " (`order_inclusive`).\n"
            f"- Epoch 0 may be a forget/learn time: {self.include_epoch0} (`include_epoch0`); "
            "orders.csv also gives the correlation without the examples whose time is 0.\n"
            f"- Total variance read from the {self.variance_phase} model (`variance_phase`).\n"
            "- Activation layer: a run-time field (`activations.layer`, default -5, \"fifth to "
            "last\" per the Fig. 4.1 caption; the text once says \"penultimate\"); predictors.csv "
            "records the layer each run saved.\n"
            f"- Heatmap colour range fixed to [{cross_task.VMIN}, {cross_task.VMAX}] for every "
            "matrix; a value outside it gets the end colour and a `*`.\n"
            "- Forget ratio gate: reported only where the fine-tuned test accuracy's 95% "
            "bootstrap lower bound is > 0.5 (flipped: the same condition, denominator 2 ft - 1); "
            f"otherwise `{cross_task.UNDEFINED}`. Over seeds, the lower bound is the "
            "hierarchical one. `forget_ratio_n_undefined_draws` counts the bootstrap draws whose "
            "denominator was <= 0 (the interval is over the other draws).\n"
            "- Seeds: point values are means over a group's seeds (cells differing only in "
            "`-s<k>`); intervals are a hierarchical bootstrap (resample seeds, then test examples "
            "within each drawn seed, average over the drawn seeds), so they include the seed "
            "variance; per-seed rows are in `single_task_per_seed.csv` and "
            "`cross_task_cells.csv`.\n")


def _stated(module: Any) -> str:
    """The "Choices the report must state" part of an analysis module's docstring."""
    marker = "Choices the report must state:"
    _, found, choices = (module.__doc__ or "").partition(marker)
    return f"\nChoices (from `{module.__name__}`):\n\n{choices.strip()}\n" if found else ""


def _predictors(dirs: Sequence[Path], fig: Path, table: Path, seed: int,
                choices: Choices) -> str:
    from forget_jax.analysis import predictors

    rows = predictors.predictor_table(dirs, variance_phase=choices.variance_phase)
    corr = predictors.predictor_correlations(rows)
    rundir.write_csv(rows, table)
    corr_table = table.with_name(table.stem + "_correlations.csv")
    rundir.write_csv(corr, corr_table)
    predictors.plot_predictors(rows, corr, fig)
    text = ""
    for split, what in (("test", "held-out TEST examples (primary)"),
                        ("train", "forget-set (TRAIN) examples (secondary: their post-forgetting "
                                  "correctness follows the last random label drawn)")):
        ex_table = table.with_name(table.stem + ("_example_level.csv" if split == "test" else
                                                 "_example_level_train.csv"))
        text += (f"\nExample level, per task, on the {what}: fine-tuned confidence vs. "
                 "forgotten (wrong after forgetting) over the examples the fine-tuned model got "
                 "right ")
        try:
            examples = predictors.example_level(dirs, split)
        except rundir.RunDirError as e:  # e.g. no forgotten predictions: say so, keep Fig 4.1
            text += f"skipped: {e}\n"
        else:
            rundir.write_csv(examples, ex_table)
            text += f"([`tables/{ex_table.name}`](tables/{ex_table.name})):\n\n" + md_table(
                examples)
    return ("Correlation of each predictor with the forget ratio across tasks "
            f"([`tables/{corr_table.name}`](tables/{corr_table.name})):\n\n"
            + md_table(corr) + text + _stated(predictors))


def _orders(dirs: Sequence[Path], fig: Path, table: Path, seed: int, choices: Choices) -> str:
    from forget_jax.analysis import orders

    kw = {"inclusive": choices.order_inclusive, "include_epoch0": choices.include_epoch0}
    rows = orders.order_table(dirs, **kw)
    rundir.write_csv(rows, table)
    orders.plot_orders(dirs, fig, seed=seed, **kw)
    return md_table(rows) + _stated(orders)


def _probes(dirs: Sequence[Path], fig: Path, table: Path, seed: int, choices: Choices) -> str:
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


RATIO_ANALYSES = ("fig4_1_predictors",)  # analyses of the forget ratio: gated cells only


def _has(run: Path, need: str) -> bool:
    """An analysis input is there (activations as Orbax or as the compact .npz copy)."""
    kind, _, phase = need.partition("/")
    return rundir.has_activations(run, phase) if kind == "activations" else (run / need).exists()


def run_analyses(diag: Sequence[Run], out: Path, seed: int, choices: Choices = Choices(),
                 undefined: Collection[str] = ()) -> dict[str, str]:
    """Runs each analysis on the single-task cells that have its inputs; never raises.

    Args:
        diag: one single-task cell per task.
        out: the report directory.
        seed: bootstrap/jitter seed.
        choices: readings of the paper's ambiguities.
        undefined: names of cells whose forget ratio is undefined (fine-tuning gain not
            significant); :data:`RATIO_ANALYSES` leave them out.

    Returns:
        ``{figure name: markdown body}``, a ``skipped:``/``failed:`` line where it did not run.
    """
    dirs = [r.dir for r in diag]
    bodies = {}
    for fig, table, _, needs, how, fn in ANALYSES:
        ready = [d for d in dirs if all(_has(d, n) for n in needs)]
        gated = [d for d in ready if d.name in undefined] if fig in RATIO_ANALYSES else []
        ready = [d for d in ready if d not in gated]
        if not dirs:
            bodies[fig] = "skipped: no complete single-task cells (`forget-<t>-on-<t>`)."
            continue
        if not ready:
            bodies[fig] = (f"skipped: no single-task cell has {', '.join(needs)}; rerun the "
                           f"cells with {how}.")
            continue
        try:
            body = fn(ready, out / "figures" / f"{fig}.png", out / "tables" / table, seed,
                      choices)
        except Exception as e:  # an analysis failure must not take the report down
            logging.exception("report: %s failed", fig)
            bodies[fig] = f"failed: {type(e).__name__}: {e}"
            continue
        used = f"Used {len(ready)} of {len(dirs)} single-task cells"
        if gated:
            used += (f"; left out, forget ratio undefined (fine-tuning gain not significant): "
                     f"{', '.join(d.name for d in gated)}")
        if len(ready) + len(gated) < len(dirs):
            used += f"; the others lack {', '.join(needs)}"
        bodies[fig] = (f"![{fig}](figures/{fig}.png)\n\nTable: [`tables/{table}`](tables/{table})"
                       f". {used}.\n\n{body}")
    return bodies
