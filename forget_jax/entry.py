"""Dispatches a loaded config to its job: eval, forget, sweep, report (or a dry run)."""

from __future__ import annotations

import os

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


def dispatch(config: ml_collections.ConfigDict, workdir: str):
    job = config.get("job", "forget")
    compilation_cache(config)
    if config.get("dry_run", False):
        from forget_jax import plan

        return plan.dry_run(config)
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
