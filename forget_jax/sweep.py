"""Sweeps: a named experiment expanded into cells, run in dependency order, resumable.

Experiments, cells, their names and seeds: forget_jax/sweep_cells.py. State lives on disk: a
cell is done when its results.json says ``"complete": true``; a rerun skips done cells and
reruns unfinished ones on the same workdir (the single-run job resumes itself).
``<root>/sweep.json`` is an index rewritten atomically with statuses re-read from disk, and it
records the sweep command lines that ran on the root. Command lines: ``configs/sweep.py``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

# Re-exported: the cell model is part of this module's interface (report, errors, tests).
from forget_jax.sweep_cells import (  # noqa: F401
    CELL_KEYS,
    CROSS_TASK_STARTS,
    DEFAULT_METHODS,
    EXPERIMENTS,
    PAPER_TASKS,
    Cell,
    SweepError,
    cell_workdir,
    dependency_order,
    expand,
    find_cell,
    parse_experiments,
    parse_overrides,
    parse_seeds,
    parse_tasks,
)

REPO = Path(__file__).resolve().parents[1]
# Keys that configs/forget.py reads in its `:arg` (values there shape other fields, e.g.
# runlocal picks the default n_train), so they are passed through get_config(arg), not set
# afterwards.
ARG_KEYS = ("task", "forget_task", "forget_mode", "runlocal", "n_train", "seed", "model")
RUN_MODES = ("run", "print_cells", "print_commands", "run_cell")

PENDING, RUNNING, PARTIAL, COMPLETE, FAILED, BLOCKED = (
    "pending", "running", "partial", "complete", "failed", "blocked")

RunFn = Callable[[Any, str], Mapping[str, Any]]
GetConfigFn = Callable[[str | None], Any]


# --- configs and commands ---------------------------------------------------------------------


def split_overrides(overrides: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Splits overrides into the ``configs/forget.py`` ``:arg`` string and the rest."""
    arg = ",".join(f"{k}={overrides[k]}" for k in ARG_KEYS if k in overrides)
    return arg, {k: v for k, v in overrides.items() if k not in ARG_KEYS}


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """Sets dotted-key overrides (``{"finetune.lr": 1e-3}``) on a ConfigDict in place.

    Returns:
        ``config``.

    Raises:
        KeyError: a key that the config does not have (a typo never adds a field).
        TypeError: a value of the wrong type (ConfigDict's own type check).
    """
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.get(part) if hasattr(node, "keys") else None
        if not hasattr(node, "keys") or leaf not in node:
            raise KeyError(f"config has no field {key!r}")
        try:
            node[leaf] = value
        except TypeError as e:
            raise TypeError(f"override {key}={value!r}: {e}") from None
    return config


def configs_module(name: str) -> Any:
    """``configs/<name>.py`` as the module ``configs.<name>`` (configs/ lives beside the
    package, a top-level package of the checkout)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module(f"configs.{name}")


def load_forget_get_config() -> GetConfigFn:
    """``configs/forget.py:get_config``, imported lazily."""
    return configs_module("forget").get_config


def cell_config(cell: Cell, get_config: GetConfigFn | None = None) -> Any:
    """``get_config(arg)`` with the cell's ``:arg`` keys, then the other overrides applied."""
    arg, rest = split_overrides(cell.overrides)
    config = (get_config or load_forget_get_config())(arg or None)
    return apply_overrides(config, rest)


def _flag(value: Any) -> str:
    return shlex.quote(str(value))


def cell_command(cell: Cell, root: str | os.PathLike) -> str:
    """The ``python main.py ...`` line that runs ``cell`` on its own (same config)."""
    arg, rest = split_overrides(cell.overrides)
    parts = ["python main.py", _flag("--config=configs/forget.py" + (f":{arg}" if arg else ""))]
    parts += [_flag(f"--config.{k}={v}") for k, v in rest.items()]
    parts.append(_flag(f"--workdir={cell_workdir(root, cell.name)}"))
    return " ".join(parts)


