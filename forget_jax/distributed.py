"""Multi-host initialisation: one idempotent :func:`init_distributed` for every launcher.

JAX runs one process per host (TPU pods) or per accelerator (SLURM GPU jobs); all processes
run the same program on one global mesh. :func:`init_distributed` picks how to connect them:

1. ``config.distributed.coordinator`` set and ``num_processes > 1``: explicit
   ``jax.distributed.initialize(coordinator, num_processes, process_id)`` (local multi-process
   tests, clusters without a scheduler JAX knows).
2. ``config.distributed.auto`` or a detected cluster (a SLURM step with more than one task, a
   multi-host Cloud TPU slice): ``jax.distributed.initialize()`` with no arguments, which reads
   the scheduler's environment (MaxText ``maybe_initialize_jax_distributed_system``).
3. Otherwise one process: nothing to do.

Multi-process CPU runs need cross-process collectives; we select gloo before initialising
(harmless on GPU/TPU, where it only affects the unused CPU client). It must run before anything
touches a JAX backend, which is why ``main.py`` calls it first.

After initialisation ``jax.process_index() == 0`` is the only process that writes run files
(:func:`forget_jax.rundir.is_main`); every process takes part in Orbax saves and loads only its
rows of each global batch (:func:`forget_jax.sharding.put_batch`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax

log = logging.getLogger("forget_jax")

MODES = ("single", "explicit", "auto")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How this process joins the job.

    Attributes:
        mode: "single" (no initialisation), "explicit" (coordinator/num_processes/process_id
            from the config) or "auto" (``jax.distributed.initialize()`` with no arguments).
        reason: why this mode was chosen, for the log.
        coordinator: "host:port" of process 0 (explicit mode only).
        num_processes: number of processes (explicit mode only).
        process_id: this process's index (explicit mode only).
    """

    mode: str
    reason: str
    coordinator: str = ""
    num_processes: int = 1
    process_id: int = 0


class DistributedConfigError(ValueError):
    """The distributed settings are inconsistent (bad process id, missing coordinator)."""


def detect_cluster(environ: Mapping[str, str] | None = None) -> str | None:
    """Names the multi-process launcher this process runs under, or None.

    * ``"slurm"``: inside an ``srun`` job step with more than one task (``SLURM_STEP_NUM_TASKS``
      is set by srun only, so a batch script that runs ``python`` directly is one process).
    * ``"tpu"``: a multi-host Cloud TPU slice (``TPU_WORKER_HOSTNAMES`` or
      ``TPU_PROCESS_ADDRESSES`` lists more than one host) or a multislice job
      (``MEGASCALE_COORDINATOR_ADDRESS``). On GCE TPU VMs these may be absent from an ssh
      session; ``launch/tpu_pod.sh`` therefore also passes ``--config.distributed.auto=True``.
    """
    env = os.environ if environ is None else environ
    if _int(env.get("SLURM_STEP_NUM_TASKS")) > 1 and "SLURM_PROCID" in env:
        return "slurm"
    hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
    if len([h for h in hosts.split(",") if h.strip()]) > 1 or env.get(
            "MEGASCALE_COORDINATOR_ADDRESS"):
        return "tpu"
    return None


def _int(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def plan(config: Any, environ: Mapping[str, str] | None = None) -> Plan:
    """Decides how to initialise from ``config.distributed`` and the environment (pure).

    Raises:
        DistributedConfigError: explicit settings that cannot work.
    """
    d = config.get("distributed") if hasattr(config, "get") else None
    if d is None:  # e.g. the report job: only a detected launcher makes it multi-process
        cluster = detect_cluster(environ)
        return Plan("auto", f"detected a {cluster} multi-process launch") if cluster else \
            Plan("single", "one process")
    n, pid = int(d.num_processes), int(d.process_id)
    if d.coordinator:
        if n < 1 or not 0 <= pid < n:
            raise DistributedConfigError(
                f"distributed.process_id={pid} must be in [0, num_processes={n})")
        if n == 1:
            return Plan("single", "coordinator set but num_processes=1")
        if ":" not in d.coordinator:
            raise DistributedConfigError(
                f"distributed.coordinator={d.coordinator!r} must be host:port")
        return Plan("explicit", f"coordinator {d.coordinator}", d.coordinator, n, pid)
    if n > 1:
        raise DistributedConfigError(
            f"distributed.num_processes={n} needs distributed.coordinator=host:port "
            "(or distributed.auto=True under SLURM / on a TPU pod)")
    if d.get("auto", False):
        return Plan("auto", "distributed.auto=True")
    cluster = detect_cluster(environ)
    if cluster:
        return Plan("auto", f"detected a {cluster} multi-process launch")
    return Plan("single", "one process")


def use_gloo_cpu_collectives() -> None:
    """Cross-process collectives for the CPU backend (must precede backend initialisation)."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")


def init_distributed(config: Any, environ: Mapping[str, str] | None = None) -> Plan:
    """Connects this process to the others, once; later calls are no-ops.

    Args:
        config: a job config with a ``distributed`` section (configs/common.py).
        environ: the environment to inspect (default ``os.environ``); for tests.

    Returns:
        The :class:`Plan` that was followed.

    Raises:
        DistributedConfigError: inconsistent explicit settings.
    """
    p = plan(config, environ)
    if p.mode == "single":
        return p
    if jax.distributed.is_initialized():
        log.info("jax.distributed already initialised; process %d of %d",
                 jax.process_index(), jax.process_count())
        return p
    use_gloo_cpu_collectives()
    if p.mode == "explicit":
        jax.distributed.initialize(coordinator_address=p.coordinator,
                                   num_processes=p.num_processes, process_id=p.process_id)
    else:
        jax.distributed.initialize()
    log.info("jax.distributed initialised (%s): process %d of %d, %d local / %d global devices",
             p.reason, jax.process_index(), jax.process_count(), jax.local_device_count(),
             jax.device_count())
    return p
