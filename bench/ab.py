"""``compare.py --xla-ab SETTING``: the bench twice, in two child processes on the same machine,
``FORGET_JAX_XLA_CPU=off`` (A) then ``=SETTING`` (B, e.g. ``auto``: forget_jax/xla_cpu.py),
then our rates side by side (XLA_FLAGS are read once per process: one process cannot hold both)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys


def _without(argv: list[str], opt: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == opt:
            skip = True
        elif not a.startswith(opt + "="):
            out.append(a)
    return out


def run_ab(script: pathlib.Path, argv: list[str], setting: str, out: str) -> int:
    base = _without(argv, "--xla-ab")
    runs = {}
    for tag, value in (("A", "off"), ("B", setting)):
        before = set(pathlib.Path(out).glob("compare-*.json"))
        print(f"# {tag}: FORGET_JAX_XLA_CPU={value}", flush=True)
        env = dict(os.environ, FORGET_JAX_XLA_CPU=value)
        rc = subprocess.run([sys.executable, str(script), *base], env=env, check=False).returncode
        new = sorted(set(pathlib.Path(out).glob("compare-*.json")) - before)
        if rc != 0 or not new:
            print(f"error: run {tag} (FORGET_JAX_XLA_CPU={value}) failed, status {rc}",
                  file=sys.stderr)
            return rc or 1
        runs[tag] = json.loads(new[-1].read_text())
    print(f"# A/B ours per second: A = off, B = {setting} "
          f"(XLA_FLAGS B: {runs['B']['machine']['xla_flags']!r})")
    for name, row in runs["A"]["workloads"].items():
        b = runs["B"]["workloads"].get(name)
        if b is not None:
            a_s, b_s = row["ours"]["per_s"], b["ours"]["per_s"]
            print(f"{name} A {a_s:.3f} B {b_s:.3f} B/A {b_s / a_s:.3f}")
    return 0
