"""Predictors of the forget ratio (paper §4, Figure 4.1), at task and at example level.

For every complete single-task run (task == forget_task == eval_task) we compute three
task-level predictors and correlate each with the run's ``forget_ratio`` across tasks:

* ``finetuned_acc``: test accuracy after fine-tuning (``results.json`` accuracy.finetuned.test);
  the paper's "difficulty" predictor.
* ``confidence``: mean over the TRAINING examples of ``p_gold / (p_gold + p_distractor)`` under
  the fine-tuned model, i.e. the ``confidence`` field of
  ``predictions/finetuned/<task>.train.jsonl`` (the model "prior to running the forgetting
  procedure", relative to the distractor because raw probabilities are not calibrated).
* ``total_variance``: trace of the covariance matrix of the hidden state at the last prompt
  token over the training examples, ``activations/<phase>/<task>.train`` ``prompt_last``.

Choices the report must state:

* Which model's hidden states: by default the FINE-TUNED model (``variance_phase="finetuned"``),
  the model the forgetting procedure starts from and the same state as the confidence
  predictor. The paper does not say explicitly; it remarks that the measure "does not require
  access to the labels", which would also fit the pretrained model, so ``predictor_table`` takes
  ``variance_phase="pretrained"`` to compute that variant.
* Which layer: whatever the run saved (default -5, fifth from last of HF ``hidden_states``,
  as in the Fig 4.1 caption; the paper's text says "penultimate"). The row records it.
* ``total_variance(X)`` is the sum of per-column variances with ddof=1, which equals
  ``np.trace(np.cov(X, rowvar=False))`` without forming the D x D matrix.
* Correlations are Pearson and Spearman (scipy.stats) with two-sided p-values; with fewer than
  3 points or a constant column they are reported as NaN instead of raising or warning.
* Example level (paper: "confidence is not predictive of example-level forgetting"): within
  each task, over the held-out TEST examples that the fine-tuned model gets right, an example
  is forgotten when the forgotten model gets it wrong. Not the forget (TRAIN) set by default:
  there the post-forgetting correctness is driven by the last random label drawn for the
  example, not by forgetting; ``example_level(split="train")`` is kept as a labelled secondary
  table. A forget cell's fine-tuned test predictions may live in the ``ft-*`` cell it started
  from (``init_from``); they are read there. We restrict to examples correct after
  fine-tuning because an example that was never right cannot be forgotten; correlating over
  all examples would mostly rediscover "confidence > 0.5 means correct". We report the
  point-biserial correlation (Pearson with a binary variable) and Spearman of fine-tuned
  confidence with the forgotten indicator; predictions are matched across phases by ``id``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from forget_jax.analysis import rundir

PREDICTORS = ("finetuned_acc", "confidence", "total_variance")
_LABELS = {
    "finetuned_acc": "fine-tuned test accuracy",
    "confidence": "confidence p_gold/(p_gold+p_other), train",
    "total_variance": "total variance of last-prompt-token state, train",
}


log = logging.getLogger("forget_jax")


def total_variance(X: np.ndarray) -> float:
    """Trace of the sample covariance of the rows of ``X``.

    Args:
        X: [N, D] features, one row per example (N >= 2).

    Returns:
        ``sum_d var(X[:, d], ddof=1)`` == ``np.trace(np.cov(X, rowvar=False))``.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"total_variance needs [N>=2, D] features, got shape {X.shape}")
    return float(X.var(axis=0, ddof=1).sum())


