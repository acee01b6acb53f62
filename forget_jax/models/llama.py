"""The LLaMA-style decoder in Flax NNX, numerically matching Hugging Face ``LlamaForCausalLM``
and, through per-family options of one :class:`Config`, ``Qwen2``/``Qwen3``/``Mistral``/
``Gemma3ForCausalLM`` (the family configs are in :mod:`forget_jax.models.families`).

RMSNorm, HF's rotate-half RoPE (rope_theta plus "linear", "dynamic" and "llama3" scaling),
grouped-query attention, gated MLP, tied or untied output head. The L decoder layers are
one stacked module run by ``nnx.scan``. Attention logits, softmax and output logits are
float32 whatever the compute ``dtype``.

Family options (all off for LLaMA): q/k/v-only biases (Qwen2), RMSNorm on each q/k head
(Qwen3, Gemma 3), RMSNorm scaled by ``1 + w`` (Gemma), norms after attention and the MLP as
well as before (Gemma), embeddings times ``sqrt(D)`` (Gemma), a ``query_pre_attn_scalar``
softmax scale (Gemma), and sliding-window attention on some layers (``layer_types``: all
layers for Mistral, 5 of every 6 for Gemma 3, with their own rope base
``rope_local_theta``). A window counts *positions*, not row indices: a query at position p
sees keys at positions > p - window, so in packed rows (positions restarting per segment,
the mask keeping segments apart) every sequence gets exactly the window it would get alone.

Because we use HF's rotate-half layout, HF q/k projection weights load with a plain
transpose; only llama.cpp (GGUF) files need their q/k rows un-permuted (see convert.py).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from forget_jax.models import layers as L

Array = jax.Array
ROPE_TYPES = ("default", "linear", "dynamic", "llama3")
LAYER_TYPES = ("full_attention", "sliding_attention")


@dataclasses.dataclass(frozen=True)
class Config:
    """LLaMA hyper-parameters (HF names in comments where they differ).

    ``rope_*`` fields hold HF's ``rope_parameters`` (v5) / ``rope_scaling`` (v4) dict.
    """

    model_type: ClassVar[str] = "llama"

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int  # num_hidden_layers
    num_heads: int  # num_attention_heads
    num_kv_heads: int  # num_key_value_heads
    head_dim: int
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    hidden_act: str = "silu"
    rope_theta: float = 10000.0
    rope_type: str = "default"
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_position_embeddings: int | None = None
    # Family options; the defaults are LLaMA.
    qkv_bias: bool = False  # biases on q/k/v only (Qwen2); attention_bias puts them on all four
    qk_norm: bool = False  # RMSNorm over each q and k head before RoPE (Qwen3, Gemma 3)
    norm_offset: float = 0.0  # RMSNorm multiplies by (norm_offset + w): Gemma 1.0
    sandwich_norms: bool = False  # also norm the attention and MLP outputs (Gemma 3)
    embed_scale: bool = False  # embeddings times sqrt(hidden_size) (Gemma)
    query_pre_attn_scalar: float | None = None  # softmax scale ** -2; None: head_dim
    sliding_window: int | None = None
    layer_types: tuple[str, ...] | None = None  # per layer; None: all full attention
    rope_local_theta: float | None = None  # rope base of sliding layers; None: rope_theta

    def __post_init__(self) -> None:
        if self.layer_types is not None:
            object.__setattr__(self, "layer_types", tuple(self.layer_types))
            if len(self.layer_types) != self.num_layers or not set(self.layer_types) <= set(
                    LAYER_TYPES):
                raise ValueError(f"layer_types must be {self.num_layers} of {LAYER_TYPES}; got "
                                 f"{self.layer_types}")
            if "sliding_attention" in self.layer_types and not self.sliding_window:
                raise ValueError("sliding_attention layers need a sliding_window")
        if self.rope_type not in ROPE_TYPES:
            raise ValueError(
                f"unsupported LLaMA rope_type {self.rope_type!r}; supported: {ROPE_TYPES}"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads={self.num_heads} not divisible by num_kv_heads={self.num_kv_heads}"
            )
        L.activation(self.hidden_act)

    @property
    def sliding_layers(self) -> tuple[bool, ...]:
        """Per layer: does it use the sliding window?"""
        return tuple(t == "sliding_attention" for t in self.layer_types or ())

    @classmethod
    def from_hf_config(cls, hf_config: Any) -> Config:
        """Builds the config from a transformers ``LlamaConfig`` or its dict (config.json)."""
        return cls(**cls.hf_kwargs(L.config_dict(hf_config)))

    @staticmethod
    def hf_kwargs(d: dict[str, Any], rope: dict[str, Any] | None = None) -> dict[str, Any]:
        """The LLaMA fields of an HF config dict (the family configs add theirs).

        Reads rope theta from ``rope`` (default: ``rope_parameters`` in transformers 5, where
        ``rope_theta`` may be None, or ``rope_scaling`` in transformers 4 config files) or from
        ``rope_theta``.
        """
        if rope is None:
            rope = dict(d.get("rope_parameters") or d.get("rope_scaling") or {})
        if rope.get("partial_rotary_factor", 1.0) != 1.0:
            raise ValueError("partial_rotary_factor != 1 is not supported")
        theta = rope.get("rope_theta") or d.get("rope_theta") or 10000.0
        num_heads = d["num_attention_heads"]
        return dict(
            vocab_size=d["vocab_size"],
            hidden_size=d["hidden_size"],
            intermediate_size=d["intermediate_size"],
            num_layers=d["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=d.get("num_key_value_heads") or num_heads,
            head_dim=d.get("head_dim") or d["hidden_size"] // num_heads,
            rms_norm_eps=d.get("rms_norm_eps", 1e-6),
            max_position_embeddings=d.get("max_position_embeddings", 2048),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            attention_bias=bool(d.get("attention_bias", False)),
            mlp_bias=bool(d.get("mlp_bias", False)),
            hidden_act=d.get("hidden_act") or d.get("hidden_activation") or "silu",
            rope_theta=float(theta),
            rope_type=rope.get("rope_type", rope.get("type", "default")),
            rope_factor=float(rope.get("factor", 1.0)),
            rope_low_freq_factor=float(rope.get("low_freq_factor", 1.0)),
            rope_high_freq_factor=float(rope.get("high_freq_factor", 4.0)),
            rope_original_max_position_embeddings=rope.get("original_max_position_embeddings"),
        )


def base_inv_freq(theta: float, head_dim: int) -> np.ndarray:
    """``1 / theta ** (2i / H)`` in float32 as torch computes it: the power rounded once to
    float32, then a float32 division. (numpy's float32 power is off by an ulp in ~1/6 of the
    entries; at position 370 of Gemma-3-270M that alone gave a 7e-3 logit difference.)"""
    exponents = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
    power = (np.float64(theta) ** exponents.astype(np.float64)).astype(np.float32)
    return (np.float32(1.0) / power).astype(np.float32)


def rope_inv_freq(config: Config, positions_BT: Array) -> Array:
    """Inverse RoPE frequencies [H/2] for the config's rope type (HF modeling_rope_utils).

    "dynamic" (NTK) depends on the longest position in the batch, like HF's per-call update:
    beyond ``max_position_embeddings`` the base grows, otherwise the plain frequencies are used.
    """
    H = config.head_dim
    inv_freq = base_inv_freq(config.rope_theta, H)
    if config.rope_type == "linear":
        return jnp.asarray(inv_freq / np.float32(config.rope_factor))
    if config.rope_type == "llama3":
        old_len = config.rope_original_max_position_embeddings or config.max_position_embeddings
        low_wavelen = old_len / config.rope_low_freq_factor
        high_wavelen = old_len / config.rope_high_freq_factor
        wavelen = 2 * np.pi / inv_freq
        scaled = np.where(wavelen > low_wavelen, inv_freq / config.rope_factor, inv_freq)
        smooth = (old_len / wavelen - config.rope_low_freq_factor) / (
            config.rope_high_freq_factor - config.rope_low_freq_factor
        )
        smoothed = (1 - smooth) * scaled / config.rope_factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        return jnp.asarray(np.where(medium, smoothed, scaled).astype(np.float32))
    if config.rope_type == "dynamic":
        max_len = config.max_position_embeddings
        seq_len = jnp.maximum(jnp.max(positions_BT) + 1, max_len).astype(jnp.float32)
        base = config.rope_theta * (
            (config.rope_factor * seq_len / max_len) - (config.rope_factor - 1)
        ) ** (H / (H - 2))
        exponents = jnp.arange(0, H, 2, dtype=jnp.float32) / H
        return 1.0 / (base**exponents)
    return jnp.asarray(inv_freq)


class Mlp(nnx.Module):
    """SwiGLU: ``down(act(gate(x)) * up(x))``."""

    def __init__(self, config: Config, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs,
                 matmul_dtype: Any = None):
        D, F = config.hidden_size, config.intermediate_size
        linear = functools.partial(
            nnx.Linear,
            use_bias=config.mlp_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            dot_general=L.linear_dot_general(matmul_dtype),
            rngs=rngs,
        )
        self.gate_proj = linear(D, F)
        self.up_proj = linear(D, F)
        self.down_proj = linear(F, D)
        self.act = L.activation(config.hidden_act)

    def __call__(self, x_BTD: Array) -> Array:
        return self.down_proj(self.act(self.gate_proj(x_BTD)) * self.up_proj(x_BTD))


def rms_norm(config: Config, size: int, **kw: Any) -> nnx.Module:
    """The config's RMSNorm over ``size`` features: LLaMA's, or Gemma's ``(1 + w)``."""
    if config.norm_offset:
        return L.OffsetRMSNorm(size, eps=config.rms_norm_eps, offset=config.norm_offset, **kw)
    return nnx.RMSNorm(size, epsilon=config.rms_norm_eps, **kw)


