"""Test-only wrapper of ``main.py`` that numbers a run's disk events and can die or pause at one.

``python tests/_driver.py <main.py flags>`` runs main.py unchanged, except that every *event*
(the commit of an Orbax save, i.e. the rename of its temporary directory, every
``forget_jax.rundir`` atomic write, the end-of-run cleanup) is numbered 1, 2, ... in the order
this process makes them.
Environment variables (all optional):

* ``FJ_EVENTS=<file>``: append ``<n>\\t<kind>\\t<path relative to the workdir>`` per event
  (``kind``: ``save``, before its commit; ``write``, after it; ``cleanup``, before a
  complete run's checkpoints are dropped, path ``cleanup``).
* ``FJ_KILL_AT=<n>``: SIGKILL this process at event n: ``FJ_KILL_INSIDE=1`` inside the save
  (its files written, its commit not: the ``*.orbax-checkpoint-tmp*`` directory is left), else
  ``FJ_KILL_DELAY`` seconds after the event (a timer: the kill lands in whatever compute, write
  or save follows).
* ``FJ_PAUSE=<dir>``: at the first save, create ``<dir>/paused`` and wait until ``<dir>/go``
  exists (the run holds its workdir meanwhile).
"""

import os
import pathlib
import runpy
import signal
import sys
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
_n = [0]
_paused = [False]
_workdir = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--workdir=")), "")
_workdir = str(pathlib.Path(_workdir).absolute()) if _workdir else ""


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _event(kind: str, path) -> None:
    _n[0] += 1
    rel = os.path.relpath(str(path), _workdir) if _workdir else str(path)
    if os.environ.get("FJ_EVENTS"):
        with open(os.environ["FJ_EVENTS"], "a") as f:
            f.write(f"{_n[0]}\t{kind}\t{rel}\n")
    if kind == "save" and os.environ.get("FJ_PAUSE") and not _paused[0]:
        _paused[0] = True
        pause = pathlib.Path(os.environ["FJ_PAUSE"])
        (pause / "paused").write_text(str(os.getpid()))
        while not (pause / "go").exists():
            time.sleep(0.05)
    if os.environ.get("FJ_KILL_AT") and int(os.environ["FJ_KILL_AT"]) == _n[0]:
        if os.environ.get("FJ_KILL_INSIDE") == "1":
            _kill()
        timer = threading.Timer(float(os.environ.get("FJ_KILL_DELAY", "0")), _kill)
        timer.daemon = True
        timer.start()


def _patch() -> None:
    from orbax.checkpoint._src.path import atomicity

    from forget_jax import rundir

    cls = atomicity.AtomicRenameTemporaryPath
    commit = cls.finalize

    async def finalize(self):
        _event("save", self.get_final())
        return await commit(self)

    cls.finalize = finalize
    write = rundir.atomic_write_bytes

    def atomic_write_bytes(path, data):
        write(path, data)
        _event("write", path)

    rundir.atomic_write_bytes = atomic_write_bytes
    from forget_jax import cleanup

    clean = cleanup.clean_run

    def clean_run(workdir, *a, **k):
        _event("cleanup", os.path.join(_workdir, "cleanup"))
        return clean(workdir, *a, **k)

    cleanup.clean_run = clean_run


if __name__ == "__main__":
    os.chdir(REPO)
    _patch()
    sys.argv = ["main.py", *sys.argv[1:]]
    runpy.run_path(str(REPO / "main.py"), run_name="__main__")
