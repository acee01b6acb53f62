"""Task selection: gain over max(zero-shot, best constant choice) on validation."""

import json

import numpy as np
import pytest

from forget_jax.analysis import selection


def _preds(run, phase, gold, pred):
    p = run / "predictions" / phase / "rte.validation.jsonl"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(json.dumps({"id": f"rte/validation/{i}", "gold": int(g), "pred": int(q),
                                     "correct": bool(g == q), "confidence": 0.6}) + "\n"
                         for i, (g, q) in enumerate(zip(gold, pred, strict=True))))


def test_a_gain_that_is_only_the_label_prior_is_not_kept(tmp_path):
    gold = np.array([1] * 140 + [0] * 60)  # constant "1" scores 0.70
    _preds(tmp_path, "pretrained", gold, 1 - gold)  # zero-shot 0.0
    _preds(tmp_path, "finetuned", gold, np.ones(200, int))  # learned the prior only: 0.70
    row = selection.gain_row(tmp_path, "rte")
    assert (row["zero_shot_acc"], row["constant_acc"], row["finetuned_acc"]) == (0.0, 0.7, 0.7)
    assert row["baseline"] == "constant" and row["constant_choice"] == 1
    assert row["gain"] == 0.0 and not row["kept"]


def test_a_real_gain_over_zero_shot_is_kept_with_its_paired_interval(tmp_path):
    gold = np.array([0, 1] * 100)  # constant choice 0.5
    zs = gold.copy()
    zs[:80] = 1 - zs[:80]  # zero-shot 0.60
    ft = gold.copy()
    ft[:20] = 1 - ft[:20]  # fine-tuned 0.90, right on 60 of zero-shot's 80 errors
    _preds(tmp_path, "pretrained", gold, zs)
    _preds(tmp_path, "finetuned", gold, ft)
    row = selection.gain_row(tmp_path, "rte", n_resamples=2000)
    assert row["baseline"] == "zero_shot"
    assert row["gain"] == pytest.approx(0.30)
    # paired: per-example differences are +1 (60), 0 (140); sd of the mean ~ 0.032
    assert 0.22 < row["gain_lo"] < 0.26 and 0.34 < row["gain_hi"] < 0.38 and row["kept"]
