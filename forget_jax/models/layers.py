"""Building blocks shared by the LLaMA, GPT-2 and GPT-J modules.

Everything here is architecture-neutral: attention masks, float32 attention with grouped
query heads, the two rotary layouts Hugging Face uses (rotate-half for LLaMA, interleaved
pairs for GPT-J), activations by HF name, and the scanned layer stack.

Dims: ``B`` batch, ``T`` query time, ``S`` key time, ``D`` model, ``N`` query heads,
``K`` key/value heads, ``G = N // K`` query heads per kv head, ``H`` head dim, ``R`` rotary dims.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Array = jax.Array

# A large negative instead of -inf, so fully masked rows (padding queries) give a uniform
# softmax rather than NaNs; same value HF uses (torch.finfo(float32).min).
MASK_VALUE = float(np.finfo(np.float32).min)

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


def config_dict(hf_config: Any) -> dict[str, Any]:
    """A transformers ``PretrainedConfig`` or a plain dict (config.json), as a plain dict."""
    if isinstance(hf_config, Mapping):
        return dict(hf_config)
    return hf_config.to_dict()


def activation(name: str) -> Callable[[Array], Array]:
    """Returns the activation function HF calls `name` (``ACT2FN[name]``).

    Raises:
        ValueError: for an activation this codebase does not implement.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported activation {name!r}; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def default_positions(tokens_BT: Array, positions_BT: Array | None) -> Array:
    """``positions`` as int32 [B,T], or ``arange(T)`` per row when it is None."""
    B, T = tokens_BT.shape
    if positions_BT is None:
        return jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    return jnp.asarray(positions_BT, dtype=jnp.int32)


def attention_mask(mask: Array | None, length: int) -> Array:
    """Turns the public ``mask`` argument into a boolean [B|1, T, S] "query may see key" mask.

    Args:
        mask: None (pure causal); [B,T] with 1/True for real tokens (combined with causality);
            or [B,T,T] bool used as-is (the caller includes causality, e.g. for packed rows).
        length: T.

    Returns:
        Boolean mask, [1,T,T] for None and [B,T,T] otherwise.
    """
    causal_TS = jnp.tril(jnp.ones((length, length), dtype=jnp.bool_))
    if mask is None:
        return causal_TS[None]
    mask = jnp.asarray(mask)
    if mask.ndim == 2:
        return causal_TS[None] & mask.astype(jnp.bool_)[:, None, :]
    if mask.ndim == 3:
        return mask.astype(jnp.bool_)
    raise ValueError(f"mask must be None, [B,T] or [B,T,T]; got shape {mask.shape}")


