"""Whether a run may start or resume in a workdir, checked before any compute.

:func:`validate` (config values, one message per problem), :func:`check_resumable` (a workdir
holding a run of a different config is refused; :data:`ADDED_FIELDS` lets workdirs written
before a field existed resume), :func:`complete_results` (a finished run is not recomputed),
:func:`workdir_lock` (one process per workdir).
:mod:`forget_jax.run` calls these and re-exports them (``run.ConfigError``,
``run.ADDED_FIELDS``, ...).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket

import ml_collections

from forget_jax import methods, rundir

ROLES = ("train", "validation", "test")
STOP_AFTER = ("pretrained", "finetune", "forget", "relearn")
STOP_RULES = ("auto", "chance", "mirror", "fixed")
LOCK_FILE = ".lock"  # <workdir>/.lock: flock'ed by the process running there


class ConfigError(ValueError):
    """A config value is invalid; raised before any compute."""


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks config values up front, with one clear message per problem."""
    from forget_jax.models.registry import precision_kwargs
    from forget_jax.tasks import TASK_NAMES

    def task_ok(t, what):
        if t not in TASK_NAMES:
            raise ConfigError(f"unknown {what} {t!r}; known tasks: {', '.join(TASK_NAMES)}")

    task_ok(config.task, "task")
    try:
        precision_kwargs(config.precision)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if config.job == "eval":
        for s in config.splits.split("+"):
            if s not in ROLES:
                raise ConfigError(f"unknown split {s!r} in splits; use {'+'.join(ROLES)}")
        return
    if config.forget_task:
        task_ok(config.forget_task, "forget_task")
    for t in filter(None, config.eval_tasks.split("+")):
        task_ok(t, "eval task")
    if config.forget_mode not in ("random", "flipped"):
        raise ConfigError(f"unknown forget_mode {config.forget_mode!r}; use 'random' or 'flipped'")
    method = forget_method(config)
    retain = retain_tasks(config)
    for t in retain:
        task_ok(t, "forget.retain_tasks task")
    if (config.forget_task or config.task) in retain:
        raise ConfigError(f"forget.retain_tasks={config.forget.retain_tasks!r} holds the forget "
                          f"task {config.forget_task or config.task!r}; the retain set is other "
                          "tasks")
    if method in methods.NEEDS_RETAIN and not retain:
        raise ConfigError(f"forget.method={method} needs a retain set: set "
                          "forget.retain_tasks (e.g. --config.forget.retain_tasks=arc_easy)")
    hp = config.forget.get(method, {})
    for k in ("beta", "steering_coeff"):
        if k in hp and not hp[k] > 0:
            raise ConfigError(f"forget.{method}.{k} must be > 0, got {hp[k]}")
    if method == "rmu" and config.forget.rmu.n_layers < 1:
        raise ConfigError(f"forget.rmu.n_layers must be >= 1, got {config.forget.rmu.n_layers}")
    if config.stop_after not in STOP_AFTER:
        raise ConfigError(f"unknown stop_after {config.stop_after!r}; use one of {STOP_AFTER}")
    if config.n_train < 1:
        raise ConfigError(f"n_train must be >= 1, got {config.n_train}")
    if config.forget.stop_rule not in STOP_RULES:
        raise ConfigError(f"unknown forget.stop_rule {config.forget.stop_rule!r}; use one of "
                          f"{', '.join(STOP_RULES)}")
    if not 0 <= config.forget.n_train <= config.n_train:
        raise ConfigError(f"forget.n_train must be in [0, n_train={config.n_train}] (0 = the "
                          f"whole train role), got {config.forget.n_train}")
    for name in ("finetune", "forget", "relearn"):
        ph = config[name]
        if not ph.lr > 0:
            raise ConfigError(f"{name}.lr must be > 0, got {ph.lr}")
        if ph.max_epochs < 0 or ph.batch_size < 1:
            raise ConfigError(f"{name}.max_epochs must be >= 0 and batch_size >= 1")
        if not ph.grad_clip > 0:
            raise ConfigError(f"{name}.grad_clip must be > 0, got {ph.grad_clip}")
    if config.init_from:
        res = pathlib.Path(config.init_from) / "results.json"
        if not res.exists():
            raise ConfigError(f"init_from={config.init_from}: no results.json there")
        prev = rundir.read_json(res)
        if "finetuned" not in prev.get("accuracy", {}):
            raise ConfigError(f"init_from={config.init_from} has no finished fine-tune phase")
        # A cross-task cell A -> B starts from B's fine-tune (the default reading) or from A's
        # (sweep cross_task_start="forget_task"; "finetuned" is then that model scored on B).
        starts = {config.task, config.forget_task or config.task}
        if prev.get("task") not in starts or prev.get("model") != config.model:
            raise ConfigError(
                f"init_from={config.init_from} was fine-tuned on {prev.get('task')!r} with "
                f"{prev.get('model')!r}, this run needs task {' or '.join(sorted(starts))!r} / "
                f"{config.model!r}")
        # E.g. a float16 forget run (model.half() + SGD, no float32 master) started from a
        # float32 fine-tune would silently round that checkpoint: one precision per cell chain.
        src_cfg = pathlib.Path(config.init_from) / "config.json"
        src_precision = rundir.read_json(src_cfg).get("precision") if src_cfg.exists() else None
        if src_precision not in (None, config.precision):
            raise ConfigError(
                f"init_from={config.init_from} was fine-tuned with precision={src_precision}, "
                f"this run has precision={config.precision}; use the same precision")


