"""The dry run: same program as a real run, and the full Llama-2-7B plan compiles on 8 devices."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np

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
