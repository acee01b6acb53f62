"""Sweeps: a named experiment expanded into cells, run in dependency order, resumable.

A *cell* is one single run (``forget_jax.run.run``) in ``<root>/runs/<cell name>/`` with its
config given as a flat dict of dotted-key overrides of ``configs/forget.py``. Experiments
(Zhang, Choshen & Andreas 2024):

* ``single``      ``ft-<t>`` then ``forget-<t>-on-<t>`` for every task (Fig. 3.1).
* ``cross_task``  ``ft-<B>`` for every B, then ``forget-<A>-on-<B>`` for every pair (Fig. 3.2):
  start from the checkpoint fine-tuned on B, forget on A's training set (random labels),
  evaluate on B's test role (B's forget ratio and stop rule). The diagonal is ``single``.
* ``size``        ``ft-<t>-n100``, ``forget-<t>-n100`` (both phases on 100 training examples)
  next to ``ft-<t>``, ``forget-<t>-on-<t>`` (default n_train, 1000) (Appendix B).
* ``flipped``     ``ft-<B>``, then ``flip-<A>-on-<B>`` with flipped labels (Appendix C).

Experiments combine with ``+``; cells are shared by name, so each task's fine-tuned checkpoint
is made once. State lives on disk: a cell is done when its results.json says ``"complete":
true``; a rerun skips done cells and reruns unfinished ones on the same workdir (the single-run
job resumes itself). ``<root>/sweep.json`` is an index rewritten atomically with statuses re-read
from disk. Command lines: ``configs/sweep.py``.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("single", "cross_task", "size", "flipped")
PAPER_TASKS = (  # the paper's 19 tasks, in Appendix B order
    "piqa", "arc_easy", "arc_challenge", "creak", "boolq", "sciq", "pubmedqa", "mathqa",
    "toxigen", "cola", "mrpc", "mnli", "qnli", "rte", "wnli", "cb", "copa", "wic", "wsc")
# Keys that configs/forget.py reads in its `:arg` (values there shape other fields, e.g.
# runlocal picks the default n_train), so they are passed through get_config(arg), not set
# afterwards.
ARG_KEYS = ("task", "forget_task", "forget_mode", "runlocal", "n_train", "seed", "model")
CELL_KEYS = (  # set by each cell itself; `base` overrides may not touch them
    "task", "forget_task", "forget_mode", "init_from", "stop_after", "n_train")
RUN_MODES = ("run", "print_cells", "print_commands", "run_cell")

PENDING, RUNNING, PARTIAL, COMPLETE, FAILED, BLOCKED = (
    "pending", "running", "partial", "complete", "failed", "blocked")

RunFn = Callable[[Any, str], Mapping[str, Any]]
GetConfigFn = Callable[[str | None], Any]


class SweepError(Exception):
    """A bad sweep request (experiment, tasks, overrides, cell) or cells that did not finish."""


@dataclasses.dataclass(frozen=True)
class Cell:
    """One single run of a sweep.

    Attributes:
        name: run directory name under ``<root>/runs/`` (CONTRACT.md cell names).
        overrides: flat dotted-key overrides of ``configs/forget.py`` (``init_from`` absolute).
        deps: names of the cells that must be complete before this one starts.
    """

    name: str
    overrides: Mapping[str, Any]
    deps: tuple[str, ...] = ()

    @property
    def stage(self) -> int:
        return 1 if self.deps else 0  # 0: fine-tuning cells; 1: cells that start from them


def cell_workdir(root: str | os.PathLike, name: str) -> Path:
    """``<root>/runs/<name>``, absolute."""
    return Path(root).absolute() / "runs" / name


def parse_tasks(tasks: str | Sequence[str]) -> list[str]:
    """``"copa+cb"`` (or a sequence, or ``"all"`` for the paper's 19) -> unique task names."""
    if isinstance(tasks, str):
        tasks = list(PAPER_TASKS) if tasks.strip() == "all" else tasks.split("+")
    out = list(dict.fromkeys(t.strip() for t in tasks if t.strip()))
    if not out:
        raise SweepError("no tasks given")
    from forget_jax.tasks.specs import TASK_NAMES

    unknown = [t for t in out if t not in TASK_NAMES]
    if unknown:
        raise SweepError(f"unknown task(s) {unknown}; known: {', '.join(TASK_NAMES)}")
    return out


def parse_overrides(text: str) -> dict[str, Any]:
    """``"finetune.lr=1e-3;forget.max_epochs=20"`` -> ``{"finetune.lr": 0.001, ...}``.

    Pairs are separated by ``;`` or ``,``; values are Python literals if they parse, else str.
    """
    out: dict[str, Any] = {}
    for token in text.replace(";", ",").split(","):
        if not token.strip():
            continue
        key, sep, value = token.partition("=")
        if not sep or not key.strip():
            raise SweepError(f"override {token!r} is not key=value")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def _ft(task: str, common: Mapping[str, Any], suffix: str = "", n_train: int | None = None) -> Cell:
    size = {} if n_train is None else {"n_train": n_train}
    return Cell(f"ft-{task}{suffix}", {**common, "task": task, "stop_after": "finetune", **size})


def _forget(root: Path, name: str, a: str, ft: Cell, mode: str) -> Cell:
    over = {**{k: v for k, v in ft.overrides.items() if k != "stop_after"},
            "forget_task": a, "forget_mode": mode,
            "init_from": str(cell_workdir(root, ft.name)), "stop_after": "forget"}
    return Cell(name, over, (ft.name,))


def expand(experiment: str, tasks: str | Sequence[str], root: str | os.PathLike, *,
           common: Mapping[str, Any] | None = None, n_small: int = 100,
           analyses: bool = False) -> list[Cell]:
    """Expands ``experiment`` (names joined with ``+``) into cells in dependency order.

    Args:
        experiment: ``single``, ``cross_task``, ``size``, ``flipped`` or a ``+``-join of them.
        tasks: ``+``-joined task names, a sequence of them, or ``"all"``.
        root: the sweep root (``init_from`` paths point into ``<root>/runs``).
        common: overrides every cell gets (runlocal, seed, data_dir, ``base`` overrides).
        n_small: training-set size of the ``size`` experiment's small cells.
        analyses: save activations in ``ft-<t>`` and ``forget-<t>-on-<t>`` cells and relearn
            in the latter, for Fig. 4.1-6.1 (the cross-task cells need neither).

    Returns:
        Unique cells; every cell comes after the cells it depends on (fine-tuning first).

    Raises:
        SweepError: unknown experiment, ``common`` touching a cell key, or one name expanding
            to two different configs.
    """
    root = Path(root).absolute()
    common = dict(common or {})
    bad = sorted(set(common) & set(CELL_KEYS))
    if bad:
        raise SweepError(f"sweep-wide overrides may not set {bad}; the cells set them")
    tasks = parse_tasks(tasks)
    cells: list[Cell] = []
    for exp in (e.strip() for e in experiment.split("+")):
        ft = {t: _ft(t, common) for t in tasks}
        if exp == "single":
            for t in tasks:
                cells += [ft[t], _forget(root, f"forget-{t}-on-{t}", t, ft[t], "random")]
        elif exp in ("cross_task", "flipped"):
            prefix, mode = ("forget", "random") if exp == "cross_task" else ("flip", "flipped")
            cells += [ft[b] for b in tasks]
            cells += [_forget(root, f"{prefix}-{a}-on-{b}", a, ft[b], mode)
                      for a in tasks for b in tasks]
        elif exp == "size":
            for t in tasks:
                small = _ft(t, common, f"-n{n_small}", n_small)
                cells += [small, _forget(root, f"forget-{t}-n{n_small}", t, small, "random"),
                          ft[t], _forget(root, f"forget-{t}-on-{t}", t, ft[t], "random")]
        else:
            raise SweepError(f"unknown experiment {exp!r}; known: {EXPERIMENTS}")
    if analyses:
        diag = {f"ft-{t}": {} for t in tasks} | {
            f"forget-{t}-on-{t}": {"relearn.enabled": True} for t in tasks}
        cells = [c if c.name not in diag else dataclasses.replace(c, overrides={
            **c.overrides, "activations.enabled": True, **diag[c.name]}) for c in cells]
    return dependency_order(cells)


def dependency_order(cells: Iterable[Cell]) -> list[Cell]:
    """Deduplicates cells by name and sorts them stably by stage (dependencies first).

    Raises:
        SweepError: a name with two different configs, or a dependency that is not a stage-0
            cell of the list (dependencies are one level deep: ft cells).
    """
    unique: dict[str, Cell] = {}
    for c in cells:
        if unique.setdefault(c.name, c) != c:
            raise SweepError(f"cell {c.name!r} expands to two configs: "
                             f"{dict(unique[c.name].overrides)} vs {dict(c.overrides)}")
    bad = {d for c in unique.values() for d in c.deps if d not in unique or unique[d].deps}
    if bad:
        raise SweepError(f"dependencies {sorted(bad)} are not stage-0 cells of the sweep")
    return sorted(unique.values(), key=lambda c: c.stage)


def find_cell(cells: Sequence[Cell], key: str) -> Cell:
    """A cell by name, or by 0-based index into ``cells`` (a SLURM array task id)."""
    if key in (named := {c.name: c for c in cells}):
        return named[key]
    if key.strip().lstrip("-").isdigit() and 0 <= int(key) < len(cells):
        return cells[int(key)]
    raise SweepError(f"no cell {key!r}; cells: {[c.name for c in cells]}")


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


def load_forget_get_config() -> GetConfigFn:
    """``configs/forget.py:get_config``, imported lazily (configs/ lives beside the package)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # configs/ is a top-level package of the checkout
    return importlib.import_module("configs.forget").get_config


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
    n_small = importlib.import_module("configs.sweep").default_n_small(config.runlocal)
    defaults = {"n_train": 0, "n_small": n_small, "seed": -1, "model": "",
                "data_dir": "", "base": "", "stage": -1, "analyses": True}
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
    if config.model:
        common["model"] = config.model
    if config.data_dir:
        common["data_dir"] = config.data_dir
    common.update(parse_overrides(config.base))
    cells = expand(config.experiment, config.tasks, root, common=common,
                   n_small=int(config.n_small), analyses=config.analyses)
    if config.n_train > 0:  # the large cells' training-set size; small cells keep n_small
        cells = [c if "n_train" in c.overrides else
                 dataclasses.replace(c, overrides={**c.overrides, "n_train": int(config.n_train)})
                 for c in cells]
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

    A cell whose dependency is not complete is ``blocked`` (not started). An ``Exception`` from
    ``run_fn`` marks the cell ``failed`` and, with ``keep_going``, moves on; anything else
    (KeyboardInterrupt, SystemExit, a kill) propagates and the next run picks up from disk.

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
            cell_config(c, get_config)
        except (KeyError, TypeError) as e:
            raise SweepError(f"cell {c.name}: {e}") from None
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
