"""bench/machine.py's machine facts and per-workload peak memory; bench/peers.py's failure line
(the bench itself: ``python bench/compare.py --smoke``, bench/README.md)."""

import numpy as np

from bench import machine, peers


def test_peak_rss_separates_workloads():
    big = machine.PeakRSS().start()
    a = np.ones(200 << 18, np.float32)  # 200 MiB, every page touched
    first = big.stop()
    assert first["hwm_reset"]
    assert first["peak_rss_delta_mb"] >= 195
    assert first["peak_rss_mb"] >= first["rss_start_mb"] + 195
    del a
    small = machine.PeakRSS().start()
    b = np.ones(10 << 18, np.float32)  # 10 MiB
    second = small.stop()
    del b
    # the high-water mark was reset: the 200 MiB of the first workload is not in the second
    assert 9 <= second["peak_rss_delta_mb"] < 100
    assert second["peak_rss_mb"] < first["peak_rss_mb"]


def test_machine_facts_match_cpuinfo():
    flags = set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    info = machine.machine_info(True)
    assert info["isa"] == {f: f in flags for f in machine.ISA_FLAGS}
    assert info["cpu"] != "?" and info["cores"] >= 1
    line = machine.describe(info, {"jax": "J", "jaxlib": "L", "torch": "T"}, 2)
    assert line.startswith(f"# cpu: {info['cpu']};")
    assert "jax J jaxlib L torch T" in line
    for f, on in info["isa"].items():
        assert (f" {f}" in line.split("ISA:")[1].split(";")[0]) == on


def test_failure_is_the_first_line():
    try:
        raise RuntimeError("inductor: C++ compile error\n  long traceback\n  more")
    except RuntimeError as exc:
        assert peers.failure(exc) == "RuntimeError: inductor: C++ compile error"
    assert peers.failure(ValueError()) == "ValueError: "
