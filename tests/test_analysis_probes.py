"""Linear probes of forget_jax.analysis.probes on synthetic features."""

import numpy as np
import pytest

from forget_jax.analysis.probes import CS, fit_probe, pair_samples, probe_accuracy

D = 12


def _split(rng, n, mu, gold=None):
    """answer_last [n, 2, D]: noise, plus ``mu`` on the gold answer's features."""
    gold = rng.integers(0, 2, n) if gold is None else gold
    X = rng.normal(size=(n, 2, D))
    X[np.arange(n), gold] += mu
    return {"answer_last": X.astype(np.float32), "gold": gold}


@pytest.fixture(scope="module")
def separable():
    rng = np.random.default_rng(0)
    mu = np.zeros(D)
    mu[:3] = 6.0  # 10.4 noise std along mu: correct and incorrect samples never overlap here
    return {s: _split(rng, n, mu) for s, n in (("train", 200), ("validation", 100), ("test", 300))}


def test_pair_samples_layout():
    answer_last = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)
    X, y = pair_samples(answer_last, np.array([1, 0]))
    np.testing.assert_array_equal(X[1], answer_last[0, 1])
    np.testing.assert_array_equal(X[2], answer_last[1, 0])
    np.testing.assert_array_equal(y, [0, 1, 1, 0])


def test_probe_separates_linearly_separable_features(separable):
    out = probe_accuracy(separable)
    assert out["probe_acc_samples"] > 0.95
    assert out["probe_acc_paired"] > 0.95
    assert out["C"] in CS and out["val_acc"] > 0.95
    assert (out["n_train"], out["n_test"]) == (200, 300)


def test_probe_is_at_chance_on_shuffled_labels(separable):
    rng = np.random.default_rng(1)
    # Same informative features, gold indices permuted across examples: labels carry no signal.
    shuffled = {
        s: {"answer_last": a["answer_last"], "gold": rng.permutation(a["gold"])}
        for s, a in separable.items()
    }
    out = probe_accuracy(shuffled)
    assert 0.40 <= out["probe_acc_samples"] <= 0.60
    assert 0.40 <= out["probe_acc_paired"] <= 0.60


def test_fit_probe_standardizes_on_train_and_scores_on_validation():
    rng = np.random.default_rng(2)
    scale, shift = np.array([1.0, 100.0, 0.01, 5.0]), np.array([0.0, 1e3, -3.0, 0.0])
    Xtr = rng.normal(size=(300, 4)) * scale + shift
    ytr = (Xtr[:, 0] + rng.normal(scale=0.5, size=300) > 0).astype(int)
    Xva = rng.normal(size=(200, 4)) * scale + shift
    yva = (Xva[:, 0] > 0).astype(int)
    model, C, val_acc = fit_probe(Xtr, ytr, Xva, yva, Cs=(10.0, 1.0))
    assert C in (10.0, 1.0)
    assert val_acc == pytest.approx(model.score(Xva, yva)) and val_acc > 0.85
    scaler = model.named_steps["standardscaler"]
    np.testing.assert_allclose(scaler.mean_, Xtr.mean(axis=0))
    np.testing.assert_allclose(scaler.scale_, Xtr.std(axis=0))


def test_fit_probe_breaks_ties_toward_the_smaller_c(separable):
    Xtr, ytr = pair_samples(**separable["train"])
    Xva, yva = pair_samples(**separable["validation"])
    _, C, val_acc = fit_probe(Xtr, ytr, Xva, yva, Cs=(10.0, 0.1, 1.0))
    assert val_acc == 1.0  # every C is perfect on these features, so the smallest wins
    assert C == 0.1


def test_probe_accuracy_needs_all_splits(separable):
    with pytest.raises(ValueError, match="validation"):
        probe_accuracy({"train": separable["train"], "test": separable["test"]})