# Keys that may change between a run and its resumption (they do not change the results).
RESUME_FREE_KEYS = ("distributed", "eval_batch_size", "compilation_cache_dir", "dry_run",
                    "dry_run_seq_len", "mesh", "remat", "keep_checkpoints", "verbose")


# Fields added after a run's config.json may have been written, each with the value that
# reproduces the behaviour of code that did not have it: a stored config lacking one of them
# resumes under a config that sets exactly that value. A new config field goes here, so
# existing workdirs (a study resumed across sessions) stay resumable.
ADDED_FIELDS = {"forget.stop_rule": "chance", "forget.n_train": 0,
                "forget.method": "random_labels", "forget.retain_tasks": "",
                "forget.grad_diff.gamma": 1.0, "forget.grad_diff.alpha": 1.0,
                "forget.npo.beta": 0.1, "forget.npo.gamma": 1.0, "forget.npo.alpha": 1.0,
                "forget.simnpo.beta": 4.5, "forget.simnpo.delta": 0.0,
                "forget.simnpo.gamma": 0.125, "forget.simnpo.alpha": 1.0,
                "forget.rmu.layer": 0, "forget.rmu.n_layers": 3,
                "forget.rmu.params": "mlp/down_proj/kernel", "forget.rmu.steering_coeff": 6.5,
                "forget.rmu.gamma": 1.0, "forget.rmu.alpha": 1200.0,
                # Old code kept every checkpoint. Also a RESUME_FREE_KEY (it changes no result),
                # so an old workdir resumes under the new default and is cleaned on completion.
                "keep_checkpoints": True,
                "verbose": True}  # a logging field (also resume-free): old runs logged it all


