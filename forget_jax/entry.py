"""Dispatches a loaded config to its job: eval, forget, sweep, report (or a dry run)."""

from __future__ import annotations

import ml_collections


def dispatch(config: ml_collections.ConfigDict, workdir: str):
    job = config.get("job", "forget")
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
