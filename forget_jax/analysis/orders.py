"""Learning order vs forgetting order (paper §5, Figure 5.1).

Per example of a task's TRAIN split we compare two times, read from the per-epoch histories
``predictions/epochs/forget.npz`` and ``predictions/epochs/relearn.npz`` (``train_confidence``
[E, N], confidence = p_gold / (p_gold + p_other)):

* forget time: the first epoch of the forgetting phase (started from the fine-tuned model) at
  which the confidence in the gold answer is <= threshold (0.6);
* learn time: the first epoch of the relearning phase (fine-tuning again from the forgotten
  model at lr 3e-5) at which that confidence is >= threshold.

Examples the fine-tuned model never learned (confidence at epoch 0 of the forget history, the
fine-tuned model, below the learned threshold) are dropped first: the paper ignores them, and
keeping them would give them forget time 0 and so manufacture an anti-correlation. Examples
never forgotten or never relearned (within the relearn cap, the last relearn epoch) are then
dropped and counted (``n_never_forgotten``, ``n_never_relearned``, ``relearn_cap_epochs``).
The correlation is reported over all qualifying examples (``spearman_r``) and without the
examples whose forget or learn time is 0 (``spearman_r_no_epoch0``). A task with no more than 100
qualifying examples is not plotted (paper: "If no more than 100 examples fulfill the
criteria, we do not plot the task") but its row is still reported with the count. The
per-task statistic is the Spearman correlation of forget time with learn time over the
qualifying examples (the paper reports a weak, consistent anticorrelation).

Choices the report must state:

* Epoch 0 counts (``include_epoch0=True``). Row ``e`` of a history is the state after ``e``
  epochs, so epoch 0 is the phase's starting model (fine-tuned model for ``forget``,
  forgotten model for ``relearn``). Following "the number of epochs until the model
  forgets/learns" and "we take the first time this occurs", an example already at or below
  0.6 when forgetting starts has forget time 0, and one already at or above 0.6 when
  relearning starts has learn time 0. ``include_epoch0=False`` searches epochs >= 1 only.
* Thresholds are inclusive on both sides (<= 0.6 forgotten, >= 0.6 learned), as in the
  paper's §5 text (its Fig. 5.1 caption says < and >; with float confidences this matters only
  at exactly 0.6); ``inclusive=False`` is the caption's strict reading (also for the
  fine-tuned "learned" test).
* Examples are matched across the two histories by ``train_ids``; ids present in only one
  history are dropped.
* Runs without ``relearn.npz`` (relearning not enabled) are skipped with a log message.
* The scatter jitters both coordinates by U(-0.3, 0.3) epochs (seeded) so identical integer
  times stay visible.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from forget_jax.analysis import rundir
from forget_jax.analysis.predictors import correlate

THRESHOLD = 0.6
MIN_EXAMPLES = 100


def _first_epoch(hit: np.ndarray, epochs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First epoch (value from ``epochs``) where ``hit`` [E, N] is true per column, else -1."""
    ever = hit.any(axis=0)
    first = np.where(ever, epochs[hit.argmax(axis=0)], -1)
    return first.astype(np.int64), ever


def is_learned(conf: np.ndarray, threshold: float, inclusive: bool) -> np.ndarray:
    """Confidence at or above (``inclusive``) or strictly above the learned threshold."""
    return conf >= threshold if inclusive else conf > threshold


