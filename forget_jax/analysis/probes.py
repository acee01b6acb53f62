"""Linear probes: are "forgotten" answers still linearly decodable? (paper §6, Figure 6.1)

For each single-task run and each model state (pretrained, finetuned, forgotten) we read the
hidden states saved under ``activations/<phase>/`` (layer -5 by default, the paper's "fifth
last layer") at the last token of prompt+answer, ``answer_last`` [N, 2, D]. Every example gives
two samples, answer j labeled ``j == gold`` (correct / incorrect (question, answer) pair).

The probe is a scikit-learn ``StandardScaler`` -> L2 ``LogisticRegression`` pipeline, so the
standardization is fit on the train split only. It is trained on the train split; the inverse
regularization strength ``C`` is picked from a small grid by sample-level accuracy on the
validation split; the chosen probe (trained on train only) is scored on the test split.

Two test accuracies are reported:

* ``probe_acc_samples``: accuracy of classifying each (question, answer) sample (balanced, so
  chance is 0.5);
* ``probe_acc_paired``: per example, the answer with the higher probe probability of
  "correct" is picked and compared with gold, which is the same binary forced choice as the
  model's own accuracy (``model_acc`` = ``results.json`` accuracy.<phase>.test).

Choices the report must state:

* The paper uses l2 regularization plus early stopping on validation; we use l2 with ``C``
  selected on validation (grid ``CS``), the usual closed-form substitute for early stopping.
  Ties in validation accuracy go to the smaller ``C`` (stronger regularization).
* The probe is refit per model state; train, validation and test activations all come from the
  same state. Ties in paired probabilities pick answer 0 (``argmax``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from forget_jax.analysis import rundir

PHASES = ("pretrained", "finetuned", "forgotten")
CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
_COLORS = {"pretrained": "tab:gray", "finetuned": "tab:blue", "forgotten": "tab:red"}


def pair_samples(answer_last: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flattens per-example answer features into labeled (question, answer) samples.

    Args:
        answer_last: [N, 2, D] hidden state at the last token of prompt + answer j.
        gold: [N] index of the correct answer.

    Returns:
        ``X`` [2N, D] (row ``2i + j`` is example i, answer j) and ``y`` [2N] int, 1 iff j == gold.
    """
    answer_last, gold = np.asarray(answer_last), np.asarray(gold)
    n, two, d = answer_last.shape
    if two != 2 or gold.shape != (n,):
        raise ValueError(
            f"need answer_last [N, 2, D] and gold [N], got {answer_last.shape}, {gold.shape}"
        )
    y = (np.arange(2)[None, :] == gold[:, None]).astype(np.int64)
    return answer_last.reshape(2 * n, d), y.reshape(2 * n)


def fit_probe(
    Xtr: np.ndarray,
    ytr: np.ndarray,
    Xva: np.ndarray,
    yva: np.ndarray,
    Cs: Sequence[float] = CS,
) -> tuple[Pipeline, float, float]:
    """Fits standardize -> L2 logistic regression on train, choosing ``C`` on validation.

    Args:
        Xtr: [M, D] train features.
        ytr: [M] binary train labels.
        Xva: [M', D] validation features.
        yva: [M'] binary validation labels.
        Cs: candidate inverse regularization strengths.

    Returns:
        ``(model, C, val_acc)``: the pipeline trained on train with the best ``C`` (smallest on
        ties) and its validation accuracy.
    """
    best = None
    for C in sorted(Cs):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        model.fit(Xtr, ytr)
        acc = float(model.score(Xva, yva))
        if best is None or acc > best[2]:
            best = (model, float(C), acc)
    if best is None:
        raise ValueError("Cs is empty")
    return best


def paired_accuracy(model: Pipeline, answer_last: np.ndarray, gold: np.ndarray) -> float:
    """Forced-choice accuracy: per example, the answer the probe rates more likely correct.

    Args:
        model: a fitted probe (class 1 = correct).
        answer_last: [N, 2, D] features.
        gold: [N] correct answer index.

    Returns:
        Fraction of examples whose picked answer is gold.
    """
    X, _ = pair_samples(answer_last, gold)
    p_correct = model.predict_proba(X)[:, list(model.classes_).index(1)].reshape(-1, 2)
    return float(np.mean(p_correct.argmax(axis=1) == np.asarray(gold)))