class Block(nnx.Module):
    """Pre-norm decoder layer: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``; with
    ``sandwich_norms`` the attention and MLP outputs are normed too before they are added."""

    def __init__(self, config: Config, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs,
                 matmul_dtype: Any = None):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        norm = functools.partial(rms_norm, config, config.hidden_size, **kw)
        scalar = config.query_pre_attn_scalar or config.head_dim
        qk_norm = functools.partial(rms_norm, config, config.head_dim, **kw)
        self.attn_norm = norm()
        self.attn = L.Attention(config.hidden_size, config.num_heads, config.num_kv_heads,
                                config.head_dim, use_bias=config.attention_bias,
                                qkv_bias=config.attention_bias or config.qkv_bias,
                                scale=scalar**-0.5, rotary=L.apply_rotary_half,
                                qk_norm=qk_norm if config.qk_norm else None,
                                matmul_dtype=matmul_dtype, **kw)
        self.mlp_norm = norm()
        self.mlp = Mlp(config, matmul_dtype=matmul_dtype, **kw)
        if config.sandwich_norms:
            self.attn_post_norm = norm()
            self.mlp_post_norm = norm()
        self.sandwich = config.sandwich_norms

    def __call__(self, x_BTD: Array, angles_BTR2: Array, mask_BTS: Array) -> Array:
        a_BTD = self.attn(self.attn_norm(x_BTD), mask_BTS, angles_BTR2)
        x_BTD = x_BTD + (self.attn_post_norm(a_BTD) if self.sandwich else a_BTD)
        m_BTD = self.mlp(self.mlp_norm(x_BTD))
        return x_BTD + (self.mlp_post_norm(m_BTD) if self.sandwich else m_BTD)


