"""Gemma 3, Qwen2, Qwen3 and Mistral (options of the one decoder) beyond plain parity.

Plain parity (padded and unpadded, logits and every hidden state, 1e-4) runs in
test_models.py (``FAMILY_CASES``). Here: packed rows vs transformers on each sequence alone
(sliding windows count positions within a segment), the windows and Gemma's two rope bases
are really exercised, hub config.json files, full-size parameter counts, and the sharded
train step of each family equals one device.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from forget_jax import batching, sharding, steps
from forget_jax.models import abstract_model, config_from_hf, model_config, precision_kwargs
from forget_jax.models.convert import model_from_params
from tests.test_models import (
    ATOL,
    FAMILY_CASES,
    V,
    _dot_generals,
    flax_twin,
    hf_forward,
    low_precision_twin,
    tiny_hf,
)
from tests.test_steps import toy_encoded


def _check_segment(model_out, hidden, ref_logits, ref_hidden, sl: slice, what: str):
    np.testing.assert_allclose(model_out[0, sl], ref_logits[0], atol=ATOL, rtol=0, err_msg=what)
    for i in range(len(ref_hidden)):
        np.testing.assert_allclose(np.asarray(hidden[i])[0, sl], ref_hidden[i][0], atol=ATOL,
                                   rtol=0, err_msg=f"{what}: hidden state {i}")


@pytest.mark.parametrize("case", FAMILY_CASES)
def test_packed_rows_match_transformers_on_each_sequence(case: str):
    """A training row [seq_a (9), seq_b (7), pad (2)] with segment ids and restarting
    positions, and a scoring row [ctx (7), a0 (4), a1 (3)]: every token's logits and hidden
    states equal transformers run on that sequence alone (windows 4-5 < every length)."""
    hf_model = tiny_hf(case)
    model = flax_twin(hf_model)
    rng = np.random.RandomState(3)
    a, b = rng.randint(0, V, 9).astype(np.int32), rng.randint(0, V, 7).astype(np.int32)
    seg = np.array([[1] * 9 + [2] * 7 + [0] * 2], np.int32)
    tokens = np.concatenate([a, b, [0, 0]])[None].astype(np.int32)
    h, hidden = model.encode(tokens, mask=steps.segment_attention(jnp.asarray(seg)),
                             positions=steps.segment_positions(jnp.asarray(seg)),
                             output_hidden_states=True)
    logits = np.asarray(model.logits(h))
    for seq, sl in ((a, slice(0, 9)), (b, slice(9, 16))):
        _check_segment(logits, hidden, *hf_forward(hf_model, seq[None], None), sl, "train row")

    ctx, a0, a1 = (rng.randint(0, V, n).astype(np.int32) for n in (7, 4, 3))
    row = batching.score_rows([[batching.Encoded(ctx, (a0, a1))]])
    h, hidden = model.encode(row["tokens"], mask=steps.packed_attention(jnp.asarray(row["seg"])),
                             positions=row["positions"], output_hidden_states=True)
    logits = np.asarray(model.logits(h))
    ref_logits, ref_hidden = hf_forward(hf_model, np.concatenate([ctx, a1])[None], None)
    _check_segment(logits, hidden, ref_logits[:, 7:], ref_hidden[:, :, 7:], slice(11, 14),
                   "scoring row, second answer")


@pytest.mark.parametrize("case, change", [
    ("mistral_window", dict(sliding_window=None, layer_types=None)),
    ("qwen2_bias_window", dict(sliding_window=None, layer_types=None)),
    ("gemma3", dict(layer_types=("full_attention",) * 3)),
    ("gemma3", dict(rope_local_theta=None)),
])
def test_windows_and_local_rope_are_exercised(case: str, change: dict):
    """The parity cases would fail if the window (or Gemma's local rope base) were ignored."""
    model = flax_twin(tiny_hf(case))
    tokens = np.random.RandomState(0).randint(0, V, (2, 12)).astype(np.int32)
    other = model_from_params(dataclasses.replace(model.config, **change),
                              nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    assert np.abs(np.asarray(model(tokens)) - np.asarray(other(tokens))).max() > 100 * ATOL


def test_gemma3_hub_config_json():
    """google/gemma-3-1b-pt's config.json keys (transformers 4 style) -> our fields."""
    config = model_config("gemma-3-1b")
    assert config.model_type == "gemma3_text"
    assert (config.rope_theta, config.rope_local_theta, config.sliding_window) == (
        1_000_000.0, 10_000.0, 512)
    assert config.layer_types[:6] == ("sliding_attention",) * 5 + ("full_attention",)
    assert config.sliding_layers.count(False) == 26 // 6 and config.tie_word_embeddings
    assert (config.norm_offset, config.sandwich_norms, config.qk_norm, config.embed_scale) == (
        1.0, True, True, True)
    assert config.hidden_act == "gelu_pytorch_tanh" and config.query_pre_attn_scalar == 256
    with pytest.raises(Exception, match="final_logit_softcapping"):
        config_from_hf({"model_type": "gemma3_text", "vocab_size": 8, "hidden_size": 8,
                        "intermediate_size": 8, "num_hidden_layers": 1,
                        "num_attention_heads": 1, "final_logit_softcapping": 30.0})


def count_params(model) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("name, expected", [
    ("qwen2.5-7b", 7_615_616_512),  # published: 7.61 B (7.62 B in the model card's rounding)
    ("mistral-7b-v0.1", 7_241_732_096),  # 7.24 B
    ("gemma-3-1b", 999_885_952),  # ~1.0 B
])
def test_full_size_parameter_counts(name: str, expected: int):
    model = abstract_model(model_config(name), jnp.bfloat16)
    assert count_params(model) == expected
    out = nnx.eval_shape(lambda m, t: m.encode(t)[0], model,
                         jax.ShapeDtypeStruct((1, 8), jnp.int32))
    assert out.shape == (1, 8, model.config.hidden_size)


@pytest.mark.parametrize("case", FAMILY_CASES)
def test_sharded_train_step_equals_single_device(case: str):
    """data x fsdp x tensor = 2 x 2 x 2 with per-layer remat vs one device, two SGD steps."""
    assert jax.device_count() == 8
    rng = np.random.default_rng(0)
    batch_np = batching.train_batch(toy_encoded(8, rng, vocab=V),
                                    [int(t) for t in rng.integers(0, 2, 8)], 8)
    hf_model = tiny_hf(case)
    results = []
    for mesh, remat in ((sharding.make_mesh(devices=jax.devices()[:1]), False),
                        (sharding.make_mesh(2, 2, 2), True)):
        graphdef, params = steps.split_model(flax_twin(hf_model))
        params = jax.device_put(params, sharding.param_shardings(params, mesh))
        st = steps.make_steps(graphdef, params, mesh, lr=0.01, remat=remat)
        state, losses = st.init_state(params), []
        for _ in range(2):
            state, m = st.train(state, sharding.put_batch(batch_np, mesh))
            losses.append(float(m["loss"]))
        results.append((losses, jax.device_get(state.params)))
    (l1, p1), (l8, p8) = results
    np.testing.assert_allclose(l1, l8, atol=1e-4, rtol=1e-5)
    assert l1[1] < l1[0]
    for x, y in zip(jax.tree.leaves(p1), jax.tree.leaves(p8), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5, rtol=1e-5)



# Promised by the precision policy (models.PRECISIONS): param dtype, activation dtype, logits
# vs float32 within this share of the logit scale (0: identical), operand dtype of the
# forward matmuls (bfloat16 keeps q.k in float32; mixed_bfloat16 accumulates every matmul in
# float32; the head's logits are float32 in all three).
POLICY = {
    "float32": (jnp.float32, jnp.float32, 0.0, jnp.float32),
    "mixed_bfloat16": (jnp.float32, jnp.float32, 0.05, jnp.bfloat16),
    "bfloat16": (jnp.bfloat16, jnp.bfloat16, 0.1, jnp.bfloat16),
}


def _train_once(model, batch, mesh):
    """(loss, params before, params after) of one SGD step on one device."""
    gd, params = steps.split_model(model)
    st = steps.make_steps(gd, params, mesh, lr=0.05)
    state, metrics = st.train(st.init_state(params), sharding.put_batch(batch, mesh))
    assert metrics["loss"].dtype == jnp.float32
    return float(metrics["loss"]), params, jax.device_get(state.params)


@pytest.mark.parametrize("case", FAMILY_CASES)
def test_each_precision_forward_and_train_step(case: str):
    """Per precision. Forward: param/activation dtypes, float32 logits close to float32's,
    the operand dtypes of every forward matmul. The low precisions also run one train step:
    parameters keep their dtype and move, float32 losses agree within bfloat16's error (the
    float32 train step runs in test_sharded_train_step_equals_single_device)."""
    rng = np.random.default_rng(0)
    batch = batching.train_batch(toy_encoded(4, rng, vocab=V), [0, 1, 1, 0], 4)
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    tokens = np.random.RandomState(0).randint(0, V, (2, 12)).astype(np.int32)
    losses = {}
    for precision, (param_dt, act_dt, tol, mm_dt) in POLICY.items():
        param_dt, act_dt, mm_dt = map(jnp.dtype, (param_dt, act_dt, mm_dt))
        kw = precision_kwargs(precision)
        if precision == "float32":  # its logits are the parity tests' (test_models.py)
            model = flax_twin(tiny_hf(case), **kw)
            param_dtypes = {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))}
            h_dtype = nnx.eval_shape(lambda m: m.encode(tokens)[0], model).dtype
        else:
            model, param_dtypes, h_dtype, err, scale = low_precision_twin(case, **kw)
            assert 0 < err.max() < tol * scale, precision
        assert param_dtypes == {param_dt} and h_dtype == act_dt, precision
        graphdef, p = nnx.split(model, nnx.Param)
        dots = list(_dot_generals(jax.make_jaxpr(
            lambda p, g=graphdef: nnx.merge(g, p)(tokens).mean())(p).jaxpr))
        assert len(dots) == 7 + 2 + 1  # scanned layer body: 7 projections, q.k, probs.v; head
        ins = [tuple(v.aval.dtype for v in e.invars) for e in dots]
        outs = [e.outvars[0].aval.dtype for e in dots]
        want_in = [(mm_dt, mm_dt)] * len(dots)
        if precision == "bfloat16":
            f32 = [i for i, x in enumerate(ins) if x == (jnp.float32, jnp.float32)]
            assert len(f32) == 1, ins  # q.k
            want_in[f32[0]] = (jnp.dtype(jnp.float32),) * 2
        assert ins == want_in, (precision, ins)
        assert outs[-1] == jnp.float32 and (precision != "mixed_bfloat16"
                                            or set(outs) == {jnp.dtype(jnp.float32)}), outs
        if precision == "float32":
            continue
        losses[precision], before, after = _train_once(model, batch, mesh)
        assert np.isfinite(losses[precision])
        assert {x.dtype for x in jax.tree.leaves(after)} == {param_dt}, precision
        assert any(np.any(np.asarray(a) != np.asarray(b)) for a, b in zip(
            jax.tree.leaves(before), jax.tree.leaves(after), strict=True)), precision
    assert abs(losses["bfloat16"] - losses["mixed_bfloat16"]) <= 0.1 * losses["mixed_bfloat16"]
