"""GPT-2 in Flax NNX, numerically matching Hugging Face ``GPT2LMHeadModel``.

Learned absolute positions, pre-LayerNorm blocks, gelu_new MLP, output head tied to the
token embedding. HF stores GPT-2 weights as ``Conv1D`` ([in, out], our kernel layout) with
q/k/v fused in ``c_attn``; convert.py splits them into ``q_proj`` / ``k_proj`` / ``v_proj``.
The L blocks are one stacked module run by ``nnx.scan``. No dropout: the project only
evaluates and fine-tunes deterministically.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from forget_jax.models import layers as L

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Config:
    """GPT-2 hyper-parameters (HF names in comments)."""

    model_type: ClassVar[str] = "gpt2"

    vocab_size: int
    hidden_size: int  # n_embd
    num_layers: int  # n_layer
    num_heads: int  # n_head
    max_position_embeddings: int = 1024  # n_positions
    intermediate_size: int = 0  # n_inner; 0 -> 4 * hidden_size
    layer_norm_eps: float = 1e-5  # layer_norm_epsilon
    activation_function: str = "gelu_new"
    scale_attn_weights: bool = True

    def __post_init__(self) -> None:
        if self.intermediate_size == 0:
            object.__setattr__(self, "intermediate_size", 4 * self.hidden_size)
        if self.hidden_size % self.num_heads:
            raise ValueError(f"n_embd={self.hidden_size} not divisible by n_head={self.num_heads}")
        L.activation(self.activation_function)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def tie_word_embeddings(self) -> bool:
        return True

    @classmethod
    def from_hf_config(cls, hf_config: Any) -> Config:
        """Builds the config from a transformers ``GPT2Config`` or its dict (config.json).

        Raises:
            ValueError: for GPT-2 variants this module does not implement.
        """
        d = L.config_dict(hf_config)
        for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
            if d.get(flag):
                raise ValueError(f"GPT-2 option {flag}=True is not supported")
        if d.get("tie_word_embeddings", True) is False:
            raise ValueError("GPT-2 with an untied lm_head is not supported")
        return cls(
            vocab_size=d["vocab_size"],
            hidden_size=d["n_embd"],
            num_layers=d["n_layer"],
            num_heads=d["n_head"],
            max_position_embeddings=d.get("n_positions", 1024),
            intermediate_size=d.get("n_inner") or 0,
            layer_norm_eps=d.get("layer_norm_epsilon", 1e-5),
            activation_function=d.get("activation_function", "gelu_new"),
            scale_attn_weights=bool(d.get("scale_attn_weights", True)),
        )


class Block(nnx.Module):
    """Pre-norm block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""

    def __init__(self, config: Config, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs,
                 matmul_dtype: Any = None):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        mm = dict(kw, matmul_dtype=matmul_dtype)
        D, N, H = config.hidden_size, config.num_heads, config.head_dim
        self.attn_norm = L.layer_norm(D, config.layer_norm_eps, **kw)
        self.attn = L.Attention(D, N, N, H, use_bias=True,
                                scale=H**-0.5 if config.scale_attn_weights else 1.0, **mm)
        self.mlp_norm = L.layer_norm(D, config.layer_norm_eps, **kw)
        self.mlp = L.DenseMlp(D, config.intermediate_size, config.activation_function, **mm)

    def __call__(self, x_BTD: Array, mask_BTS: Array) -> Array:
        x_BTD = x_BTD + self.attn(self.attn_norm(x_BTD), mask_BTS)
        return x_BTD + self.mlp(self.mlp_norm(x_BTD))


class GPT2(L.CausalLM):
    """GPT-2 causal LM with the project's uniform model API (see ``encode`` / ``logits``)."""

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
        self.pos_embed = nnx.Embed(config.max_position_embeddings, config.hidden_size, **kw)
        self.layers = L.stacked_layers(
            lambda r: Block(config, **{**kw, "rngs": r}, matmul_dtype=self.matmul_dtype),
            config.num_layers, kw["rngs"],
        )
        self.final_norm = L.layer_norm(config.hidden_size, config.layer_norm_eps, **kw)

    def encode(
        self,
        tokens: Array,
        mask: Array | None = None,
        positions: Array | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[Array, Array | None]:
        """Final hidden states after the final LayerNorm.

        Args:
            tokens: int32 [B,T].
            mask: None (causal), [B,T] real-token mask (right padding; combined with causal),
                or [B,T,T] bool used as-is (True = query t may attend key s).
            positions: int32 [B,T] indices into the learned positions; ``arange(T)`` if None.
            output_hidden_states: also return HF-style hidden states.

        Returns:
            ``(h_BTD, hidden_states)``: h in compute dtype; hidden_states None or
            [L+1,B,T,D] (wte+wpe, layer outputs, final-norm output).
        """
        tokens_BT = jnp.asarray(tokens, dtype=jnp.int32)
        positions_BT = L.default_positions(tokens_BT, positions)
        mask_BTS = L.attention_mask(mask, tokens_BT.shape[1])
        x_BTD = self.embed(tokens_BT) + self.pos_embed(positions_BT)
        return L.run_decoder(self.layers, x_BTD, lambda layer, h: layer(h, mask_BTS),
                             self.final_norm, output_hidden_states)

    def logits(self, h: Array) -> Array:
        """float32 logits [..., V] through the tied token embedding."""
        return L.tied_logits(h, self.embed.embedding[...], self.head_dtype)
