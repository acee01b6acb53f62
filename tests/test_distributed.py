"""Multi-process JAX on one machine: two OS processes x 2 CPU devices = one 4-device job.

* The real steps on a global (data=2, fsdp=2) mesh across two processes give the same losses and
  final parameters as one process with 4 devices (1e-5), and the Orbax checkpoint both processes
  wrote restores in a single process.
* The real CLI (``main.py`` with ``--config.distributed.*``) on two processes writes the same
  results.json and predictions as one process.
* How :func:`forget_jax.distributed.plan` reads configs and launcher environments.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import _dist_worker
import jax
import ml_collections
import numpy as np
import pytest
from _tiny_model import write_tiny_llama_dir

from forget_jax import checkpoint as ckpt
from forget_jax import distributed

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def child_env(n_devices: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               FORGET_JAX_XLA_CACHE="off")  # every run compiles: no state shared between tests
    return env


def run_processes(jobs: list[tuple[list[str], dict[str, str]]], logdir: pathlib.Path) -> None:
    """Starts all (command, env) jobs at once, waits for all; fails with the failures' logs."""
    procs, logs = [], []
    for i, (cmd, env) in enumerate(jobs):
        log = open(logdir / f"proc{i}.log", "w")  # noqa: SIM115 - closed below
        logs.append(log)
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log,
                                      stderr=subprocess.STDOUT))
    try:
        codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for log in logs:
            log.close()
    for i, code in enumerate(codes):
        if code != 0:
            tail = (logdir / f"proc{i}.log").read_text()[-4000:]
            pytest.fail(f"process {i} exited with {code}:\n{tail}")


def test_two_processes_train_like_one_and_checkpoint_restores(tmp_path):
    port = free_port()
    worker = str(REPO / "tests" / "_dist_worker.py")
    run_processes([([sys.executable, worker, str(i), "2", str(port), str(tmp_path)], child_env(2))
                   for i in range(2)], tmp_path)
    got = np.load(tmp_path / "result.npz")

    st, state, losses = _dist_worker.train_tiny(jax.devices()[:4])  # one process, 4 devices
    want = _dist_worker.flat_params(state.params)
    np.testing.assert_allclose(got["losses"], losses, atol=1e-5, rtol=0)
    assert len(losses) == _dist_worker.N_STEPS and np.all(np.isfinite(losses))
    assert set(want) == set(got.files) - {"losses"}
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, atol=1e-5, rtol=0, err_msg=k)
    init = _dist_worker.initial_params()
    moved = max(float(np.abs(want[k] - init[k]).max()) for k in want)
    assert moved > 1e-3, "training did not change the parameters"

    phase = ckpt.PhaseCheckpoints(tmp_path, "finetune")
    restored, meta = phase.restore(st.abstract_state(state.params))
    phase.close()
    assert meta == {"epoch": _dist_worker.N_STEPS, "processes": 2}
    assert int(restored.step) == _dist_worker.N_STEPS
    for k, v in _dist_worker.flat_params(restored.params).items():
        np.testing.assert_allclose(v, got[k], atol=1e-6, rtol=0, err_msg=k)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> pathlib.Path:
    return write_tiny_llama_dir(tmp_path_factory.mktemp("tiny_llama"))


