"""Packing several examples into one row changes throughput, never results.

Scoring rows hold several [prompt, answer 0, answer 1] examples (``score_encoded``), training
rows several prompt+answer sequences (``train_batch(pack_len=...)``); both must give what one
example per row gives.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from forget_jax import batching, scoring, sharding, steps
from forget_jax.models import llama

TINY_LLAMA = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                  num_heads=4, num_kv_heads=2, head_dim=8, max_position_embeddings=128)


def tiny():
    return llama.Llama(llama.Config(**TINY_LLAMA), rngs=nnx.Rngs(7))


def toy_encoded(n, rng):
    out = []
    for _ in range(n):
        c = rng.integers(1, 64, size=rng.integers(3, 12)).astype(np.int32)
        a = tuple(rng.integers(1, 64, size=rng.integers(1, 5)).astype(np.int32) for _ in range(2))
        out.append(batching.Encoded(c, a))
    return out


def test_packed_score_rows_equal_one_example_per_row():
    rng = np.random.default_rng(0)
    graphdef, params = steps.split_model(tiny())
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    st = steps.make_steps(graphdef, params, mesh)
    encs = toy_encoded(23, rng)
    plain = st.score(params, sharding.put_batch(batching.score_batch(encs, 23), mesh))
    want_ll = np.asarray(plain["loglik_sum"]) / np.asarray(plain["n_tokens"])
    batches = list(batching.packed_score_batches(encs, 2, pack_len=48))
    assert max(b["feat_pos"].shape[1] // 3 for _, b in batches) > 1  # rows really are shared
    got_ll, got_n, _ = scoring.score_encoded(st, params, encs, 2, progress=False)
    np.testing.assert_allclose(got_ll, want_ll, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got_n, np.asarray(plain["n_tokens"]))


def test_packed_score_batches_cover_every_example_once():
    encs = toy_encoded(40, np.random.default_rng(1))
    seen = []
    for slots, batch in batching.packed_score_batches(encs, 3, pack_len=40):
        B = batch["tokens"].shape[0]
        assert slots.shape == (B, batch["feat_pos"].shape[1] // 3) and B <= 3
        assert (batch["seg"] >= 0).sum(1).max() <= max(40, max(e.packed_len for e in encs))
        seen += list(slots[slots >= 0])
    assert sorted(seen) == list(range(40))


@pytest.mark.parametrize("row_multiple", [1, 2])
def test_packed_training_rows_give_the_same_loss_and_gradient(row_multiple):
    rng = np.random.default_rng(2)
    encs = toy_encoded(8, rng)
    targets = [int(t) for t in rng.integers(0, 2, 8)]
    graphdef, params = steps.split_model(tiny())
    plain = batching.train_batch(encs, targets, 8)
    packed = batching.train_batch(encs, targets, 8, pack_len=40, row_multiple=row_multiple)
    assert packed["tokens"].shape[0] < 8 and packed["tokens"].shape[0] % row_multiple == 0
    assert packed["mask"].max() > 1  # several sequences in a row

    def loss_and_grad(b):
        f = jax.value_and_grad(lambda p: steps.loss_fn(p, b, graphdef)[0])
        return f(params)

    l1, g1 = loss_and_grad({k: jnp.asarray(v) for k, v in plain.items()})
    l2, g2 = loss_and_grad({k: jnp.asarray(v) for k, v in packed.items()})
    assert float(l1) == pytest.approx(float(l2), abs=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_segment_positions_restart_per_segment():
    seg = jnp.asarray([[1, 1, 1, 2, 2, 3, 0, 0]])
    np.testing.assert_array_equal(steps.segment_positions(seg), [[0, 1, 2, 0, 1, 0, 0, 1]])