def probe_accuracy(
    acts_by_split: Mapping[str, Mapping[str, np.ndarray]], Cs: Sequence[float] = CS
) -> dict[str, Any]:
    """Trains a probe on train, selects ``C`` on validation and scores it on test.

    Args:
        acts_by_split: ``{"train"|"validation"|"test": {"answer_last": [N, 2, D],
            "gold": [N]}}``.
        Cs: candidate inverse regularization strengths.

    Returns:
        ``probe_acc_paired, probe_acc_samples, C, val_acc, n_train, n_test``.
    """
    missing = [s for s in rundir.SPLITS if s not in acts_by_split]
    if missing:
        raise ValueError(f"probe_accuracy needs train/validation/test activations; lacks {missing}")
    samples = {
        s: pair_samples(acts_by_split[s]["answer_last"], acts_by_split[s]["gold"])
        for s in rundir.SPLITS
    }
    model, C, val_acc = fit_probe(*samples["train"], *samples["validation"], Cs=Cs)
    test = acts_by_split["test"]
    return {
        "probe_acc_paired": paired_accuracy(model, test["answer_last"], test["gold"]),
        "probe_acc_samples": float(model.score(*samples["test"])),
        "C": C,
        "val_acc": val_acc,
        "n_train": int(len(acts_by_split["train"]["gold"])),
        "n_test": int(len(test["gold"])),
    }


def probe_table(
    run_dirs: Iterable[str | Path], phases: Sequence[str] = PHASES, Cs: Sequence[float] = CS
) -> list[dict[str, Any]]:
    """Probe and model test accuracy per task and model state.

    Args:
        run_dirs: run directories; complete single-task runs are used.
        phases: activation phases to probe.
        Cs: candidate inverse regularization strengths.

    Returns:
        Rows (task-major, phases in the given order): ``task, phase, probe_acc_paired,
        probe_acc_samples, C, val_acc, model_acc, n_train, n_test, layer``.
    """
    rows = []
    for run, results in rundir.single_task_runs(run_dirs):
        task = results["task"]
        for phase in phases:
            tree = rundir.read_activations(run, phase)
            path = run / "activations" / phase
            acts = {s: rundir.split_activations(tree, task, s, path, ("answer_last",))
                    for s in rundir.SPLITS}
            model_acc = results["accuracy"].get(phase, {}).get("test")
            probe = probe_accuracy(acts, Cs)
            rows.append(
                {
                    "task": task,
                    "phase": phase,
                    "probe_acc_paired": probe["probe_acc_paired"],
                    "probe_acc_samples": probe["probe_acc_samples"],
                    "C": probe["C"],
                    "val_acc": probe["val_acc"],
                    "model_acc": None if model_acc is None else float(model_acc),
                    "n_train": probe["n_train"],
                    "n_test": probe["n_test"],
                    "layer": int(np.asarray(tree["layer"])) if "layer" in tree else None,
                }
            )
    return rows


def plot_probes(rows: Sequence[Mapping[str, Any]], out_png: str | Path) -> Path:
    """Figure 6.1: per task, paired probe accuracy (solid) next to model accuracy (hatched).

    Args:
        rows: output of :func:`probe_table`.
        out_png: destination PNG.

    Returns:
        The written path.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    tasks = sorted({r["task"] for r in rows})
    phases = [p for p in PHASES if any(r["phase"] == p for r in rows)]
    phases += sorted({r["phase"] for r in rows} - set(phases))
    lookup = {(r["task"], r["phase"]): r for r in rows}
    width = 0.8 / (2 * max(1, len(phases)))
    x = np.arange(len(tasks))
    fig = Figure(figsize=(max(6.0, 0.9 * len(tasks) + 3), 4.0), layout="constrained")
    ax = fig.subplots()
    for k, phase in enumerate(phases):
        color = _COLORS.get(phase, f"C{k}")
        for m, (key, hatch) in enumerate((("probe_acc_paired", None), ("model_acc", "//"))):
            vals = [lookup.get((t, phase), {}).get(key) for t in tasks]
            vals = [np.nan if v is None else v for v in vals]
            offset = (2 * k + m + 0.5) * width - 0.4
            ax.bar(
                x + offset,
                vals,
                width,
                color=color,
                alpha=0.45 if hatch else 0.9,
                hatch=hatch,
                edgecolor=color,
            )
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, tasks, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy")
    handles = [Patch(color=_COLORS.get(p, f"C{k}"), label=p) for k, p in enumerate(phases)]
    handles += [
        Patch(facecolor="white", edgecolor="k", label="probe (paired)"),
        Patch(facecolor="white", edgecolor="k", hatch="//", label="model"),
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Linear probe vs model accuracy (Fig. 6.1)")
    return rundir.save_figure(fig, out_png)
