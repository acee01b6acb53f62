"""Reading weights and configs from where they live: HF directories, the hub, GGUF files.

Everything here returns an HF-style config dict plus an HF-named state dict of numpy
arrays (lazy for safetensors), so one key map (convert.py) serves every source. No torch:
safetensors through ``safetensors``' numpy API, GGUF through the ``gguf`` package's numpy
reader and dequantizer; only legacy ``pytorch_model.bin`` files import torch, lazily.

A GGUF is converted once into an ordinary HF directory (config.json, model.safetensors,
tokenizer files) under ``$FORGET_JAX_CACHE`` (default ``~/.cache/forget_jax``), keyed by a
hash of the file's first bytes and size, and written atomically (temp dir + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from forget_jax.models.convert import (
    GGUF_IGNORED,
    ModelLoadError,
    gguf_to_hf_name,
    unpermute_qk,
)

CACHE_ENV = "FORGET_JAX_CACHE"
_HASH_PREFIX_BYTES = 16 << 20
_CACHE_FORMAT = "v1"  # bump when the converted layout changes


class SafetensorsState(Mapping[str, np.ndarray]):
    """Lazy HF state dict over one or more ``*.safetensors`` files (numpy, read on access)."""

    def __init__(self, files: list[pathlib.Path]):
        from safetensors import safe_open

        self._file_of: dict[str, pathlib.Path] = {}
        for file in files:
            with safe_open(str(file), framework="np") as f:
                for key in f.keys():
                    self._file_of[key] = file

    def __getitem__(self, key: str) -> np.ndarray:
        from safetensors import safe_open

        with safe_open(str(self._file_of[key]), framework="np") as f:
            return f.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._file_of)

    def __len__(self) -> int:
        return len(self._file_of)


def _read_torch_bins(files: list[pathlib.Path]) -> dict[str, np.ndarray]:
    """Legacy ``pytorch_model*.bin`` checkpoints; the only reader that needs torch."""
    try:
        import torch
    except ImportError:
        raise ModelLoadError(
            f"{files[0].parent} only has pytorch_model*.bin weights, which need torch "
            "(pip install torch) or a conversion to safetensors"
        ) from None
    state: dict[str, np.ndarray] = {}
    for file in files:
        for key, tensor in torch.load(file, map_location="cpu", weights_only=True).items():
            if tensor.dtype == torch.bfloat16:  # numpy has no torch-bfloat16 bridge
                tensor = tensor.float()
            state[key] = tensor.numpy()
    return state


def read_hf_dir(path: pathlib.Path) -> tuple[dict[str, Any], Mapping[str, np.ndarray]]:
    """config.json and the weights of a local HF model directory.

    Raises:
        ModelLoadError: no config.json, or no safetensors / pytorch_model.bin weights.
    """
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{path} is not a Hugging Face model directory: no config.json")
    config = json.loads(config_file.read_text())
    if files := sorted(path.glob("*.safetensors")):
        return config, SafetensorsState(files)
    if files := sorted(path.glob("pytorch_model*.bin")):
        return config, _read_torch_bins(files)
    raise ModelLoadError(f"{path} has no weights (*.safetensors or pytorch_model*.bin)")


def _field(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


# llama.cpp architecture -> HF model_type (a "llama" file named like Mistral is Mistral).
GGUF_MODEL_TYPES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3": "gemma3_text"}


def gguf_hf_config(reader: Any) -> dict[str, Any]:
    """An HF config dict from GGUF metadata (``<arch>.block_count``, ``head_count``, ...), as
    transformers' GGUF loader builds it: Gemma's local rope base (10k) and
    ``query_pre_attn_scalar`` (256) are not in the file and take HF's defaults, and so does a
    Mistral file's sliding window (4096) when the file has none.

    Raises:
        ModelLoadError: for GGUF architectures other than llama, qwen2, qwen3 and gemma3.
    """
    arch = _field(reader, "general.architecture")
    if arch not in GGUF_MODEL_TYPES:
        raise ModelLoadError(
            f"GGUF architecture {arch!r} is not supported (supported: {sorted(GGUF_MODEL_TYPES)})")

    def f(key: str, default: Any = None) -> Any:
        return _field(reader, f"{arch}.{key}", default)

    model_type = GGUF_MODEL_TYPES[arch]
    if arch == "llama" and "mistral" in str(_field(reader, "general.name", "")).lower():
        model_type = "mistral"
    hidden = int(f("embedding_length"))
    heads = int(f("attention.head_count"))
    vocab = f("vocab_size") or len(_field(reader, "tokenizer.ggml.tokens", []))
    rope_theta = float(f("rope.freq_base", 10000.0))
    head_dim = f("attention.key_length") or f("rope.dimension_count") or hidden // heads
    config: dict[str, Any] = {
        "model_type": model_type,
        "vocab_size": int(vocab),
        "hidden_size": hidden,
        "intermediate_size": int(f("feed_forward_length")),
        "num_hidden_layers": int(f("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(f("attention.head_count_kv", heads)),
        "head_dim": int(head_dim),
        "rms_norm_eps": float(f("attention.layer_norm_rms_epsilon", 1e-6)),
        "max_position_embeddings": int(f("context_length", 2048)),
        "tie_word_embeddings": all(t.name != "output.weight" for t in reader.tensors),
        "rope_theta": rope_theta,
    }
    scaling = None
    if f("rope.scaling.type") == "linear":
        scaling = {"rope_type": "linear", "factor": float(f("rope.scaling.factor"))}
    if model_type == "gemma3_text":
        config.update(hidden_activation="gelu_pytorch_tanh", rope_local_base_freq=10000.0,
                      query_pre_attn_scalar=256, sliding_window=int(f("attention.sliding_window")),
                      sliding_window_pattern=6, rope_scaling=scaling)
    else:
        config["rope_parameters"] = {"rope_type": "default", "rope_theta": rope_theta,
                                     **(scaling or {})}
        config["hidden_act"] = "silu"
    if model_type == "mistral":
        config["sliding_window"] = int(f("attention.sliding_window", 4096))
    config["architectures"] = [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                                "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                                "gemma3_text": "Gemma3ForCausalLM"}[model_type]]
    for gguf_key, hf_key in (
        ("bos", "bos_token_id"),
        ("eos", "eos_token_id"),
        ("padding", "pad_token_id"),
    ):
        token_id = _field(reader, f"tokenizer.ggml.{gguf_key}_token_id")
        if token_id is not None:
            config[hf_key] = int(token_id)
    return config


def read_gguf(path: pathlib.Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """HF config dict and HF-named float32 state dict of a GGUF file (dequantized).

    Undoes what llama.cpp's converter did, as transformers' GGUF loader does: q/k projection
    rows of llama (and Mistral) files are un-permuted from its rotary layout back to HF's,
    and Gemma's norm weights, stored as ``1 + w``, get the 1 back off.

    Raises:
        ModelLoadError: unreadable file, unsupported architecture or unknown tensor names.
    """
    import gguf
    from gguf.quants import dequantize

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:  # noqa: BLE001 - any parse failure means "not a usable GGUF"
        raise ModelLoadError(f"{path} is not a readable GGUF file: {e}") from None
    config = gguf_hf_config(reader)
    arch = _field(reader, "general.architecture")
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    state, unknown = {}, []
    for tensor in reader.tensors:
        name = gguf_to_hf_name(tensor.name, arch)
        if name is None:
            if tensor.name not in GGUF_IGNORED:
                unknown.append(tensor.name)
            continue
        w = np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        if arch == "llama" and ".q_proj." in name:
            w = unpermute_qk(w, heads)
        elif arch == "llama" and ".k_proj." in name:
            w = unpermute_qk(w, kv_heads)
        elif arch == "gemma3" and tensor.name.endswith("norm.weight"):
            w = w - np.float32(1.0)
        state[name] = w
    if unknown:
        raise ModelLoadError(f"{path} has tensors this loader does not know: {unknown[:5]}")
    return config, state


def cache_root() -> pathlib.Path:
    """``$FORGET_JAX_CACHE`` or ``~/.cache/forget_jax``."""
    return pathlib.Path(os.environ.get(CACHE_ENV) or pathlib.Path.home() / ".cache" / "forget_jax")


def file_key(path: pathlib.Path) -> str:
    """sha256 of the first 16 MiB, the size and the cache format: cheap and content-based."""
    digest = hashlib.sha256(_CACHE_FORMAT.encode())
    digest.update(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(_HASH_PREFIX_BYTES))
    return digest.hexdigest()


def cached_gguf_dir(path: pathlib.Path, root: pathlib.Path | None = None) -> pathlib.Path:
    """Where the HF directory converted from GGUF ``path`` lives (it may not exist yet)."""
    return (root or cache_root()) / file_key(path)


def write_gguf_dir(
    path: pathlib.Path, config: dict[str, Any], state: dict[str, np.ndarray], target: pathlib.Path
) -> pathlib.Path:
    """Writes a converted GGUF as an ordinary HF directory at ``target``, atomically.

    The directory holds config.json, model.safetensors (HF names, float32, q/k already
    un-permuted) and the GGUF's tokenizer saved with ``save_pretrained``, so it loads like
    any HF checkpoint (also with transformers). Concurrent writers are safe: each writes a
    temp dir and renames it; the loser discards its copy.
    """
    from safetensors.numpy import save_file
    from transformers import AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        save_file(state, str(tmp / "model.safetensors"), metadata={"source": path.name})
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        tokenizer.save_pretrained(str(tmp))
        (tmp / "source.json").write_text(
            json.dumps({"gguf": str(path), "size": path.stat().st_size})
        )
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        tmp.chmod(0o755)  # mkdtemp makes it private; a shared cache must be readable
        try:
            tmp.rename(target)
        except OSError:  # another process finished first; its copy is equivalent
            if not (target / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def hub_snapshot(repo_id: str) -> pathlib.Path:
    """Local snapshot of a hub repo (config, tokenizer, safetensors or else .bin weights).

    Raises:
        ModelLoadError: offline without a cached copy, unknown repo, or any hub error.
    """
    import huggingface_hub

    light = ["*.json", "*.model", "*.txt", "*.tiktoken", "*.jinja"]
    try:
        files = huggingface_hub.list_repo_files(repo_id)
        weights = ["*.safetensors"] if any(f.endswith(".safetensors") for f in files) else ["*.bin"]
    except Exception:  # noqa: BLE001 - offline: fall back to whatever the local cache has
        weights = ["*.safetensors", "*.bin"]
    try:
        local = huggingface_hub.snapshot_download(repo_id, allow_patterns=light + weights)
    except Exception as e:  # noqa: BLE001 - one message for every hub failure
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise ModelLoadError(
            f"{repo_id!r} is not a local path, and getting it from the Hugging Face hub failed"
            f"{offline}: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    return pathlib.Path(local)
