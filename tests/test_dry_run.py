"""The dry run: same program as a real run, and the full Llama-2-7B plan compiles on 8 devices."""

import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from forget_jax import batching, models, plan
from forget_jax import sharding as shd
from forget_jax import steps as steps_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # configs/ is a directory of the repo, not an installed package
from configs import eval as eval_config  # noqa: E402
from configs import forget  # noqa: E402

TINY_HF = {"model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "tie_word_embeddings": False}


def test_dry_run_lowers_the_same_program_as_a_real_run(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY_HF))  # no weights, no tokenizer
    config = forget.get_config("task=rte")
    config.model, config.dry_run_seq_len = str(tmp_path), 32
    config.mesh.data, config.mesh.fsdp = 2, 4
    low = plan.lower(config)
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(low.state))

    # The real path: random weights placed on the mesh, a real state, real host batches.
    graphdef, params = steps_lib.split_model(models.build_model(plan.model_config(str(tmp_path))))
    mesh = shd.make_mesh(2, 4, 1)
    params = shd.put_global(params, shd.param_shardings(params, mesh))
    st = steps_lib.make_steps(graphdef, params, mesh, lr=config.finetune.lr)
    rng = np.random.default_rng(0)
    encs = [batching.Encoded(rng.integers(1, 60, 20).astype(np.int32),
                             (np.array([5, 6, 7], np.int32), np.array([8, 9, 3], np.int32)))
            for _ in range(3)]
    train = batching.train_batch(encs + [None] * 5, [0, 1, 0] + [0] * 5, 8)
    score = batching.score_batch(encs + [None] * 13, 16)
    real_train = st.train.lower(st.init_state(params), shd.put_batch(train, mesh))
    real_score = st.score.lower(params, shd.put_batch(score, mesh))
    assert real_train.as_text() == low.train.as_text()
    assert real_score.as_text() == low.score.as_text()


