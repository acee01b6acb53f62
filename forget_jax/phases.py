"""The paper's protocol as small functions over explicit state (Appendix A defaults).

``evaluate`` (score splits, write predictions), ``train_phase`` (the epoch loop shared by
fine-tune, forget and relearn: per-epoch targets, steps, per-epoch evaluation, history,
checkpoints, stop rules) and the label rules of each phase. :mod:`forget_jax.run` strings them
together: pretrained -> finetune -> forget -> (relearn).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import jax
import numpy as np

from forget_jax import batching, progress, rundir, scoring
from forget_jax import checkpoint as ckpt
from forget_jax import sharding as shd
from forget_jax import steps as steps_lib

log = logging.getLogger("forget_jax")

PHASE_IDS = {"finetune": 1, "forget": 2, "relearn": 3}


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN/inf."""


@dataclasses.dataclass
class Split:
    """One (task, role) with its examples and their token ids."""

    task: str
    role: str
    examples: list
    encoded: list[batching.Encoded]

    @property
    def gold(self) -> np.ndarray:
        return np.array([e.gold for e in self.examples], np.int64)

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.examples]

    @property
    def name(self) -> str:
        return f"{self.task}.{self.role}"


@dataclasses.dataclass
class Env:
    """What every phase needs: workdir, mesh, model graph, eval batch size, writers."""

    workdir: str
    mesh: object
    graphdef: object
    eval_batch_size: int
    seed: int
    tb: rundir.TensorBoard | None
    score_steps: steps_lib.Steps
    progress: bool = True
    remat: bool = False


def score_split(env: Env, params, split: Split, desc: str = "",
                bar: progress.Bar | None = None) -> dict:
    """Scores one split; returns mean_ll/counts/pred/correct/confidence/acc/throughput.
    ``bar``: the phase's progress bar (None: one of its own, ``desc``)."""
    mean_ll, counts, info = scoring.score_encoded(
        env.score_steps, params, split.encoded, env.eval_batch_size,
        desc=desc or split.name, progress=env.progress, bar=bar, label=split.name)
    p = scoring.predictions(mean_ll, split.gold)
    return dict(mean_ll=mean_ll, counts=counts, acc=float(np.mean(p["correct"])), **p, **info)


def write_predictions(env: Env, phase: str, split: Split, scored: dict) -> None:
    if rundir.is_main():
        rows = scoring.prediction_records(split.examples, scored["mean_ll"], scored["counts"])
        rundir.write_jsonl(f"{env.workdir}/predictions/{phase}/{split.name}.jsonl", rows)


def evaluate(env: Env, params, phase: str, splits: list[Split]) -> dict[str, dict]:
    """Scores and writes predictions/<phase>/<task>.<split>.jsonl; returns {name: scored}."""
    out = {}
    bar = progress.Bar(f"score {phase}", sum(len(s.examples) for s in splits), env.progress)
    for split in splits:
        scored = score_split(env, params, split, bar=bar)
        write_predictions(env, phase, split, scored)
        extra = scoring.lm_eval_metrics(scored["mean_ll"], scored["counts"],
                                        [e.choices for e in split.examples], split.gold)
        with bar.above():
                log.info("%s %s: acc %.4f (lm-eval acc %.4f, acc_norm %.4f) n=%d, %.1f ex/s",
                     phase, split.name, scored["acc"], extra["acc_sum"], extra["acc_norm"],
                     len(split.examples), scored["examples_per_s"])
        out[split.name] = scored
    bar.close()
    return out