def dot_product_attention(
    q_BTNH: Array, k_BSKH: Array, v_BSKH: Array, mask_BTS: Array, *, scale: float,
    matmul_dtype: Any = None,
) -> Array:
    """Softmax attention with grouped kv heads; logits and softmax in float32.

    Args:
        q_BTNH: queries.
        k_BSKH: keys (K divides N; K == N is plain multi-head attention).
        v_BSKH: values.
        mask_BTS: boolean, True where query t may attend key s (leading dim may be 1).
        scale: multiplies the q.k logits (HF applies it after the matmul; so do we).
        matmul_dtype: None: q.k in float32 and probs.v in ``v``'s dtype; bfloat16 (mixed
            precision): both matmuls take bfloat16 operands and accumulate in float32.

    Returns:
        [B,T,N,H] in the dtype of ``v``.
    """
    B, T, N, H = q_BTNH.shape
    K = k_BSKH.shape[2]
    q_BTKGH = q_BTNH.reshape(B, T, K, N // K, H)
    op = jnp.float32 if matmul_dtype is None else matmul_dtype
    logits_BKGTS = jnp.einsum("BTKGH,BSKH->BKGTS", q_BTKGH.astype(op), k_BSKH.astype(op),
                              preferred_element_type=jnp.float32)
    logits_BKGTS = logits_BKGTS * scale
    logits_BKGTS = jnp.where(mask_BTS[:, None, None, :, :], logits_BKGTS, MASK_VALUE)
    probs_BKGTS = jax.nn.softmax(logits_BKGTS, axis=-1)
    pv = v_BSKH.dtype if matmul_dtype is None else matmul_dtype
    out_BTKGH = jnp.einsum("BKGTS,BSKH->BTKGH", probs_BKGTS.astype(pv), v_BSKH.astype(pv),
                           preferred_element_type=v_BSKH.dtype)
    return out_BTKGH.reshape(B, T, N, H)


def _matmul(x: Array, w: Array, operand_dtype: Any) -> Array:
    """``x @ w`` in ``x``'s dtype; with ``operand_dtype`` both operands are cast to it first and
    the products are accumulated (and returned) in ``x``'s dtype, e.g. bfloat16 x bfloat16 ->
    float32, which XLA:CPU runs ~2x faster than float32 x float32 on CPUs with AVX512-BF16."""
    op = x.dtype if operand_dtype is None else operand_dtype
    return jnp.dot(x.astype(op), w.astype(op), preferred_element_type=x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _token_matmul(x_TD: Array, w_DF: Array, operand_dtype: Any = None) -> Array:
    return _matmul(x_TD, w_DF, operand_dtype)


def _token_matmul_fwd(x_TD: Array, w_DF: Array, operand_dtype: Any
                      ) -> tuple[Array, tuple[Array, Array]]:
    return _matmul(x_TD, w_DF, operand_dtype), (x_TD, w_DF)


def _token_matmul_bwd(operand_dtype: Any, res: tuple[Array, Array], dy_TF: Array
                      ) -> tuple[Array, Array]:
    x_TD, w_DF = res
    # The weight gradient as ONE 2-D matmul over all tokens (leading dims flattened): XLA:CPU
    # lays out the generic transpose of an N-d dot with extra transposes (~7% of a train step).
    x_ND, dy_NF = x_TD.reshape(-1, x_TD.shape[-1]), dy_TF.reshape(-1, dy_TF.shape[-1])
    op = x_TD.dtype if operand_dtype is None else operand_dtype
    dw_DF = jnp.einsum("ND,NF->DF", x_ND.astype(op), dy_NF.astype(op),
                       preferred_element_type=w_DF.dtype)
    return _matmul(dy_TF, w_DF.T, operand_dtype).astype(x_TD.dtype), dw_DF


_token_matmul.defvjp(_token_matmul_fwd, _token_matmul_bwd)


def _dot_general(lhs: Array, rhs: Array, dimension_numbers, precision, preferred_element_type,
                 operand_dtype: Any, **kwargs) -> Array:
    (lc, rc), (lb, rb) = dimension_numbers
    plain = (tuple(lc) == (lhs.ndim - 1,) and tuple(rc) == (0,) and not lb and not rb
             and rhs.ndim == 2 and precision is None and preferred_element_type is None
             and kwargs.get("out_sharding") is None and lhs.dtype == rhs.dtype)
    if plain:
        return _token_matmul(lhs, rhs, operand_dtype)
    if operand_dtype is not None:
        preferred_element_type = preferred_element_type or lhs.dtype
        lhs, rhs = lhs.astype(operand_dtype), rhs.astype(operand_dtype)
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type, **kwargs)


def dot_general(lhs: Array, rhs: Array, dimension_numbers, precision=None,
                preferred_element_type=None, **kwargs) -> Array:
    """``lax.dot_general`` for ``nnx.Linear(dot_general=...)``: the dense-layer case
    ``[..., D] x [D, F]`` takes :func:`_token_matmul` (same values, faster gradient); anything
    else goes to ``lax.dot_general`` unchanged."""
    return _dot_general(lhs, rhs, dimension_numbers, precision, preferred_element_type, None,
                        **kwargs)


def dot_general_bf16(lhs: Array, rhs: Array, dimension_numbers, precision=None,
                     preferred_element_type=None, **kwargs) -> Array:
    """:func:`dot_general` with bfloat16 operands and products accumulated in the input's dtype
    (float32 for ``precision="mixed_bfloat16"``), in the forward and both backward matmuls."""
    return _dot_general(lhs, rhs, dimension_numbers, precision, preferred_element_type,
                        jnp.dtype(jnp.bfloat16), **kwargs)


def linear_dot_general(matmul_dtype: Any = None) -> Callable[..., Array]:
    """The ``dot_general`` for dense layers whose matmul operands are ``matmul_dtype`` (None:
    the layer's compute dtype). A module-level function, so graphdefs compare equal."""
    if matmul_dtype is None:
        return dot_general
    if jnp.dtype(matmul_dtype) == jnp.bfloat16:
        return dot_general_bf16
    raise ValueError(f"unsupported matmul_dtype {matmul_dtype!r}; supported: None, bfloat16")


def rotary_angles(positions_BT: Array, inv_freq_R2: Array) -> Array:
    """Angles ``position * inv_freq`` in float32, [B,T,R/2]."""
    return positions_BT.astype(jnp.float32)[..., None] * inv_freq_R2.astype(jnp.float32)


def apply_rotary_half(x_BTNH: Array, angles_BTR2: Array) -> Array:
    """HF LLaMA RoPE: pairs dimension i with i + H/2 (``rotate_half``), on all H dims."""
    emb_BTH = jnp.concatenate([angles_BTR2, angles_BTR2], axis=-1)
    cos_BT1H = jnp.cos(emb_BTH)[:, :, None, :].astype(x_BTNH.dtype)
    sin_BT1H = jnp.sin(emb_BTH)[:, :, None, :].astype(x_BTNH.dtype)
    half = x_BTNH.shape[-1] // 2
    rotated_BTNH = jnp.concatenate([-x_BTNH[..., half:], x_BTNH[..., :half]], axis=-1)
    return x_BTNH * cos_BT1H + rotated_BTNH * sin_BT1H


def apply_rotary_interleaved(x_BTNH: Array, angles_BTR2: Array) -> Array:
    """GPT-J RoPE: pairs dimensions (2i, 2i+1) (``rotate_every_two``) on the first R dims only."""
    R = 2 * angles_BTR2.shape[-1]
    x_rot_BTNR, x_pass = x_BTNH[..., :R], x_BTNH[..., R:]
    cos_BT1R = jnp.repeat(jnp.cos(angles_BTR2), 2, axis=-1)[:, :, None, :].astype(x_BTNH.dtype)
    sin_BT1R = jnp.repeat(jnp.sin(angles_BTR2), 2, axis=-1)[:, :, None, :].astype(x_BTNH.dtype)
    x1, x2 = x_rot_BTNR[..., 0::2], x_rot_BTNR[..., 1::2]
    rotated_BTNR = jnp.stack([-x2, x1], axis=-1).reshape(x_rot_BTNR.shape)
    x_rot_BTNR = x_rot_BTNR * cos_BT1R + rotated_BTNR * sin_BT1R
    return jnp.concatenate([x_rot_BTNR, x_pass], axis=-1)


def stacked_layers(
    make_layer: Callable[[nnx.Rngs], nnx.Module], num_layers: int, rngs: nnx.Rngs
) -> nnx.Module:
    """Builds ``num_layers`` copies of a layer as ONE module whose leaves have a leading L axis.

    Each copy gets its own init key, so random init differs per layer as in an unrolled stack.
    """

    @nnx.split_rngs(splits=num_layers)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def make(layer_rngs: nnx.Rngs) -> nnx.Module:
        return make_layer(layer_rngs)

    return make(rngs)


_REMAT: contextvars.ContextVar[bool] = contextvars.ContextVar("forget_jax_remat", default=False)


@contextlib.contextmanager
def remat_layers(enabled: bool = True) -> Iterator[None]:
    """While tracing inside this context, each scanned layer is rematerialised in the backward
    pass (``nnx.remat``): about 1/3 more forward FLOPs for activations of one layer, not L."""
    token = _REMAT.set(enabled)
    try:
        yield
    finally:
        _REMAT.reset(token)


def constrain_batch(x_BTD: Array) -> Array:
    """Keeps activations split over the batch axes of the ambient mesh (``data`` x ``fsdp``).

    Without it XLA may all-gather whole-batch activations across the fsdp axis inside the scan
    instead of gathering the (smaller) weights. A no-op outside a mesh context (plain calls).
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not {"data", "fsdp"} <= set(mesh.axis_names):
        return x_BTD
    spec = jax.sharding.PartitionSpec(("data", "fsdp"), *([None] * (x_BTD.ndim - 1)))
    return jax.lax.with_sharding_constraint(x_BTD, spec)


def scan_layers(
    layers: nnx.Module,
    x_BTD: Array,
    apply_layer: Callable[..., Array],
    *,
    output_hidden_states: bool,
    per_layer: Array | None = None,
) -> tuple[Array, Array | None]:
    """Runs the stacked ``layers`` over ``x`` with ``nnx.scan`` (compiles one layer, not L).

    Args:
        layers: module from :func:`stacked_layers`.
        x_BTD: input of the first layer.
        apply_layer: ``(layer, x_BTD) -> y_BTD`` for one (unstacked) layer, or
            ``(layer, x_BTD, per_layer[i]) -> y_BTD`` when ``per_layer`` is given; may close
            over arrays (mask, rotary angles) shared by all layers.
        output_hidden_states: also return every layer's output.
        per_layer: optional [L, ...] array scanned with the layers (e.g. which layers use a
            sliding window).

    Returns:
        The last layer's output [B,T,D] and, if asked, all outputs [L,B,T,D] (else None).
    """

    step = nnx.remat(apply_layer) if _REMAT.get() else apply_layer

    @nnx.scan(in_axes=(nnx.Carry, 0, 0), out_axes=(nnx.Carry, 0))
    def body(h_BTD: Array, layer: nnx.Module, extra: Any) -> tuple[Array, Array | None]:
        args = () if per_layer is None else (extra,)
        h_BTD = constrain_batch(step(layer, h_BTD, *args))
        return h_BTD, (h_BTD if output_hidden_states else None)

    return body(x_BTD, layers, per_layer)


def collect_hidden_states(embed_BTD: Array, outputs_LBTD: Array, final_BTD: Array) -> Array:
    """HF's ``output_hidden_states`` as one array [L+1,B,T,D].

    [0] is the embedding output, [i] the output of layer i (1-based, i < L), and [L] the
    output after the final norm (HF overwrites the last layer's raw output with it).
    """
    return jnp.concatenate([embed_BTD[None], outputs_LBTD[:-1], final_BTD[None]], axis=0)


def head_logits(h_TD: Array, kernel_DV: Array, bias_V: Array | None, dtype: Any) -> Array:
    """float32 logits ``h @ W (+ b)``: operands cast to ``dtype`` (the model's head dtype),
    products accumulated in float32, through :func:`_token_matmul` (one 2-D weight-gradient
    matmul, and bfloat16 operands in the backward pass too when ``dtype`` is bfloat16)."""
    dtype = jnp.dtype(dtype)
    operand_dtype = None if dtype == jnp.float32 else dtype
    # With bfloat16 operands the kernel keeps its storage dtype (its gradient comes back in it).
    kernel_DV = kernel_DV if operand_dtype is not None else kernel_DV.astype(jnp.float32)
    logits = _token_matmul(h_TD.astype(jnp.float32), kernel_DV, operand_dtype)
    if bias_V is not None:
        logits = logits + bias_V.astype(jnp.float32)
    return logits


def tied_logits(h_TD: Array, embedding_VD: Array, dtype: Any) -> Array:
    """float32 logits through a tied input embedding, ``h @ E^T`` (see :func:`head_logits`)."""
    if jnp.dtype(dtype) == jnp.float32:
        # One dot contracting E's last axis: no transposed copy of the [V,D] table per call.
        return jnp.einsum("...D,VD->...V", h_TD.astype(jnp.float32),
                          embedding_VD.astype(jnp.float32))
    return head_logits(h_TD, embedding_VD.T, None, dtype)


class Attention(nnx.Module):
    """Causal self-attention with separate q/k/v/o projections (HF layout) and optional RoPE.

    ``num_kv_heads < num_heads`` is grouped-query attention. ``rotary`` turns position angles
    into rotated q and k (:func:`apply_rotary_half` for LLaMA, :func:`apply_rotary_interleaved`
    for GPT-J); None for learned absolute positions (GPT-2). ``matmul_dtype`` (e.g. bfloat16)
    casts the operands of the projections and of both attention matmuls, accumulating in float32
    / the compute dtype (mixed precision); the softmax stays float32.
    """

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int, head_dim: int, *,
                 use_bias: bool, scale: float,
                 rotary: Callable[[Array, Array], Array] | None = None,
                 dtype: Any, param_dtype: Any, rngs: nnx.Rngs, matmul_dtype: Any = None,
                 qkv_bias: bool | None = None,
                 qk_norm: Callable[[], nnx.Module] | None = None):
        D, N, K, H = hidden_size, num_heads, num_kv_heads, head_dim
        linear = functools.partial(nnx.Linear, dtype=dtype, param_dtype=param_dtype,
                                   dot_general=linear_dot_general(matmul_dtype), rngs=rngs)
        qkv_bias = use_bias if qkv_bias is None else qkv_bias
        self.q_proj = linear(D, N * H, use_bias=qkv_bias)
        self.k_proj = linear(D, K * H, use_bias=qkv_bias)
        self.v_proj = linear(D, K * H, use_bias=qkv_bias)
        self.o_proj = linear(N * H, D, use_bias=use_bias)
        # RMSNorm over each q and k head (over H) before RoPE: Qwen3 / Gemma 3 "QK-norm".
        self.q_norm = qk_norm() if qk_norm else None
        self.k_norm = qk_norm() if qk_norm else None
        self.num_heads, self.num_kv_heads, self.head_dim = N, K, H
        self.scale, self.rotary = scale, rotary
        self.matmul_dtype = None if matmul_dtype is None else jnp.dtype(matmul_dtype)

    def __call__(self, x_BTD: Array, mask_BTS: Array, angles_BTR2: Array | None = None) -> Array:
        B, T, _ = x_BTD.shape
        N, K, H = self.num_heads, self.num_kv_heads, self.head_dim
        q_BTNH = self.q_proj(x_BTD).reshape(B, T, N, H)
        k_BTKH = self.k_proj(x_BTD).reshape(B, T, K, H)
        v_BTKH = self.v_proj(x_BTD).reshape(B, T, K, H)
        if self.q_norm is not None:
            q_BTNH, k_BTKH = self.q_norm(q_BTNH), self.k_norm(k_BTKH)
        if self.rotary is not None:
            q_BTNH, k_BTKH = self.rotary(q_BTNH, angles_BTR2), self.rotary(k_BTKH, angles_BTR2)
        out_BTNH = dot_product_attention(q_BTNH, k_BTKH, v_BTKH, mask_BTS, scale=self.scale,
                                         matmul_dtype=self.matmul_dtype)
        return self.o_proj(out_BTNH.reshape(B, T, N * H))


class DenseMlp(nnx.Module):
    """``down(act(up(x)))`` with biases (GPT-2 ``c_fc``/``c_proj``, GPT-J ``fc_in``/``fc_out``)."""

    def __init__(self, hidden_size: int, intermediate_size: int, activation_name: str, *,
                 dtype: Any, param_dtype: Any, rngs: nnx.Rngs, matmul_dtype: Any = None):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs,
                  dot_general=linear_dot_general(matmul_dtype))
        self.up_proj = nnx.Linear(hidden_size, intermediate_size, **kw)
        self.down_proj = nnx.Linear(intermediate_size, hidden_size, **kw)
        self.act = activation(activation_name)

    def __call__(self, x_BTD: Array) -> Array:
        return self.down_proj(self.act(self.up_proj(x_BTD)))


class OffsetRMSNorm(nnx.Module):
    """Gemma's RMSNorm: ``x / rms(x) * (offset + scale)`` in float32, cast back to x's dtype
    (HF ``Gemma3RMSNorm``, offset 1, ``scale`` initialised to 0)."""

    def __init__(self, size: int, *, eps: float, offset: float, dtype: Any, param_dtype: Any,
                 rngs: nnx.Rngs):
        del rngs  # deterministic init
        self.scale = nnx.Param(jnp.zeros((size,), param_dtype))
        self.eps, self.offset, self.dtype = eps, offset, dtype

    def __call__(self, x: Array) -> Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * (self.offset + self.scale[...].astype(jnp.float32))).astype(self.dtype)


def layer_norm(hidden_size: int, eps: float, **kw: Any) -> nnx.LayerNorm:
    """LayerNorm with the exact two-pass variance (torch's), not E[x^2] - E[x]^2."""
    return nnx.LayerNorm(hidden_size, epsilon=eps, use_fast_variance=False, **kw)


def run_decoder(layers: nnx.Module, x_BTD: Array, layer_fn: Callable[..., Array],
                final_norm: Callable[[Array], Array], output_hidden_states: bool,
                per_layer: Array | None = None) -> tuple[Array, Array | None]:
    """The stacked layers over the embeddings ``x``, then the final norm (``per_layer``: see
    :func:`scan_layers`).

    Returns ``(h_BTD, hidden_states)`` as the models' ``encode``: hidden_states None or
    [L+1,B,T,D] (embeddings, layer outputs, final-norm output), HF's ``output_hidden_states``.
    """
    h_BTD, outputs_LBTD = scan_layers(layers, x_BTD, layer_fn, per_layer=per_layer,
                                      output_hidden_states=output_hidden_states)
    h_BTD = final_norm(h_BTD)
    if not output_hidden_states:
        return h_BTD, None
    return h_BTD, collect_hidden_states(x_BTD, outputs_LBTD, h_BTD)


class CausalLM(nnx.Module):
    """Base of the models (LLaMA, GPT-2, GPT-J): the uniform API the steps use.

    A model is built as ``Model(config, dtype=..., param_dtype=..., rngs=..., matmul_dtype=...)``
    (compute dtype, parameter storage dtype, init randomness with ``nnx.Rngs(0)`` when None, and
    the dense matmuls' operand dtype, None = the compute dtype; real weights come from
    ``load_model``) and implements ``encode(tokens, mask=None, positions=None,
    output_hidden_states=False) -> (h_BTD, hidden_states)`` and ``logits(h) -> float32 [..., V]``.
    """

    def init_common(self, config: Any, dtype: Any, param_dtype: Any,
                    rngs: nnx.Rngs | None, matmul_dtype: Any = None) -> dict[str, Any]:
        """Stores ``config``, the compute dtype and the matmul operand dtype; returns the
        submodules' dtype/rngs kwargs."""
        self.config = config
        self.dtype = jnp.dtype(dtype)
        self.matmul_dtype = None if matmul_dtype is None else jnp.dtype(matmul_dtype)
        linear_dot_general(self.matmul_dtype)  # rejects an unsupported dtype here
        return dict(dtype=self.dtype, param_dtype=jnp.dtype(param_dtype),
                    rngs=rngs if rngs is not None else nnx.Rngs(0))

    @property
    def head_dtype(self) -> Any:
        """Operand dtype of the vocabulary head: the matmul dtype, else the compute dtype."""
        return self.dtype if self.matmul_dtype is None else self.matmul_dtype

    def __call__(self, tokens: Array, mask: Array | None = None,
                 positions: Array | None = None) -> Array:
        """float32 logits [B,T,V]; same as ``logits(encode(...)[0])``."""
        return self.logits(self.encode(tokens, mask, positions)[0])
