"""The forget/learn-time rule of forget_jax.analysis.orders on hand-made confidence histories."""

import numpy as np
import pytest

from forget_jax.analysis.orders import forget_learn_times

# Gold confidence per epoch (rows) and example (columns). Row 0 is the phase's starting model.
FORGET = np.array([
    # ex0  ex1  ex2  ex3  ex4   ex5
    [0.9, 0.9, 0.9, 0.5, 0.8, 0.9],
    [0.7, 0.6, 0.9, 0.9, 0.7, 0.4],
    [0.5, 0.3, 0.9, 0.4, 0.61, 0.4],
    [0.2, 0.3, 0.9, 0.4, 0.55, 0.4],
])  # fmt: skip
RELEARN = np.array([
    [0.3, 0.7, 0.3, 0.3, 0.1, 0.2],
    [0.6, 0.8, 0.9, 0.4, 0.2, 0.59],
    [0.9, 0.9, 0.9, 0.59, 0.65, 0.61],
])  # fmt: skip


def test_first_crossing_with_epoch0_counted():
    forget_t, learn_t, mask = forget_learn_times(FORGET, RELEARN, 0.6)
    # ex1 hits exactly 0.6 at epoch 1 (inclusive); ex3 is already <= 0.6 at epoch 0 and
    # bounces back up, the FIRST crossing counts; ex2 is never forgotten; ex3 never relearned.
    np.testing.assert_array_equal(forget_t, [2, 1, -1, 0, 3, 1])
    # ex0 reaches exactly 0.6 at epoch 1 (inclusive); ex1 is >= 0.6 already at epoch 0.
    np.testing.assert_array_equal(learn_t, [1, 0, 1, -1, 2, 2])
    np.testing.assert_array_equal(mask, [True, True, False, False, True, True])
    assert forget_t.dtype == np.int64 and mask.dtype == bool


def test_epoch0_excluded():
    forget_t, learn_t, mask = forget_learn_times(FORGET, RELEARN, 0.6, include_epoch0=False)
    np.testing.assert_array_equal(forget_t, [2, 1, -1, 2, 3, 1])
    np.testing.assert_array_equal(learn_t, [1, 1, 1, -1, 2, 2])
    np.testing.assert_array_equal(mask, [True, True, False, False, True, True])


def test_epoch_numbers_come_from_the_epoch_array():
    forget_t, learn_t, _ = forget_learn_times(
        FORGET, RELEARN, 0.6, forget_epochs=np.array([0, 2, 4, 6]),
        relearn_epochs=np.array([0, 5, 10]),
    )  # fmt: skip
    np.testing.assert_array_equal(forget_t, [4, 2, -1, 0, 6, 2])
    np.testing.assert_array_equal(learn_t, [5, 0, 5, -1, 10, 10])


def test_other_threshold():
    forget_t, learn_t, mask = forget_learn_times(FORGET, RELEARN, 0.5)
    np.testing.assert_array_equal(forget_t, [2, 2, -1, 0, -1, 1])
    np.testing.assert_array_equal(learn_t, [1, 0, 1, 2, 2, 1])
    np.testing.assert_array_equal(mask, [True, True, False, True, False, True])


def test_shape_errors():
    with pytest.raises(ValueError, match="example counts differ"):
        forget_learn_times(FORGET, RELEARN[:, :5])
    with pytest.raises(ValueError, match=r"\[E, N\]"):
        forget_learn_times(FORGET[0], RELEARN)
    with pytest.raises(ValueError, match="one entry per history row"):
        forget_learn_times(FORGET, RELEARN, forget_epochs=np.arange(3))


def test_examples_never_learned_by_finetuning_are_excluded():
    # ex0 starts at 0.4 (never learned): its forget time would be 0 and it relearns at epoch 1,
    # yet it must not qualify. ex1 starts at exactly 0.6: learned (inclusive), not strict.
    forget = np.array([[0.4, 0.6, 0.9], [0.3, 0.5, 0.5]])
    relearn = np.array([[0.3, 0.3, 0.3], [0.9, 0.9, 0.9]])
    forget_t, learn_t, mask = forget_learn_times(forget, relearn, 0.6)
    np.testing.assert_array_equal(forget_t, [0, 0, 1])
    np.testing.assert_array_equal(mask, [False, True, True])
    _, _, strict = forget_learn_times(forget, relearn, 0.6, inclusive=False)
    np.testing.assert_array_equal(strict, [False, False, True])


def _write_run(run, forget, relearn):
    import json

    (run / "predictions/epochs").mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(
        {"task": "t", "forget_task": "t", "eval_task": "t", "accuracy": {}, "complete": True}))
    ids = np.array([f"t/train/{i}" for i in range(forget.shape[1])])
    for phase, conf in (("forget", forget), ("relearn", relearn)):
        np.savez(run / "predictions/epochs" / f"{phase}.npz", epoch=np.arange(len(conf)),
                 train_ids=ids, train_confidence=conf, train_correct=conf > 0.5)


def test_order_table_counts_and_the_correlation_without_epoch0(tmp_path):
    from scipy import stats

    from forget_jax.analysis.orders import order_table

    # examples 0-4: forget time f, learn time 4 - f (rho = -1); 5, 6: never learned by
    # fine-tuning (would add (0, 1) and (0, 2)); 7: never relearned within the 3-epoch cap;
    # 8: learn time 0 (still >= 0.6 after forgetting): in spearman_r, not in the no-epoch0 one.
    f_t = np.array([1, 2, 3, 1, 2, 0, 0, 1, 2])
    l_t = np.array([3, 2, 1, 3, 2, 1, 2, -1, 0])
    forget = np.where(np.arange(4)[:, None] < f_t, 0.9, 0.3)
    forget[0, 5:7] = 0.3
    relearn = np.where((np.arange(4)[:, None] >= l_t) & (l_t >= 0), 0.9, 0.3)
    _write_run(tmp_path / "run", forget, relearn)
    (row,) = order_table([tmp_path / "run"])
    assert (row["n_not_learned_by_finetuning"], row["n_never_forgotten"],
            row["n_never_relearned"], row["relearn_cap_epochs"]) == (2, 0, 1, 3)
    assert (row["n_qualifying"], row["n_qualifying_no_epoch0"]) == (6, 5)
    keep = [0, 1, 2, 3, 4, 8]
    assert row["spearman_r"] == pytest.approx(stats.spearmanr(f_t[keep], l_t[keep]).statistic)
    assert row["spearman_r_no_epoch0"] == pytest.approx(-1.0)
