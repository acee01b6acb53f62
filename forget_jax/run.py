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

from forget_jax import batching, cleanup, methods, phases, rundir
from forget_jax import checkpoint as ckpt
from forget_jax import sharding as shd
from forget_jax import steps as steps_lib
from forget_jax import summary as summary_lib

# Re-exported: the admission checks are part of this module's interface (tests, errors,
# entry; ADDED_FIELDS is extended where a config field is added).
from forget_jax.resume import (  # noqa: F401
    ADDED_FIELDS,
    RESUME_FREE_KEYS,
    ROLES,
    STOP_AFTER,
    STOP_RULES,
    ConfigError,
    _flat,
    check_resumable,
    complete_results,
    forget_method,
    resolve_stop_rule,
    retain_tasks,
    validate,
    workdir_lock,
)

log = logging.getLogger("forget_jax")


def forget_ratio(acc_ft: float, acc_fg: float, mode: str) -> float | None:
    """Paper's forget ratio; flipped uses the denominator acc_ft - (1 - acc_ft)."""
    denom = acc_ft - 0.5 if mode == "random" else acc_ft - (1.0 - acc_ft)
    return (acc_ft - acc_fg) / denom if denom > 0 else None


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
        env.tb.scalars(0, summary_lib.scalars(results))
        env.tb.flush()
    return results


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs (or resumes) one job described by ``config`` in ``workdir``; returns results."""
    t0 = time.perf_counter()
    validate(config)
    workdir = str(pathlib.Path(workdir).absolute())
    pathlib.Path(workdir).mkdir(parents=True, exist_ok=True)
    with workdir_lock(workdir):  # a second process on this workdir: ConfigError, no writes
        return _run_locked(config, workdir, t0)


def _run_locked(config, workdir, t0: float) -> dict:
    check_resumable(config, workdir)
    done = complete_results(workdir)
    if done is not None:  # same config: nothing to do
        log.info("%s already holds this run, complete; nothing to do (delete results.json "
                 "to rerun it)", workdir)
        _drop_checkpoints(config, workdir)  # a run killed after completing, before cleanup
        results = done
    else:
        if rundir.is_main():
            rundir.write_json(pathlib.Path(workdir) / "config.json", config.to_dict())
        results = (run_eval if config.job == "eval" else run_forget)(config, workdir)
        _drop_checkpoints(config, workdir)
    summary_lib.report(workdir, results, time.perf_counter() - t0)
    return results


def _drop_checkpoints(config, workdir) -> None:
    """A complete run keeps only what later work reads (forget_jax/cleanup.py), unless
    ``keep_checkpoints``."""
    if config.get("keep_checkpoints", False) or not rundir.is_main():
        return
    freed = cleanup.clean_run(workdir)
    if freed:
        log.info("complete: dropped the epoch checkpoints (%s); kept checkpoints/finetune_best "
                 "and activations (keep_checkpoints=True keeps all)", cleanup.human(freed))


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
        env.tb.scalars(end, summary_lib.scalars(results))
        env.tb.flush()
    results["complete"] = True
    _write_results(workdir, results)
    return results

