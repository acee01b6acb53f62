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
