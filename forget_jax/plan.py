"""The dry run: mesh, sharded state and per-device memory of a job, without any weights.

``--config.dry_run=True`` builds the model abstractly (``nnx.eval_shape``: shapes only, no
weights, no tokenizer), the mesh and the sharded training state exactly as a real run would
(:func:`forget_jax.steps.make_steps`, so it is the same program), AOT-compiles the train step at
``finetune.batch_size x dry_run_seq_len`` and the score step at ``eval_batch_size x
dry_run_seq_len`` (``jax.jit(...).lower(...).compile()``), prints the plan and exits::

  python main.py --config=configs/forget.py:task=rte,model=llama-2-7b --config.dry_run=True \\
      --config.precision=bfloat16 --config.mesh.fsdp=8 --config.mesh.data=1 --workdir=/tmp/x

It needs no real devices: :func:`prepare_devices` (called by main.py before JAX starts) gives
the CPU backend as many devices as the mesh asks for, and the plan runs on the real devices
when there are enough of them, else on those CPU stand-ins.

Per-device bytes come from XLA's buffer assignment (``compiled.memory_analysis()``) for the
backend it runs on; a CPU compile stands in for an accelerator of the same device count (the
parameter/gradient bytes are exact, activation temporaries are the CPU compiler's and may
differ by fusion choices on GPU/TPU).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding

from forget_jax import batching
from forget_jax import sharding as shd
from forget_jax import steps as steps_lib

log = logging.getLogger("forget_jax")

GiB = 1 << 30
# Per-device memory of common accelerators (GiB, nominal) for the "fits" lines.
ACCELERATORS: dict[str, float] = {
    "A100-40GB": 40.0, "A100-80GB": 80.0, "H100-80GB": 80.0, "H200-141GB": 141.0,
    "TPU v4 (32 GiB/chip)": 32.0, "TPU v5e (16 GiB/chip)": 16.0, "TPU v5p (95 GiB/chip)": 95.0,
}
# Share of device memory a job may plan to use (XLA_PYTHON_CLIENT_MEM_FRACTION=.95 on GPU,
# runtime reservations on TPU); the rest is headroom.
USABLE_FRACTION = 0.9


def model_config(name: str):
    """Config of a named model, or of a local HF directory's config.json (no weights read)."""
    from forget_jax import models

    path = pathlib.Path(name).expanduser()
    if (path / "config.json").is_file():
        return models.config_from_hf(json.loads((path / "config.json").read_text()))
    return models.model_config(name)


def abstract_params(config) -> tuple[nnx.GraphDef, Any]:
    """(graphdef, params as ShapeDtypeStructs) of ``config.model`` at ``config.precision``."""
    from forget_jax import models

    module = models.abstract_model(model_config(config.model),
                                   **models.precision_kwargs(config.precision))
    graphdef, state = nnx.split(module)
    return graphdef, nnx.to_pure_dict(state)


def _sds(shape, dtype, sharding) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)


def train_batch_spec(mesh, batch_size: int, seq_len: int, answer_len: int) -> dict:
    """Abstract (sharded) train batch: tokens/mask [B,T], tgt_pos/tgt_ids/tgt_w [B,S]."""
    B = shd.pad_batch_size(batch_size, mesh)
    bs = shd.batch_sharding(mesh, 2)
    i32 = jnp.int32
    return dict(tokens=_sds((B, seq_len), i32, bs), mask=_sds((B, seq_len), i32, bs),
                tgt_pos=_sds((B, answer_len), i32, bs), tgt_ids=_sds((B, answer_len), i32, bs),
                tgt_w=_sds((B, answer_len), jnp.float32, bs))


def score_batch_spec(mesh, batch_size: int, seq_len: int, answer_len: int) -> dict:
    """Abstract (sharded) scoring batch of ``[B, seq_len]`` tokens with one example slot per
    row (:func:`batching.score_batch`). Scoring packs several short examples into a row
    (:func:`batching.packed_score_batches`): the same ``[B,T]`` layer activations, a few more
    int32 ``feat_pos`` columns, and up to ``T`` answer tokens per row where this spec takes
    ``answer_len`` (the ``[B,S,V]`` head logits grow with it)."""
    B = shd.pad_batch_size(batch_size, mesh)
    bs = shd.batch_sharding(mesh, 2)
    row = lambda n: _sds((B, n), jnp.int32, bs)  # noqa: E731
    return dict(tokens=row(seq_len), positions=row(seq_len), seg=row(seq_len),
                tgt_pos=row(2 * answer_len), tgt_ids=row(2 * answer_len),
                tgt_choice=row(2 * answer_len), feat_pos=row(3))


