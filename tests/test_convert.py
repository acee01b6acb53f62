"""The HF -> Flax key maps: coverage, round trip, clear mismatch errors, GGUF names."""

from __future__ import annotations

import numpy as np
import pytest
import transformers
from test_models import HF_CASES, hf_state, tiny_hf

from forget_jax.models import ModelLoadError, config_from_hf, convert, flax_to_hf, hf_to_flax
from forget_jax.models.convert import Rule, architecture, param_shapes


def expanded_rules(config) -> dict[str, Rule]:
    """HF name (layer index filled in) -> its rule."""
    out = {}
    for rule in architecture(config).rules(config):
        for i in range(config.num_layers) if rule.layered else [None]:
            out[rule.hf.format(i=i)] = rule
    return out


@pytest.mark.parametrize("case", sorted(HF_CASES))
def test_key_map_covers_every_hf_and_flax_name(case: str):
    hf_model = tiny_hf(case)
    state = hf_state(hf_model)
    config = config_from_hf(hf_model.config)
    rules = expanded_rules(config)
    tied_head = {"lm_head.weight"} if config.tie_word_embeddings else set()
    assert set(state) == set(rules) | tied_head  # every HF parameter maps (tied copy skipped)

    flax_paths = [p for rule in architecture(config).rules(config) for p in rule.flax_paths]
    assert sorted(flax_paths) == sorted(param_shapes(config))  # each param exactly once

    params = hf_to_flax(state, config)
    back = flax_to_hf(params, config)
    assert set(back) == set(rules)
    for key, w in back.items():
        assert w.shape == state[key].shape, key
        np.testing.assert_array_equal(w, state[key], err_msg=key)


def test_key_map_layouts():
    """Spot checks of the table: transposes, Conv1D copies, fused qkv split, layer stacking."""
    hf_model = tiny_hf("gpt2")
    state = hf_state(hf_model)
    params = hf_to_flax(state, config_from_hf(hf_model.config))
    c_attn = state["transformer.h.1.attn.c_attn.weight"]  # Conv1D [D, 3D]
    D = c_attn.shape[0]
    np.testing.assert_array_equal(
        params["layers"]["attn"]["k_proj"]["kernel"][1], c_attn[:, D : 2 * D]
    )
    np.testing.assert_array_equal(
        params["layers"]["mlp"]["up_proj"]["kernel"][2], state["transformer.h.2.mlp.c_fc.weight"]
    )

    llama = tiny_hf("llama_gqa_untied")
    state = hf_state(llama)
    params = hf_to_flax(state, config_from_hf(llama.config))
    np.testing.assert_array_equal(
        params["layers"]["attn"]["k_proj"]["kernel"][2],
        state["model.layers.2.self_attn.k_proj.weight"].T,
    )
    np.testing.assert_array_equal(params["lm_head"]["kernel"], state["lm_head.weight"].T)
    rules = {r.hf: r for r in convert.llama_rules(config_from_hf(llama.config))}
    assert rules["model.layers.{i}.self_attn.q_proj.weight"] == Rule(
        "model.layers.{i}.self_attn.q_proj.weight", ("layers.attn.q_proj.kernel",), "transpose"
    )


def test_checkpoints_without_prefix_and_with_buffers():
    """Base-model checkpoints (no ``model.``/``transformer.``) and old buffer keys load."""
    hf_model = tiny_hf("gpt2")
    config = config_from_hf(hf_model.config)
    state = hf_state(hf_model)
    legacy = {k.removeprefix("transformer."): v for k, v in state.items() if k != "lm_head.weight"}
    legacy["h.0.attn.bias"] = np.tril(np.ones((1, 1, 32, 32), bool))  # GPT-2 causal buffer
    legacy["h.0.attn.masked_bias"] = np.array(-1e4, np.float32)
    a, b = hf_to_flax(state, config), hf_to_flax(legacy, config)
    np.testing.assert_array_equal(
        a["layers"]["attn"]["q_proj"]["kernel"], b["layers"]["attn"]["q_proj"]["kernel"]
    )

    llama = tiny_hf("llama_mha_tied_bias")
    base = {k.removeprefix("model."): v for k, v in hf_state(llama).items()}
    base["layers.0.self_attn.rotary_emb.inv_freq"] = np.ones(8, np.float32)
    params = hf_to_flax(base, config_from_hf(llama.config))
    assert params["embed"]["embedding"].shape == (97, 64) and "lm_head" not in params