def test_eval_job_dry_run_plans_scoring_only(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY_HF))
    config = eval_config.get_config("task=rte")
    config.model, config.dry_run_seq_len, config.mesh.tensor = str(tmp_path), 32, 2
    p = plan.build_plan(config)
    assert p["mesh"] == {"data": 4, "fsdp": 1, "tensor": 2} and p["score_batch"] == [16, 32, 8]
    assert set(p["bytes_per_device"]) == {"params", "score"} and "fits_train" not in p
    # float32, vocab 64 x 32 embedding and head split over tensor=2, norms replicated.
    D, F, L, V = 32, 64, 2, 64
    sharded = 2 * V * D + L * (D * 32 + 2 * D * 16 + 32 * D + 3 * D * F)
    assert p["bytes_per_device"]["params"] == 4 * (sharded // 2 + 2 * L * D + D)
    assert "score step: arguments" in plan.format_plan(p)


def test_llama2_7b_dry_run_compiles_on_8_devices(tmp_path):
    """The README's command as written: no XLA_FLAGS, one real CPU device."""
    env = dict(os.environ, PYTHONPATH=str(REPO), FORGET_JAX_XLA_CACHE="off")
    env.pop("XLA_FLAGS", None)
    cmd = [sys.executable, "main.py", "--config=configs/forget.py:task=rte,model=llama-2-7b",
           "--config.dry_run=True", "--config.precision=bfloat16", "--config.mesh.fsdp=8",
           "--config.mesh.data=1", f"--workdir={tmp_path / 'x'}"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mesh: {'data': 1, 'fsdp': 8, 'tensor': 1}" in out.stdout
    p = json.loads(next(line for line in out.stdout.splitlines()
                        if line.startswith("plan_json "))[len("plan_json "):])
    assert p["n_params"] == 6_738_415_616 and p["devices"] == 8 and p["precision"] == "bfloat16"
    assert p["train_batch"] == [8, 512, 64]  # batch 3 padded to one row per device
    # bf16 bytes per device, computed independently: every matrix split 8 ways over fsdp,
    # the RMSNorm scales (2 per layer + final) replicated.
    V, D, F, L = 32000, 4096, 11008, 32
    sharded = 2 * V * D + L * (4 * D * D + 3 * D * F)
    want = 2 * (sharded // 8 + 2 * L * D + D)
    b = p["bytes_per_device"]
    assert b["params"] == b["grads"] == want and b["opt_state"] == 0  # SGD keeps no state
    train, score = b["train"], b["score"]
    assert train["alias"] >= want  # the donated state is updated in place
    assert train["temp"] > b["grads"] and score["temp"] > 0
    assert train["total"] == train["argument"] + train["output"] - train["alias"] + train["temp"]
    assert not (tmp_path / "x" / "results.json").exists()  # a dry run trains nothing


def _matrices_and_vectors(arch: dict) -> tuple[int, int, int]:
    """(weights split over fsdp x tensor, biases split over tensor, replicated norm scales) of a
    decoder, counted from its published architecture (not from our model)."""
    V, D, F, L = arch["V"], arch["D"], arch["F"], arch["L"]
    q, kv = arch["heads"] * arch["head_dim"], arch["kv_heads"] * arch["head_dim"]
    per_layer = D * q + 2 * D * kv + q * D + 3 * D * F
    matrices = (1 if arch["tied"] else 2) * V * D + L * per_layer
    biases = L * (q + 2 * kv) if arch["qkv_bias"] else 0
    norms_per_layer = (4 if arch["sandwich"] else 2) * D + (2 * arch["head_dim"]
                                                            if arch["qk_norm"] else 0)
    return matrices, biases, L * norms_per_layer + D


# The model cards' architectures (config.json of Qwen/Qwen2.5-7B, mistralai/Mistral-7B-v0.1,
# google/gemma-3-1b-pt) and published parameter counts.
PUBLISHED = {
    "qwen2.5-7b": (7_615_616_512, dict(V=152064, D=3584, F=18944, L=28, heads=28, kv_heads=4,
                                       head_dim=128, tied=False, qkv_bias=True, sandwich=False,
                                       qk_norm=False)),
    "mistral-7b-v0.1": (7_241_732_096, dict(V=32000, D=4096, F=14336, L=32, heads=32,
                                            kv_heads=8, head_dim=128, tied=False,
                                            qkv_bias=False, sandwich=False, qk_norm=False)),
    "gemma-3-1b": (999_885_952, dict(V=262144, D=1152, F=6912, L=26, heads=4, kv_heads=1,
                                     head_dim=256, tied=True, qkv_bias=False, sandwich=True,
                                     qk_norm=True)),
}


def check_plan(p: dict, name: str, itemsize: int, fsdp: int, tensor: int, seq_len: int):
    """The plan's numbers against the published architecture and against each other."""
    n_params, arch = PUBLISHED[name]
    matrices, biases, norms = _matrices_and_vectors(arch)
    assert p["n_params"] == n_params == matrices + biases + norms
    assert p["devices"] == p["mesh"]["data"] * fsdp * tensor
    assert (p["mesh"]["fsdp"], p["mesh"]["tensor"]) == (fsdp, tensor)
    b = p["bytes_per_device"]
    # bytes = params x dtype size, split: matrices over fsdp x tensor, q/k/v biases over
    # tensor, norm scales replicated.
    want = itemsize * (matrices // (fsdp * tensor) + biases // tensor + norms)
    assert b["params"] == b["grads"] == want
    rows = p.get("params_sharding")  # not in main.py's plan_json line
    if rows is not None:
        assert sum(math.prod(r["shape"]) for r in rows) == n_params
        assert {r["dtype"] for r in rows} == {"bfloat16" if itemsize == 2 else "float32"}
        assert sum(r["bytes_per_device"] for r in rows) == want
    assert b["opt_state"] == 0  # SGD keeps no state
    B = max(p["mesh"]["data"] * fsdp, 3)  # finetune.batch_size 3, one row per batch shard
    assert p["train_batch"] == [B, seq_len, seq_len // 8]
    for step in ("train", "score"):
        m = b[step]
        assert m["total"] == m["argument"] + m["output"] - m["alias"] + m["temp"]
        assert p[f"fits_{step}"] == {k: m["total"] <= plan.USABLE_FRACTION * g * plan.GiB
                                     for k, g in plan.ACCELERATORS.items()}
    assert b["train"]["alias"] >= want and b["train"]["argument"] >= want  # donated in place
    assert b["train_activations_est"] == max(b["train"]["temp"] - want, 0)


@pytest.mark.parametrize("name, precision, fsdp, tensor", [
    ("qwen2.5-7b", "bfloat16", 8, 1),
    ("mistral-7b-v0.1", "bfloat16", 4, 2),
])
def test_new_family_7b_plans(name, precision, fsdp, tensor):
    config = forget.get_config(f"task=rte,model={name}")
    config.dry_run_seq_len, config.precision = 64, precision
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, fsdp, tensor
    p = plan.build_plan(config)
    check_plan(p, name, 2, fsdp, tensor, 64)
    assert p["model"] == name and p["precision"] == precision


def test_gemma3_1b_plans_on_more_devices_than_the_host_has(tmp_path):
    """main.py with a 16-device mesh (data 2 x fsdp 4 x tensor 2) on a host of one CPU device,
    float32: planned on CPU stand-ins, not refused."""
    env = dict(os.environ, PYTHONPATH=str(REPO), FORGET_JAX_XLA_CACHE="off")
    env.pop("XLA_FLAGS", None)
    cmd = [sys.executable, "main.py", "--config=configs/forget.py:task=rte,model=gemma-3-1b",
           "--config.dry_run=True", "--config.dry_run_seq_len=64", "--config.precision=float32",
           "--config.mesh.data=2", "--config.mesh.fsdp=4", "--config.mesh.tensor=2",
           f"--workdir={tmp_path / 'x'}"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    p = json.loads(next(line for line in out.stdout.splitlines()
                        if line.startswith("plan_json "))[len("plan_json "):])
    assert p["devices"] == 16 and p["platform"] == "cpu" and p["precision"] == "float32"
    assert "mesh: {'data': 2, 'fsdp': 4, 'tensor': 2}" in out.stdout
    check_plan(p, "gemma-3-1b", 4, 4, 2, 64)
    assert not (tmp_path / "x" / "results.json").exists()
