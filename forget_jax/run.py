"""One run: zero-shot eval -> fine-tune -> forget (-> relearn) -> metrics, into a workdir.

``run(config, workdir)`` is what ``main.py`` and the tests call. Rerunning the same command on
the same workdir resumes (phase, epoch, RNG and data order included). Resume order: this
workdir's own checkpoints, then ``init_from`` (another run's best fine-tuned checkpoint), then
the Hugging Face / GGUF weights.
"""

from __future__ import annotations

import json
import logging
import pathlib
import shutil
import time

import ml_collections
import numpy as np

from forget_jax import batching, methods, phases, rundir, summary
from forget_jax import checkpoint as ckpt
from forget_jax import sharding as shd
from forget_jax import steps as steps_lib

log = logging.getLogger("forget_jax")

ROLES = ("train", "validation", "test")
STOP_AFTER = ("pretrained", "finetune", "forget", "relearn")
STOP_RULES = ("auto", "chance", "mirror", "fixed")


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
                    "dry_run_seq_len", "mesh", "remat", "verbose")


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


def forget_ratio(acc_ft: float, acc_fg: float, mode: str) -> float | None:
    """Paper's forget ratio; flipped uses the denominator acc_ft - (1 - acc_ft)."""
    denom = acc_ft - 0.5 if mode == "random" else acc_ft - (1.0 - acc_ft)
    return (acc_ft - acc_fg) / denom if denom > 0 else None


def resolve_stop_rule(rule: str, mode: str) -> str:
    """``forget.stop_rule`` with "auto" resolved: "chance" for random labels, "mirror" for
    flipped ones (whose test accuracy can go below chance, down to 1 - acc_ft)."""
    if rule == "auto":
        return "chance" if mode == "random" else "mirror"
    return rule


def forget_stop(rule: str, stop_test_acc: float, acc_ft: float):
    """The forget phase's stop predicate (monitor accuracies -> reason, or None) of a resolved
    rule: "chance" (test < stop_test_acc), "mirror" (test <= 1 - acc_ft) or "fixed" (never)."""
    if rule == "chance":
        return lambda a: f"test_acc < {stop_test_acc}" if a["test"] < stop_test_acc else None
    if rule == "mirror":  # accuracies are k/n fractions: compare with a rounding margin
        floor = 1.0 - acc_ft
        return lambda a: (f"test_acc <= 1 - finetuned test_acc = {floor:.4f}"
                          if a["test"] <= floor + 1e-9 else None)
    if rule == "fixed":
        return lambda a: None
    raise ValueError(f"unknown resolved stop rule {rule!r}")


def forget_indices(task: str, n: int, k: int, seed: int) -> np.ndarray | None:
    """Which of the ``n`` train-role examples form the forget set: None = all of them (k = 0
    or n), else a sorted seeded draw of k (numpy ``default_rng(seed)``); TaskError if k > n."""
    from forget_jax.tasks import TaskError

    if k in (0, n):
        return None
    if k > n:
        raise TaskError(f"forget.n_train={k} but the {task} train role has only {n} examples")
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def forget_subset(split: phases.Split, idx: np.ndarray | None) -> phases.Split:
    """``split`` itself (idx None), else its examples ``idx`` as role "forget" (so its
    predictions, predictions/<phase>/<task>.forget.jsonl, never overwrite the train role's)."""
    if idx is None:
        return split
    return phases.Split(split.task, "forget", [split.examples[i] for i in idx],
                        [split.encoded[i] for i in idx])


def load_data(config, task: str, limit: int | None = None, limit_train: bool = True):
    """Loads a task's roles (no tokenization); TaskError on bad data, before any compute.

    ``limit`` caps every role, or only validation and test with ``limit_train=False`` (the
    forget job: its train role is sized by ``n_train``)."""
    from forget_jax.tasks import load_task

    data = load_task(task, data_dir=config.data_dir or None, n_train=config.n_train,
                     seed=config.seed, limit=limit or None, limit_train=limit_train)
    log.info("%s: roles %s; paper_splits=%s; removed %s", task, data.split_roles,
             data.paper_splits, data.removal_counts)
    return data


def encode_roles(config, tokenizer, data, roles=ROLES) -> dict[str, phases.Split]:
    """Tokenizes the given roles of a task into :class:`phases.Split`."""
    from forget_jax.tasks import TaskError

    out = {}
    for role in roles:
        exs = data.split(role)
        if not exs:
            raise TaskError(f"task {data.task}: the {role} role is empty")
        encs = batching.encode(tokenizer, [e.prompt for e in exs], [e.choices for e in exs],
                               config.max_seq_len)
        out[role] = phases.Split(data.task, role, exs, encs)
    return out