def sweep_command(config: Any, root: str | os.PathLike) -> str:
    """The ``python main.py --config=configs/sweep.py:...`` line equivalent to ``config``."""
    arg = f"experiment={config.experiment},tasks={config.tasks}"
    if config.runlocal:
        arg += ",runlocal=True"
    parts = ["python main.py", _flag(f"--config=configs/sweep.py:{arg}")]
    defaults = {"n_train": 0, "n_small": 0, "seed": -1, "seeds": "", "model": "",
                "data_dir": "", "base": "", "stage": -1, "analyses": True,
                "cross_task_start": "eval_task", "methods": DEFAULT_METHODS,
                "retain": "others"}
    parts += [_flag(f"--config.{k}={config[k]}") for k, d in defaults.items() if config[k] != d]
    parts.append(_flag(f"--workdir={Path(root).absolute()}"))
    return " ".join(parts)


def cells_from_config(config: Any, root: str | os.PathLike) -> list[Cell]:
    """The cells of a ``configs/sweep.py`` config (of one stage if ``config.stage >= 0``)."""
    common: dict[str, Any] = {}
    if config.runlocal:
        common["runlocal"] = True
    if config.seed >= 0:
        common["seed"] = int(config.seed)
    if config.n_train > 0:  # every cell's training-set size (the size experiment's too)
        common["n_train"] = int(config.n_train)
    if config.model:
        common["model"] = config.model
    if config.data_dir:
        common["data_dir"] = config.data_dir
    common.update(parse_overrides(config.base))
    cells = expand(config.experiment, config.tasks, root, common=common,
                   n_small=config.n_small or configs_module("sweep").default_n_small(
                       config.runlocal), analyses=config.analyses,
                   seeds=parse_seeds(config.seeds), cross_task_start=config.cross_task_start,
                   null_lr=config.null_lr, methods=config.methods, retain=config.retain)
    return [c for c in cells if config.stage < 0 or c.stage == config.stage]


# --- the index and the runner -----------------------------------------------------------------


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically (forget_jax.rundir.atomic_write_bytes)."""
    from forget_jax.rundir import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))
    return Path(path)


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None when it is absent or unreadable (mid-write)."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def disk_status(workdir: str | os.PathLike) -> str:
    """``complete`` (results.json says so), ``partial`` (workdir has files) or ``pending``."""
    wd = Path(workdir)
    if (read_json(wd / "results.json") or {}).get("complete") is True:
        return COMPLETE
    return PARTIAL if wd.is_dir() and any(wd.iterdir()) else PENDING


def load_index(root: str | os.PathLike) -> dict[str, Any] | None:
    return read_json(Path(root) / "sweep.json")  # None when absent


@contextlib.contextmanager
def _index_lock(root: Path):
    """Exclusive ``flock`` on ``<root>/sweep.json.lock`` while the index is read and rewritten,
    so concurrent array tasks do not drop each other's ``seconds``/``commands`` (no-op where
    ``fcntl`` is unavailable)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "sweep.json.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_index(root: str | os.PathLike, name: str, cells: Sequence[Cell], *,
                live: Mapping[str, str] | None = None, seconds: Mapping[str, float] | None = None,
                command: str = "") -> Path:
    """Rewrites ``<root>/sweep.json`` atomically (under a file lock), merged with the cells
    already indexed there.

    ``cells`` replace same-named entries and ``name`` joins the previous names. Statuses are
    re-read from disk at every write; ``live`` (this process's ``running``/``failed``/``blocked``
    cells, which the disk cannot show) wins unless the cell is complete. ``seconds`` (wall time
    measured by the runner) and ``command`` (the sweep command line) are recorded too.
    """
    root = Path(root).absolute()
    with _index_lock(root):
        return _write_index(root, name, cells, live, seconds, command)