def correlate(x: Sequence[float], y: Sequence[float], method: str) -> tuple[float, float]:
    """A correlation and its two-sided p-value, NaN when undefined.

    Args:
        x: first variable.
        y: second variable (same length).
        method: ``"pearson"`` (also the point-biserial for a binary variable) or ``"spearman"``.

    Returns:
        ``(r, p)``; ``(nan, nan)`` with fewer than 3 points or a constant variable.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"correlate needs two equal-length vectors, got {x.shape} and {y.shape}")
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    if method == "pearson":
        res = stats.pearsonr(x, y)
    elif method == "spearman":
        res = stats.spearmanr(x, y)
    else:
        raise ValueError(f"unknown correlation method {method!r}")
    return float(res.statistic), float(res.pvalue)


def _mean_confidence(run: Path, task: str) -> tuple[float, int]:
    preds = rundir.read_predictions(run, "finetuned", task, "train")
    if not preds:
        raise rundir.RunDirError(run / "predictions" / "finetuned", f"no {task} train predictions")
    return float(np.mean([p["confidence"] for p in preds])), len(preds)


def predictor_table(
    run_dirs: Iterable[str | Path], variance_phase: str = "finetuned"
) -> list[dict[str, Any]]:
    """One row of task-level predictors and the forget ratio per single-task run.

    Args:
        run_dirs: run directories; cross-task cells and incomplete runs are skipped.
        variance_phase: whose activations give the total variance (``finetuned`` or
            ``pretrained``).

    Returns:
        Rows sorted by task with keys ``task, finetuned_acc, confidence, total_variance,
        forget_ratio, n_train, layer, variance_phase``.
    """
    rows = []
    for run, results in rundir.single_task_runs(run_dirs):
        task = results["task"]
        try:
            finetuned_acc = float(results["accuracy"]["finetuned"]["test"])
        except (KeyError, TypeError) as e:
            raise rundir.RunDirError(run / "results.json", f"lacks {e}") from None
        if "forget_ratio" not in results:
            # run.py omits the ratio when fine-tuning did not beat chance (undefined ratio)
            log.info("predictors: %s has no forget_ratio (%s); skipped", run,
                     results.get("forget_ratio_note", "not reached"))
            continue
        forget_ratio = float(results["forget_ratio"])
        confidence, n_train = _mean_confidence(run, task)
        acts = rundir.read_activations(run, variance_phase)
        entry = rundir.split_activations(acts, task, "train", run / "activations" / variance_phase,
                                         ("prompt_last",))
        rows.append(
            {
                "task": task,
                "finetuned_acc": finetuned_acc,
                "confidence": confidence,
                "total_variance": total_variance(entry["prompt_last"]),
                "forget_ratio": forget_ratio,
                "n_train": n_train,
                "layer": int(np.asarray(acts["layer"])) if "layer" in acts else None,
                "variance_phase": variance_phase,
            }
        )
    return rows


def predictor_correlations(
    rows: Sequence[Mapping[str, Any]],
    predictors: Sequence[str] = PREDICTORS,
    target: str = "forget_ratio",
) -> list[dict[str, Any]]:
    """Pearson and Spearman correlation of each predictor with the forget ratio across tasks.

    Args:
        rows: output of :func:`predictor_table`.
        predictors: row keys to correlate.
        target: the row key correlated against.

    Returns:
        One dict per predictor: ``predictor, pearson_r, pearson_p, spearman_r, spearman_p, n``.
    """
    y = [float(r[target]) for r in rows]
    out = []
    for name in predictors:
        x = [float(r[name]) for r in rows]
        pearson_r, pearson_p = correlate(x, y, "pearson")
        spearman_r, spearman_p = correlate(x, y, "spearman")
        out.append(
            {
                "predictor": name,
                "pearson_r": pearson_r,
                "pearson_p": pearson_p,
                "spearman_r": spearman_r,
                "spearman_p": spearman_p,
                "n": len(rows),
            }
        )
    return out


def forgotten_examples(
    finetuned: Sequence[Mapping[str, Any]], forgotten: Sequence[Mapping[str, Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """Fine-tuned confidence and forgotten flags of the examples correct after fine-tuning.

    Args:
        finetuned: prediction rows of the fine-tuned model.
        forgotten: prediction rows of the forgotten model (matched by ``id``).

    Returns:
        ``(confidence [M], forgotten [M] bool)`` over the M examples correct after fine-tuning
        and present in both; forgotten means incorrect after forgetting.
    """
    after = {p["id"]: bool(p["correct"]) for p in forgotten}
    conf, flag = [], []
    for p in finetuned:
        if p["correct"] and p["id"] in after:
            conf.append(float(p["confidence"]))
            flag.append(not after[p["id"]])
    return np.asarray(conf, dtype=np.float64), np.asarray(flag, dtype=bool)


def _predictions_or_init(run: Path, results: Mapping[str, Any], phase: str, task: str,
                         split: str) -> list[dict[str, Any]]:
    """``read_predictions`` of the run, else of the run it started from (``init_from``)."""
    if rundir.prediction_file(run, phase, f"{task}.{split}"):
        return rundir.read_predictions(run, phase, task, split)
    init = rundir.init_from(run, results)
    return rundir.read_predictions(Path(init) if init else run, phase, task, split)


def example_level(run_dirs: Iterable[str | Path], split: str = "test") -> list[dict[str, Any]]:
    """Per task, does fine-tuned confidence predict which examples are forgotten?

    Args:
        run_dirs: run directories; only complete single-task runs are used.
        split: the split whose examples are analysed: ``test`` (held out, the default) or
            ``train`` (the forget set; see the module docstring).

    Returns:
        Rows ``task, split, n, n_forgotten, pointbiserial_r, pointbiserial_p, spearman_r,
        spearman_p`` where ``n`` counts the examples correct after fine-tuning.
    """
    rows = []
    for run, results in rundir.single_task_runs(run_dirs):
        task = results["task"]
        conf, flag = forgotten_examples(
            _predictions_or_init(run, results, "finetuned", task, split),
            _predictions_or_init(run, results, "forgotten", task, split),
        )
        pb_r, pb_p = correlate(flag.astype(float), conf, "pearson")
        sp_r, sp_p = correlate(flag.astype(float), conf, "spearman")
        rows.append(
            {
                "task": task,
                "split": split,
                "n": int(flag.size),
                "n_forgotten": int(flag.sum()),
                "pointbiserial_r": pb_r,
                "pointbiserial_p": pb_p,
                "spearman_r": sp_r,
                "spearman_p": sp_p,
            }
        )
    return rows


def plot_predictors(
    rows: Sequence[Mapping[str, Any]],
    correlations: Sequence[Mapping[str, Any]],
    out_png: str | Path,
) -> Path:
    """Figure 4.1: forget ratio (y) against each predictor (x), one labeled point per task.

    Args:
        rows: output of :func:`predictor_table`.
        correlations: output of :func:`predictor_correlations` (gives the panel titles).
        out_png: destination PNG.

    Returns:
        The written path.
    """
    from matplotlib.figure import Figure

    by_name = {c["predictor"]: c for c in correlations}
    names = [c["predictor"] for c in correlations]
    fig = Figure(figsize=(4.4 * len(names), 4.2), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    y = [r["forget_ratio"] for r in rows]
    for ax, name in zip(axes, names, strict=True):
        x = [r[name] for r in rows]
        ax.scatter(x, y, s=22, color="tab:blue")
        for xi, yi, r in zip(x, y, rows, strict=True):
            ax.annotate(r["task"], (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        c = by_name[name]
        ax.set_title(
            f"Pearson r={c['pearson_r']:.2f} (p={c['pearson_p']:.2g})\n"
            f"Spearman ρ={c['spearman_r']:.2f} (p={c['spearman_p']:.2g}), n={c['n']}",
            fontsize=9,
        )
        ax.set_xlabel(_LABELS.get(name, name), fontsize=9)
        ax.set_ylabel("forget ratio")
        ax.grid(alpha=0.3)
    fig.suptitle("Predictors of the forget ratio (Fig. 4.1)")
    return rundir.save_figure(fig, out_png)
