"""The ``epoch_<task>`` workload: forget epochs of the real job, ours against PyTorch eager.

Ours is :func:`forget_jax.phases.train_phase` itself (random labels, SGD with global-norm
clipping, the per-epoch scoring of the monitored splits, the epoch checkpoint) in a temporary
workdir, on the task as the forget job loads it (``run.load_data`` / ``run.encode_roles`` with
``configs/forget.py``'s config, ``n_train`` training examples, validation and test capped at
``--epoch-monitor-n``; the monitored train split is the set trained on, as in the job).

PyTorch runs the equivalent eager loop on the same token ids: every epoch the job's own targets
and order (``phases.epoch_targets`` / ``epoch_order``), batches of ``forget.batch_size``
right-padded, the response-only loss, ``clip_grad_norm_(forget.grad_clip)``,
``torch.optim.SGD``; then lm-eval's loop scores both choices of every monitored example and
the prediction is the higher mean per-token log-likelihood (ours: ``scoring.predictions``).

Checks: every step's loss (max |diff| over the run) and, after every epoch, each monitored
split's accuracy and per-example prediction agreement.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np

from bench import peers
from bench.machine import PeakRSS

LOSS_TOL = 1e-2  # max |diff| of any step's loss (float32 both sides; drift grows with the steps)
ACC_TOL = 0.02  # |diff| of a monitored split's accuracy after an epoch
MIN_AGREE = 0.98  # per-example prediction agreement after an epoch


class StepLog:
    """Stands in for ``rundir.TensorBoard`` in ``env.tb``: keeps every step's train loss."""

    def __init__(self):
        self.losses: dict[int, float] = {}

    def scalars(self, step: int, values: dict) -> None:
        for k, v in values.items():
            if k.endswith("/step/train_loss"):
                self.losses[step] = float(v)

    def restart(self, step: int) -> None:
        pass

    def flush(self) -> None:
        pass


def _job(bx, task: str):
    """(config, forget split F, monitored splits) as the forget job builds them."""
    from configs import forget as forget_config
    from forget_jax import run

    args = bx.args
    config = forget_config.get_config(task)
    config.data_dir = args.data_dir
    config.n_train = args.epoch_train_n
    data = run.load_data(config, task, limit=args.epoch_monitor_n, limit_train=False)
    splits = run.encode_roles(config, bx.tok, data)
    return config, splits["train"], {r: splits[r] for r in ("train", "validation", "test")}


def run_ours(bx, config, F, monitor, lr: float, epochs: int) -> dict:
    import jax

    from forget_jax import phases
    from forget_jax import steps as steps_lib

    fg = config.forget
    tb = StepLog()
    with tempfile.TemporaryDirectory(prefix="bench-epoch-") as wd:
        env = phases.Env(wd, bx.mesh, bx.graphdef, config.eval_batch_size, config.seed, tb,
                         steps_lib.make_steps(bx.graphdef, bx.params0, bx.mesh), progress=False)
        init = {r: phases.score_split(env, bx.params0, s) for r, s in monitor.items()}
        spec = phases.PhaseSpec("forget", lr, epochs, fg.batch_size, fg.grad_clip, "random",
                                F, monitor, lambda accs: None)
        params = jax.tree.map(lambda x: x.copy(), bx.params0)  # the step donates its state
        mem = PeakRSS().start()
        t0 = time.perf_counter()
        _, summary = phases.train_phase(env, spec, params, init, [])
        wall = time.perf_counter() - t0
        mem = mem.stop()
        with np.load(f"{wd}/predictions/epochs/forget.npz") as z:
            correct = {r: z[f"{r}_correct"][1:] for r in monitor}  # [E, N]; row 0: epoch 0
    hist = summary["history"]
    return dict(epoch_s=[h["seconds"] for h in hist], wall_s=wall, losses=[
        tb.losses[k] for k in sorted(tb.losses)], accs=[{r: h[f"{r}_acc"] for r in monitor}
                                                        for h in hist],
        correct=correct, init_acc={r: sc["acc"] for r, sc in init.items()}, mem=mem)


