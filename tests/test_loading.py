"""load_model from every source on tiny models, the GGUF cache, and bad-input errors."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import gguf
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from test_convert import llama_cpp_permute
from test_models import HF_CASES, flax_twin, hf_forward, hf_state, tiny_hf, tokens_and_mask
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from forget_jax.models import (
    GPT2,
    GPTJ,
    NAMED_MODELS,
    Llama,
    ModelLoadError,
    build_model,
    config_from_hf,
    load_model,
    model_config,
    sources,
)
from forget_jax.models.convert import GGUF_LLAMA_NAMES

ATOL = 1e-4


def save_tokenizer(directory: pathlib.Path, vocab_size: int) -> None:
    vocab = {f"w{i}": i for i in range(vocab_size - 1)} | {"[UNK]": vocab_size - 1}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(directory)


def hf_dir(tmp_path: pathlib.Path, case: str) -> tuple[pathlib.Path, torch.nn.Module]:
    hf_model = tiny_hf(case)
    directory = tmp_path / case
    hf_model.save_pretrained(directory)
    save_tokenizer(directory, hf_model.config.vocab_size)
    return directory, hf_model


def params_of(model) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


@pytest.mark.parametrize("case", ["llama_gqa_untied", "gpt2", "gptj_partial_rotary"])
def test_load_local_hf_directory(tmp_path, case):
    directory, hf_model = hf_dir(tmp_path, case)
    assert list(directory.glob("*.safetensors"))
    lm = load_model(directory)
    assert isinstance(lm.model, {"llama": Llama, "gpt2": GPT2, "gptj": GPTJ}[lm.config.model_type])
    assert lm.config == config_from_hf(hf_model.config) and lm.source == str(directory)
    assert lm.tokenizer("w3 w5").input_ids == [3, 5]
    tokens_BT, mask_BT = tokens_and_mask()
    ref_logits, _ = hf_forward(hf_model, tokens_BT, mask_BT)
    real = mask_BT.astype(bool)
    np.testing.assert_allclose(
        np.asarray(lm.model(tokens_BT, mask=mask_BT))[real], ref_logits[real], atol=ATOL, rtol=0
    )


def test_load_bfloat16_and_torch_bin(tmp_path):
    directory, hf_model = hf_dir(tmp_path, "llama_gqa_untied")
    lm = load_model(directory, dtype="bfloat16")
    assert {x.dtype for x in params_of(lm.model)} == {jnp.dtype(jnp.bfloat16)}
    assert lm.model.encode(np.zeros((1, 3), np.int32))[0].dtype == jnp.bfloat16

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "config.json").write_text((directory / "config.json").read_text())
    torch.save(hf_model.state_dict(), bin_dir / "pytorch_model.bin")
    for f in directory.glob("tokenizer*"):
        (bin_dir / f.name).write_bytes(f.read_bytes())
    from_bin, from_safetensors = load_model(bin_dir).model, load_model(directory).model
    for a, b in zip(params_of(from_bin), params_of(from_safetensors), strict=True):
        np.testing.assert_array_equal(a, b)


GGUF_TOKENS = [chr(b) for b in range(33, 127)] + ["\u0120", "ab", "</s>"]  # 97 byte-level BPE


def write_tiny_gguf(path: pathlib.Path, hf_model, *, block_count: int | None = None) -> None:
    """What llama.cpp's converter writes for a LLaMA: GGUF names, permuted q/k, metadata."""
    c = hf_model.config
    assert len(GGUF_TOKENS) == c.vocab_size
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_block_count(block_count or c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(GGUF_TOKENS)
    w.add_token_types([1] * len(GGUF_TOKENS))
    w.add_token_merges(["a b"])
    w.add_eos_token_id(len(GGUF_TOKENS) - 1)
    to_gguf = {hf: g for g, hf in GGUF_LLAMA_NAMES.items()}
    for name, t in hf_state(hf_model).items():
        template = name
        layer = name.split(".")[2] if name.startswith("model.layers.") else None
        if layer is not None:
            template = name.replace(f"model.layers.{layer}.", "model.layers.{i}.")
        g = to_gguf[template].format(i=layer)
        if ".q_proj." in name:
            t = llama_cpp_permute(t, c.num_attention_heads)
        elif ".k_proj." in name:
            t = llama_cpp_permute(t, c.num_key_value_heads)
        w.add_tensor(g, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_load_gguf_converts_once_then_uses_cache(tmp_path, monkeypatch):
    hf_model = tiny_hf("llama_gqa_untied")
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path, hf_model)
    cache = tmp_path / "cache"
    monkeypatch.setenv("FORGET_JAX_CACHE", str(cache))

    cold = load_model(path)
    # GGUF stores eps as float32; everything else comes back exactly.
    assert cold.config.rms_norm_eps == pytest.approx(hf_model.config.rms_norm_eps, rel=1e-6)
    assert dataclasses.replace(cold.config, rms_norm_eps=hf_model.config.rms_norm_eps) == (
        config_from_hf(hf_model.config)
    )
    assert cold.source == str(path)
    tokens_BT, mask_BT = tokens_and_mask()
    ref_logits, _ = hf_forward(hf_model, tokens_BT, mask_BT)
    real = mask_BT.astype(bool)
    ours = np.asarray(cold.model(tokens_BT, mask=mask_BT))
    np.testing.assert_allclose(ours[real], ref_logits[real], atol=ATOL, rtol=0)  # q/k un-permuted

    (entry,) = [p for p in cache.iterdir()]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in entry.iterdir()
    }
    assert json.loads((entry / "config.json").read_text())["num_key_value_heads"] == 2

    def no_reconversion(*_):
        raise AssertionError("the GGUF was converted again")

    monkeypatch.setattr(sources, "read_gguf", no_reconversion)
    warm = load_model(path)
    np.testing.assert_array_equal(np.asarray(warm.model(tokens_BT, mask=mask_BT)), ours)
    assert warm.tokenizer("ab a").input_ids == cold.tokenizer("ab a").input_ids


