"""GPT-J in Flax NNX, numerically matching Hugging Face ``GPTJForCausalLM``.

Each block feeds ONE LayerNorm output to attention and MLP in parallel:
``x + attn(ln(x)) + mlp(ln(x))``. Rotary embeddings use the interleaved-pairs layout
(``rotate_every_two``) on the first ``rotary_dim`` dims of each head; the rest pass through.
q/k/v/out projections have no bias, the MLP and the untied ``lm_head`` do. The L blocks are
one stacked module run by ``nnx.scan``. No dropout.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from forget_jax.models import layers as L

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Config:
    """GPT-J hyper-parameters (HF names in comments)."""

    model_type: ClassVar[str] = "gptj"

    vocab_size: int
    hidden_size: int  # n_embd
    num_layers: int  # n_layer
    num_heads: int  # n_head
    rotary_dim: int = 0  # 0 (HF: None) -> rotate the whole head
    max_position_embeddings: int = 2048  # n_positions
    intermediate_size: int = 0  # n_inner; 0 -> 4 * hidden_size
    layer_norm_eps: float = 1e-5  # layer_norm_epsilon
    activation_function: str = "gelu_new"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"n_embd={self.hidden_size} not divisible by n_head={self.num_heads}")
        if self.intermediate_size == 0:
            object.__setattr__(self, "intermediate_size", 4 * self.hidden_size)
        if self.rotary_dim == 0:
            object.__setattr__(self, "rotary_dim", self.head_dim)
        if self.rotary_dim % 2 or self.rotary_dim > self.head_dim:
            raise ValueError(f"rotary_dim={self.rotary_dim} must be even and <= {self.head_dim}")
        L.activation(self.activation_function)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def tie_word_embeddings(self) -> bool:
        return False

    @classmethod
    def from_hf_config(cls, hf_config: Any) -> Config:
        """Builds the config from a transformers ``GPTJConfig`` or its dict (config.json).

        Raises:
            ValueError: for GPT-J variants this module does not implement.
        """
        d = L.config_dict(hf_config)
        if d.get("tie_word_embeddings", False):
            raise ValueError("GPT-J with a tied lm_head is not supported")
        return cls(
            vocab_size=d["vocab_size"],
            hidden_size=d["n_embd"],
            num_layers=d["n_layer"],
            num_heads=d["n_head"],
            rotary_dim=d.get("rotary_dim") or 0,
            max_position_embeddings=d.get("n_positions", 2048),
            intermediate_size=d.get("n_inner") or 0,
            layer_norm_eps=d.get("layer_norm_epsilon", 1e-5),
            activation_function=d.get("activation_function", "gelu_new"),
        )


def rotary_inv_freq(rotary_dim: int) -> np.ndarray:
    """GPT-J's fixed inverse frequencies [R/2] (HF ``create_sinusoidal_positions``)."""
    exponents = np.arange(0, rotary_dim, 2, dtype=np.float32) / np.float32(rotary_dim)
    return (1.0 / (np.float32(10000.0) ** exponents)).astype(np.float32)


class Block(nnx.Module):
    """Parallel block: ``x + attn(ln(x)) + mlp(ln(x))`` with one shared LayerNorm."""

    def __init__(self, config: Config, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs,
                 matmul_dtype: Any = None):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        mm = dict(kw, matmul_dtype=matmul_dtype)
        D, N, H = config.hidden_size, config.num_heads, config.head_dim
        self.attn_norm = L.layer_norm(D, config.layer_norm_eps, **kw)
        self.attn = L.Attention(D, N, N, H, use_bias=False, scale=H**-0.5,
                                rotary=L.apply_rotary_interleaved, **mm)
        self.mlp = L.DenseMlp(D, config.intermediate_size, config.activation_function, **mm)

    def __call__(self, x_BTD: Array, angles_BTR2: Array, mask_BTS: Array) -> Array:
        normed_BTD = self.attn_norm(x_BTD)
        return self.attn(normed_BTD, mask_BTS, angles_BTR2) + self.mlp(normed_BTD) + x_BTD


class GPTJ(L.CausalLM):
    """GPT-J causal LM with the project's uniform model API (see ``encode`` / ``logits``)."""

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
        self.final_norm = L.layer_norm(config.hidden_size, config.layer_norm_eps, **kw)
        self.lm_head = nnx.Linear(config.hidden_size, config.vocab_size, **kw)

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
            positions: int32 [B,T]; ``arange(T)`` when None.
            output_hidden_states: also return HF-style hidden states.

        Returns:
            ``(h_BTD, hidden_states)``: h in compute dtype; hidden_states None or
            [L+1,B,T,D] (embeddings, layer outputs, final-norm output).
        """
        tokens_BT = jnp.asarray(tokens, dtype=jnp.int32)
        positions_BT = L.default_positions(tokens_BT, positions)
        mask_BTS = L.attention_mask(mask, tokens_BT.shape[1])
        inv_freq_R2 = jnp.asarray(rotary_inv_freq(self.config.rotary_dim))
        angles_BTR2 = L.rotary_angles(positions_BT, inv_freq_R2)
        return L.run_decoder(self.layers, self.embed(tokens_BT),
                             lambda layer, h: layer(h, angles_BTR2, mask_BTS),
                             self.final_norm, output_hidden_states)

    def logits(self, h: Array) -> Array:
        """float32 logits [..., V] through the biased, untied ``lm_head``."""
        return L.head_logits(h, self.lm_head.kernel[...], self.lm_head.bias[...], self.head_dtype)
