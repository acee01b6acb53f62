"""Task selection before forgetting: did fine-tuning gain over what needs no learning?

A task's fine-tuning gain counts only if the fine-tuned model beats *both* baselines that need
no task learning, on the validation role (the split model selection uses; never test):

* the zero-shot (pretrained) model's accuracy on the same examples, and
* the best constant predictor, ``max_k mean(gold == k)``: always answering choice k (the label
  prior of a yes/no task; the position prior of a binarized multiple-choice task).

The baseline is the larger of the two; the gain is ``acc_ft - acc_baseline`` with a paired
percentile bootstrap over the validation examples (the same resampled examples for the fine-tuned
and the baseline predictions). A task is *kept* when the interval's lower bound is > 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forget_jax.analysis import rundir, stats


def _by_id(rows: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(r["id"]): r for r in rows}


def gain_row(run: str | Path, task: str, split: str = "validation",
             n_resamples: int = stats.N_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """The selection row of one fine-tuning cell (``ft-<task>``): accuracies, baseline, gain."""
    ft = _by_id(rundir.read_predictions(run, "finetuned", task, split))
    zs = _by_id(rundir.read_predictions(run, "pretrained", task, split))
    if set(ft) != set(zs):
        raise rundir.RunDirError(Path(run), f"{task}.{split}: pretrained and fine-tuned "
                                            "predictions cover different examples")
    ids = sorted(ft)
    gold = np.array([int(ft[i]["gold"]) for i in ids])
    ft_c = np.array([bool(ft[i]["correct"]) for i in ids], np.float64)
    zs_c = np.array([bool(zs[i]["correct"]) for i in ids], np.float64)
    k = int(np.bincount(gold).argmax())
    const_c = (gold == k).astype(np.float64)
    use_const = const_c.mean() > zs_c.mean()
    base_c = const_c if use_const else zs_c
    gain = stats.bootstrap_paired(lambda a, b: a - b, [ft_c, base_c], n_resamples, seed)
    return {"task": task, "split": split, "n": len(ids), "zero_shot_acc": zs_c.mean(),
            "constant_choice": k, "constant_acc": const_c.mean(), "finetuned_acc": ft_c.mean(),
            "baseline": "constant" if use_const else "zero_shot",
            "gain": gain.value, "gain_lo": gain.lo, "gain_hi": gain.hi,
            "kept": bool(gain.lo > 0)}
