"""Dispatches a loaded config to its job: eval, forget, sweep, report (or a dry run)."""

from __future__ import annotations

import os
import pathlib
import tempfile

import ml_collections


def compilation_cache(config: ml_collections.ConfigDict) -> None:
    """Persistent XLA compilation cache: a second run (or sweep cell) starts without recompiling.

    ``config.compilation_cache_dir``, else $FORGET_JAX_XLA_CACHE, else ~/.cache/forget_jax/xla;
    "off" disables it.
    """
    import jax

    path = config.get("compilation_cache_dir", "") or os.environ.get(
        "FORGET_JAX_XLA_CACHE", os.path.expanduser("~/.cache/forget_jax/xla"))
    if path == "off":
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def check_workdir(workdir: str, create: bool = True) -> None:
    """ConfigError unless ``workdir`` is (or, with ``create``, can be made) a directory this
    process can write in: a file, or a read-only place, fails here, before any compute."""
    from forget_jax.run import ConfigError

    path = pathlib.Path(workdir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--workdir {workdir} is a file, not a directory")
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        if path.is_dir():  # permissions alone do not tell (root; read-only file systems)
            tempfile.TemporaryFile(dir=path).close()
    except OSError as e:
        raise ConfigError(f"cannot write in --workdir {workdir}: {e.strerror or e}") from None


def dispatch(config: ml_collections.ConfigDict, workdir: str):
    job = config.get("job", "forget")
    compilation_cache(config)
    if config.get("dry_run", False):
        from forget_jax import plan

        return plan.dry_run(config)
    check_workdir(workdir, create=job != "report")
    if job in ("forget", "eval"):
        from forget_jax import run

        return run.run(config, workdir)
    if job == "sweep":
        from forget_jax import sweep

        return sweep.main(config, workdir)
    if job == "report":
        from forget_jax import report

        return report.main(config, workdir)
    from forget_jax.run import ConfigError

    raise ConfigError(f"unknown job {job!r}")
