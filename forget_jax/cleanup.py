"""Disk: what a complete run keeps, and the cleanup of complete runs (one, or a sweep root's).

A run needs its epoch checkpoints (``checkpoints/<finetune|forget|relearn>/``) only to resume;
once ``results.json`` says ``"complete": true`` nothing reads them again. What later work
reads is kept: ``checkpoints/finetune_best/`` (cross-task, size and ``init_from`` cells start
from it: :class:`forget_jax.checkpoint.BestCheckpoint`), ``activations/`` (the analyses; an
``init_from`` cell copies the source's ``activations/pretrained``), and every JSON, predictions,
history and TensorBoard file. A run drops the rest itself on completion unless
``keep_checkpoints=True`` (:func:`forget_jax.run.run`); for runs made before that, or with it::

  python -m forget_jax.cleanup ROOT [--dry-run]

ROOT is a sweep root (its ``runs/*`` cells) or one run directory. Only complete runs are
touched, a run whose config.json sets ``keep_checkpoints=True`` is skipped, and so is one that
another process holds (:func:`forget_jax.resume.workdir_lock`). Pending or partial cells lose
nothing, and what they need from complete cells (the above) is never dropped. Prints what it
freed per run and in all.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys

from forget_jax import resume, rundir

KEPT_CHECKPOINTS = ("finetune_best",)  # what later cells read (init_from)


def _size(path: pathlib.Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def droppable(workdir: str | pathlib.Path) -> list[pathlib.Path]:
    """What cleanup would delete in ``workdir``: its checkpoint directories except
    :data:`KEPT_CHECKPOINTS` (an empty list unless the run is complete)."""
    wd = pathlib.Path(workdir)
    if resume.complete_results(wd) is None or not (wd / "checkpoints").is_dir():
        return []
    return sorted(p for p in (wd / "checkpoints").iterdir() if p.name not in KEPT_CHECKPOINTS)


def clean_run(workdir: str | pathlib.Path, dry_run: bool = False) -> int:
    """Deletes :func:`droppable` of a complete run; returns the bytes freed (would free).
    Called by one process only (process 0 of a multi-host run)."""
    paths = droppable(workdir)
    freed = sum(_size(p) for p in paths)
    if not dry_run:
        for p in paths:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    return freed


def _keeps(workdir: pathlib.Path) -> bool:
    """config.json sets keep_checkpoints=True (a field older runs lack: they are cleaned)."""
    try:
        return rundir.read_json(workdir / "config.json").get("keep_checkpoints") is True
    except (OSError, ValueError, AttributeError):
        return False


def run_dirs(root: str | pathlib.Path) -> list[pathlib.Path]:
    """The run directories under ``root``: a sweep root's ``runs/*``, or ``root`` itself."""
    root = pathlib.Path(root)
    if (root / "runs").is_dir():
        return sorted(p for p in (root / "runs").iterdir() if p.is_dir())
    return [root]


def human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def clean_root(root: str | pathlib.Path, dry_run: bool = False, out=print) -> int:
    """Cleans every complete run under ``root``; prints one line per run; returns bytes."""
    total = 0
    verb = "would free" if dry_run else "freed"
    for wd in run_dirs(root):
        try:
            done = resume.complete_results(wd)
        except resume.ConfigError as e:  # a malformed results.json: not ours to judge
            out(f"{wd.name}: untouched, {e}")
            continue
        if done is None:
            out(f"{wd.name}: not complete, untouched")
            continue
        if _keeps(wd):
            out(f"{wd.name}: keep_checkpoints=True, untouched")
            continue
        try:
            with resume.workdir_lock(wd, main=True):  # no JAX backend needed here
                names = [p.name for p in droppable(wd)]
                freed = clean_run(wd, dry_run)
        except resume.ConfigError:
            out(f"{wd.name}: in use by another process, untouched")
            continue
        total += freed
        out(f"{wd.name}: {verb} {human(freed)}" +
            (f" (checkpoints/{{{','.join(names)}}})" if names else ""))
    out(f"{verb} {human(total)} in all under {root}")
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m forget_jax.cleanup", description=__doc__
                                 .split("\n\n")[0])
    ap.add_argument("root", help="a sweep root (runs/*) or one run directory")
    ap.add_argument("--dry-run", action="store_true", help="print, delete nothing")
    args = ap.parse_args(argv)
    root = pathlib.Path(args.root)
    if not root.is_dir():
        print(f"error: {root} is not a directory", file=sys.stderr)
        return 2
    clean_root(root, args.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