def forget_method(config) -> str:
    """``forget.method`` resolved with ``forget_mode`` (:func:`methods.resolve`); ConfigError."""
    try:
        return methods.resolve(config.forget.get("method", "random_labels"), config.forget_mode)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def retain_tasks(config) -> list[str]:
    return [t for t in config.forget.get("retain_tasks", "").split("+") if t]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resumable(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Refuses to resume a workdir that holds a run of a different config.

    Keys of :data:`RESUME_FREE_KEYS` may differ; a key of :data:`ADDED_FIELDS` missing from the
    stored config counts as its listed value (``forget.stop_rule`` compared after "auto" is
    resolved for the run's ``forget_mode``).
    """
    wd = pathlib.Path(workdir)
    prev_path = wd / "config.json"
    if not prev_path.exists() or not ((wd / "checkpoints").exists() or
                                      (wd / "results.json").exists()):
        return
    new = _flat(json.loads(json.dumps(config.to_dict())))
    prev = {**{k: v for k, v in ADDED_FIELDS.items() if k in new},
            **_flat(rundir.read_json(prev_path))}
    for cfg in (prev, new):
        if "forget.method" in cfg:  # forget_mode=flipped and forget.method=flipped are one run
            cfg["forget.method"] = methods.resolve(cfg["forget.method"],
                                                   cfg.get("forget_mode", "random"))
        if "forget.stop_rule" in cfg:
            mode = methods.ratio_mode(cfg.get("forget.method", "random_labels"))
            if cfg.get("forget_mode") == "flipped":
                mode = "flipped"
            cfg["forget.stop_rule"] = resolve_stop_rule(cfg["forget.stop_rule"], mode)
        cfg.pop("forget_mode", None)  # compared through the resolved forget.method
    diff = sorted(k for k in set(prev) | set(new)
                  if k.split(".")[0] not in RESUME_FREE_KEYS and prev.get(k) != new.get(k))
    if diff:
        raise ConfigError(
            f"workdir {workdir} holds a run with a different config ({', '.join(diff)} "
            f"differ); use a new --workdir or delete it")


def resolve_stop_rule(rule: str, mode: str) -> str:
    """``forget.stop_rule`` with "auto" resolved: "chance" for random labels, "mirror" for
    flipped ones (whose test accuracy can go below chance, down to 1 - acc_ft)."""
    if rule == "auto":
        return "chance" if mode == "random" else "mirror"
    return rule


def complete_results(workdir: str | pathlib.Path) -> dict | None:
    """The workdir's results.json if it says ``"complete": true``, else None; ConfigError
    (one line) when the file exists but is not a JSON object (truncated, hand-edited)."""
    path = pathlib.Path(workdir) / "results.json"
    if not path.exists():
        return None
    try:
        res = rundir.read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{path} is not readable JSON ({e}); delete it (or the workdir) to "
                          "rerun") from None
    if not isinstance(res, dict):
        raise ConfigError(f"{path} holds a {type(res).__name__}, not a JSON object; delete it "
                          "(or the workdir) to rerun")
    return res if res.get("complete") is True else None


def _try_lock(f) -> str | None:
    """Takes the exclusive lock on the open lock file ``f`` without waiting: None when taken,
    else who holds it (the holder's "pid N on host" line)."""
    import fcntl

    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        return f.read().strip() or "another process"
    return None


def lock_holder(workdir: str | pathlib.Path) -> str | None:
    """Who holds ``workdir``'s run lock right now (see :func:`workdir_lock`), or None: lets a
    sweep skip a cell another process is running instead of recording it as failed."""
    path = pathlib.Path(workdir) / LOCK_FILE
    if not path.is_file():
        return None
    with open(path, "a+", encoding="utf-8") as f:
        return _try_lock(f)  # closing the file drops a lock taken here


@contextlib.contextmanager
def workdir_lock(workdir: str | pathlib.Path, main: bool | None = None):
    """Holds an exclusive advisory lock (``fcntl.flock``) on ``<workdir>/.lock`` while a run
    works there; a second process on the same workdir gets ConfigError at once, before it
    reads or writes anything else. The kernel drops the lock when its holder dies (SIGKILL,
    preemption), so a killed run's leftover file never blocks its rerun. Only process 0 of a
    multi-host run takes it (the others share the workdir); ``main`` None = ask JAX."""
    if not (rundir.is_main() if main is None else main):
        yield
        return
    path = pathlib.Path(workdir) / LOCK_FILE
    f = open(path, "a+", encoding="utf-8")  # held (locked) for the whole block
    try:
        holder = _try_lock(f)
        if holder is not None:
            raise ConfigError(f"workdir {workdir} is in use by another run ({holder}; lock "
                              f"{path}); wait for it to end or use another --workdir")
        f.truncate(0)
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        yield
    finally:
        f.close()  # releases the lock
