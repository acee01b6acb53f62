"""Pure functions of forget_jax.analysis.predictors (run-directory tests: test_analysis_rundir)."""

import math

import numpy as np
import pytest

from forget_jax.analysis.predictors import (
    correlate,
    forgotten_examples,
    predictor_correlations,
    total_variance,
)


def test_total_variance_is_trace_of_covariance():
    X = np.array([
        [1.0, 2.0, -1.0],
        [0.5, 4.0, 3.0],
        [2.5, -1.0, 0.0],
        [3.0, 0.0, 7.5],
        [-2.0, 1.5, 2.0],
    ])  # fmt: skip
    expected = float(np.trace(np.cov(X, rowvar=False)))
    assert total_variance(X) == pytest.approx(expected, rel=1e-12)
    # And by hand for a tiny matrix: columns {0,2,0,2} have mean 1, sum sq dev 4, ddof=1 -> 4/3.
    assert total_variance([[0, 0], [2, 0], [0, 2], [2, 2]]) == pytest.approx(8 / 3)


def test_total_variance_rejects_a_single_row():
    with pytest.raises(ValueError, match="N>=2"):
        total_variance(np.ones((1, 4)))


def test_correlate_matches_closed_forms():
    x, y = [0.9, 0.6, 0.8], [0.2, 0.5, 0.1]
    r, p = correlate(x, y, "spearman")
    # ranks (3,1,2) vs (2,3,1): rho = 1 - 6*6/(3*8) = -0.5; with n=3 the t test has 1 dof
    # (Cauchy): p = 1 - (2/pi) * arctan(|rho| / sqrt(1 - rho^2)) = 1 - (2/pi)(pi/6) = 2/3.
    assert r == pytest.approx(-0.5)
    assert p == pytest.approx(2 / 3)
    r, p = correlate(x, y, "pearson")
    assert r == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert p == pytest.approx(1 - 2 / math.pi * math.atan(abs(r) / math.sqrt(1 - r * r)))


def test_correlate_is_nan_when_undefined():
    assert all(math.isnan(v) for v in correlate([1, 1, 1], [1, 2, 3], "pearson"))
    assert all(math.isnan(v) for v in correlate([1, 2], [1, 2], "spearman"))
    with pytest.raises(ValueError, match="unknown"):
        correlate([1, 2, 3], [1, 2, 3], "kendall")


def test_predictor_correlations_columns():
    rows = [
        {"finetuned_acc": 0.9, "confidence": 0.7, "total_variance": 1.0, "forget_ratio": 0.2},
        {"finetuned_acc": 0.6, "confidence": 0.6, "total_variance": 4.0, "forget_ratio": 0.5},
        {"finetuned_acc": 0.8, "confidence": 0.9, "total_variance": 9.0, "forget_ratio": 0.1},
    ]
    out = {c["predictor"]: c for c in predictor_correlations(rows)}
    assert list(out) == ["finetuned_acc", "confidence", "total_variance"]
    assert out["finetuned_acc"]["spearman_r"] == pytest.approx(-0.5)
    assert out["confidence"]["spearman_r"] == pytest.approx(-1.0)  # ranks (2,1,3) vs (2,3,1)
    assert out["total_variance"]["spearman_r"] == pytest.approx(-0.5)
    assert {c["n"] for c in out.values()} == {3}


def test_forgotten_examples_uses_only_examples_correct_after_finetuning():
    finetuned = [
        {"id": "a", "correct": True, "confidence": 0.9},
        {"id": "b", "correct": True, "confidence": 0.7},
        {"id": "c", "correct": False, "confidence": 0.3},  # never learned: excluded
        {"id": "d", "correct": True, "confidence": 0.8},  # absent after forgetting: excluded
    ]
    forgotten = [
        {"id": "b", "correct": False},
        {"id": "a", "correct": True},
        {"id": "c", "correct": True},
    ]
    conf, flag = forgotten_examples(finetuned, forgotten)
    np.testing.assert_array_equal(conf, [0.9, 0.7])
    np.testing.assert_array_equal(flag, [False, True])