def forget_learn_times(
    forget_conf: np.ndarray,
    relearn_conf: np.ndarray,
    threshold: float = THRESHOLD,
    *,
    forget_epochs: np.ndarray | None = None,
    relearn_epochs: np.ndarray | None = None,
    include_epoch0: bool = True,
    inclusive: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forget and learn time of every example.

    Args:
        forget_conf: [E, N] gold confidence after each forgetting epoch (row 0 = fine-tuned).
        relearn_conf: [E2, N] gold confidence after each relearning epoch (row 0 = forgotten),
            same example order as ``forget_conf``.
        threshold: forgotten when confidence <= threshold, learned when >= threshold.
        forget_epochs: [E] epoch number of each row of ``forget_conf`` (default 0..E-1).
        relearn_epochs: [E2] epoch number of each row of ``relearn_conf`` (default 0..E2-1).
        include_epoch0: whether the starting state (epoch 0) can be the forget/learn time.
        inclusive: ``<=``/``>=`` thresholds (else strict ``<``/``>``).

    Returns:
        ``(forget_t [N], learn_t [N], mask [N])``: int epochs, -1 where the event never
        happens; ``mask`` is true where the fine-tuned model (row 0 of ``forget_conf``) had
        learned the example and both events happen (the qualifying examples).
    """
    forget_conf, relearn_conf = np.asarray(forget_conf), np.asarray(relearn_conf)
    if forget_conf.ndim != 2 or relearn_conf.ndim != 2:
        raise ValueError(f"need [E, N] histories, got {forget_conf.shape}, {relearn_conf.shape}")
    if forget_conf.shape[1] != relearn_conf.shape[1]:
        raise ValueError(f"example counts differ: {forget_conf.shape} vs {relearn_conf.shape}")
    f_ep = np.arange(len(forget_conf)) if forget_epochs is None else np.asarray(forget_epochs)
    r_ep = np.arange(len(relearn_conf)) if relearn_epochs is None else np.asarray(relearn_epochs)
    if f_ep.shape != forget_conf.shape[:1] or r_ep.shape != relearn_conf.shape[:1]:
        raise ValueError("epoch arrays must have one entry per history row")
    forgot = forget_conf <= threshold if inclusive else forget_conf < threshold
    learned = is_learned(relearn_conf, threshold, inclusive)
    learned_by_ft = is_learned(forget_conf[0], threshold, inclusive)
    if not include_epoch0:
        forgot = forgot & (f_ep != 0)[:, None]
        learned = learned & (r_ep != 0)[:, None]
    forget_t, ever_forgot = _first_epoch(forgot, f_ep)
    learn_t, ever_learned = _first_epoch(learned, r_ep)
    return forget_t, learn_t, learned_by_ft & ever_forgot & ever_learned


def _aligned_histories(run: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train confidences of forget and relearn, matched by id, with their epoch arrays."""
    hists = {}
    for phase in ("forget", "relearn"):
        h = rundir.read_epochs(run, phase)
        if "train_confidence" not in h:
            raise rundir.RunDirError(
                run / "predictions" / "epochs" / f"{phase}.npz", "has no train split"
            )
        hists[phase] = h
    f, r = hists["forget"], hists["relearn"]
    f_ids, r_ids = f["train_ids"].astype(str), r["train_ids"].astype(str)
    if np.array_equal(f_ids, r_ids):
        return f["train_confidence"], r["train_confidence"], f["epoch"], r["epoch"]
    pos = {k: i for i, k in enumerate(r_ids)}
    keep = np.array([i for i, k in enumerate(f_ids) if k in pos], dtype=np.int64)
    r_cols = np.array([pos[f_ids[i]] for i in keep], dtype=np.int64)
    logging.warning(
        "%s: %d forget / %d relearn train ids, %d in common", run, len(f_ids), len(r_ids), len(keep)
    )
    return (
        f["train_confidence"][:, keep],
        r["train_confidence"][:, r_cols],
        f["epoch"],
        r["epoch"],
    )


def _task_times(run_dirs, threshold, include_epoch0, inclusive=True):
    """Yields ``(task, forget_t, learn_t, mask, learned_by_ft, relearn_cap)`` for each
    single-task run with a relearn phase."""
    for run, results in rundir.single_task_runs(run_dirs):
        if not (run / "predictions" / "epochs" / "relearn.npz").is_file():
            logging.warning("skipping %s: no relearn history (relearning not enabled)", run)
            continue
        f_conf, r_conf, f_ep, r_ep = _aligned_histories(run)
        times = forget_learn_times(f_conf, r_conf, threshold, forget_epochs=f_ep,
                                   relearn_epochs=r_ep, include_epoch0=include_epoch0,
                                   inclusive=inclusive)
        learned_by_ft = is_learned(f_conf[0], threshold, inclusive)
        yield results["task"], *times, learned_by_ft, int(np.max(r_ep))


def order_table(
    run_dirs: Iterable[str | Path],
    threshold: float = THRESHOLD,
    min_examples: int = MIN_EXAMPLES,
    include_epoch0: bool = True,
    inclusive: bool = True,
) -> list[dict[str, Any]]:
    """Per task: example counts and Spearman(forget time, learn time).

    Args:
        run_dirs: run directories; complete single-task runs with a relearn phase are used.
        threshold: confidence threshold for forgotten (<=) and learned (>=).
        min_examples: a task is plotted only with MORE than this many qualifying examples.
        include_epoch0: see module docstring.
        inclusive: see module docstring.

    Returns:
        Rows sorted by task: ``task, n_examples, n_not_learned_by_finetuning,
        n_never_forgotten, n_never_relearned, relearn_cap_epochs, n_qualifying, spearman_r,
        spearman_p, n_qualifying_no_epoch0, spearman_r_no_epoch0, spearman_p_no_epoch0,
        plotted``; the never-forgotten/relearned counts are over the examples learned by
        fine-tuning.
    """
    rows = []
    for task, forget_t, learn_t, mask, ft_ok, cap in _task_times(
            run_dirs, threshold, include_epoch0, inclusive):
        r, p = correlate(forget_t[mask], learn_t[mask], "spearman")
        nz = mask & (forget_t > 0) & (learn_t > 0)
        r0, p0 = correlate(forget_t[nz], learn_t[nz], "spearman")
        n_q = int(mask.sum())
        rows.append({
            "task": task,
            "n_examples": int(mask.size),
            "n_not_learned_by_finetuning": int((~ft_ok).sum()),
            "n_never_forgotten": int((ft_ok & (forget_t < 0)).sum()),
            "n_never_relearned": int((ft_ok & (forget_t >= 0) & (learn_t < 0)).sum()),
            "relearn_cap_epochs": cap,
            "n_qualifying": n_q,
            "spearman_r": r,
            "spearman_p": p,
            "n_qualifying_no_epoch0": int(nz.sum()),
            "spearman_r_no_epoch0": r0,
            "spearman_p_no_epoch0": p0,
            "plotted": n_q > min_examples,
        })
    return rows


def plot_orders(
    run_dirs: Iterable[str | Path],
    out_png: str | Path,
    seed: int = 0,
    threshold: float = THRESHOLD,
    min_examples: int = MIN_EXAMPLES,
    include_epoch0: bool = True,
    jitter: float = 0.3,
    inclusive: bool = True,
) -> Path:
    """Figure 5.1: jittered forget time (x) vs learn time (y), one panel per plotted task.

    Args:
        run_dirs: run directories (as for :func:`order_table`).
        out_png: destination PNG.
        seed: seed of the jitter.
        threshold: confidence threshold.
        min_examples: tasks with no more than this many qualifying examples are left out.
        include_epoch0: see module docstring.
        jitter: half-width of the uniform jitter, in epochs.
        inclusive: see module docstring.

    Returns:
        The written path.
    """
    from matplotlib.figure import Figure

    rng = np.random.default_rng(seed)
    panels = [
        (task, f[m], lt[m])
        for task, f, lt, m, *_ in _task_times(run_dirs, threshold, include_epoch0, inclusive)
        if m.sum() > min_examples
    ]
    ncols = max(1, min(4, len(panels)))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig = Figure(figsize=(3.4 * ncols, 3.2 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (task, f, lt) in zip(axes, panels, strict=False):
        ax.scatter(
            f + rng.uniform(-jitter, jitter, f.size),
            lt + rng.uniform(-jitter, jitter, lt.size),
            s=4,
            alpha=0.4,
        )
        r, _ = correlate(f, lt, "spearman")
        ax.set_title(f"{task} (n={f.size}, ρ={r:.2f})", fontsize=9)
        ax.set_xlabel("forget time (epochs)", fontsize=8)
        ax.set_ylabel("learn time (epochs)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.axis("off")
    if not panels:
        axes[0].text(
            0.5,
            0.5,
            f"no task has more than {min_examples}\nqualifying examples",
            ha="center",
            va="center",
        )
    fig.suptitle(f"Forgetting order vs learning order (Fig. 5.1), threshold {threshold}")
    return rundir.save_figure(fig, out_png)