def run_torch(bx, config, F, monitor, lr: float, epochs: int) -> dict:
    import torch

    from forget_jax import phases

    fg, model = config.forget, bx.ref
    requests = {r: [(list(e.ctx), list(c)) for e in s.encoded for c in e.conts[:2]]
                for r, s in monitor.items()}  # our token ids: the same inputs by construction
    gold = F.gold
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    mem = PeakRSS().start()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses, accs, epoch_s = [], [], []
    correct = {r: [] for r in monitor}
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        targets = phases.epoch_targets("random", gold, config.seed, "forget", epoch)
        order = phases.epoch_order(len(F.examples), config.seed, "forget", epoch)
        model.train()
        for start in range(0, len(order), fg.batch_size):
            idx = order[start:start + fg.batch_size]
            (batch,) = peers.torch_train_batches([F.encoded[i] for i in idx],
                                                 [int(targets[i]) for i in idx], len(idx))
            loss = peers.torch_train_step(model, opt, batch, clip=fg.grad_clip)
            losses.append(float(loss))
        model.eval()
        acc = {}
        for r, s in monitor.items():
            res = peers.lm_eval_loglikelihood(model, requests[r])
            n = np.array([len(c) for _, c in requests[r]]).reshape(-1, 2)
            pred = (np.array([x for x, _ in res]).reshape(-1, 2) / n).argmax(1)
            correct[r].append(pred == s.gold)
            acc[r] = float(np.mean(correct[r][-1]))
        accs.append(acc)
        epoch_s.append(time.perf_counter() - t0)
    mem = mem.stop()
    model.load_state_dict(saved)
    return dict(epoch_s=epoch_s, losses=losses, accs=accs,
                correct={r: np.stack(v) for r, v in correct.items()}, mem=mem)


def epoch_row(bx, task: str) -> None:
    """One ``epoch_<task>`` line: train examples + monitored examples per second of an epoch
    (median of the epochs after the first; the first, which compiles, is the warm-up)."""
    args = bx.args
    config, F, monitor = _job(bx, task)
    lr = config.forget.lr if args.epoch_lr is None else args.epoch_lr
    epochs = 1 + args.epoch_repeats
    n_ex = len(F.examples) + sum(len(s.examples) for s in monitor.values())
    # the random targets differ per epoch: MFU counts the gold answers' tokens
    train_tok = sum(len(e.ctx) + len(e.conts[g]) for e, g in zip(F.encoded, F.gold, strict=True))
    ours_r = run_ours(bx, config, F, monitor, lr, epochs)
    med = statistics.median(ours_r["epoch_s"][1:])
    score_tok = sum(e.packed_len for s in monitor.values() for e in s.encoded)
    ours = dict(per_s=n_ex / med, epoch_s=med, epochs_s=ours_r["epoch_s"],
                compile_s=max(ours_r["epoch_s"][0] - med, 0.0),
                wall_per_epoch_s=ours_r["wall_s"] / epochs, lr=lr, n_train=len(F.examples),
                n_monitored={r: len(s.examples) for r, s in monitor.items()},
                accs=ours_r["accs"], precision="float32",
                mfu=(6 * train_tok + 2 * score_tok) * bx.n_params / med / bx.peak, **ours_r["mem"])
    name = f"epoch_{task}"
    if bx.ref is None:
        bx.report(name, ours, None)
        return
    t = run_torch(bx, config, F, monitor, lr, epochs)
    tmed = statistics.median(t["epoch_s"][1:])
    ttok = sum(len(c) + len(x) - 1 for s in monitor.values() for e in s.encoded
               for c, x in [(e.ctx, e.conts[0]), (e.ctx, e.conts[1])])
    base = dict(per_s=n_ex / tmed, epoch_s=tmed, epochs_s=t["epoch_s"], accs=t["accs"],
                precision="float32",
                mfu=(6 * train_tok + 2 * ttok) * bx.n_params / tmed / bx.peak, **t["mem"])
    lo, lt = np.array(ours_r["losses"]), np.array(t["losses"])
    same_len = lo.shape == lt.shape
    d_loss = float(np.abs(lo - lt).max()) if same_len else float("inf")
    bx.check(f"{name}_losses", same_len and d_loss < LOSS_TOL,
             f"{len(lo)}/{len(lt)} steps, first loss ours {lo[0]:.6f} torch {lt[0]:.6f}, "
             f"max |diff| {d_loss:.2e} (tol {LOSS_TOL:g})", steps=len(lo),
             max_abs_diff=d_loss, tol=LOSS_TOL)
    for r in monitor:
        d_acc = max(abs(a[r] - b[r]) for a, b in zip(ours_r["accs"], t["accs"], strict=True))
        agree = float(np.mean(ours_r["correct"][r] == t["correct"][r]))
        bx.check(f"{name}_{r}", d_acc <= ACC_TOL and agree >= MIN_AGREE,
                 f"accuracy per epoch ours {[round(a[r], 4) for a in ours_r['accs']]} torch "
                 f"{[round(a[r], 4) for a in t['accs']]} (max |diff| {d_acc:.3f}, tol "
                 f"{ACC_TOL:g}), per-example agreement {agree:.3f} (min {MIN_AGREE:g})",
                 max_abs_diff_acc=d_acc, agreement=agree, tol=ACC_TOL, min_agreement=MIN_AGREE)
    print(f"# {name}: seconds per epoch ours {med:.1f} (wall incl. checkpoint "
          f"{ours['wall_per_epoch_s']:.1f}, first {ours_r['epoch_s'][0]:.1f}) torch {tmed:.1f}; "
          f"{len(F.examples)} trained, {ours['n_monitored']} scored, lr {lr:g}", flush=True)
    bx.report(name, ours, base)
