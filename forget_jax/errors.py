"""The errors that mean "bad input" (exit 2 with one line), gathered for main.py."""

from __future__ import annotations


def user_errors() -> tuple[type[BaseException], ...]:
    from forget_jax.analysis.rundir import RunDirError
    from forget_jax.batching import SequenceTooLong
    from forget_jax.distributed import DistributedConfigError
    from forget_jax.models import ModelLoadError
    from forget_jax.phases import NonFiniteLoss
    from forget_jax.run import ConfigError
    from forget_jax.sharding import ShardingError
    from forget_jax.sweep import SweepError
    from forget_jax.tasks import TaskError

    return (ConfigError, TaskError, ModelLoadError, SequenceTooLong, ShardingError,
            NonFiniteLoss, FileNotFoundError, DistributedConfigError, SweepError, RunDirError)
