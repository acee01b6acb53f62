"""The real Gemma-3-270M base (Q4_K_M GGUF from the ``gemma`` extra's wheels) vs transformers.

Both sides read the same GGUF: transformers through its GGUF integration (torch), we through
our numpy reader + key map, so agreement proves the dequantization, Gemma's norm offset, the
key map, both attention kinds (sliding window 512 and global layers, two rope bases) and
the model code on a real 18-layer checkpoint. Needs ``pip install -e ".[gemma]"`` (CI
installs it; without it these tests fail with the install command, they are not skipped).
"""

from __future__ import annotations

import gguf
import jax
import numpy as np
import pytest
import torch

from forget_jax.models import config_from_hf, load_model, model_config
from forget_jax.models.registry import NAMED_MODELS, _assembled_gguf
from forget_jax.models.sources import gguf_hf_config
from tests._real_model import our_mean_logliks, torch_mean_logliks, torch_reference
from tests.test_real_smollm2 import SENTENCES

pytestmark = pytest.mark.slow

# Longer than the 512-token sliding window, so the local layers really cut context off.
LONG = " ".join(f"Item {i} is a {['red', 'green', 'blue'][i % 3]} box." for i in range(70))


@pytest.fixture(scope="module")
def gguf_path():
    return _assembled_gguf(*NAMED_MODELS["gemma3-270m"].assembled_gguf)


@pytest.fixture(scope="module")
def ours(gguf_path):
    """Converted once into the default cache (``$FORGET_JAX_CACHE``), like a real run."""
    return load_model("gemma3-270m", dtype="float32")


@pytest.fixture(scope="module")
def reference(gguf_path):
    return torch_reference(gguf_path)


def test_gguf_metadata_matches_embedded_config(gguf_path):
    config = config_from_hf(gguf_hf_config(gguf.GGUFReader(str(gguf_path))))
    assert config == model_config("gemma3-270m")
    assert (config.num_layers, config.hidden_size, config.num_heads, config.num_kv_heads,
            config.head_dim, config.vocab_size, config.sliding_window) == (
        18, 640, 4, 1, 256, 262144, 512)
    assert config.sliding_layers.count(False) == 3  # layers 5, 11, 17 are global


@pytest.mark.parametrize("texts", [SENTENCES, [LONG]], ids=["padded", "beyond_window"])
def test_logits_match_transformers(ours, reference, texts):
    ref_model, ref_tokenizer = reference
    kw = dict(padding=True, padding_side="right", return_tensors="np")  # Gemma pads left
    batch, ref_batch = ours.tokenizer(texts, **kw), ref_tokenizer(texts, **kw)
    np.testing.assert_array_equal(batch["input_ids"], ref_batch["input_ids"])
    mask_BT = batch["attention_mask"]
    assert (batch["input_ids"][:, 0] == 2).all()  # BOS first
    assert (mask_BT == 0).any() if len(texts) > 1 else mask_BT.shape[1] > 512  # > the window
    logits = np.asarray(ours.model(batch["input_ids"], mask=mask_BT))
    with torch.no_grad():
        ref = ref_model(input_ids=torch.tensor(batch["input_ids"]),
                        attention_mask=torch.tensor(mask_BT)).logits.numpy()
    real = mask_BT.astype(bool)
    diff = np.abs(logits[real] - ref[real]).max()
    print(f"\nmax |logit diff| over {real.sum()} real positions: {diff:.2e}")
    assert diff < 1e-3


def test_paris(ours, reference):
    ids = ours.tokenizer("The capital of France is", return_tensors="np")["input_ids"]
    assert ids[0, 0] == ours.tokenizer.bos_token_id == 2
    paris, london = (ours.tokenizer(w, add_special_tokens=False)["input_ids"]
                     for w in (" Paris", " London"))
    assert len(paris) == 1 and len(london) == 1
    logp = np.asarray(jax.nn.log_softmax(ours.model(ids)[0, -1]))
    with torch.no_grad():
        ref_logp = torch.log_softmax(reference[0](torch.tensor(ids)).logits[0, -1], -1).numpy()
    assert int(ref_logp.argmax()) == int(logp.argmax())  # greedy next token agrees
    assert logp[paris[0]] == pytest.approx(ref_logp[paris[0]], abs=1e-3)
    assert logp[paris[0]] == pytest.approx(-2.48, abs=0.02)
    assert logp[london[0]] == pytest.approx(-6.70, abs=0.02)


def test_scoring_matches_pytorch_lm_eval_rule(ours, reference, shared_data):
    """Mean per-token log-likelihoods of 20 real ARC-Easy (prompt, choice) pairs, BOS first:
    our batched, packed, jitted scoring path vs PyTorch transformers."""
    from forget_jax.tasks import load_task

    exs = load_task("arc_easy", data_dir=shared_data, limit=10).test
    mean_ll, counts = our_mean_logliks(ours, exs)
    want, want_counts = torch_mean_logliks(*reference, exs)
    np.testing.assert_array_equal(counts, want_counts)
    assert len(exs) * 2 == 20
    np.testing.assert_allclose(mean_ll, want, atol=2e-3, rtol=0)
