"""One process of the two-process CPU job in tests/test_distributed.py.

Run as ``python tests/_dist_worker.py PROCESS_ID NUM_PROCESSES PORT OUTDIR`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=2``: it joins the job through
:func:`forget_jax.distributed.init_distributed` (explicit coordinator, gloo CPU collectives),
trains a tiny LLaMA for a few steps on one global (data=2, fsdp=2) mesh with the real steps,
saves the state with :mod:`forget_jax.checkpoint` (every process takes part) and, on process 0,
writes the losses and the gathered final parameters to ``OUTDIR/result.npz``.

:func:`train_tiny` is also what the test runs in one process on 4 devices for the reference.
"""

from __future__ import annotations

import os
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY_LLAMA = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                  num_heads=4, num_kv_heads=2, head_dim=8, max_position_embeddings=128)
N_STEPS = 3
BATCH = 8


def toy_batches(n_steps: int = N_STEPS, batch: int = BATCH, seed: int = 0) -> list[dict]:
    """Deterministic host train batches (the same global batch on every process)."""
    from forget_jax import batching

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_steps):
        encs = []
        for _ in range(batch):
            ctx = rng.integers(1, 64, size=rng.integers(3, 9)).astype(np.int32)
            conts = tuple(rng.integers(1, 64, size=rng.integers(1, 5)).astype(np.int32)
                          for _ in range(2))
            encs.append(batching.Encoded(ctx, conts))
        out.append(batching.train_batch(encs, [int(t) for t in rng.integers(0, 2, batch)], batch))
    return out


def tiny_model():
    from flax import nnx

    from forget_jax.models import llama

    return llama.Llama(llama.Config(**TINY_LLAMA), rngs=nnx.Rngs(0))


def initial_params() -> dict[str, np.ndarray]:
    """The tiny model's parameters before training, keyed by path."""
    from forget_jax import steps as steps_lib

    return flat_params(steps_lib.split_model(tiny_model())[1])


def train_tiny(devices, lr: float = 0.1):
    """Trains the tiny model on a (data=2, fsdp=2) mesh of ``devices``.

    Returns:
        (steps, final TrainState, losses as a list of floats).
    """
    from forget_jax import sharding as shd
    from forget_jax import steps as steps_lib

    mesh = shd.make_mesh(data=2, fsdp=2, tensor=1, devices=devices)
    graphdef, params = steps_lib.split_model(tiny_model())
    params = shd.put_global(params, shd.param_shardings(params, mesh))
    st = steps_lib.make_steps(graphdef, params, mesh, lr=lr)
    state = st.init_state(params)
    losses = []
    for batch in toy_batches():
        state, m = st.train(state, shd.put_batch(batch, mesh))
        losses.append(float(m["loss"]))  # replicated: readable on every process
    return st, state, losses


def flat_params(tree) -> dict[str, np.ndarray]:
    """Host copy of a parameter tree keyed by path (gathers shards of other processes)."""
    import jax

    from forget_jax import sharding as shd

    return {shd.path_str(p): shd.to_host(x)
            for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_put_batch_interleaved() -> None:
    """put_batch on a mesh whose device order interleaves processes round-trips exactly.

    Devices ordered (p0d0, p1d0, p0d1, p1d1): each process holds rows 0-1 and 4-5 or 2-3 and
    6-7 of an 8-row batch, not one contiguous block.
    """
    import jax

    from forget_jax import sharding as shd

    p0 = [d for d in jax.devices() if d.process_index == 0]
    p1 = [d for d in jax.devices() if d.process_index == 1]
    mesh = shd.make_mesh(data=4, fsdp=1, tensor=1, devices=[p0[0], p1[0], p0[1], p1[1]])
    v = np.arange(8 * 3, dtype=np.int32).reshape(8, 3)
    arr = shd.put_batch({"x": v}, mesh)["x"]
    rows = {s.index[0].start for s in arr.addressable_shards}
    assert len(rows) == 2 and max(rows) - min(rows) > 2, f"rows not interleaved: {rows}"
    got = shd.to_host(arr)
    assert np.array_equal(got, v), (got, v)


def main(argv: list[str]) -> int:
    pid, n, port, out = int(argv[1]), int(argv[2]), argv[3], pathlib.Path(argv[4])
    sys.path.insert(0, str(REPO))
    import ml_collections

    from forget_jax import distributed

    config = ml_collections.ConfigDict({"distributed": dict(
        coordinator=f"localhost:{port}", num_processes=n, process_id=pid, auto=False)})
    first = distributed.init_distributed(config)
    again = distributed.init_distributed(config)  # idempotent: a no-op the second time
    assert first.mode == again.mode == "explicit"

    import jax

    from forget_jax import checkpoint as ckpt

    assert jax.process_count() == n and jax.process_index() == pid
    assert jax.local_device_count() == 2 and jax.device_count() == 2 * n
    check_put_batch_interleaved()
    _, state, losses = train_tiny(jax.devices())
    params = flat_params(state.params)  # a collective: every process calls it
    phase = ckpt.PhaseCheckpoints(out, "finetune")
    phase.save(N_STEPS, state, {"epoch": N_STEPS, "processes": n})
    phase.close()
    if pid == 0:
        np.savez(out / "result.npz", losses=np.asarray(losses), **params)
    print(f"process {pid}: losses {losses}", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.exit(main(sys.argv))