def window_mask(positions_BT: Array, window: int) -> Array:
    """[B,T,S] True where key position > query position - window (HF's sliding overlay, on
    positions: within a packed segment that is the distance the sequence alone would have)."""
    return positions_BT[:, None, :] > positions_BT[:, :, None] - window


class Llama(L.CausalLM):
    """The decoder (LLaMA and the family options) with the project's uniform model API."""

    def __init__(
        self,
        config: Config,
        *,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs | None = None,
        matmul_dtype: Any = None,
    ):
        """A randomly initialised model (see :class:`layers.CausalLM`)."""
        kw = self.init_common(config, dtype, param_dtype, rngs, matmul_dtype)
        self.embed = nnx.Embed(config.vocab_size, config.hidden_size, **kw)
        self.layers = L.stacked_layers(
            lambda r: Block(config, **{**kw, "rngs": r}, matmul_dtype=self.matmul_dtype),
            config.num_layers, kw["rngs"],
        )
        self.final_norm = rms_norm(config, config.hidden_size, **kw)
        if not config.tie_word_embeddings:
            self.lm_head = nnx.Linear(config.hidden_size, config.vocab_size, use_bias=False, **kw)

    def encode(
        self,
        tokens: Array,
        mask: Array | None = None,
        positions: Array | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[Array, Array | None]:
        """Final hidden states after the final norm.

        Args:
            tokens: int32 [B,T].
            mask: None (causal), [B,T] real-token mask (right padding; combined with causal),
                or [B,T,T] bool used as-is (True = query t may attend key s).
            positions: int32 [B,T]; ``arange(T)`` when None. Sliding windows count positions.
            output_hidden_states: also return HF-style hidden states.

        Returns:
            ``(h_BTD, hidden_states)``: h in compute dtype; hidden_states None or
            [L+1,B,T,D] (embeddings, layer outputs, final-norm output).
        """
        c = self.config
        tokens_BT = jnp.asarray(tokens, dtype=jnp.int32)
        positions_BT = L.default_positions(tokens_BT, positions)
        mask_BTS = L.attention_mask(mask, tokens_BT.shape[1])
        angles_BTR2 = L.rotary_angles(positions_BT, rope_inv_freq(c, positions_BT))
        x_BTD = self.embed(tokens_BT)
        if c.embed_scale:  # HF rounds sqrt(D) to the embedding's dtype first
            scale = jnp.asarray(c.hidden_size**0.5, self.embed.embedding.dtype)
            x_BTD = x_BTD * scale.astype(x_BTD.dtype)
        sliding = c.sliding_layers
        if not any(sliding):
            return L.run_decoder(self.layers, x_BTD,
                                 lambda layer, h: layer(h, angles_BTR2, mask_BTS),
                                 self.final_norm, output_hidden_states)
        local_BTS = mask_BTS & window_mask(positions_BT, c.sliding_window)
        local_BTR2 = angles_BTR2
        if c.rope_local_theta is not None:
            local_BTR2 = L.rotary_angles(
                positions_BT, jnp.asarray(base_inv_freq(c.rope_local_theta, c.head_dim)))
        if all(sliding):
            return L.run_decoder(self.layers, x_BTD,
                                 lambda layer, h: layer(h, local_BTR2, local_BTS),
                                 self.final_norm, output_hidden_states)

        def layer_fn(layer: Block, h: Array, is_local: Array) -> Array:
            return layer(h, jnp.where(is_local, local_BTR2, angles_BTR2),
                         jnp.where(is_local, local_BTS, mask_BTS))

        return L.run_decoder(self.layers, x_BTD, layer_fn, self.final_norm,
                             output_hidden_states, per_layer=jnp.asarray(sliding))

    def logits(self, h: Array) -> Array:
        """float32 logits [..., V] for hidden states of any leading shape."""
        if self.config.tie_word_embeddings:
            return L.tied_logits(h, self.embed.embedding[...], self.head_dtype)
        return L.head_logits(h, self.lm_head.kernel[...], None, self.head_dtype)