def _write_index(root: Path, name: str, cells: Sequence[Cell], live: Mapping[str, str] | None,
                 seconds: Mapping[str, float] | None, command: str) -> Path:
    old = load_index(root) or {}
    entries: dict[str, dict[str, Any]] = {e["name"]: e for e in old.get("cells", [])
                                          if isinstance(e, dict) and "name" in e}
    for c in cells:
        prev = {k: v for k, v in entries.get(c.name, {}).items() if k == "seconds"}
        entries[c.name] = {"name": c.name, "workdir": str(cell_workdir(root, c.name)),
                           "config_overrides": dict(c.overrides), "status": PENDING,
                           "deps": list(c.deps), **prev}
    for e in entries.values():
        status = disk_status(e["workdir"])
        if live and e["name"] in live and status != COMPLETE:
            status = live[e["name"]]
        e["status"] = status
        if seconds and e["name"] in seconds:
            e["seconds"] = round(float(seconds[e["name"]]), 3)
    names = [n for n in str(old.get("name", "")).split("+") if n]
    names += [n for n in name.split("+") if n and n not in names]
    commands = list(old.get("commands", []))
    if command and command not in commands:
        commands.append(command)
    index = {"name": "+".join(names), "cells": list(entries.values()), "commands": commands}
    return atomic_write_text(root / "sweep.json", json.dumps(index, indent=1) + "\n")


def run_cells(cells: Sequence[Cell], root: str | os.PathLike, *, name: str,
              run_fn: RunFn | None = None, get_config: GetConfigFn | None = None,
              keep_going: bool = True, command: str = "",
              index_cells: Sequence[Cell] | None = None) -> dict[str, str]:
    """Runs ``cells`` sequentially, skipping complete ones and resuming unfinished ones.

    A cell whose dependency is not complete is ``blocked`` (not started); one that another
    process is running (its workdir lock is held) stays ``running`` and is skipped. An
    ``Exception`` from ``run_fn`` marks the cell ``failed`` and, with ``keep_going``, moves on;
    anything else (KeyboardInterrupt, SystemExit, a kill) propagates and the next run picks up
    from disk.

    Args:
        cells: cells in dependency order (as from :func:`expand`).
        root: the sweep root.
        name, command, index_cells: recorded in ``sweep.json`` (see :func:`write_index`;
            ``index_cells`` defaults to ``cells``).
        run_fn: ``run(config, workdir) -> results``; default ``forget_jax.run.run``.
        get_config: ``configs/forget.py:get_config`` or a stand-in.
        keep_going: continue after a failed cell.

    Returns:
        ``{cell name: final status}``.
    """
    # Imported lazily: the single-run job pulls in JAX and the models.
    run_fn = run_fn or importlib.import_module("forget_jax.run").run
    lock_holder = importlib.import_module("forget_jax.resume").lock_holder
    root = Path(root).absolute()
    live: dict[str, str] = {}
    secs: dict[str, float] = {}
    listed = list(index_cells or cells)
    write_index(root, name, listed, command=command)
    for cell in cells:
        workdir = cell_workdir(root, cell.name)
        status = disk_status(workdir)
        if status == COMPLETE:
            logging.info("sweep: %s already complete, skipped", cell.name)
            live[cell.name] = COMPLETE
            continue
        blockers = [d for d in cell.deps if disk_status(cell_workdir(root, d)) != COMPLETE]
        if blockers:
            logging.error("sweep: %s blocked, dependencies not complete: %s", cell.name, blockers)
            live[cell.name] = BLOCKED
            continue
        holder = lock_holder(workdir)
        if holder is not None:  # another sweep (or a job-array task) is running this cell
            logging.warning("sweep: %s is being run by another process (%s), skipped",
                            cell.name, holder)
            live[cell.name] = RUNNING
            continue
        logging.info("sweep: %s %s", "resuming" if status == PARTIAL else "starting", cell.name)
        live[cell.name] = RUNNING
        write_index(root, name, listed, live=live, seconds=secs)
        t0 = time.monotonic()
        try:
            run_fn(cell_config(cell, get_config), str(workdir))
        except Exception:
            logging.exception("sweep: %s failed", cell.name)
            live[cell.name] = FAILED
            if not keep_going:
                write_index(root, name, listed, live=live, seconds=secs)
                raise
        secs[cell.name] = time.monotonic() - t0
        if live[cell.name] == RUNNING:
            live[cell.name] = disk_status(workdir)
            if live[cell.name] != COMPLETE:
                logging.error("sweep: %s returned but results.json is not complete", cell.name)
                live[cell.name] = FAILED
        write_index(root, name, listed, live=live, seconds=secs)
    write_index(root, name, listed, live=live, seconds=secs)  # skipped/blocked last cells too
    return {c.name: live.get(c.name, disk_status(cell_workdir(root, c.name))) for c in cells}


