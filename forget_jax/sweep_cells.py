"""Sweep cells: a named experiment expanded into single runs (used by forget_jax/sweep.py).

A *cell* is one single run (``forget_jax.run.run``) in ``<root>/runs/<cell name>/`` with its
config given as a flat dict of dotted-key overrides of ``configs/forget.py``. Experiments
(Zhang, Choshen & Andreas 2024):

* ``single``            ``ft-<t>`` then ``forget-<t>-on-<t>`` for every task (Fig. 3.1).
* ``cross_task``        ``ft-<B>`` for every B, then ``forget-<A>-on-<B>`` for every pair,
  diagonal included (Fig. 3.2): start from the checkpoint fine-tuned on B, forget on A's
  training set (random labels), evaluate on B's test role (B's forget ratio and the default
  stop rule, which watches B's test accuracy). The diagonal is ``single``.
* ``cross_task_fixed``  the same pairs as ``fixed-<A>-on-<B>`` from the same ``ft-<B>`` cells,
  with ``forget.stop_rule="fixed"``: every cell forgets for exactly ``forget.max_epochs``
  epochs, no stop by B's test accuracy.
* ``size``              ``ft-<t>`` (default n_train), ``forget-<t>-on-<t>`` (forget on the full
  training set) and ``forget-<t>-n<k>``: forget on a seeded k-example subset
  (``forget.n_train=k``) of the *same* fine-tuned model ``ft-<t>`` (Appendix B), so only the
  forget set's size differs.
* ``flipped``           ``ft-<B>``, then ``flip-<A>-on-<B>`` with flipped labels (Appendix C).
* ``flipped_diag``      the diagonal of ``flipped`` only: ``flip-<t>-on-<t>``.
* ``methods``           ``method-<m>-<t>`` for every task t and forgetting method m of ``methods``
  (``forget.method``, issue 16; default :data:`DEFAULT_METHODS`) from ``ft-<t>``, the paper's
  stop rule (test < 0.5); ``methods_fixed``: the same as ``method_fixed-<m>-<t>`` with
  ``forget.stop_rule="fixed"`` (exactly ``forget.max_epochs`` epochs). Each cell evaluates the
  sweep's other tasks (``eval_tasks``, unless ``base`` sets it): the damage to other tasks.
  Methods of :data:`forget_jax.methods.RETAIN_BY_DEFAULT` get the retain set ``retain``:
  ``"others"`` = the sweep's other tasks, or ``+``-joined tasks (the cell's own task dropped);
  a method that needs one (grad_diff, rmu) without one is a SweepError.
* ``null``              the null control ``null-<t>``: ``forget-<t>-on-<t>`` with the forget
  learning rate set to ``null_lr`` (~0) and a fixed budget (``forget.stop_rule="fixed"``): the
  forget ratio must come out ~0, else something other than the update moves the accuracies.

Experiments combine with ``+``; cells are shared by name, so each task's fine-tuned checkpoint
is made once. With several seeds (``seeds=[0, 1, 2]``) every cell is made once per seed; cells
of seed 0 keep the plain names, cells of any other seed s get the suffix ``-s<s>``
(``ft-cb-s1``, ``forget-copa-on-cb-s1``, ``forget-cb-n100-s1``), the override ``seed=s``, and
start from the ``ft`` cell of their own seed.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

EXPERIMENTS = ("single", "cross_task", "cross_task_fixed", "size", "flipped", "flipped_diag",
               "null", "methods", "methods_fixed")
DEFAULT_METHODS = "random_labels+grad_ascent+npo+simnpo+rmu"  # the `methods` experiment's
METHOD_KEYS = ("forget.method", "forget.retain_tasks")  # set by the methods cells themselves
PAPER_TASKS = (  # the paper's 19 tasks, in Appendix B order
    "piqa", "arc_easy", "arc_challenge", "creak", "boolq", "sciq", "pubmedqa", "mathqa",
    "toxigen", "cola", "mrpc", "mnli", "qnli", "rte", "wnli", "cb", "copa", "wic", "wsc")
CELL_KEYS = (  # set by each cell itself; sweep-wide (`base`) overrides may not touch them
    "task", "forget_task", "forget_mode", "init_from", "stop_after", "forget.stop_rule",
    "forget.n_train")
# Which fine-tuned model a cross-task cell A -> B starts from. "eval_task" (ft-<B>) is our
# reading of the paper; "forget_task" (ft-<A>) is the other reading, not supported yet: the
# single run needs init_from's task to equal its own task, which is B (forget ratio and stop
# rule on B's test role).
CROSS_TASK_STARTS = ("eval_task", "forget_task")


class SweepError(Exception):
    """A bad sweep request (experiment, tasks, seeds, overrides, cell) or unfinished cells."""


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


def parse_experiments(experiment: str) -> list[str]:
    """``"cross_task+size"`` -> ``["cross_task", "size"]``; unknown names raise SweepError."""
    out = list(dict.fromkeys(e.strip() for e in experiment.split("+") if e.strip()))
    unknown = [e for e in out if e not in EXPERIMENTS]
    if unknown or not out:
        raise SweepError(f"unknown experiment {experiment!r}; known: {'+'.join(EXPERIMENTS)}")
    return out


def parse_seeds(text: str) -> list[int]:
    """``"0+1+2"`` -> ``[0, 1, 2]``; ``""`` -> ``[]`` (the single default seed, plain names).

    Raises:
        SweepError: a token that is not a non-negative integer, or a repeated seed.
    """
    if not text.strip():
        return []
    tokens = [t.strip() for t in text.split("+")]
    bad = [t for t in tokens if not (t.isascii() and t.isdigit())]
    if bad:
        raise SweepError(f"seeds={text!r}: {bad} not non-negative integers (use e.g. 0+1+2)")
    seeds = [int(t) for t in tokens]
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"seeds={text!r} repeats a seed")
    return seeds


def parse_methods(text: str) -> list[str]:
    """``"npo+rmu"`` -> ``["npo", "rmu"]`` (``forget.method`` names; ``forget_mode=flipped``'s
    ``flipped`` included); unknown or none raise SweepError."""
    from forget_jax import methods as methods_lib  # imported here: it pulls in JAX

    out = list(dict.fromkeys(m.strip() for m in text.split("+") if m.strip()))
    unknown = [m for m in out if m not in methods_lib.METHODS]
    if unknown or not out:
        raise SweepError(f"unknown method(s) {unknown or text!r} in methods={text!r}; known: "
                         f"{'+'.join(methods_lib.METHODS)}")
    return out


def _method_cells(exp: str, tasks: Sequence[str], common: Mapping[str, Any],
                  methods: Sequence[str], retain: str, forget: Any) -> list[Cell]:
    """The ``methods`` / ``methods_fixed`` cells (module docstring)."""
    from forget_jax import methods as methods_lib

    bad = sorted(set(common) & set(METHOD_KEYS))
    if bad:
        raise SweepError(f"experiment {exp} sets {bad} per cell; do not set them in base")
    pool = list(tasks) if retain.strip() == "others" else (
        parse_tasks(retain) if retain.strip() else [])
    prefix, extra = (("method_fixed", {"forget.stop_rule": "fixed"}) if exp == "methods_fixed"
                     else ("method", {}))
    cells = []
    for m in methods:
        for t in tasks:
            over: dict[str, Any] = {"forget.method": m, **extra}
            if "eval_tasks" not in common and len(tasks) > 1:
                over["eval_tasks"] = "+".join(x for x in tasks if x != t)
            if m in methods_lib.RETAIN_BY_DEFAULT:
                keep = [x for x in pool if x != t]
                if keep:
                    over["forget.retain_tasks"] = "+".join(keep)
                elif m in methods_lib.NEEDS_RETAIN:
                    raise SweepError(
                        f"method {m} needs a retain set and cell {prefix}-{m}-{t} has none: "
                        f"give retain=others with >= 2 tasks, or retain=<tasks> (now "
                        f"retain={retain!r})")
            cells.append(forget(f"{prefix}-{m}-{t}", t, t, **over))
    return cells


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


def _seed_cells(exps: Sequence[str], tasks: Sequence[str], root: Path,
                common: Mapping[str, Any], sfx: str, n_small: int,
                analyses: bool, cross_task_start: str, null_lr: float,
                methods: Sequence[str] = (), retain: str = "others") -> list[Cell]:
    """The cells of one seed (names end in ``sfx``); a cell A -> B starts from ``ft-<B>``, or
    from ``ft-<A>`` with ``cross_task_start="forget_task"``."""
    act = {"activations.enabled": True} if analyses else {}
    ft = {t: Cell(f"ft-{t}{sfx}", {**common, "task": t, "stop_after": "finetune", **act})
          for t in tasks}

    def forget(name: str, a: str, b: str, mode: str = "random", **extra: Any) -> Cell:
        if analyses and name == f"forget-{b}-on-{b}":  # the diagonal feeds Fig. 4.1-6.1
            extra = {**extra, **act, "relearn.enabled": True}
        start = ft[a] if cross_task_start == "forget_task" else ft[b]
        over = {**common, "task": b, "forget_task": a, "forget_mode": mode,
                "init_from": str(cell_workdir(root, start.name)), "stop_after": "forget",
                **extra}
        return Cell(name + sfx, over, (start.name,))

    cells: list[Cell] = []
    for exp in exps:
        cells += ft.values()
        if exp == "single":
            cells += [forget(f"forget-{t}-on-{t}", t, t) for t in tasks]
        elif exp == "cross_task":
            cells += [forget(f"forget-{a}-on-{b}", a, b) for a in tasks for b in tasks]
        elif exp == "cross_task_fixed":
            cells += [forget(f"fixed-{a}-on-{b}", a, b, **{"forget.stop_rule": "fixed"})
                      for a in tasks for b in tasks]
        elif exp == "flipped":
            cells += [forget(f"flip-{a}-on-{b}", a, b, "flipped") for a in tasks for b in tasks]
        elif exp == "flipped_diag":
            cells += [forget(f"flip-{t}-on-{t}", t, t, "flipped") for t in tasks]
        elif exp == "null":
            cells += [forget(f"null-{t}", t, t, **{"forget.lr": float(null_lr),
                                                   "forget.stop_rule": "fixed"}) for t in tasks]
        elif exp in ("methods", "methods_fixed"):
            cells += _method_cells(exp, tasks, common, methods, retain, forget)
        else:  # size
            cells += [c for t in tasks for c in (
                forget(f"forget-{t}-on-{t}", t, t),
                forget(f"forget-{t}-n{n_small}", t, t, **{"forget.n_train": n_small}))]
    return cells


def expand(experiment: str, tasks: str | Sequence[str], root: str | os.PathLike, *,
           common: Mapping[str, Any] | None = None, n_small: int = 100,
           analyses: bool = False, seeds: Sequence[int] = (),
           cross_task_start: str = "eval_task", null_lr: float = 0.0,
           methods: str = DEFAULT_METHODS, retain: str = "others") -> list[Cell]:
    """Expands ``experiment`` (names joined with ``+``) into cells in dependency order.

    Args:
        experiment: names of :data:`EXPERIMENTS`, or a ``+``-join of them.
        tasks: ``+``-joined task names, a sequence of them, or ``"all"``.
        root: the sweep root (``init_from`` paths point into ``<root>/runs``).
        common: overrides every cell gets (runlocal, seed, n_train, data_dir, ``base``).
        n_small: forget-set size of the ``size`` experiment's ``forget-<t>-n<k>`` cells.
        analyses: save activations in ``ft-<t>`` and ``forget-<t>-on-<t>`` cells (of every
            seed) and relearn in the latter, for Fig. 4.1-6.1 (other cells need neither).
        seeds: ``[]`` = one set of cells with plain names and ``common``'s seed; else one set
            per seed, ``seed=s`` set and names suffixed ``-s<s>`` for every s != 0.
        cross_task_start: :data:`CROSS_TASK_STARTS`: ``"eval_task"`` (A -> B starts from
            ``ft-<B>``) or ``"forget_task"`` (from ``ft-<A>``; B's ratio then uses that model's
            accuracy on B).
        null_lr: the ``null`` experiment's forget learning rate.
        methods: the ``methods`` experiments' ``+``-joined ``forget.method`` names.
        retain: their retain set: ``"others"`` (the other tasks), ``""`` or ``+``-joined tasks.

    Returns:
        Unique cells; every cell comes after the cells it depends on (fine-tuning first).

    Raises:
        SweepError: unknown experiment, method or ``cross_task_start``, ``common`` touching a
            cell key (or ``seed`` with ``seeds``; a methods experiment's ``forget.method`` or
            ``forget.retain_tasks``), ``n_small < 1``, a methods cell needing a retain set
            without one, or a name with two configs.
    """
    root = Path(root).absolute()
    common = dict(common or {})
    bad = sorted(set(common) & set(CELL_KEYS))
    if bad:
        raise SweepError(f"sweep-wide overrides may not set {bad}; the cells set them")
    exps = parse_experiments(experiment)
    if cross_task_start not in CROSS_TASK_STARTS:
        raise SweepError(f"unknown cross_task_start {cross_task_start!r}; known: "
                         f"{', '.join(CROSS_TASK_STARTS)}")
    if "size" in exps and n_small < 1:
        raise SweepError(f"n_small must be >= 1, got {n_small}")
    if seeds and "seed" in common:
        raise SweepError("give seeds or seed (also via base), not both")
    tasks = parse_tasks(tasks)
    meths = parse_methods(methods) if {"methods", "methods_fixed"} & set(exps) else []
    per_seed = [(f"-s{s}" if s else "", {**common, "seed": int(s)}) for s in seeds]
    cells = [c for sfx, com in per_seed or [("", common)]
             for c in _seed_cells(exps, tasks, root, com, sfx, n_small, analyses,
                                     cross_task_start, null_lr, meths, retain)]
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
