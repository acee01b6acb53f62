"""Parity of our Flax LLaMA / GPT-2 / GPT-J with PyTorch transformers on tiny random models.

float32, atol 1e-4 on logits and on every hidden state, unpadded and right-padded batches,
plus the packed [B,T,T]-mask path and full-size shapes through ``nnx.eval_shape``.
torch is a test-only dependency and is imported here only.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from forget_jax.models import abstract_model, config_from_hf, model_config, precision_kwargs
from forget_jax.models import layers as L
from forget_jax.models.convert import hf_to_flax, model_from_params

ATOL = 1e-4
V = 97

# name -> (HF model class, HF config kwargs). Small, but every code path that differs.
_LLAMA = dict(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2)
HF_CASES: dict[str, tuple[type, dict]] = {
    "llama_gqa_untied": (transformers.LlamaForCausalLM, dict(
        _LLAMA, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        tie_word_embeddings=False)),
    "llama_mha_tied_bias": (transformers.LlamaForCausalLM, dict(
        _LLAMA, num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True,
        attention_bias=True, mlp_bias=True, rope_theta=500000.0)),
    "llama_rope_linear": (transformers.LlamaForCausalLM, dict(
        _LLAMA, num_attention_heads=4, num_key_value_heads=1,
        rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0})),
    "llama_rope_llama3": (transformers.LlamaForCausalLM, dict(
        _LLAMA, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
        rope_parameters={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 4,
                         "rope_theta": 10000.0})),
    "llama_rope_dynamic": (transformers.LlamaForCausalLM, dict(
        _LLAMA, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=6,
        rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0})),
    # Families of the one decoder; T=12 positions > every sliding window below.
    "qwen2_bias_window": (transformers.Qwen2ForCausalLM, dict(
        _LLAMA, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        use_sliding_window=True, sliding_window=4, max_window_layers=1,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    "qwen3_qk_norm": (transformers.Qwen3ForCausalLM, dict(
        _LLAMA, num_attention_heads=4, num_key_value_heads=2, head_dim=24,
        tie_word_embeddings=True)),
    "mistral_window": (transformers.MistralForCausalLM, dict(
        _LLAMA, num_attention_heads=4, num_key_value_heads=2, sliding_window=5)),
    "gemma3": (transformers.Gemma3ForCausalLM, dict(
        _LLAMA, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        query_pre_attn_scalar=24, sliding_window=4, pad_token_id=None,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})),
    "gpt2": (
        transformers.GPT2LMHeadModel,
        dict(vocab_size=V, n_embd=64, n_layer=3, n_head=4, n_positions=32),
    ),
    "gptj_partial_rotary": (
        transformers.GPTJForCausalLM,
        dict(vocab_size=V, n_embd=64, n_layer=3, n_head=4, n_positions=32, rotary_dim=8),
    ),
}
FAMILY_CASES = ["qwen2_bias_window", "qwen3_qk_norm", "mistral_window", "gemma3"]


def tiny_hf(case: str, seed: int = 0) -> torch.nn.Module:
    """A tiny random HF model with weights spread wide enough that layout bugs show.

    HF's default init (std 0.02) makes attention nearly uniform, so a wrong RoPE could hide
    under 1e-4; std 0.25 weights and non-trivial norm scales make it visible.
    """
    cls, kwargs = HF_CASES[case]
    torch.manual_seed(seed)
    config = cls.config_class(
        **{"pad_token_id": None, **kwargs}, bos_token_id=0, eos_token_id=1,
        attn_implementation="eager")
    model = cls(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm = "norm" in name or ".ln_" in name or name.startswith(("transformer.ln_f",))
            if is_norm and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.25 if p.ndim > 1 else 0.1)
    return model


def hf_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def flax_twin(hf_model: torch.nn.Module, **kw) -> nnx.Module:
    """Our model holding the HF model's weights."""
    config = config_from_hf(hf_model.config)
    return model_from_params(config, hf_to_flax(hf_state(hf_model), config), **kw)