def run_one(cells: Sequence[Cell], key: str, root: str | os.PathLike, *, name: str,
            run_fn: RunFn | None = None, get_config: GetConfigFn | None = None,
            command: str = "") -> str:
    """Runs one cell (by name or index) of a job array after checking its dependencies.

    Dependencies are never run here (two array tasks would race on one fine-tuning workdir).

    Raises:
        SweepError: a dependency is not complete, or the cell failed.
    """
    cell = find_cell(cells, key)
    missing = [d for d in cell.deps if disk_status(cell_workdir(root, d)) != COMPLETE]
    if missing:
        raise SweepError(f"cell {cell.name} needs {missing} complete first "
                           "(run the stage=0 cells before stage=1)")
    status = run_cells([cell], root, name=name, run_fn=run_fn, get_config=get_config,
                       keep_going=True, command=command, index_cells=cells)[cell.name]
    if status != COMPLETE:
        raise SweepError(f"cell {cell.name} ended {status}")
    return status


def main(config: Any, workdir: str, *, run_fn: RunFn | None = None,
         get_config: GetConfigFn | None = None, out: Callable[[str], None] = print) -> None:
    """Entry point of ``configs/sweep.py`` jobs (main.py calls it when ``config.job == "sweep"``).

    Args:
        config: a ``configs/sweep.py`` config.
        workdir: the sweep root.
        run_fn: the single-run function (tests inject a fake); get_config: the single-run
            config factory; out: where the print modes write their lines.

    Raises:
        SweepError: unknown mode, a bad override, or cells that failed or were blocked.
    """
    root = Path(workdir).absolute()
    cells = cells_from_config(config, root)
    command = sweep_command(config, root)
    for c in cells:  # a typo in `base` fails now, not after hours of other cells
        try:
            cfg = cell_config(c, get_config)
        except (KeyError, TypeError) as e:
            raise SweepError(f"cell {c.name}: {e}") from None
        if cfg.forget.n_train > cfg.n_train:  # a size cell's forget set beyond its train role
            raise SweepError(f"cell {c.name}: forget.n_train={cfg.forget.n_train} > "
                             f"n_train={cfg.n_train}; lower n_small")
    if config.mode == "print_cells":
        for i, c in enumerate(cells):
            out(f"{i}\t{c.name}\tstage={c.stage}\t{disk_status(cell_workdir(root, c.name))}")
    elif config.mode == "print_commands":
        for c in cells:
            out(cell_command(c, root))
    elif config.mode == "run_cell":
        run_one(cells, config.cell, root, name=config.experiment, run_fn=run_fn,
                get_config=get_config, command=command)
    elif config.mode == "run":
        statuses = run_cells(cells, root, name=config.experiment, run_fn=run_fn,
                             get_config=get_config, keep_going=config.keep_going,
                             command=command)
        bad = {n: s for n, s in statuses.items() if s != COMPLETE}
        logging.info("sweep %s: %d/%d cells complete", config.experiment,
                     len(statuses) - len(bad), len(statuses))
        if bad:
            raise SweepError(f"sweep {config.experiment}: cells not complete: {bad}")
    else:
        raise SweepError(f"unknown mode {config.mode!r}; known: {RUN_MODES}")
