"""Kill at random (issue 17): a run SIGKILLed at seeded random moments across all its phases,
inside checkpoint saves included, then rerun, ends byte-identical to an uninterrupted run.

The job is a tiny random LLaMA (tests/_tiny_model.py) on copa with every phase and every kind
of save: pretrained scoring, fine-tune (best + latest checkpoints), forget, relearn,
activations, and the end-of-run checkpoint cleanup; 6 examples per role, so one run is a few
seconds of compute beside ~5 s of process start. (The README's runlocal job on SmolLM2-135M
takes ~3 min a run on 2 cores: 25 runs of it would be over an hour.) tests/_driver.py numbers
the run's disk events (each Orbax commit, each atomic file write, the cleanup) and kills the
process at a chosen one: inside the save (before its commit) or a seeded random delay after
it, which lands in whatever compute follows.
"""

import concurrent.futures
import json
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

from forget_jax import checkpoint as ckpt
from tests._tiny_model import write_tiny_llama_dir

pytestmark = pytest.mark.slow
REPO = pathlib.Path(__file__).resolve().parents[1]
N_INSIDE, N_AFTER = 4, 8  # kills inside a save, kills a random delay after an event


def _args(tiny, data):
    return ["--config=configs/forget.py:task=copa", f"--config.model={tiny}",
            f"--config.data_dir={data}", "--config.n_train=6", "--config.limit=6",
            "--config.finetune.max_epochs=2", "--config.forget.max_epochs=2",
            "--config.forget.stop_test_acc=0.0", "--config.relearn.enabled=True",
            "--config.relearn.max_epochs=1", "--config.activations.enabled=True",
            "--config.eval_batch_size=8"]


def _drive(args, workdir, **env_extra):
    env = dict(os.environ, **env_extra)
    env.pop("XLA_FLAGS", None)  # one CPU device, as a user's run
    return subprocess.run([sys.executable, "tests/_driver.py", *args, f"--workdir={workdir}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _final(wd: pathlib.Path) -> dict:
    """Everything a complete run leaves that must not depend on having been killed: bytes of
    results.json and predictions/*/*.jsonl, the arrays of the npz files and activations,
    history without wall times, and which checkpoints remain."""
    out = {"results.json": (wd / "results.json").read_bytes()}
    for f in sorted(wd.glob("predictions/*/*.jsonl")):
        out[str(f.relative_to(wd))] = f.read_bytes()
    for f in sorted(wd.glob("predictions/epochs/*.npz")):
        with np.load(f) as z:
            out[str(f.relative_to(wd))] = {k: z[k].tolist() for k in z.files}
    for d in sorted((wd / "activations").iterdir()):
        tree = ckpt.load_activations(d)
        out[f"activations/{d.name}"] = json.dumps(
            tree, sort_keys=True, default=lambda a: np.asarray(a).tolist())
    out["history"] = [{k: v for k, v in json.loads(x).items()
                       if k not in ("seconds", "examples_per_s")}
                      for x in (wd / "history.jsonl").open()]
    out["checkpoints"] = sorted(str(p.relative_to(wd)) for p in wd.glob("checkpoints/*/*"))
    return out


def kill_points(events: list[tuple[int, str, str]], seed: int = 17) -> list[tuple[int, dict]]:
    """Seeded, spread over the whole run: N_AFTER events, one per equal slice of the event
    list, each with a delay in [0, 0.3) s; N_INSIDE saves, one per slice of the saves."""
    rng = np.random.default_rng(seed)
    saves = [n for n, kind, _ in events if kind == "save"]
    points = []
    for chunk in np.array_split(np.arange(1, len(events) + 1), N_AFTER):
        points.append((int(rng.choice(chunk)), {"FJ_KILL_DELAY": f"{rng.uniform(0, 0.3):.3f}"}))
    for chunk in np.array_split(np.array(saves), N_INSIDE):
        points.append((int(rng.choice(chunk)), {"FJ_KILL_INSIDE": "1"}))
    return points


def test_sigkill_at_random_moments_then_rerun_is_byte_identical(tmp_path, shared_data):
    tiny = write_tiny_llama_dir(tmp_path / "tiny")
    args = _args(tiny, shared_data)
    ref, log = tmp_path / "ref", tmp_path / "events.tsv"
    r = _drive(args, ref, FJ_EVENTS=str(log))
    assert r.returncode == 0, r.stderr[-3000:]
    events = [(int(n), kind, path) for n, kind, path in
              (ln.split("\t") for ln in log.read_text().splitlines())]
    paths = [p for _, _, p in events]
    for phase in ("pretrained", "finetuned", "forgotten", "relearned"):
        assert f"predictions/{phase}/copa.test.jsonl" in paths
    for save in ("checkpoints/finetune_best/1", "checkpoints/finetune/2",
                 "checkpoints/forget/2", "checkpoints/relearn/1", "activations/forgotten"):
        assert save in paths
    assert paths[-1] == "cleanup"
    want = _final(ref)
    assert want["checkpoints"] == ["checkpoints/finetune_best/1"]  # cleaned on completion
    points = kill_points(events)
    assert len({(n, *env) for n, env in points}) == len(points) == N_INSIDE + N_AFTER

    def attempt(i, point):
        n, env = point
        wd = tmp_path / f"kill{i}"
        k = _drive(args, wd, FJ_KILL_AT=str(n), **env)
        again = _drive(args, wd)
        return n, env, k, again, wd

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda ip: attempt(*ip), enumerate(points)))
    killed = []
    for n, env, k, again, wd in done:
        where = f"event {n} {events[n - 1][1:]} {env}"
        assert k.returncode in (-signal.SIGKILL, 0), (where, k.stderr[-3000:])
        if k.returncode == -signal.SIGKILL:
            killed.append(where)
        assert again.returncode == 0, (where, again.stderr[-3000:])
        assert "Traceback" not in again.stderr, where
        assert _final(wd) == want, where
    # a delay can outlast the run's last event; every kill inside a save is a kill
    assert len(killed) >= 10 and sum("INSIDE" in w for w in killed) == N_INSIDE, killed