def features(env: Env, params, splits: list[Split], layer: int) -> dict:
    """Hidden states of ``layer`` at the last prompt token and the last token of each answer."""
    fsteps = env.score_steps
    if getattr(fsteps, "feature_layer", layer) != layer:
        raise ValueError("feature layer mismatch")
    tree = {"layer": np.int32(layer)}
    B = shd.pad_batch_size(env.eval_batch_size, env.mesh)
    for split in splits:
        D = None
        chunks = []
        for idx, batch in batching.length_sorted_batches(split.encoded, B):
            h = fsteps.features(params, shd.put_batch(batching.score_batch(batch, B), env.mesh))
            chunks.append((idx, h))
        out = None
        for idx, h in chunks:
            h = shd.to_host(h).astype(np.float32)[: len(idx)]
            if out is None:
                D = h.shape[-1]
                out = np.zeros((len(split.encoded), 3, D), np.float32)
            out[idx] = h
        tree[split.name] = {"prompt_last": out[:, 0], "answer_last": out[:, 1:],
                            "gold": split.gold.astype(np.int32)}
    return tree


def epoch_targets(mode: str, gold: np.ndarray, seed: int, phase: str, epoch: int) -> np.ndarray:
    """Training targets of one epoch: gold (fine-tune/relearn), a fresh uniform draw between
    gold and distractor (forget, "random"), or always the distractor (forget, "flipped")."""
    if mode == "gold":
        return gold.copy()
    if mode == "flipped":
        return 1 - gold
    if mode == "random":
        rng = np.random.default_rng([seed, PHASE_IDS[phase], epoch, 7])
        return rng.integers(0, 2, size=len(gold))
    raise ValueError(f"unknown label mode {mode!r}")


def epoch_order(n: int, seed: int, phase: str, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, PHASE_IDS[phase], epoch, 11]).permutation(n)


def retain_order(n: int, seed: int, phase: str, epoch: int) -> np.ndarray:
    """The retain set's order in one epoch; step k takes the next ``batch_size`` (cycling)."""
    return np.random.default_rng([seed, PHASE_IDS[phase], epoch, 13]).permutation(n)


@dataclasses.dataclass
class PhaseSpec:
    name: str  # finetune | forget | relearn
    lr: float
    max_epochs: int
    batch_size: int
    grad_clip: float
    label_mode: str  # gold | random | flipped
    train: Split  # the examples trained on
    monitor: dict[str, Split]  # role -> split evaluated each epoch (train/validation/test)
    stop: Callable[[dict[str, float]], str | None]  # accuracies -> reason to stop, or None
    keep_best: bool = False  # keep the best checkpoint by validation accuracy
    patience: int = 0
    # A forgetting method (forget_jax.methods): its loss, the frozen pytree it reads (the
    # reference model) with its shardings, and a retain set (gold answers) batched beside
    # each training batch. The defaults are the plain NLL of the phase's targets.
    loss: Callable = steps_lib.default_loss
    aux: object = None
    aux_shardings: object = None
    retain: Split | None = None


def timeline_start(history: list[dict]) -> int:
    """TensorBoard's global step of the epoch-0 point of the phase after ``history``'s phases.

    One timeline across phases: step 0 holds the run's config (hparams), the first phase's
    epoch 0 is step 1, its k-th train step 1 + k; each later phase starts one step after the
    previous phase's last (so a phase's restart marker never purges its predecessor's points).
    """
    last: dict[str, int] = {}
    for row in history:
        if "step" in row:
            last[row["phase"]] = int(row["step"])
    return 1 + sum(s + 1 for s in last.values())


