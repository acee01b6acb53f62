"""Hugging Face checkpoint names <-> our Flax parameter paths, one explicit table per model.

Each :class:`Rule` maps one HF tensor to one Flax path (or, for GPT-2's fused ``c_attn``,
to three), with the layout change spelled out: ``transpose`` for ``nn.Linear`` weights
([out,in] -> kernel [in,out]), ``copy`` for embeddings, norms, biases and GPT-2's
``Conv1D`` (already [in,out]), ``split`` for fused q/k/v along the last axis. Rules with
``{i}`` in the HF name are per-layer; their tensors are stacked along a new axis 0, the
layer axis of our scanned stack.

:func:`hf_to_flax` checks the checkpoint against the model config before anything is
built: missing, unexpected and wrongly shaped tensors are reported together in ONE
:class:`ModelLoadError`. GGUF (llama.cpp) names map onto HF names first
(:func:`gguf_to_hf_name`), and llama.cpp's q/k row permutation is undone
(:func:`unpermute_qk`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from forget_jax.models import families, gpt2, gptj, llama

Path = tuple[str, ...]
ModelConfig = llama.Config | gpt2.Config | gptj.Config  # llama.Config: also the families


class ModelLoadError(ValueError):
    """A model could not be loaded; the message alone says what was wrong."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """One HF tensor -> one or more Flax parameters.

    Attributes:
        hf: HF state-dict name; ``{i}`` marks the layer index of per-layer tensors.
        paths: dotted Flax paths (several only for ``op="split"``).
        op: ``"copy"``, ``"transpose"`` (2-D) or ``"split"`` (equal parts, last axis).
    """

    hf: str
    paths: tuple[str, ...]
    op: str = "copy"

    @property
    def layered(self) -> bool:
        return "{i}" in self.hf

    @property
    def flax_paths(self) -> list[Path]:
        return [tuple(p.split(".")) for p in self.paths]

    def to_flax(self, w: np.ndarray) -> list[np.ndarray]:
        # Views only: hf_to_flax makes the one copy (stack / ascontiguousarray).
        if self.op == "transpose":
            return [w.T]
        if self.op == "split":
            return np.split(w, len(self.paths), axis=-1)
        return [w]

    def to_hf(self, parts: list[np.ndarray]) -> np.ndarray:
        if self.op == "transpose":
            return np.ascontiguousarray(parts[0].T)
        if self.op == "split":
            return np.concatenate(parts, axis=-1)
        return parts[0]

    def hf_shape(self, flax_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        """The HF tensor shape implied by the Flax parameter shapes (per layer)."""
        if self.op == "transpose":
            return tuple(flax_shapes[0][::-1])
        if self.op == "split":
            return (*flax_shapes[0][:-1], sum(s[-1] for s in flax_shapes))
        return tuple(flax_shapes[0])


def _linear(hf: str, path: str, bias: bool) -> list[Rule]:
    """An ``nn.Linear``: transposed weight, and its bias when the config has one."""
    rules = [Rule(f"{hf}.weight", (f"{path}.kernel",), "transpose")]
    return rules + ([Rule(f"{hf}.bias", (f"{path}.bias",))] if bias else [])


def _norm(hf: str, path: str, bias: bool) -> list[Rule]:
    rules = [Rule(f"{hf}.weight", (f"{path}.scale",))]
    return rules + ([Rule(f"{hf}.bias", (f"{path}.bias",))] if bias else [])


def llama_rules(c: llama.Config) -> list[Rule]:
    """LlamaForCausalLM names (HF) -> Llama paths (ours); also Qwen2/Qwen3/Mistral and Gemma 3,
    whose ``post_attention_layernorm`` is the norm AFTER attention (LLaMA's is before the MLP).
    Gemma's norm weights are HF's ``w`` of ``(1 + w)``, stored as-is."""
    blk = "model.layers.{i}"
    rules = [Rule("model.embed_tokens.weight", ("embed.embedding",))]
    rules += _norm(f"{blk}.input_layernorm", "layers.attn_norm", bias=False)
    for p in ("q", "k", "v", "o"):
        bias = c.attention_bias or (c.qkv_bias and p != "o")
        rules += _linear(f"{blk}.self_attn.{p}_proj", f"layers.attn.{p}_proj", bias)
    if c.qk_norm:
        for p in ("q", "k"):
            rules += _norm(f"{blk}.self_attn.{p}_norm", f"layers.attn.{p}_norm", bias=False)
    if c.sandwich_norms:
        rules += _norm(f"{blk}.post_attention_layernorm", "layers.attn_post_norm", bias=False)
        rules += _norm(f"{blk}.pre_feedforward_layernorm", "layers.mlp_norm", bias=False)
        rules += _norm(f"{blk}.post_feedforward_layernorm", "layers.mlp_post_norm", bias=False)
    else:
        rules += _norm(f"{blk}.post_attention_layernorm", "layers.mlp_norm", bias=False)
    for p in ("gate", "up", "down"):
        rules += _linear(f"{blk}.mlp.{p}_proj", f"layers.mlp.{p}_proj", c.mlp_bias)
    rules += _norm("model.norm", "final_norm", bias=False)
    if not c.tie_word_embeddings:
        rules += _linear("lm_head", "lm_head", bias=False)
    return rules


def gpt2_rules(c: gpt2.Config) -> list[Rule]:
    """GPT2LMHeadModel names (HF) -> GPT2 paths (ours). Conv1D weights are already [in,out]."""
    blk = "transformer.h.{i}"
    qkv = "layers.attn.q_proj", "layers.attn.k_proj", "layers.attn.v_proj"
    return [
        Rule("transformer.wte.weight", ("embed.embedding",)),
        Rule("transformer.wpe.weight", ("pos_embed.embedding",)),
        *_norm(f"{blk}.ln_1", "layers.attn_norm", bias=True),
        Rule(f"{blk}.attn.c_attn.weight", tuple(f"{p}.kernel" for p in qkv), "split"),
        Rule(f"{blk}.attn.c_attn.bias", tuple(f"{p}.bias" for p in qkv), "split"),
        Rule(f"{blk}.attn.c_proj.weight", ("layers.attn.o_proj.kernel",)),
        Rule(f"{blk}.attn.c_proj.bias", ("layers.attn.o_proj.bias",)),
        *_norm(f"{blk}.ln_2", "layers.mlp_norm", bias=True),
        Rule(f"{blk}.mlp.c_fc.weight", ("layers.mlp.up_proj.kernel",)),
        Rule(f"{blk}.mlp.c_fc.bias", ("layers.mlp.up_proj.bias",)),
        Rule(f"{blk}.mlp.c_proj.weight", ("layers.mlp.down_proj.kernel",)),
        Rule(f"{blk}.mlp.c_proj.bias", ("layers.mlp.down_proj.bias",)),
        *_norm("transformer.ln_f", "final_norm", bias=True),
    ]


def gptj_rules(c: gptj.Config) -> list[Rule]:
    """GPTJForCausalLM names (HF) -> GPTJ paths (ours)."""
    blk = "transformer.h.{i}"
    rules = [Rule("transformer.wte.weight", ("embed.embedding",))]
    rules += _norm(f"{blk}.ln_1", "layers.attn_norm", bias=True)
    for hf, ours in (
        ("q_proj", "q_proj"),
        ("k_proj", "k_proj"),
        ("v_proj", "v_proj"),
        ("out_proj", "o_proj"),
    ):
        rules += _linear(f"{blk}.attn.{hf}", f"layers.attn.{ours}", bias=False)
    rules += _linear(f"{blk}.mlp.fc_in", "layers.mlp.up_proj", bias=True)
    rules += _linear(f"{blk}.mlp.fc_out", "layers.mlp.down_proj", bias=True)
    rules += _norm("transformer.ln_f", "final_norm", bias=True)
    return rules + _linear("lm_head", "lm_head", bias=True)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Everything model-type specific the loader needs.

    Attributes:
        config_cls / model_cls: our Config and nnx.Module classes.
        rules: the key map for a config.
        prefix: the base-model prefix HF adds in ``*ForCausalLM`` checkpoints; keys saved
            from the base model (``layers.0...`` / ``h.0...``) get it added.
        ignore: regexes of HF keys that are buffers or tied copies, not parameters.
    """

    config_cls: type
    model_cls: type
    rules: Callable[[Any], list[Rule]]
    prefix: str
    ignore: Callable[[Any], tuple[str, ...]]


def _decoder(config_cls: type) -> Architecture:
    """LLaMA and its families: one model class and one key map."""
    return Architecture(
        config_cls=config_cls,
        model_cls=llama.Llama,
        rules=llama_rules,
        prefix="model.",
        ignore=lambda c: (
            (r"\.rotary_emb\.inv_freq$",)
            + ((r"^lm_head\.weight$",) if c.tie_word_embeddings else ())
        ),
    )


ARCHITECTURES: dict[str, Architecture] = {
    "llama": _decoder(llama.Config),
    **{cls.model_type: _decoder(cls) for cls in families.FAMILIES},
    "gpt2": Architecture(
        config_cls=gpt2.Config,
        model_cls=gpt2.GPT2,
        rules=gpt2_rules,
        prefix="transformer.",
        ignore=lambda c: (r"\.attn\.bias$", r"\.attn\.masked_bias$", r"^lm_head\.weight$"),
    ),
    "gptj": Architecture(
        config_cls=gptj.Config,
        model_cls=gptj.GPTJ,
        rules=gptj_rules,
        prefix="transformer.",
        ignore=lambda c: (r"\.attn\.bias$", r"\.attn\.masked_bias$", r"\.embed_positions$"),
    ),
}


def architecture(config: ModelConfig | str) -> Architecture:
    """The :class:`Architecture` of a Config instance or an HF ``model_type`` string."""
    model_type = config if isinstance(config, str) else config.model_type
    if model_type not in ARCHITECTURES:
        raise ModelLoadError(
            f"unsupported model_type {model_type!r}; supported: {sorted(ARCHITECTURES)}"
        )
    return ARCHITECTURES[model_type]


def param_shapes(config: ModelConfig) -> dict[Path, tuple[int, ...]]:
    """Shape of every parameter of the model for ``config``, without allocating it."""
    model = nnx.eval_shape(lambda: architecture(config).model_cls(config, rngs=nnx.Rngs(0)))
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {tuple(str(k) for k in path): tuple(v.shape) for path, v in flat}


def describe(config: ModelConfig) -> str:
    """A one-line summary of a config for error messages."""
    heads = f"{config.num_heads} heads"
    if getattr(config, "num_kv_heads", config.num_heads) != config.num_heads:
        heads += f" / {config.num_kv_heads} kv"
    return (
        f"{config.model_type} config ({config.num_layers} layers, hidden "
        f"{config.hidden_size}, {heads}, vocab {config.vocab_size})"
    )


def _canonical_names(keys: Iterable[str], prefix: str) -> dict[str, str]:
    """canonical HF name -> name in the checkpoint (adds a missing base-model prefix)."""
    out = {}
    for key in keys:
        canonical = key if key.startswith((prefix, "lm_head.")) else prefix + key
        out[canonical] = key
    return out


def _listing(kind: str, items: list[str], limit: int = 4) -> str:
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return f"{kind}: {', '.join(items[:limit])}{more}"


def hf_to_flax(
    state: Mapping[str, np.ndarray], config: ModelConfig, dtype: Any = None
) -> dict[str, Any]:
    """Converts an HF state dict into our nested parameter dict (numpy arrays).

    Args:
        state: HF name -> array; may be lazy (tensors are read one at a time).
        config: the model config the tensors must match.
        dtype: optional storage dtype to cast each tensor to as it is read.

    Returns:
        Nested dict matching ``nnx.state(model, nnx.Param)`` as a pure dict, per-layer
        tensors stacked along axis 0.

    Raises:
        ModelLoadError: listing missing, unexpected and wrongly shaped tensors together.
    """
    arch = architecture(config)
    expected = param_shapes(config)
    names = _canonical_names(state.keys(), arch.prefix)
    used: set[str] = set()
    missing: list[str] = []
    bad: list[str] = []
    flat: dict[Path, np.ndarray] = {}
    for rule in arch.rules(config):
        paths = rule.flax_paths
        shapes = [expected[p][1:] if rule.layered else expected[p] for p in paths]
        want = rule.hf_shape(shapes)
        parts: list[list[np.ndarray]] = [[] for _ in paths]
        for i in range(config.num_layers) if rule.layered else [None]:
            key = rule.hf.format(i=i)
            if key not in names:
                missing.append(key)
                continue
            used.add(key)
            w = np.asarray(state[names[key]])
            if tuple(w.shape) != want:
                bad.append(f"{key} has shape {tuple(w.shape)}, expected {want}")
                continue
            for acc, part in zip(parts, rule.to_flax(w), strict=True):
                acc.append(part if dtype is None else part.astype(dtype, copy=False))
        if not missing and not bad:
            for path, acc in zip(paths, parts, strict=True):
                flat[path] = np.stack(acc) if rule.layered else np.ascontiguousarray(acc[0])
    ignore = re.compile("|".join(arch.ignore(config))) if arch.ignore(config) else None
    unexpected = sorted(k for k in names if k not in used and not (ignore and ignore.search(k)))
    if missing or bad or unexpected:
        problems = [
            _listing(kind, items)
            for kind, items in (
                ("wrong shape", bad),
                ("missing", missing),
                ("unexpected", unexpected),
            )
            if items
        ]
        raise ModelLoadError(f"weights do not match the {describe(config)}: " + "; ".join(problems))
    uncovered = sorted(".".join(p) for p in set(expected) - set(flat))
    if uncovered:  # a bug in the rule table, not in the checkpoint
        raise AssertionError(f"key map for {config.model_type} leaves params unset: {uncovered}")
    return nnx.traversals.unflatten_mapping(flat)


def flax_to_hf(params: Mapping[str, Any], config: ModelConfig) -> dict[str, np.ndarray]:
    """Inverse of :func:`hf_to_flax`: our nested params -> HF state dict (numpy)."""
    flat = {
        tuple(str(k) for k in p): np.asarray(v)
        for p, v in nnx.traversals.flatten_mapping(dict(params)).items()
    }
    out = {}
    for rule in architecture(config).rules(config):
        stacked = [flat[p] for p in rule.flax_paths]
        for i in range(config.num_layers) if rule.layered else [None]:
            parts = [s[i] for s in stacked] if rule.layered else stacked
            out[rule.hf.format(i=i)] = rule.to_hf(parts)
    return out


def model_from_params(
    config: ModelConfig,
    params: Mapping[str, Any],
    *,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    matmul_dtype: Any = None,
) -> nnx.Module:
    """Builds the model for ``config`` holding ``params`` (no random init is run).

    Args:
        config: model config.
        params: nested dict from :func:`hf_to_flax`.
        dtype: compute dtype.
        param_dtype: parameter dtype; params are cast to it.
        matmul_dtype: operand dtype of the dense matmuls (None: ``dtype``).
    """
    cls = architecture(config).model_cls
    abstract = nnx.eval_shape(
        lambda: cls(config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0),
                    matmul_dtype=matmul_dtype)
    )
    graphdef, state = nnx.split(abstract)
    values = jax.tree.map(lambda a: jnp.asarray(a, dtype=param_dtype), dict(params))
    nnx.replace_by_pure_dict(state, values)
    return nnx.merge(graphdef, state)


