"""Gemma 3, Qwen2/2.5, Qwen3 and Mistral as option sets of the one LLaMA-style decoder.

Each family is a :class:`forget_jax.models.llama.Config` subclass that only names its HF
``model_type`` and reads its HF config (``from_hf_config``); the model class, the layers and
the sharding rules are LLaMA's (see the option list in :mod:`forget_jax.models.llama`).

==========  ==============================================================================
Qwen2       q/k/v biases (o_proj none); optional sliding window on layers >= max_window_layers
Qwen3       QK-norm (RMSNorm per head), no biases; same optional window
Mistral     sliding window on every layer (``sliding_window``; None = full attention)
Gemma 3     RMSNorm ``(1 + w)``, norms before and after attention and MLP, QK-norm, GeGLU
            (gelu tanh), embeddings x sqrt(D), softmax scale ``query_pre_attn_scalar**-0.5``,
            5 sliding (rope 10k) : 1 global (rope 1M) layers, tied head
==========  ==============================================================================
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from forget_jax.models import layers as L
from forget_jax.models import llama


def _windowed_layer_types(d: dict[str, Any]) -> dict[str, Any]:
    """Qwen's ``use_sliding_window`` / ``max_window_layers`` -> our sliding fields."""
    n = d["num_hidden_layers"]
    window = d.get("sliding_window") if d.get("use_sliding_window") else None
    types = d.get("layer_types")
    if types is None:
        start = d.get("max_window_layers", 28)
        types = ["sliding_attention" if window and i >= start else "full_attention"
                 for i in range(n)]
    if not window:  # HF ignores layer_types' "sliding" without a window; so do we
        types = ["full_attention"] * n
    return dict(sliding_window=window, layer_types=tuple(types))


@dataclasses.dataclass(frozen=True)
class Qwen2Config(llama.Config):
    """Qwen2 / Qwen2.5 (``Qwen2ForCausalLM``)."""

    model_type: ClassVar[str] = "qwen2"

    @classmethod
    def from_hf_config(cls, hf_config: Any) -> Qwen2Config:
        d = L.config_dict(hf_config)
        return cls(**cls.hf_kwargs(d), qkv_bias=True, **_windowed_layer_types(d))


@dataclasses.dataclass(frozen=True)
class Qwen3Config(llama.Config):
    """Qwen3 dense models (``Qwen3ForCausalLM``)."""

    model_type: ClassVar[str] = "qwen3"

    @classmethod
    def from_hf_config(cls, hf_config: Any) -> Qwen3Config:
        d = L.config_dict(hf_config)
        return cls(**cls.hf_kwargs(d), qk_norm=True, **_windowed_layer_types(d))


@dataclasses.dataclass(frozen=True)
class MistralConfig(llama.Config):
    """Mistral (``MistralForCausalLM``): a sliding window on every layer."""

    model_type: ClassVar[str] = "mistral"

    @classmethod
    def from_hf_config(cls, hf_config: Any) -> MistralConfig:
        d = L.config_dict(hf_config)
        window = d.get("sliding_window")
        types = ("sliding_attention" if window else "full_attention",) * d["num_hidden_layers"]
        return cls(**cls.hf_kwargs(d), sliding_window=window, layer_types=types)


@dataclasses.dataclass(frozen=True)
class Gemma3Config(llama.Config):
    """Gemma 3 text models (``Gemma3ForCausalLM``, HF model_type ``gemma3_text``)."""

    model_type: ClassVar[str] = "gemma3_text"

    @classmethod
    def from_hf_config(cls, hf_config: Any) -> Gemma3Config:
        """Reads transformers 5 configs (``rope_parameters`` per layer type) and config.json
        files of the hub (``rope_theta``, ``rope_local_base_freq``, ``rope_scaling``)."""
        d = L.config_dict(hf_config)
        for key in ("final_logit_softcapping", "attn_logit_softcapping"):
            if d.get(key) is not None:
                raise ValueError(f"{key} is not supported (Gemma 3 does not use it)")
        if d.get("use_bidirectional_attention"):
            raise ValueError("use_bidirectional_attention is not supported")
        rope = dict(d.get("rope_parameters") or {})
        if "full_attention" in rope:  # transformers 5: one dict per layer type
            full, local = dict(rope["full_attention"]), dict(rope.get("sliding_attention") or {})
        else:  # hub config.json
            full = dict(d.get("rope_scaling") or {})
            full["rope_theta"] = d.get("rope_theta", 1_000_000.0)
            local = {"rope_theta": d.get("rope_local_base_freq", 10_000.0)}
        if local.get("rope_type", "default") != "default":
            raise ValueError("only default RoPE is supported on Gemma's sliding layers")
        n = d["num_hidden_layers"]
        pattern = d.get("sliding_window_pattern") or d.get("_sliding_window_pattern") or 6
        types = d.get("layer_types") or [
            "sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n)]
        d = {"head_dim": 256, "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh",
             "tie_word_embeddings": True, **d}
        return cls(
            **cls.hf_kwargs(d, rope=full),
            qk_norm=True,
            norm_offset=1.0,
            sandwich_norms=True,
            embed_scale=True,
            query_pre_attn_scalar=float(d.get("query_pre_attn_scalar", 256)),
            sliding_window=d.get("sliding_window", 4096),
            layer_types=tuple(types),
            rope_local_theta=float(local.get("rope_theta", 10_000.0)),
        )


FAMILIES: tuple[type[llama.Config], ...] = (Qwen2Config, Qwen3Config, MistralConfig,
                                            Gemma3Config)
