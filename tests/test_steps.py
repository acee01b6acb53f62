"""Sharded steps equal single-device steps; packed scoring equals plain scoring; rules cover all."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from forget_jax import batching, sharding, steps
from forget_jax.models import gpt2, gptj, llama

TINY_LLAMA = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                  num_heads=4, num_kv_heads=2, head_dim=8, max_position_embeddings=128)


def tiny_llama(seed=0, matmul_dtype=None):
    return llama.Llama(llama.Config(**TINY_LLAMA), rngs=nnx.Rngs(seed), matmul_dtype=matmul_dtype)


def toy_encoded(n, rng, vocab=64):
    out = []
    for _ in range(n):
        c = rng.integers(1, vocab, size=rng.integers(3, 9)).astype(np.int32)
        a = tuple(rng.integers(1, vocab, size=rng.integers(1, 5)).astype(np.int32)
                  for _ in range(2))
        out.append(batching.Encoded(c, a))
    return out


def test_every_parameter_matches_a_rule():
    models = [
        tiny_llama(),
        gpt2.GPT2(gpt2.Config(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4,
                              max_position_embeddings=32),
                  rngs=nnx.Rngs(0)),
        gptj.GPTJ(gptj.Config(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4,
                              rotary_dim=4, max_position_embeddings=32), rngs=nnx.Rngs(0)),
    ]
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    for m in models:
        _, params = steps.split_model(m)
        specs = sharding.param_specs(params, mesh)  # raises on an unmatched parameter
        flat = jax.tree_util.tree_leaves(
            specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
        assert len(flat) == len(jax.tree_util.tree_leaves(params))
        assert any(any(a is not None for a in s) for s in flat), "nothing was sharded"


def test_unmatched_parameter_raises():
    with pytest.raises(sharding.ShardingError, match="matched no sharding rule"):
        sharding.logical_axes("layers/attn/weird/kernel", 3)


@pytest.mark.parametrize(("shape", "remat", "matmul_dtype"), [
    ((2, 4, 1), False, None), ((2, 1, 4), False, None), ((2, 4, 1), True, None),
    ((2, 2, 2), False, "bfloat16"),  # mixed precision: fsdp + tensor sharding of bf16 matmuls
    ((2, 4, 1), True, "bfloat16"),  # mixed precision under per-layer remat
])
def test_sharded_train_step_equals_single_device(shape, remat, matmul_dtype):
    assert jax.device_count() == 8
    rng = np.random.default_rng(0)
    encs = toy_encoded(8, rng)
    batch_np = batching.train_batch(encs, [int(t) for t in rng.integers(0, 2, 8)], 8)
    results = []
    for mesh, rm in ((sharding.make_mesh(devices=jax.devices()[:1]), False),
                     (sharding.make_mesh(*shape), remat)):
        graphdef, params = steps.split_model(tiny_llama(matmul_dtype=matmul_dtype))
        params = jax.device_put(params, sharding.param_shardings(params, mesh))
        st = steps.make_steps(graphdef, params, mesh, lr=0.1, remat=rm)
        state = st.init_state(params)
        losses = []
        for _ in range(3):
            state, m = st.train(state, sharding.put_batch(batch_np, mesh))
            losses.append(float(m["loss"]))
        results.append((losses, jax.device_get(state.params)))
    (l1, p1), (l8, p8) = results
    # float32: only the summation order differs; bf16 operands can also round differently
    tol = 1e-5 if matmul_dtype is None else 2e-3
    np.testing.assert_allclose(l1, l8, atol=tol, rtol=0)
    assert l1[-1] < l1[0]
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8), strict=True):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, atol=tol, rtol=0)


def test_packed_scoring_equals_separate_sequences():
    rng = np.random.default_rng(1)
    model = tiny_llama(3)
    graphdef, params = steps.split_model(model)
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    st = steps.make_steps(graphdef, params, mesh)
    encs = toy_encoded(5, rng)
    out = st.score(params, sharding.put_batch(batching.score_batch(encs, 6), mesh))
    got = np.asarray(out["loglik_sum"])[:5]
    for i, e in enumerate(encs):
        for j in (0, 1):
            seq = np.concatenate([e.ctx, e.conts[j]])[None]
            logp = jax.nn.log_softmax(model(jnp.asarray(seq)), -1)[0]
            C = len(e.ctx)
            want = sum(float(logp[C - 1 + k, t]) for k, t in enumerate(e.conts[j]))
            assert got[i, j] == pytest.approx(want, abs=1e-4)
    assert np.array_equal(np.asarray(out["n_tokens"])[:5],
                          [[len(e.conts[0]), len(e.conts[1])] for e in encs])


def test_chunked_vocabulary_head_equals_one_chunk():
    """A head budget of 5 positions x 2 rows x 64 words forces 3 chunks (S=12, padded to 15):
    log-likelihoods and their gradients equal the single-chunk head."""
    rng = np.random.default_rng(5)
    model = tiny_llama(4)
    graphdef, params = steps.split_model(model)
    h = jnp.asarray(rng.normal(size=(2, 9, 32)), jnp.float32)
    pos = jnp.asarray(rng.integers(0, 9, size=(2, 12)), jnp.int32)
    ids = jnp.asarray(rng.integers(0, 64, size=(2, 12)), jnp.int32)

    def ll(p, h, budget):
        return steps._answer_logliks(nnx.merge(graphdef, p), h, pos, ids, budget)

    one, chunked = ll(params, h, 1 << 27), ll(params, h, 5 * 2 * 64)
    np.testing.assert_allclose(chunked, one, rtol=1e-6, atol=1e-6)
    assert one.shape == (2, 12)
    grad = jax.grad(lambda p, h, b: ll(p, h, b).sum(), argnums=(0, 1))
    g1, gc = grad(params, h, 1 << 27), grad(params, h, 5 * 2 * 64)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(gc), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_padding_rows_do_not_change_the_loss():
    rng = np.random.default_rng(2)
    encs = toy_encoded(3, rng)
    graphdef, params = steps.split_model(tiny_llama())
    b3 = batching.train_batch(encs, [0, 1, 0], 3)
    b8 = batching.train_batch(encs + [None] * 5, [0, 1, 0, 0, 0, 0, 0, 0], 8)
    l3, _ = steps.loss_fn(params, {k: jnp.asarray(v) for k, v in b3.items()}, graphdef)
    l8, _ = steps.loss_fn(params, {k: jnp.asarray(v) for k, v in b8.items()}, graphdef)
    assert float(l3) == pytest.approx(float(l8), abs=1e-6)


def test_features_step_matches_hidden_states():
    rng = np.random.default_rng(4)
    model = tiny_llama(5)
    graphdef, params = steps.split_model(model)
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    st = steps.make_steps(graphdef, params, mesh, feature_layer=-2)
    encs = toy_encoded(3, rng)
    feats = np.asarray(st.features(params, sharding.put_batch(batching.score_batch(encs, 3), mesh)))
    for i, e in enumerate(encs):
        for j in (0, 1):
            seq = np.concatenate([e.ctx, e.conts[j]])[None]
            _, hs = model.encode(jnp.asarray(seq), output_hidden_states=True)
            np.testing.assert_allclose(feats[i, 1 + j], np.asarray(hs[-2][0, -1]), atol=1e-5)
            np.testing.assert_allclose(feats[i, 0], np.asarray(hs[-2][0, len(e.ctx) - 1]),
                                       atol=1e-5)