# ---- GGUF (llama.cpp) -> HF names -------------------------------------------------------

GGUF_LLAMA_NAMES: dict[str, str] = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "blk.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    **{
        f"blk.{{i}}.{g}.{s}": f"model.layers.{{i}}.{h}.{s}"
        for g, h in (
            ("attn_q", "self_attn.q_proj"),
            ("attn_k", "self_attn.k_proj"),
            ("attn_v", "self_attn.v_proj"),
            ("attn_output", "self_attn.o_proj"),
            ("ffn_gate", "mlp.gate_proj"),
            ("ffn_up", "mlp.up_proj"),
            ("ffn_down", "mlp.down_proj"),
        )
        for s in ("weight", "bias")
    },
}
_GGUF_QK_NORMS = {
    f"blk.{{i}}.attn_{p}_norm.weight": f"model.layers.{{i}}.self_attn.{p}_norm.weight"
    for p in ("q", "k")
}
# Per llama.cpp architecture (``general.architecture``; Mistral files say "llama"). Gemma's
# ffn_norm is the norm before the MLP, like LLaMA's, but HF calls it pre_feedforward_layernorm
# (its post_attention_layernorm is the norm after attention).
GGUF_NAMES: dict[str, dict[str, str]] = {
    "llama": GGUF_LLAMA_NAMES,
    "qwen2": GGUF_LLAMA_NAMES,
    "qwen3": {**GGUF_LLAMA_NAMES, **_GGUF_QK_NORMS},
    "gemma3": {
        **GGUF_LLAMA_NAMES,
        **_GGUF_QK_NORMS,
        "blk.{i}.post_attention_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
        "blk.{i}.ffn_norm.weight": "model.layers.{i}.pre_feedforward_layernorm.weight",
        "blk.{i}.post_ffw_norm.weight": "model.layers.{i}.post_feedforward_layernorm.weight",
    },
}
# llama3 GGUFs carry precomputed rope frequency factors; we compute RoPE from the metadata.
GGUF_IGNORED = ("rope_freqs.weight",)
_BLOCK = re.compile(r"^blk\.(\d+)\.")


def gguf_to_hf_name(name: str, arch: str = "llama") -> str | None:
    """HF name of a GGUF tensor of llama.cpp architecture ``arch``, or None when the tensor is
    not a model parameter."""
    match = _BLOCK.match(name)
    template = _BLOCK.sub("blk.{i}.", name) if match else name
    names = GGUF_NAMES[arch]
    if template not in names:
        return None
    return names[template].format(i=match.group(1) if match else "")


def unpermute_qk(w: np.ndarray, num_heads: int) -> np.ndarray:
    """Undoes llama.cpp's q/k permutation (its rotary pairs (2i, 2i+1); HF's pair i, i+H/2).

    Args:
        w: HF-layout [N*H, D] weight (or [N*H] bias) as stored in the GGUF.
        num_heads: N for q, K for k.
    """
    half = w.shape[0] // num_heads // 2
    return w.reshape(num_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