def tree_bytes_per_device(tree, shardings) -> int:
    """Bytes one device holds of a tree of abstract arrays placed with ``shardings``."""
    total = 0
    for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(
            shardings, is_leaf=lambda v: isinstance(v, NamedSharding)), strict=True):
        total += math.prod(s.shard_shape(x.shape)) * jnp.dtype(x.dtype).itemsize
    return total


def sharding_summary(params, shardings) -> list[dict]:
    """One row per parameter: path, global shape, dtype, PartitionSpec, bytes per device."""
    rows = []
    flat_s = jax.tree.leaves(shardings, is_leaf=lambda v: isinstance(v, NamedSharding))
    flat_p = jax.tree_util.tree_flatten_with_path(params)[0]
    for (path, x), s in zip(flat_p, flat_s, strict=True):
        rows.append(dict(path=shd.path_str(path), shape=list(x.shape), dtype=str(x.dtype),
                         spec=str(s.spec), bytes_per_device=math.prod(s.shard_shape(x.shape))
                         * jnp.dtype(x.dtype).itemsize))
    return rows


def memory(compiled) -> dict[str, int]:
    """XLA's per-device buffer sizes; ``total = arguments + outputs - aliased + temporaries``."""
    m = compiled.memory_analysis()
    out = dict(argument=int(m.argument_size_in_bytes), output=int(m.output_size_in_bytes),
               alias=int(m.alias_size_in_bytes), temp=int(m.temp_size_in_bytes),
               code=int(m.generated_code_size_in_bytes))
    out["total"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


def fits(total_bytes: int) -> dict[str, bool]:
    """Which accelerators hold ``total_bytes`` per device within :data:`USABLE_FRACTION`."""
    return {name: total_bytes <= USABLE_FRACTION * gib * GiB
            for name, gib in ACCELERATORS.items()}


@dataclasses.dataclass
class Lowered:
    """The abstract job: params, steps and the lowered (not yet compiled) steps.

    ``train``/``train_in`` are None for jobs that do not train (configs/eval.py).
    """

    mesh: Any
    params: Any
    steps: steps_lib.Steps
    state: Any
    train_in: dict | None
    score_in: dict
    train: Any  # jax.stages.Lowered
    score: Any


def mesh_size(config) -> int:
    """Devices the dry run's mesh needs at least: data x fsdp x tensor (data -1 counts 1)."""
    m = config.mesh
    return max(m.data, 1) * m.fsdp * m.tensor


def prepare_devices(config) -> None:
    """Before JAX starts its backends: as many CPU devices as the mesh needs (an explicit
    ``XLA_FLAGS=--xla_force_host_platform_device_count`` is kept)."""
    n = mesh_size(config)
    if n > 1 and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        jax.config.update("jax_num_cpu_devices", n)


def plan_devices(config) -> list:
    """The real devices when they fit the mesh, else the CPU stand-ins of prepare_devices."""
    n, data = mesh_size(config), config.mesh.data
    for devices in (jax.devices(), jax.devices("cpu")):
        if len(devices) >= n and (data != -1 or len(devices) % n == 0):
            return devices[:n] if data != -1 else devices
    return jax.devices()  # make_mesh names the mismatch


def lower(config) -> Lowered:
    """Lowers the real train and score steps over abstract, sharded inputs (no weights)."""
    graphdef, params = abstract_params(config)
    m = config.mesh
    mesh = shd.make_mesh(m.data, m.fsdp, m.tensor, devices=plan_devices(config))
    ft = config.get("finetune")
    lr = dict(lr=ft.lr, grad_clip=ft.grad_clip) if ft is not None else {}
    steps = steps_lib.make_steps(graphdef, params, mesh, remat=config.get("remat", False), **lr)
    T = int(config.dry_run_seq_len)
    S = batching.bucket(max(T // 8, 1), batching.S_BUCKETS)  # answer tokens per row
    score_in = score_batch_spec(mesh, config.eval_batch_size, T, S)
    score = steps.score.lower(params, score_in)
    if ft is None:
        return Lowered(mesh, params, steps, None, None, score_in, None, score)
    state = steps.abstract_state(params)
    train_in = train_batch_spec(mesh, ft.batch_size, T, S)
    return Lowered(mesh, params, steps, state, train_in, score_in,
                   steps.train.lower(state, train_in), score)


def _timed_compile(lowered) -> tuple[Any, float]:
    t0 = time.perf_counter()
    return lowered.compile(), time.perf_counter() - t0


def build_plan(config) -> dict:
    """Compiles the train and score steps abstractly; returns the plan as a JSON-able dict."""
    t0 = time.perf_counter()
    low = lower(config)
    t_lower = time.perf_counter() - t0
    score_c, t_score = _timed_compile(low.score)
    params, p_sh = low.params, low.steps.param_shardings
    param_b = tree_bytes_per_device(params, p_sh)
    score_in = low.score_in
    p = dict(
        model=config.model, precision=config.precision,
        n_params=sum(math.prod(x.shape) for x in jax.tree.leaves(params)),
        devices=low.mesh.devices.size, processes=jax.process_count(),
        platform=low.mesh.devices.flat[0].platform, mesh=dict(low.mesh.shape),
        score_batch=list(score_in["tokens"].shape) + [score_in["tgt_pos"].shape[1]],
        bytes_per_device=dict(params=param_b, score=memory(score_c)),
        params_sharding=sharding_summary(params, p_sh),
        seconds=dict(lower=t_lower, compile_score=t_score))
    p["fits_score"] = fits(p["bytes_per_device"]["score"]["total"])
    if low.train is not None:
        train_c, p["seconds"]["compile_train"] = _timed_compile(low.train)
        train_m = memory(train_c)
        state_sh = low.steps.state_shardings(params)
        p["train_batch"] = list(low.train_in["tokens"].shape) + [low.train_in["tgt_pos"].shape[1]]
        p["bytes_per_device"].update(
            grads=param_b, opt_state=tree_bytes_per_device(low.state.opt_state,
                                                           state_sh.opt_state),
            # The gradient buffers are temporaries of the train step; the rest of its
            # temporaries are activations saved for the backward pass plus workspace.
            train_activations_est=max(train_m["temp"] - param_b, 0), train=train_m)
        p["fits_train"] = fits(train_m["total"])
    return p


def _gib(n: int) -> str:
    return f"{n / GiB:8.3f} GiB"


def format_plan(p: dict) -> str:
    """The plan as the text the dry run prints."""
    b = p["bytes_per_device"]
    steps = [s for s in ("train", "score") if s in b]
    lines = [
        f"dry run: {p['model']} ({p['n_params'] / 1e9:.3f}B params, {p['precision']}) on "
        f"{p['devices']} {p['platform']} devices / {p['processes']} process(es)",
        f"mesh: {p['mesh']}",
        "; ".join(f"{s} step batch [B,T,S] = {p[f'{s}_batch']}" for s in steps),
        "parameter shardings (PartitionSpec: count, bytes/device):",
    ]
    groups: dict[str, list] = collections.defaultdict(lambda: [0, 0])
    for r in p["params_sharding"]:
        groups[r["spec"]][0] += 1
        groups[r["spec"]][1] += r["bytes_per_device"]
    lines += [f"  {spec:40s} {n:3d} params {_gib(nb)}" for spec, (n, nb) in groups.items()]
    lines += [f"    {r['path']:36s} {str(r['shape']):22s} {r['dtype']:8s} {r['spec']}"
              for r in p["params_sharding"]]
    lines += ["per-device bytes:", f"  params                  {_gib(b['params'])}"]
    if "train" in b:
        lines += [f"  grads                   {_gib(b['grads'])}",
                  f"  optimizer state         {_gib(b['opt_state'])}",
                  f"  train activations (est) {_gib(b['train_activations_est'])}"
                  "   (= train temp - grads)"]
    for name in steps:
        m = b[name]
        lines.append(f"  {name} step: arguments {_gib(m['argument'])}, outputs "
                     f"{_gib(m['output'])}, aliased {_gib(m['alias'])}, temp {_gib(m['temp'])}"
                     f" -> total {_gib(m['total'])}")
    for name in steps:
        ok = [k for k, v in p[f"fits_{name}"].items() if v]
        lines.append(f"{name} fits ({USABLE_FRACTION:.0%} of device memory) on "
                     f"{p['devices']} devices of: {', '.join(ok) or 'none listed'}")
    lines.append("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in p["seconds"].items()))
    return "\n".join(lines)


def dry_run(config) -> dict:
    """Builds and prints the plan (process 0 prints); returns it. No weights are loaded."""
    if int(config.get("dry_run_seq_len", 0)) < 1:
        from forget_jax.run import ConfigError

        raise ConfigError("dry_run_seq_len must be >= 1")
    p = build_plan(config)
    if jax.process_index() == 0:
        print(format_plan(p), flush=True)
        print("plan_json " + json.dumps({k: v for k, v in p.items() if k != "params_sharding"}),
              flush=True)
    return p