def test_mismatch_is_one_clear_error():
    hf_model = tiny_hf("llama_gqa_untied")
    config = config_from_hf(hf_model.config)
    state = hf_state(hf_model)
    del state["model.layers.1.mlp.up_proj.weight"]
    state["model.layers.0.self_attn.k_proj.weight"] = np.zeros((64, 64), np.float32)
    state["model.layers.0.self_attn.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ModelLoadError) as err:
        hf_to_flax(state, config)
    msg = str(err.value)
    assert "llama config (3 layers, hidden 64, 4 heads / 2 kv, vocab 97)" in msg
    assert "model.layers.0.self_attn.k_proj.weight has shape (64, 64), expected (32, 64)" in msg
    assert "missing: model.layers.1.mlp.up_proj.weight" in msg
    assert "unexpected: model.layers.0.self_attn.extra.weight" in msg
    assert "\n" not in msg


def test_checkpoint_for_another_config_names_the_mismatch():
    hf_model = tiny_hf("llama_gqa_untied")
    bigger = transformers.LlamaConfig(
        **{**HF_CASES["llama_gqa_untied"][1], "num_hidden_layers": 5, "intermediate_size": 128}
    )
    with pytest.raises(
        ModelLoadError,
        match=r"wrong shape: .*mlp\.gate_proj\.weight has shape "
        r"\(96, 64\), expected \(128, 64\).*missing: "
        r"model\.layers\.3\.",
    ):
        hf_to_flax(hf_state(hf_model), config_from_hf(bigger))


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py ``LlamaModel.permute`` (what GGUF files contain)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


@pytest.mark.parametrize("heads, head_dim", [(9, 64), (3, 64), (4, 8)])
def test_unpermute_inverts_llama_cpp(heads: int, head_dim: int):
    w = np.random.RandomState(0).randn(heads * head_dim, 40).astype(np.float32)
    permuted = llama_cpp_permute(w, heads)
    assert not np.array_equal(permuted, w)
    np.testing.assert_array_equal(convert.unpermute_qk(permuted, heads), w)
    b = np.arange(heads * head_dim, dtype=np.float32)
    np.testing.assert_array_equal(convert.unpermute_qk(llama_cpp_permute(b, heads), heads), b)


def test_gguf_names():
    assert convert.gguf_to_hf_name("token_embd.weight") == "model.embed_tokens.weight"
    assert convert.gguf_to_hf_name("output.weight") == "lm_head.weight"
    assert convert.gguf_to_hf_name("output_norm.weight") == "model.norm.weight"
    assert (
        convert.gguf_to_hf_name("blk.17.attn_q.weight") == "model.layers.17.self_attn.q_proj.weight"
    )
    assert (
        convert.gguf_to_hf_name("blk.0.attn_output.weight")
        == "model.layers.0.self_attn.o_proj.weight"
    )
    assert convert.gguf_to_hf_name("blk.3.ffn_norm.weight") == (
        "model.layers.3.post_attention_layernorm.weight"
    )
    assert convert.gguf_to_hf_name("blk.2.ffn_down.weight") == "model.layers.2.mlp.down_proj.weight"
    assert convert.gguf_to_hf_name("blk.2.ssm_conv1d.weight") is None
    assert convert.gguf_to_hf_name("rope_freqs.weight") is None


def test_hf_configs_read_both_rope_conventions():
    base = dict(HF_CASES["llama_gqa_untied"][1], model_type="llama")
    v5 = config_from_hf(
        {
            **base,
            "rope_theta": None,
            "rope_parameters": {"rope_type": "default", "rope_theta": 123.0},
        }
    )
    assert v5.rope_theta == 123.0 and v5.rope_type == "default"
    v4 = config_from_hf(
        {**base, "rope_theta": 500000.0, "rope_scaling": {"type": "linear", "factor": 2.0}}
    )
    assert (v4.rope_theta, v4.rope_type, v4.rope_factor) == (500000.0, "linear", 2.0)
    assert config_from_hf(transformers.LlamaConfig(**base, rope_theta=7.0)).rope_theta == 7.0
    assert config_from_hf(transformers.LlamaConfig(**base)) == config_from_hf(
        transformers.LlamaConfig(**base).to_dict()
    )
    with pytest.raises(ModelLoadError, match="unsupported LLaMA rope_type 'yarn'"):
        config_from_hf({**base, "rope_parameters": {"rope_type": "yarn", "factor": 2.0}})
    with pytest.raises(ModelLoadError, match="unsupported model_type 'bert'"):
        config_from_hf({"model_type": "bert"})