def _setup(config, workdir):
    from forget_jax.models import load_model, precision_kwargs

    t0 = time.perf_counter()
    lm = load_model(config.model, **precision_kwargs(config.precision))
    graphdef, params = steps_lib.split_model(lm.model)
    m = config.mesh
    mesh = shd.make_mesh(m.data, m.fsdp, m.tensor)
    params = shd.put_global(params, shd.param_shardings(params, mesh))
    score_steps = steps_lib.make_steps(graphdef, params, mesh,
                                       feature_layer=config.activations.layer)
    tb = rundir.TensorBoard(pathlib.Path(workdir) / "tensorboard") if rundir.is_main() else None
    if tb is not None:
        tb.hparams(_flat(config.to_dict()))  # so a sweep's runs compare in the HParams view
    env = phases.Env(str(workdir), mesh, graphdef, config.eval_batch_size, config.seed, tb,
                     score_steps, remat=config.get("remat", False))
    log.info("model %s loaded from %s in %.1fs; mesh %s", config.model, lm.source,
             time.perf_counter() - t0, dict(mesh.shape))
    return lm, params, env


def _write_results(workdir, results):
    if rundir.is_main():
        rundir.write_json(pathlib.Path(workdir) / "results.json", results)


def run_eval(config, workdir) -> dict:
    """Zero-shot scoring of one task (configs/eval.py)."""
    roles = tuple(config.splits.split("+"))
    data = load_data(config, config.task, config.limit)
    lm, params, env = _setup(config, workdir)
    splits = encode_roles(config, lm.tokenizer, data, roles)
    scored = phases.evaluate(env, params, "pretrained", [splits[r] for r in roles])
    results = {"task": config.task, "model": config.model, "seed": config.seed,
               "n_examples": {r: len(splits[r].examples) for r in roles},
               "split_roles": data.split_roles, "paper_splits": data.paper_splits,
               "accuracy": {"pretrained": {r: scored[splits[r].name]["acc"] for r in roles}},
               "complete": True}
    if rundir.is_main():  # wall-clock figures go to history.jsonl, never into results.json
        rundir.write_jsonl(pathlib.Path(workdir) / "history.jsonl", [
            {"phase": "pretrained", "role": r, "acc": scored[splits[r].name]["acc"],
             "examples_per_s": scored[splits[r].name]["examples_per_s"],
             "seconds": scored[splits[r].name]["seconds"]} for r in roles])
    _write_results(workdir, results)
    if env.tb is not None:
        env.tb.scalars(0, summary.scalars(results))
        env.tb.flush()
    return results


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs (or resumes) one job described by ``config`` in ``workdir``; returns results."""
    t0 = time.perf_counter()
    validate(config)
    workdir = str(pathlib.Path(workdir).absolute())
    pathlib.Path(workdir).mkdir(parents=True, exist_ok=True)
    check_resumable(config, workdir)
    done = pathlib.Path(workdir) / "results.json"
    if done.exists() and rundir.read_json(done).get("complete"):  # same config: nothing to do
        log.info("%s already holds this run, complete; nothing to do (delete results.json "
                 "to rerun it)", workdir)
        results = rundir.read_json(done)
    else:
        if rundir.is_main():
            rundir.write_json(pathlib.Path(workdir) / "config.json", config.to_dict())
        results = (run_eval if config.job == "eval" else run_forget)(config, workdir)
    summary.report(workdir, results, time.perf_counter() - t0)
    return results


def run_forget(config, workdir) -> dict:
    task = config.task
    ftask = config.forget_task or task
    extra = [t for t in config.eval_tasks.split("+") if t and t != task]
    limit = config.limit or None
    data = load_data(config, task, limit, limit_train=False)
    data_a = data if ftask == task else load_data(config, ftask, limit, limit_train=False)
    data_others = {t: load_data(config, t, limit, limit_train=False) for t in extra}
    method_name = forget_method(config)
    mode = methods.ratio_mode(method_name)  # which forget ratio is the run's own
    data_retain = [load_data(config, t, limit, limit_train=False) for t in retain_tasks(config)]
    f_idx = forget_indices(ftask, len(data_a.split("train")), config.forget.n_train,
                           config.seed)
    lm, params, env = _setup(config, workdir)
    B = encode_roles(config, lm.tokenizer, data)
    A = B if ftask == task else encode_roles(config, lm.tokenizer, data_a, ("train",))
    F = forget_subset(A["train"], f_idx)  # the forget set (forget and relearn train on it)
    others = {t: encode_roles(config, lm.tokenizer, d, ("test",))["test"]
              for t, d in data_others.items()}
    retain = None  # the retain set: the train roles of forget.retain_tasks, one Split
    if data_retain:
        parts = [encode_roles(config, lm.tokenizer, d, ("train",))["train"] for d in data_retain]
        retain = phases.Split("+".join(p.task for p in parts), "retain",
                              [e for p in parts for e in p.examples],
                              [e for p in parts for e in p.encoded])
    try:
        method = methods.build(method_name, config.forget, params, lm.model.config.num_layers,
                               retain is not None)
    except ValueError as e:  # rmu: a layer out of range, a parameter pattern matching nothing
        raise ConfigError(str(e)) from None

    results = {"task": task, "model": config.model, "forget_mode": mode,
               "forget_method": method_name,
               "forget_task": ftask, "eval_task": task, "seed": config.seed,
               "n_examples": {r: len(B[r].examples) for r in ROLES},
               "n_forget_train": len(F.examples),
               "split_roles": data.split_roles, "paper_splits": data.paper_splits,
               "forget_set": {"task": ftask, "split": F.name, "n": len(F.examples),
                              "accuracy": {}, "confidence": {}},
               "accuracy": {}, "epochs": {}, "params_changed_fraction": {}, "complete": False}
    if retain is not None:
        results["retain_set"] = {"tasks": retain_tasks(config), "n": len(retain.examples)}
    eval_splits = [B[r] for r in ROLES] + ([A["train"]] if ftask != task else []) + \
        ([F] if F is not A["train"] else []) + list(others.values())

    def record(phase_name, scored):
        results["accuracy"][phase_name] = {r: scored[B[r].name]["acc"] for r in ROLES}
        if ftask != task:
            results.setdefault("forget_train_accuracy", {})[phase_name] = \
                scored[A["train"].name]["acc"]
        results["forget_set"]["accuracy"][phase_name] = scored[F.name]["acc"]
        results["forget_set"]["confidence"][phase_name] = \
            float(np.mean(scored[F.name]["confidence"]))
        for t, sp in others.items():
            results.setdefault("eval_tasks", {}).setdefault(t, {})[phase_name] = \
                scored[sp.name]["acc"]
        _write_results(workdir, results)

    def changed(phase_name, start, end):
        frac = float(steps_lib.changed_fraction(start, end))
        results["params_changed_fraction"][phase_name] = frac
        log.info("%s changed %.4f of the parameters", phase_name, frac)

    def activations(phase_name, p):
        if config.activations.enabled:
            tree = phases.features(env, p, [B[r] for r in ROLES], config.activations.layer)
            ckpt.save_activations(pathlib.Path(workdir) / "activations" / phase_name, tree,
                                  config.activations.dtype)

    history: list[dict] = []
    # --- pretrained + fine-tune (or reuse another run's fine-tuned checkpoint) -------------
    if config.init_from:
        src = pathlib.Path(config.init_from)
        prev = rundir.read_json(src / "results.json")
        results["init_task"] = prev["task"]  # whose fine-tuned checkpoint this run starts from
        if prev["task"] == task:  # the start model's zero-shot scores are the source cell's
            results["accuracy"]["pretrained"] = prev["accuracy"]["pretrained"]
            for sub in ("predictions/pretrained", "activations/pretrained"):
                if (src / sub).is_dir() and rundir.is_main():
                    shutil.copytree(src / sub, pathlib.Path(workdir) / sub, dirs_exist_ok=True)
        else:  # started from the forget task's fine-tune: score B zero-shot here
            record("pretrained", phases.evaluate(env, params, "pretrained", eval_splits))
            activations("pretrained", params)
        results["epochs"]["finetune"] = prev["epochs"]["finetune"]
        if "finetune" in prev.get("params_changed_fraction", {}):
            results["params_changed_fraction"]["finetune"] = \
                prev["params_changed_fraction"]["finetune"]
        results["init_from"] = str(src)
        best = ckpt.BestCheckpoint(src)
        params, _ = best.restore(ckpt.abstract_like(params))
        best.close()
    else:
        scored = phases.evaluate(env, params, "pretrained", eval_splits)
        record("pretrained", scored)
        activations("pretrained", params)
        if config.stop_after == "pretrained":
            return _complete(workdir, results, env)
        ft = config.finetune
        spec = phases.PhaseSpec(
            "finetune", ft.lr, ft.max_epochs, ft.batch_size, ft.grad_clip, "gold", B["train"],
            {r: B[r] for r in ROLES},
            lambda a, s=ft.stop_train_acc: f"train_acc >= {s}" if a["train"] >= s else None,
            keep_best=True, patience=ft.patience)
        start = params
        params, summary = phases.train_phase(
            env, spec, params, {r: scored[B[r].name] for r in ROLES}, history)
        changed("finetune", start, params)  # the best (returned) checkpoint vs pretrained
        del start
        history = history + summary["history"]
        results["epochs"]["finetune"] = summary["epochs"]
        results["best_finetune_epoch"] = summary["best_epoch"]
    scored = phases.evaluate(env, params, "finetuned", eval_splits)
    record("finetuned", scored)
    activations("finetuned", params)
    if config.stop_after == "finetune":
        return _complete(workdir, results, env)

    # --- forget ------------------------------------------------------------------------------
    fg = config.forget
    acc_ft = results["accuracy"]["finetuned"]["test"]
    rule = resolve_stop_rule(fg.stop_rule, mode)
    results["forget_stop_rule"] = rule
    log.info("forget method %s, stop rule %s (forget.stop_rule=%s)", method_name, rule,
             fg.stop_rule)
    monitor = {"train": F, "validation": B["validation"], "test": B["test"]}
    # The reference model of npo / rmu is the fine-tuned checkpoint just restored (own best or
    # init_from's): on resume it is restored from that checkpoint again, never re-derived.
    spec = phases.PhaseSpec(
        "forget", fg.lr, fg.max_epochs, fg.batch_size, fg.grad_clip, method.label_mode,
        F, monitor, forget_stop(rule, fg.stop_test_acc, acc_ft), loss=method.loss,
        aux=method.aux(params, lm.model.config.hidden_size, config.seed),
        aux_shardings=method.aux_shardings(env.score_steps.param_shardings, env.mesh),
        retain=retain)
    init = {r: scored[sp.name] for r, sp in monitor.items()}
    start = params
    params, summary = phases.train_phase(env, spec, params, init, history)
    changed("forget", start, params)
    del start
    history = history + summary["history"]
    results["epochs"]["forget"] = summary["epochs"]
    results["forget_stop_reason"] = summary["stop_reason"]
    scored = phases.evaluate(env, params, "forgotten", eval_splits)
    record("forgotten", scored)
    activations("forgotten", params)
    acc = results["accuracy"]
    results["forget_gap"] = acc["forgotten"]["test"] - 0.5
    for mode in ("random", "flipped"):
        r = forget_ratio(acc["finetuned"]["test"], acc["forgotten"]["test"], mode)
        if r is not None:
            results[f"forget_ratio_{mode}"] = r
    r = forget_ratio(acc["finetuned"]["test"], acc["forgotten"]["test"], mode)
    if r is not None:
        results["forget_ratio"] = r
    else:
        results["forget_ratio_note"] = "undefined: fine-tuned test accuracy does not beat chance"
    for d in results.get("eval_tasks", {}).values():
        if "finetuned" in d and "forgotten" in d:
            rr = forget_ratio(d["finetuned"], d["forgotten"], mode)
            if rr is not None:
                d["forget_ratio"] = rr
    _write_results(workdir, results)

    # --- relearn (learning-order analysis) -----------------------------------------------------
    if config.relearn.enabled or config.stop_after == "relearn":
        rl = config.relearn
        spec = phases.PhaseSpec(
            "relearn", rl.lr, rl.max_epochs, rl.batch_size, rl.grad_clip, "gold", F,
            {"train": F},
            lambda a, s=rl.stop_train_acc: f"train_acc >= {s}" if a["train"] >= s else None)
        start = params
        params, summary = phases.train_phase(
            env, spec, params, {"train": scored[F.name]}, history)
        changed("relearn", start, params)
        del start
        results["epochs"]["relearn"] = summary["epochs"]
        scored = phases.evaluate(env, params, "relearned", eval_splits)
        record("relearned", scored)
    return _complete(workdir, results, env)


def _complete(workdir, results, env) -> dict:
    if env.tb is not None:  # the summary scalars, one step after the last phase's points
        hist = pathlib.Path(workdir) / "history.jsonl"
        rows = [json.loads(x) for x in hist.open()] if hist.exists() else []
        end = phases.timeline_start(rows)
        env.tb.restart(end)
        env.tb.scalars(end, summary.scalars(results))
        env.tb.flush()
    results["complete"] = True
    _write_results(workdir, results)
    return results