def train_phase(env: Env, spec: PhaseSpec, params, initial_scores: dict[str, dict],
                history_prefix: list[dict]) -> tuple[object, dict]:
    """Runs (or resumes) one training phase. Returns (final params, summary).

    ``initial_scores``: role -> scored dict of the starting state (recorded as epoch 0).
    ``history_prefix``: history rows of earlier phases (history.jsonl is rewritten whole).
    """
    wd = env.workdir
    steps = steps_lib.make_steps(env.graphdef, params, env.mesh, lr=spec.lr,
                                 grad_clip=spec.grad_clip, remat=env.remat, loss=spec.loss,
                                 aux_shardings=spec.aux_shardings,
                                 retain=spec.retain is not None)
    aux = () if spec.aux_shardings is None else (spec.aux,)
    latest = ckpt.PhaseCheckpoints(wd, spec.name)
    best = ckpt.BestCheckpoint(wd) if spec.keep_best else None
    recorder = rundir.EpochRecorder(wd, spec.name)
    base = timeline_start(history_prefix)  # TensorBoard step of this phase's epoch 0
    meta = latest.restore_meta()
    if meta is not None:
        state, meta = latest.restore(steps.abstract_state(params))
        start_epoch = meta["epoch"] + 1
        history, best_acc, best_epoch = meta["history"], meta["best_acc"], meta["best_epoch"]
        stale = meta["stale"]
        recorder.resume(meta["epoch"])
        log.info("resuming %s after epoch %d (step %d)", spec.name, meta["epoch"],
                 int(state.step))
        if meta.get("done"):
            return _finish(env, spec, state.params, best, meta, latest)
        if env.tb is not None:  # drops what a killed run logged after this checkpoint
            env.tb.restart(base + int(state.step) + 1)
    else:
        state = steps.init_state(params)
        start_epoch, history, best_acc, best_epoch, stale = 1, [], -1.0, 0, 0
        for role, sc in initial_scores.items():
            recorder.add(0, role, sc["confidence"], sc["correct"], spec.monitor[role].ids)
        if rundir.is_main():
            recorder.write()
        if env.tb is not None:  # epoch 0: the starting state, after any killed attempt's points
            env.tb.restart(base)
            env.tb.scalars(base, {f"{spec.name}/{r}_acc": sc["acc"]
                                  for r, sc in initial_scores.items()})

    B = shd.pad_batch_size(spec.batch_size, env.mesh)
    n = len(spec.train.examples)
    gold = spec.train.gold
    reason = None
    n_steps = -(-n // spec.batch_size)  # per epoch
    per_epoch = n + sum(len(s.examples) for s in spec.monitor.values())
    bar = progress.Bar(spec.name, max(spec.max_epochs - start_epoch + 1, 0) * per_epoch,
                       env.progress)
    step = int(state.step)

    def done(metrics: list[dict], m, k: int) -> None:
        """One step's results on the host: the epoch's metrics, the bar, TensorBoard."""
        nonlocal step
        metrics.append(jax.device_get(m))
        step += 1
        loss = float(metrics[-1]["loss"])
        bar.update(k, step=f"{len(metrics)}/{n_steps}",
                   loss=f"{np.mean([float(x['loss']) for x in metrics]):.4f}")
        if env.tb is not None:
            env.tb.scalars(base + step, {
                f"{spec.name}/step/train_loss": loss,
                f"{spec.name}/step/grad_norm": float(metrics[-1]["grad_norm"])})

    for epoch in range(start_epoch, spec.max_epochs + 1):
        t0 = time.perf_counter()
        bar.describe(f"{spec.name} epoch {epoch}/{spec.max_epochs}")
        targets = epoch_targets(spec.label_mode, gold, env.seed, spec.name, epoch)
        order = epoch_order(n, env.seed, spec.name, epoch)
        if spec.retain is not None:
            r_order = retain_order(len(spec.retain.examples), env.seed, spec.name, epoch)
        metrics: list[dict] = []
        in_flight = None  # the last dispatched step: (metrics, examples)
        for start in range(0, n, spec.batch_size):
            idx = order[start : start + spec.batch_size]
            host = _train_batch(spec.train, idx, [int(targets[i]) for i in idx], B, env.mesh)
            if spec.retain is not None:
                r_idx = r_order[np.arange(start, start + len(idx)) % len(r_order)]
                host["retain"] = _train_batch(spec.retain, r_idx, spec.retain.gold[r_idx], B,
                                              env.mesh)
            state, m = steps.train(state, shd.put_batch(host, env.mesh), *aux)
            if in_flight is not None:  # fetched one step behind: the device stays busy
                done(metrics, *in_flight)
            in_flight = (m, len(idx))
        if in_flight is not None:
            done(metrics, *in_flight)
        losses = np.array([float(m["loss"]) for m in metrics])
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            step = int(state.step) - len(losses) + int(bad[0]) + 1
            raise NonFiniteLoss(
                f"non-finite loss ({losses[bad[0]]}) in phase {spec.name}, epoch {epoch}, "
                f"step {step}; the last good checkpoint (epoch {epoch - 1}) is kept in "
                f"{latest.dir}")
        train_secs = time.perf_counter() - t0
        accs = {}
        for role, split in spec.monitor.items():
            sc = score_split(env, state.params, split, bar=bar)
            accs[role] = sc["acc"]
            recorder.add(epoch, role, sc["confidence"], sc["correct"], split.ids)
        row = {"phase": spec.name, "epoch": epoch, "step": int(state.step), "lr": spec.lr,
               "train_loss": float(losses.mean()),
               **{f"{r}_acc": a for r, a in accs.items()},
               "grad_norm": float(np.mean([float(m["grad_norm"]) for m in metrics])),
               "grad_norm_clipped": float(np.mean([float(m["grad_norm_clipped"])
                                                   for m in metrics])),
               "examples_per_s": n / train_secs,
               "seconds": time.perf_counter() - t0}
        history.append(row)
        with bar.above():
            log.info("%s epoch %d: loss %.4f %s (%.1fs)", spec.name, epoch, row["train_loss"],
                     " ".join(f"{r} {a:.3f}" for r, a in accs.items()), row["seconds"])
        if env.tb is not None:
            env.tb.scalars(base + row["step"], {f"{spec.name}/{k}": v for k, v in row.items()
                                                if isinstance(v, float) and k != "seconds"})
            env.tb.flush()
        if best is not None and accs["validation"] > best_acc:
            best_acc, best_epoch, stale = accs["validation"], epoch, 0
            best.save(epoch, state.params, best_acc, {"epoch": epoch, "accuracy": accs})
        else:
            stale += 1
        reason = spec.stop(accs)
        if reason is None and spec.patience and stale >= spec.patience:
            reason = f"no validation improvement for {spec.patience} epochs"
        if reason is None and epoch == spec.max_epochs:
            reason = f"max_epochs={spec.max_epochs}"
        meta = {"phase": spec.name, "epoch": epoch, "history": history, "best_acc": best_acc,
                "best_epoch": best_epoch, "stale": stale, "done": reason is not None,
                "stop_reason": reason}
        if rundir.is_main():
            recorder.write()
            rundir.write_jsonl(f"{wd}/history.jsonl", history_prefix + history)
        with bar.above():
            latest.save(epoch, state, meta)
        if reason is not None:
            break
    bar.close()
    if meta is None:  # max_epochs == 0: nothing trained
        meta = {"phase": spec.name, "epoch": 0, "history": [], "best_acc": best_acc,
                "best_epoch": 0, "done": True, "stop_reason": "max_epochs=0"}
    return _finish(env, spec, state.params, best, meta, latest)


def _train_batch(split: Split, idx, targets, B: int, mesh) -> dict:
    """The host training batch of examples ``idx`` of ``split`` (padded to ``B``); short
    examples share rows."""
    encs = [split.encoded[i] for i in idx] + [None] * (B - len(idx))
    tg = [int(t) for t in targets] + [0] * (B - len(idx))
    return batching.train_batch(encs, tg, B, pack_len=batching.PACK_LEN,
                                row_multiple=shd.batch_divisor(mesh))


def _finish(env, spec, params, best, meta, latest):
    log.info("%s done after epoch %d: %s", spec.name, meta["epoch"], meta.get("stop_reason"))
    latest.close()
    summary = {"epochs": meta["epoch"], "history": meta["history"],
               "stop_reason": meta.get("stop_reason"), "best_epoch": meta.get("best_epoch")}
    if best is not None:
        if best.exists():
            params, _ = best.restore(ckpt.abstract_like(params))
        best.close()
    return params, summary