def test_bad_gguf_fails_clearly_and_caches_nothing(tmp_path):
    hf_model = tiny_hf("llama_gqa_untied")
    path = tmp_path / "wrong.gguf"
    write_tiny_gguf(path, hf_model, block_count=4)  # metadata says 4 layers, file has 3
    cache = tmp_path / "cache"
    with pytest.raises(
        ModelLoadError,
        match=r"wrong\.gguf: weights do not match the llama config "
        r"\(4 layers.*missing: model\.layers\.3\.",
    ):
        load_model(path, cache_dir=cache)
    assert not cache.exists() or not [p for p in cache.iterdir() if not p.name.startswith(".")]

    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"definitely not gguf" * 10)
    with pytest.raises(ModelLoadError, match="garbage.gguf is not a readable GGUF file"):
        load_model(garbage, cache_dir=cache)


def test_mismatched_safetensors_fail_clearly(tmp_path):
    directory, _ = hf_dir(tmp_path, "llama_gqa_untied")
    config = json.loads((directory / "config.json").read_text())
    config["hidden_size"] = 32
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as err:
        load_model(directory)
    msg = str(err.value)
    assert msg.startswith(
        f"{directory}: weights do not match the llama config (3 layers, hidden 32"
    )
    assert "model.embed_tokens.weight has shape (97, 64), expected (97, 32)" in msg


@pytest.mark.parametrize(
    "source, message",
    [
        ("no-such-model", "unknown model 'no-such-model': not a named model (gemma-3-1b, "
                            "gemma3-270m, gpt-j-6b, gpt2, "),
        ("/no/such/dir", "no such file or directory: /no/such/dir"),
        ("./missing.gguf", "no such file or directory: ./missing.gguf"),
        (
            "someone/no-such-repo",
            "'someone/no-such-repo' is not a local path, and getting it from the "
            "Hugging Face hub failed (HF_HUB_OFFLINE is set)",
        ),
    ],
)
def test_bad_sources_fail_clearly(source, message):
    with pytest.raises(ModelLoadError) as err:
        load_model(source)
    assert message in str(err.value)


def test_bad_local_files_fail_clearly(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        ModelLoadError, match="is not a Hugging Face model directory: no config.json"
    ):
        load_model(tmp_path / "empty")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text(
        json.dumps(dict(HF_CASES["gpt2"][1], model_type="gpt2"))
    )
    with pytest.raises(ModelLoadError, match=r"has no weights \(\*\.safetensors or pytorch_model"):
        load_model(tmp_path / "noweights")
    (tmp_path / "weights.npz").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file but not a .gguf"):
        load_model(tmp_path / "weights.npz")
    with pytest.raises(ModelLoadError, match="unknown model name 'llama-3'"):
        model_config("llama-3")


def test_named_models_and_build_model():
    assert set(NAMED_MODELS) >= {"smollm2-135m", "llama-2-7b", "gpt-j-6b", "gpt2"}
    assert NAMED_MODELS["llama-2-7b"].hub_id == "meta-llama/Llama-2-7b-hf"
    assert NAMED_MODELS["gpt-j-6b"].hub_id == "EleutherAI/gpt-j-6b"
    cfg = model_config("llama-2-7b")
    assert (cfg.num_layers, cfg.hidden_size, cfg.vocab_size, cfg.rope_theta) == (
        32,
        4096,
        32000,
        1e4,
    )
    assert model_config("gpt-j-6b").rotary_dim == 64
    small = config_from_hf(tiny_hf("gptj_partial_rotary").config)
    model = build_model(small, dtype=jnp.bfloat16, param_dtype=jnp.float32)
    assert isinstance(model, GPTJ) and model.lm_head.kernel.shape == (64, 97)
    assert np.asarray(model(np.zeros((1, 4), np.int32))).dtype == np.float32
    # a tiny random model gives a flax twin equal to build_model's class
    assert type(flax_twin(tiny_hf("gpt2"))) is GPT2
