"""forget_jax.xla_cpu: the flags chosen per CPU, and that the oneDNN flags give the same numbers
(scoring logliks and a train step of a tiny model, in a child process with the flags set).

Where XLA does not rewrite dots to oneDNN (the 2-core AMD EPYC this was written on: no oneDNN
custom call in the compiled HLO with both flags set) the last test only shows the flags are
accepted and harmless; on an AMX CPU it compares the oneDNN path with XLA's own."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from forget_jax import xla_cpu

AMX = {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
AMD = {"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}


def test_choose_per_cpu():
    assert xla_cpu.choose(AMX) == ["--xla_cpu_use_onednn=true",
                                   "--xla_cpu_experimental_onednn_custom_call=true"]
    assert xla_cpu.choose(AMD) == []
    assert xla_cpu.choose({"amx_tile"}) == []  # AMX without bf16 tiles: no change


def test_flags_for_settings():
    assert xla_cpu.flags_for("off", AMX) == []
    assert xla_cpu.flags_for("", AMX) == []
    assert xla_cpu.flags_for("auto", AMD) == []
    assert xla_cpu.flags_for(" auto ", AMX) == list(xla_cpu.ONEDNN)
    assert xla_cpu.flags_for("--a=1 --b", AMD) == ["--a=1", "--b"]


def test_apply_keeps_existing_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_onednn=false --other=1")
    monkeypatch.setattr(xla_cpu, "cpu_features", lambda: AMX)
    added = xla_cpu.apply("auto")
    assert added == ["--xla_cpu_experimental_onednn_custom_call=true"]
    assert os.environ["XLA_FLAGS"] == ("--xla_cpu_use_onednn=false --other=1 "
                                       "--xla_cpu_experimental_onednn_custom_call=true")
    monkeypatch.delenv(xla_cpu.ENV, raising=False)
    assert xla_cpu.apply() == []  # default: off


CHILD = r"""
import json, sys
import numpy as np
sys.path.insert(0, "tests")
from test_steps import tiny_llama, toy_encoded
import jax
from forget_jax import batching, sharding, steps
out = {}
for name, dt in (("float32", None), ("mixed", "bfloat16")):
    graphdef, params = steps.split_model(tiny_llama(3, matmul_dtype=dt))
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    encs = toy_encoded(6, np.random.default_rng(1))
    st = steps.make_steps(graphdef, params, mesh, lr=0.1, grad_clip=1.0)
    sc = st.score(params, sharding.put_batch(batching.score_batch(encs, 6), mesh))
    state = st.init_state(params)
    b = batching.train_batch(encs[:3], [0, 1, 0], 3, pack_len=batching.PACK_LEN)
    state, m = st.train(state, sharding.put_batch(b, mesh))
    state, m2 = st.train(state, sharding.put_batch(b, mesh))
    out[name] = dict(ll=np.asarray(sc["loglik_sum"])[:6].tolist(), loss=float(m["loss"]),
                     loss2=float(m2["loss"]), gn=float(m["grad_norm"]))
print(json.dumps(out))
"""


def _child(xla_flags: str) -> dict:
    env = dict(os.environ, XLA_FLAGS=xla_flags, JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env,
                       timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_onednn_flags_give_the_same_numbers():
    base = _child("")
    onednn = _child(" ".join(xla_cpu.ONEDNN))
    for name, tol in (("float32", 1e-5), ("mixed", 1e-2)):
        a, b = base[name], onednn[name]
        np.testing.assert_allclose(b["ll"], a["ll"], atol=tol * 10, rtol=tol)
        for k in ("loss", "loss2", "gn"):
            assert b[k] == pytest.approx(a[k], rel=tol, abs=tol), (name, k)
    # the step trained: the second loss differs from the first (the check is not vacuous)
    assert base["float32"]["loss2"] != base["float32"]["loss"]
