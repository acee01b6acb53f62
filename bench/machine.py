"""Machine facts, matmul peaks, load averages and the timing loop of the bench."""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import statistics
import subprocess
import time

import numpy as np

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_model() -> str:
    """The CPU's model name: ``lscpu``'s "Model name", else /proc/cpuinfo's "model name"."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def cpu_flags() -> set[str]:
    """The first processor's ISA flags in /proc/cpuinfo (empty where there is none)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_info(malloc_tuned) -> dict:
    flags = cpu_flags()
    return dict(cpu=cpu_model(), isa={f: f in flags for f in ISA_FLAGS},
                cores=os.cpu_count(), threads_usable=len(os.sched_getaffinity(0)),
                platform=platform.platform(), python=platform.python_version(),
                xla_flags=os.environ.get("XLA_FLAGS", ""), malloc_tuned=malloc_tuned)


def describe(info: dict, vers: dict, torch_threads: int) -> str:
    """One printed line of the machine facts."""
    isa = " ".join(f for f, on in info["isa"].items() if on) or "none of " + " ".join(ISA_FLAGS)
    return (f"# cpu: {info['cpu']}; {info['cores']} cores ({info['threads_usable']} usable, "
            f"torch threads {torch_threads}); ISA: {isa}; jax {vers['jax']} jaxlib "
            f"{vers['jaxlib']} torch {vers['torch']}; XLA_FLAGS={info['xla_flags']!r}")


def versions() -> dict:
    import flax
    import jax
    import jaxlib
    import torch
    import transformers

    return dict(jax=jax.__version__, jaxlib=jaxlib.__version__, flax=flax.__version__,
                torch=torch.__version__, transformers=transformers.__version__,
                numpy=np.__version__)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _matmul_flops(a, b, repeats: int) -> float:
    """FLOP/s of the square matmul ``a @ b`` (median of ``repeats`` after one warm-up)."""
    a @ b
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t)
    return 2 * a.shape[0] ** 3 / statistics.median(ts)


def matmul_peak(n: int = 4096, repeats: int = 5) -> float:
    """numpy float32 n x n matmul, FLOP/s (median of ``repeats`` after one warm-up)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return _matmul_flops(a, b, repeats)


def matmul_peak_bf16(n: int = 4096, repeats: int = 5) -> float:
    """torch bfloat16 n x n matmul, FLOP/s (the fastest bf16 GEMM on this CPU we found: ~10%
    above jax's bf16 x bf16 -> f32 dot), the peak for the mixed-precision rows' MFU."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn((n, n), generator=g).bfloat16()
    b = torch.randn((n, n), generator=g).bfloat16()
    return _matmul_flops(a, b, repeats)


def timed_passes(run_pass, repeats: int) -> tuple[float, list[float]]:
    """(warm-up seconds, [seconds of each timed pass])."""
    t = time.perf_counter()
    run_pass()
    warm = time.perf_counter() - t
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        run_pass()
        ts.append(time.perf_counter() - t)
    return warm, ts


def _status_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class PeakRSS:
    """The process's peak resident memory while one side runs one workload.

    ``start()`` hands freed heap pages back to the OS (glibc ``malloc_trim``: with
    :func:`forget_jax.host.tune_malloc` the heap keeps every freed block, which would hide a later
    workload's allocations), then resets the kernel's high-water mark (``/proc/self/clear_refs``
    ``5``); ``stop()`` reads it back. Both models stay loaded during every workload, so
    ``peak_rss_mb`` includes both; ``peak_rss_delta_mb`` is the growth above the resident set at
    ``start()`` (activations, gradients, update buffers, compiled code: what that side adds).
    Where the mark cannot be reset (not Linux), ``hwm_reset`` is False and the peak is the
    process's peak so far (``ru_maxrss``)."""

    def start(self) -> PeakRSS:
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset, self.rss0 = True, _status_kb("VmRSS")
        except OSError:
            self.reset, self.rss0 = False, 0
        return self

    def stop(self) -> dict:
        if self.reset:
            peak = _status_kb("VmHWM")
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return dict(peak_rss_mb=round(peak / 1024, 1), rss_start_mb=round(self.rss0 / 1024, 1),
                    peak_rss_delta_mb=round((peak - self.rss0) / 1024, 1),
                    hwm_reset=self.reset)
