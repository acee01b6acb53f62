"""Mesh and logical-axis sharding rules (mesh axes ``data``, ``fsdp``, ``tensor``).

One small table maps each parameter (by its path) to logical axes, and one dict maps logical axes
to mesh axes (MaxText ``logical_axis_rules`` / big_vision ``sharding.py``). Batches are split over
``("data", "fsdp")``; weights are split over ``fsdp`` on their model dimension and over ``tensor``
on heads / MLP / vocabulary. A dimension that is not divisible by its mesh axes stays replicated.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Parameter path (components joined by "/") -> logical axes of its trailing dims.
# Stacked (scanned) layers get a leading "layers" axis, which is never sharded.
PARAM_RULES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    (r"(^|/)embed/embedding$", ("vocab", "embed")),
    (r"(^|/)pos_embed/embedding$", (None, "embed")),
    (r"(q_proj|k_proj|v_proj|gate_proj|up_proj)/kernel$", ("embed", "mlp")),
    (r"(q_proj|k_proj|v_proj|gate_proj|up_proj)/bias$", ("mlp",)),
    (r"(o_proj|down_proj)/kernel$", ("mlp", "embed")),
    (r"(o_proj|down_proj)/bias$", (None,)),
    (r"(^|/)lm_head/kernel$", ("embed", "vocab")),
    (r"(^|/)lm_head/bias$", ("vocab",)),
    (r"norm/(scale|bias)$", (None,)),
)

LOGICAL_TO_MESH: Mapping[str | None, str | tuple[str, ...] | None] = {
    "vocab": "tensor",
    "embed": "fsdp",
    "mlp": "tensor",
    "layers": None,
    "batch": BATCH_AXES,
    None: None,
}


class ShardingError(ValueError):
    """A parameter matched no rule, or a mesh shape does not fit the devices."""


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds a (data, fsdp, tensor) mesh; ``-1`` for data takes the remaining devices."""
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if fsdp < 1 or tensor < 1 or n % (fsdp * tensor):
        raise ShardingError(f"mesh fsdp={fsdp} x tensor={tensor} does not divide {n} devices")
    if data == -1:
        data = n // (fsdp * tensor)
    if data * fsdp * tensor != n:
        raise ShardingError(f"mesh data={data} x fsdp={fsdp} x tensor={tensor} != {n} devices")
    grid = np.asarray(devices, dtype=object).reshape(data, fsdp, tensor)
    return Mesh(grid, MESH_AXES)


def path_str(path: Sequence) -> str:
    """Joins a pytree key path into ``"layers/attn/q_proj/kernel"``."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def logical_axes(path: str, ndim: int) -> tuple[str | None, ...]:
    """Logical axes of one parameter, from the rules table; raises if no rule matches."""
    for pattern, axes in PARAM_RULES:
        if re.search(pattern, path):
            lead = ndim - len(axes)
            if lead < 0 or (lead and not re.search(r"(^|/)layers/", path)):
                raise ShardingError(f"parameter {path} has rank {ndim}, rule expects {len(axes)}")
            return ("layers",) * lead + axes
    raise ShardingError(f"parameter {path} matched no sharding rule")


def _mesh_size(mesh: Mesh, axes) -> int:
    if axes is None:
        return 1
    axes = (axes,) if isinstance(axes, str) else axes
    return math.prod(mesh.shape[a] for a in axes)


def spec_for(shape: Sequence[int], axes: Sequence[str | None], mesh: Mesh) -> P:
    """Mesh PartitionSpec for a shape with logical axes; indivisible dims stay replicated."""
    out = []
    for dim, name in zip(shape, axes, strict=True):
        mesh_axes = LOGICAL_TO_MESH[name]
        size = _mesh_size(mesh, mesh_axes)
        out.append(mesh_axes if size > 1 and dim % size == 0 else None)
    return P(*out)


def param_specs(params, mesh: Mesh):
    """PartitionSpecs for a (possibly abstract) parameter pytree."""

    def one(path, leaf):
        axes = logical_axes(path_str(path), len(leaf.shape))
        return spec_for(leaf.shape, axes, mesh)

    return jax.tree_util.tree_map_with_path(one, params)


def param_shardings(params, mesh: Mesh):
    """NamedShardings for a (possibly abstract) parameter pytree."""
    return jax.tree.map(lambda s: NamedSharding(mesh, s), param_specs(params, mesh),
                        is_leaf=lambda x: isinstance(x, P))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Leading (batch) dim over ``data`` x ``fsdp``; the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def batch_divisor(mesh: Mesh) -> int:
    """Global batch sizes are padded to a multiple of this."""
    return _mesh_size(mesh, BATCH_AXES)


def put_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Places a host batch (the same global batch on every process) on the mesh.

    Each process hands over only the rows its devices hold
    (``jax.make_array_from_process_local_data``), so input never funnels through one host.
    """
    out = {}
    for k, v in batch.items():
        if isinstance(v, Mapping):  # a nested batch (a forgetting method's retain batch)
            out[k] = put_batch(v, mesh)
            continue
        sharding = batch_sharding(mesh, v.ndim)
        if jax.process_count() == 1:
            out[k] = jax.device_put(v, sharding)
        else:
            out[k] = jax.make_array_from_process_local_data(
                sharding, process_rows(v, sharding), v.shape)
    return out


def process_rows(v: np.ndarray, sharding: NamedSharding) -> np.ndarray:
    """The rows of a global batch that this process's devices hold, in global order.

    With a device order that interleaves processes (or a data axis spanning hosts) a
    process's rows need not be one contiguous block: ``make_array_from_process_local_data``
    then expects the blocks it addresses concatenated in increasing order.
    """
    idx = sharding.addressable_devices_indices_map(v.shape)
    blocks = sorted({(s[0].start or 0, v.shape[0] if s[0].stop is None else s[0].stop)
                     for s in idx.values()})
    return np.concatenate([v[lo:hi] for lo, hi in blocks], axis=0)


def to_host(x) -> np.ndarray:
    """A (possibly multi-process) array as one numpy array on every process.

    Arrays whose shards live on other processes (batch-sharded outputs, fsdp-sharded
    parameters) are gathered with ``process_allgather``; this is a collective, so every process
    must call it in the same order.
    """
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def put_global(tree, shardings):
    """Places host values that are identical on every process onto global shardings.

    One process: ``jax.device_put``. Several: each device takes its slice of the local copy
    (``jax.make_array_from_callback``), with no cross-process equality check (device_put would
    all-gather every parameter to compare them).
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)

    def one(x, sharding):
        host = np.asarray(jax.device_get(x))
        return jax.make_array_from_callback(host.shape, sharding, lambda i: host[i])

    return jax.tree.map(one, tree, shardings)


def pad_batch_size(batch_size: int, mesh: Mesh) -> int:
    """The global batch size rounded up to a multiple of the data-parallel size.

    Padding rows carry zero loss weight / are dropped from scores, so results do not change.
    """
    d = batch_divisor(mesh)
    return -(-batch_size // d) * d