def assert_same(a, b, where="results"):
    """Equal JSON values; floats within 1e-6."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-6, rel=0), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, sorted(a), sorted(b))
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def read_jsonl(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_on_two_processes_writes_the_same_results_as_one(tmp_path, tiny_model_dir,
                                                             shared_data):
    port = free_port()
    args = [sys.executable, "main.py", "--config=configs/forget.py:task=copa,runlocal=True",
            f"--config.model={tiny_model_dir}", f"--config.data_dir={shared_data}",
            "--config.n_train=12", "--config.limit=12", "--config.finetune.max_epochs=1",
            "--config.forget.max_epochs=1", "--config.finetune.lr=0.05",
            "--config.forget.lr=0.05", "--config.mesh.data=2", "--config.mesh.fsdp=2",
            "--config.activations.enabled=True", "--config.activations.layer=-2"]
    one, two = tmp_path / "one", tmp_path / "two"
    dist = [f"--config.distributed.coordinator=localhost:{port}",
            "--config.distributed.num_processes=2"]
    run_processes([(args + [f"--workdir={one}"], child_env(4))] + [
        (args + dist + [f"--config.distributed.process_id={i}", f"--workdir={two}"],
         child_env(2)) for i in range(2)], tmp_path)

    r1 = json.loads((one / "results.json").read_text())
    r2 = json.loads((two / "results.json").read_text())
    assert r1["complete"] is True and set(r1["accuracy"]) == {"pretrained", "finetuned",
                                                               "forgotten"}
    assert_same(r2, r1)
    for phase in ("pretrained", "finetuned", "forgotten"):
        for f in sorted((one / "predictions" / phase).glob("*.jsonl")):
            p1, p2 = read_jsonl(f), read_jsonl(two / "predictions" / phase / f.name)
            assert [r["id"] for r in p1] == [r["id"] for r in p2] and len(p1) == 12
            np.testing.assert_allclose([r["loglik"] for r in p2], [r["loglik"] for r in p1],
                                       atol=1e-5, rtol=0, err_msg=f"{phase}/{f.name}")
    pre = read_jsonl(one / "predictions" / "pretrained" / "copa.test.jsonl")
    post = read_jsonl(one / "predictions" / "forgotten" / "copa.test.jsonl")
    change = np.abs(np.subtract([r["loglik"] for r in pre], [r["loglik"] for r in post])).max()
    assert change > 1e-3, "fine-tuning and forgetting left the model unchanged"
    h1, h2 = read_jsonl(one / "history.jsonl"), read_jsonl(two / "history.jsonl")
    assert [(h["phase"], h["epoch"], h["step"]) for h in h1] == \
        [(h["phase"], h["epoch"], h["step"]) for h in h2]
    np.testing.assert_allclose([h["train_loss"] for h in h2], [h["train_loss"] for h in h1],
                               atol=1e-5, rtol=0)
    # Hidden states (features step, gathered across processes, saved by Orbax from both).
    a1 = ckpt.load_activations(one / "activations" / "forgotten")
    a2 = ckpt.load_activations(two / "activations" / "forgotten")
    assert jax.tree.structure(a1) == jax.tree.structure(a2)
    assert a1["copa.test"]["answer_last"].shape == (12, 2, 32)
    for x, y in zip(jax.tree.leaves(a1), jax.tree.leaves(a2), strict=True):
        np.testing.assert_allclose(y, x, atol=1e-5, rtol=0)
    # Process 0 alone writes TensorBoard: one event file, not one per process.
    assert len(list((two / "tensorboard").glob("events.out.tfevents.*"))) == 1
    # Complete: process 0 alone dropped the epoch checkpoints, the best fine-tune is kept.
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["finetune_best"]


def dist_config(**kw) -> ml_collections.ConfigDict:
    d = dict(coordinator="", num_processes=1, process_id=0, auto=False)
    d.update(kw)
    return ml_collections.ConfigDict({"distributed": d})


SLURM_STEP = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "4",
              "SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_STEP_NODELIST": "gpu[01-02]"}


def test_plan_explicit_auto_and_single():
    p = distributed.plan(dist_config(coordinator="h0:1234", num_processes=2, process_id=1), {})
    assert (p.mode, p.coordinator, p.num_processes, p.process_id) == ("explicit", "h0:1234", 2, 1)
    assert distributed.plan(dist_config(), {}).mode == "single"
    assert distributed.plan(dist_config(coordinator="h0:1", num_processes=1), {}).mode == "single"
    assert distributed.plan(dist_config(auto=True), {}).mode == "auto"
    # srun step with several tasks -> auto; the batch script itself (no step vars) -> single.
    assert distributed.plan(dist_config(), SLURM_STEP).mode == "auto"
    batch_script = {k: v for k, v in SLURM_STEP.items() if not k.startswith("SLURM_STEP")}
    assert distributed.plan(dist_config(), batch_script).mode == "single"
    assert distributed.plan(dist_config(), {**SLURM_STEP, "SLURM_STEP_NUM_TASKS": "1"}).mode \
        == "single"
    # Multi-host TPU slice vs a single TPU VM host.
    assert distributed.plan(dist_config(), {"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3"}).mode == "auto"
    assert distributed.plan(dist_config(), {"TPU_WORKER_HOSTNAMES": "localhost"}).mode == "single"
    # A config without a distributed section (the report job) still follows the launcher.
    assert distributed.plan(ml_collections.ConfigDict({"job": "report"}), SLURM_STEP).mode == "auto"
    assert distributed.plan(ml_collections.ConfigDict({"job": "report"}), {}).mode == "single"


def test_single_process_init_is_a_no_op_and_bad_settings_are_user_errors():
    assert distributed.init_distributed(dist_config(), {}).mode == "single"
    assert not jax.distributed.is_initialized() and jax.process_count() == 1
    for bad in (dist_config(coordinator="h0:1", num_processes=2, process_id=2),
                dist_config(coordinator="h0", num_processes=2),
                dist_config(num_processes=2)):
        with pytest.raises(distributed.DistributedConfigError):
            distributed.init_distributed(bad, {})
    from forget_jax import errors

    assert issubclass(distributed.DistributedConfigError, errors.user_errors())
