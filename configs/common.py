"""Shared config pieces: the `:arg` parser and the defaults every job shares.

Configs follow big_vision's pattern: ``get_config(arg)`` where ``arg`` is the text after ``:`` in
``--config=configs/forget.py:arc_easy`` or ``--config=configs/forget.py:task=boolq,runlocal=True``.
A bare word is the task; ``key=value`` pairs are typed by the default they override.
"""

from __future__ import annotations

import os
import pathlib

import ml_collections

REPO = pathlib.Path(__file__).resolve().parents[1]


def default_data_dir() -> str:
    """Local task data: $FORGET_JAX_DATA_DIR, else ../shared/data beside the repo, else "" (hub)."""
    env = os.environ.get("FORGET_JAX_DATA_DIR")
    if env:
        return env
    local = REPO.parent / "shared" / "data"
    return str(local) if local.is_dir() else ""


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """Parses ``"arc_easy"`` / ``"task=boolq,limit=50,runlocal=True"`` against typed defaults.

    A bare token (no ``=``) sets the first default's key (the task). Values are cast to the type of
    the default (bool accepts true/false/1/0). Unknown keys raise ``ValueError``.
    """
    out = ml_collections.ConfigDict(dict(defaults))
    if not arg:
        return out
    first = next(iter(defaults))
    for token in arg.split(","):
        token = token.strip()
        if not token:
            continue
        key, sep, value = token.partition("=")
        if not sep:
            key, value = first, token
        key = key.strip()
        if key not in defaults:
            raise ValueError(f"unknown config arg {key!r}; known: {sorted(defaults)}")
        default = defaults[key]
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"config arg {key}={value!r} is not a bool")
            out[key] = value.lower() in ("true", "1")
        elif isinstance(default, int):
            out[key] = int(value)
        elif isinstance(default, float):
            out[key] = float(value)
        else:
            out[key] = value
    return out


def model_and_data(config: ml_collections.ConfigDict) -> None:
    """Fields every job has: model, data, precision, mesh, distributed."""
    config.model = "smollm2-135m"
    config.data_dir = default_data_dir()
    config.seed = 0
    # "float32"; "bfloat16" (params and compute); "mixed_bfloat16" (float32 params and
    # activations, bfloat16 matmul operands accumulated in float32: ~1.5x faster scoring on CPUs
    # with AVX512-BF16, see README "Performance"); "float16" (params and compute in float16, SGD
    # updates rounded to float16 with no float32 master: the paper's model.half() + SGD)
    config.precision = "float32"
    config.eval_batch_size = 16
    config.max_seq_len = 2048  # tokens; longer examples are an error, not a silent truncation
    config.remat = False  # recompute each layer in the backward pass (7B-size memory)

    config.mesh = ml_collections.ConfigDict()
    config.mesh.data = -1  # -1: all devices not used by fsdp/tensor
    config.mesh.fsdp = 1
    config.mesh.tensor = 1

    config.distributed = ml_collections.ConfigDict()
    # "host:port"; "" = auto-detect (TPU pod / SLURM) or single process
    config.distributed.coordinator = ""
    config.distributed.num_processes = 1
    config.distributed.process_id = 0
    config.distributed.auto = False  # call jax.distributed.initialize() with no arguments
    config.dry_run = False  # print the mesh, shardings and per-device memory, then exit
    config.dry_run_seq_len = 512  # tokens per row of the dry run's train/score batches
    config.compilation_cache_dir = ""