def tokens_and_mask(T: int = 12, B: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    tokens_BT = rng.randint(0, V, (B, T)).astype(np.int32)
    mask_BT = np.ones((B, T), np.int32)
    mask_BT[1, T - 4 :] = 0  # right padding
    mask_BT[2, T // 2 :] = 0
    return tokens_BT, mask_BT


def hf_forward(model: torch.nn.Module, tokens_BT: np.ndarray, mask_BT: np.ndarray | None):
    with torch.no_grad():
        out = model(
            torch.tensor(tokens_BT, dtype=torch.long),
            attention_mask=None if mask_BT is None else torch.tensor(mask_BT),
            output_hidden_states=True,
        )
    return out.logits.numpy(), np.stack([h.numpy() for h in out.hidden_states])


@pytest.mark.parametrize("case", sorted(HF_CASES))
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_parity_with_transformers(case: str, padded: bool):
    hf_model = tiny_hf(case)
    model = flax_twin(hf_model)
    tokens_BT, mask_BT = tokens_and_mask()
    mask_BT = mask_BT if padded else None
    ref_logits, ref_hidden = hf_forward(hf_model, tokens_BT, mask_BT)
    h_BTD, hidden = model.encode(tokens_BT, mask=mask_BT, output_hidden_states=True)
    logits = np.asarray(model.logits(h_BTD))

    real_BT = np.ones(tokens_BT.shape, bool) if mask_BT is None else mask_BT.astype(bool)
    assert ref_logits.std() > 0.5, "reference logits too flat for the test to mean anything"
    assert logits.dtype == np.float32 and logits.shape == ref_logits.shape
    np.testing.assert_allclose(logits[real_BT], ref_logits[real_BT], atol=ATOL, rtol=0)
    assert hidden.shape == ref_hidden.shape  # [L+1,B,T,D]
    for i in range(len(ref_hidden)):
        np.testing.assert_allclose(
            np.asarray(hidden[i])[real_BT],
            ref_hidden[i][real_BT],
            atol=ATOL,
            rtol=0,
            err_msg=f"hidden state {i}",
        )
    np.testing.assert_array_equal(np.asarray(model(tokens_BT, mask=mask_BT)), logits)
    assert np.isfinite(logits).all()  # padded positions included


@pytest.mark.parametrize("case", ["llama_rope_linear", "llama_rope_llama3", "llama_rope_dynamic"])
def test_rope_scaling_is_exercised(case: str):
    """The scaled-RoPE parity cases would fail if scaling were ignored (positions reach 11)."""
    hf_model = tiny_hf(case)
    model = flax_twin(hf_model)
    tokens_BT, _ = tokens_and_mask()
    config = dataclasses.replace(model.config, rope_type="default")
    plain = model_from_params(config, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    diff = np.abs(np.asarray(model(tokens_BT)) - np.asarray(plain(tokens_BT))).max()
    assert diff > 100 * ATOL


@pytest.mark.parametrize("case", ["llama_gqa_untied", "gpt2", "gptj_partial_rotary"])
def test_packed_answers_match_separate_rows(case: str):
    """[prompt, a0, a1] in one row, a1 blind to a0 with positions restarting == [prompt, a1]."""
    model = flax_twin(tiny_hf(case))
    rng = np.random.RandomState(1)
    prompt, a0, a1 = (rng.randint(0, V, n).astype(np.int32) for n in (5, 4, 3))
    P, A0, A1 = len(prompt), len(a0), len(a1)
    packed_T = np.concatenate([prompt, a0, a1])[None]
    positions_T = np.concatenate([np.arange(P + A0), P + np.arange(A1)])[None]
    seg = np.array([0] * P + [1] * A0 + [2] * A1)
    causal = np.tril(np.ones((len(seg), len(seg)), bool))
    mask_TS = causal & ~((seg[:, None] == 2) & (seg[None, :] == 1))
    packed = np.asarray(model(packed_T, mask=mask_TS[None], positions=positions_T))

    for answer, start in ((a0, P), (a1, P + A0)):
        plain = np.asarray(model(np.concatenate([prompt, answer])[None]))
        np.testing.assert_allclose(
            packed[0, start : start + len(answer)], plain[0, P:], atol=ATOL, rtol=0
        )
    # prompt logits are shared too
    np.testing.assert_allclose(packed[0, :P], plain[0, :P], atol=ATOL, rtol=0)


def test_fully_masked_rows_stay_finite():
    model = flax_twin(tiny_hf("llama_gqa_untied"))
    tokens_BT = tokens_and_mask(T=6)[0][:2]
    mask_BTS = np.tril(np.ones((2, 6, 6), bool))
    mask_BTS[1, 3:, :] = False  # queries that may attend nothing (e.g. pure padding rows)
    h_BTD, hidden = model.encode(tokens_BT, mask=mask_BTS, output_hidden_states=True)
    assert (
        np.isfinite(np.asarray(hidden)).all() and np.isfinite(np.asarray(model.logits(h_BTD))).all()
    )
    left_padded = np.array([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    assert np.isfinite(np.asarray(model(tokens_BT, mask=left_padded))).all()


def low_precision_twin(case: str, **kw):
    """(model built with ``kw``, its param dtypes, h dtype, |logits - float32 logits| on real
    tokens, max |float32 logits|) on the padded test batch."""
    hf_model = tiny_hf(case)
    ref = flax_twin(hf_model)
    model = flax_twin(hf_model, **kw)
    param_dtypes = {leaf.dtype for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))}
    tokens_BT, mask_BT = tokens_and_mask()
    h_BTD, _ = model.encode(tokens_BT, mask=mask_BT)
    logits = np.asarray(model.logits(h_BTD))
    assert logits.dtype == np.float32
    ref_logits = np.asarray(ref(tokens_BT, mask=mask_BT))
    err = np.abs(logits - ref_logits)[mask_BT.astype(bool)]
    return model, param_dtypes, h_BTD.dtype, err, np.abs(ref_logits).max()


def test_bfloat16_params_and_compute():
    _, param_dtypes, h_dtype, err, scale = low_precision_twin(
        "llama_gqa_untied", dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    assert param_dtypes == {jnp.dtype(jnp.bfloat16)} and h_dtype == jnp.bfloat16
    # bf16 has ~3 significant digits; agreement to a few % of the logit scale.
    assert err.max() < 0.1 * scale


def _dot_generals(jaxpr):
    """Every dot_general equation of a jaxpr, scan/custom-vjp bodies included."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            yield eqn
        for v in eqn.params.values():
            for sub in v if isinstance(v, (list, tuple)) else [v]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _dot_generals(inner)


@pytest.mark.parametrize("case", ["llama_gqa_untied", "llama_mha_tied_bias", "gpt2",
                                  "gptj_partial_rotary"])
def test_mixed_bfloat16_matmuls(case: str):
    """precision="mixed_bfloat16": float32 params and activations; every forward matmul
    (projections, attention, MLP, head) and the dense layers' gradient matmuls take bfloat16
    operands with float32 results. Logits stay close to float32's."""
    model, param_dtypes, h_dtype, err, scale = low_precision_twin(
        case, **precision_kwargs("mixed_bfloat16"))
    assert param_dtypes == {jnp.dtype(jnp.float32)} and h_dtype == jnp.float32
    assert 0 < err.max() < 0.05 * scale  # bf16 was used, and is close
    tokens_BT, mask_BT = tokens_and_mask()

    graphdef, params = nnx.split(model, nnx.Param)

    def loss(p):
        m = nnx.merge(graphdef, p)
        return m(tokens_BT, mask=mask_BT).mean()

    def bf16_in_f32_out(e) -> bool:
        return ([v.aval.dtype for v in e.invars] == [jnp.bfloat16] * 2
                and e.outvars[0].aval.dtype == jnp.float32)

    forward = list(_dot_generals(jax.make_jaxpr(loss)(params).jaxpr))
    n_linear = {"gptj_partial_rotary": 6, "gpt2": 6}.get(case, 7)  # per layer
    assert len(forward) == n_linear + 2 + 1  # scanned layer body (+ q.k, probs.v) + head
    assert all(bf16_in_f32_out(e) for e in forward), forward
    # backward: the dense layers' custom VJP keeps bf16 operands (JAX's own transpose of the
    # attention einsums computes those gradients in float32)
    dots = list(_dot_generals(jax.make_jaxpr(jax.grad(loss))(params).jaxpr))
    dense = [e for e in dots if not e.params["dimension_numbers"][1][0]]  # no batch dims
    assert len(dense) >= 3 * (n_linear + 1)  # forward, input grad, weight grad (+ head)
    assert all(bf16_in_f32_out(e) for e in dense), dense
    grads = jax.grad(loss)(params)
    assert all(g.dtype == jnp.float32 and np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_mixed_matmul_custom_gradient_matches_autodiff():
    """The bf16 dense matmul's custom VJP (one 2-D weight-gradient matmul) gives autodiff's
    gradients of the same bf16-operand, f32-accumulated product."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 5, 16)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((16, 8)), jnp.float32)
    dn = (((2,), (0,)), ((), ()))

    def ours(x, w):
        return jnp.sum(jnp.sin(L.dot_general_bf16(x, w, dn)))

    def autodiff(x, w):
        y = jnp.dot(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16),
                    preferred_element_type=jnp.float32)
        return jnp.sum(jnp.sin(y))

    np.testing.assert_allclose(ours(x, w), autodiff(x, w), rtol=1e-6)
    for g, g_ref in zip(jax.grad(ours, (0, 1))(x, w), jax.grad(autodiff, (0, 1))(x, w),
                        strict=True):
        assert g.dtype == jnp.float32
        np.testing.assert_allclose(g, g_ref, rtol=0, atol=0.02 * float(np.abs(g_ref).max()))


def test_unknown_precision_or_matmul_dtype_is_an_error():
    with pytest.raises(ValueError, match="precision must be one of"):
        precision_kwargs("float8")
    hf_model = tiny_hf("gpt2")
    with pytest.raises(ValueError, match="unsupported matmul_dtype"):
        flax_twin(hf_model, matmul_dtype=jnp.float16)


def test_logits_on_gathered_positions():
    model = flax_twin(tiny_hf("gptj_partial_rotary"))
    tokens_BT, _ = tokens_and_mask()
    h_BTD, _ = model.encode(tokens_BT)
    full = np.asarray(model.logits(h_BTD))
    picked_ND = h_BTD[np.array([0, 2]), np.array([3, 7])]
    np.testing.assert_allclose(
        np.asarray(model.logits(picked_ND)), full[[0, 2], [3, 7]], atol=1e-6, rtol=0
    )


def count_params(model: nnx.Module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("llama-2-7b", 6_738_415_616),
        ("gpt-j-6b", 6_050_882_784),
        ("gpt2", 124_439_808),
    ],
)
def test_full_size_shapes_without_weights(name: str, expected: int):
    config = model_config(name)
    model = abstract_model(config, jnp.bfloat16)
    assert count_params(model) == expected
    state = nnx.state(model, nnx.Param)
    kernel = state["layers"]["attn"]["q_proj"]["kernel"]
    assert kernel.shape == (config.num_layers, config.hidden_size, config.hidden_size)
    assert kernel.dtype == jnp.bfloat16
    tokens = jax.ShapeDtypeStruct((2, 16), jnp.int32)
    out = nnx.eval_shape(lambda m, t: m.encode(t, output_hidden_states=True), model, tokens)
    assert out[0].shape == (2, 16, config.hidden_size)
    assert out[1].shape == (config.num_layers + 1, 2, 16, config.hidden_size)
    if name == "llama-2-7b":
        assert abs(count_params(model) - 6.74e9) < 0.01e9


def test_layers_are_scanned_not_unrolled():
    """Trace size does not grow with depth: 12 layers trace like 2 (STYLE #16)."""

    def n_eqns(num_layers: int) -> int:
        cfg = dataclasses.replace(
            model_config("gpt2"),
            num_layers=num_layers,
            vocab_size=V,
            hidden_size=32,
            num_heads=4,
            intermediate_size=64,
        )
        graphdef, state = nnx.split(abstract_model(cfg))
        fn = lambda s, t: nnx.merge(graphdef, s)(t)
        return len(jax.make_jaxpr(fn)(state, jax.ShapeDtypeStruct((1, 8), jnp.int32)).eqns)

    assert n_eqns(2) == n_eqns(12)
