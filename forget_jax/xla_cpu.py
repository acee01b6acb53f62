"""XLA:CPU backend flags chosen from the CPU's features at start-up (opt-in; no effect on results).

``FORGET_JAX_XLA_CPU`` picks them, read once by :func:`apply` before JAX starts its backend
(``main.py`` and ``bench/compare.py`` call it first thing, beside ``host.tune_malloc``):

* ``off`` (the default): nothing is added; XLA's own defaults.
* ``auto``: :func:`choose` for this CPU's ISA flags. On Intel AMX CPUs (``amx_tile`` and
  ``amx_bf16``) that is oneDNN for XLA:CPU's matmuls (``--xla_cpu_use_onednn``,
  ``--xla_cpu_experimental_onednn_custom_call``): one noisy measurement on such a machine ran a
  jax bf16 x bf16 -> float32 dot at ~1,500 GFLOP/s with them against 777 without (issue 18).
  Elsewhere nothing.
* any other value: taken as the flags themselves (``"--xla_cpu_use_onednn=true ..."``).

``auto`` stays opt-in until a quiet A/B run of the bench (``bench/compare.py --xla-ab auto``,
two child processes on the same machine) says it is faster; that the flags give the same numbers
is tested (tests/test_xla_cpu.py). Flags already in ``XLA_FLAGS`` are kept and never repeated.
"""

from __future__ import annotations

import os

ENV = "FORGET_JAX_XLA_CPU"
ONEDNN = ("--xla_cpu_use_onednn=true", "--xla_cpu_experimental_onednn_custom_call=true")


def cpu_features() -> set[str]:
    """The ISA flags of the first processor in /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose(features: set[str]) -> list[str]:
    """The flags ``auto`` adds on a CPU with these ISA flags."""
    if {"amx_tile", "amx_bf16"} <= features:
        return list(ONEDNN)
    return []


def flags_for(setting: str, features: set[str]) -> list[str]:
    """The flags of a ``FORGET_JAX_XLA_CPU`` value."""
    setting = setting.strip()
    if setting in ("", "off"):
        return []
    if setting == "auto":
        return choose(features)
    return setting.split()


def apply(setting: str | None = None) -> list[str]:
    """Adds the chosen flags to ``XLA_FLAGS`` (``setting`` None: ``$FORGET_JAX_XLA_CPU``, else
    ``off``); returns the flags added. Must run before JAX initializes its CPU backend."""
    if setting is None:
        setting = os.environ.get(ENV, "off")
    current = os.environ.get("XLA_FLAGS", "").split()
    names = {f.split("=", 1)[0] for f in current}
    added = [f for f in flags_for(setting, cpu_features()) if f.split("=", 1)[0] not in names]
    if added:
        os.environ["XLA_FLAGS"] = " ".join(current + added)
    return added
