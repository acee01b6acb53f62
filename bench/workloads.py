"""The timed workloads of ``bench/compare.py``: ``train_b{B}`` and ``score_<task>_{N}`` rows
(ours against the PyTorch peers of :mod:`bench.peers`), their correctness checks and the
result rows."""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np

from bench import peers
from bench.machine import PeakRSS, load_average, timed_passes

LR = 3e-3  # the paper's fine-tuning rate (configs/forget.py); the same on both sides


@dataclasses.dataclass
class Bench:
    """What every workload reads (set up once by ``compare.main``) and the results it adds."""

    args: object
    data: object  # the task's TaskData
    tok: object
    graphdef: object
    graphdef_mixed: object
    params0: object
    mesh: object
    n_params: int
    peak: float
    peak_bf16: float
    ref: object  # the PyTorch model (None: --skip-torch)
    ref_tok: object
    results: dict
    lines: list = dataclasses.field(default_factory=list)

    def report(self, name: str, ours: dict, base: dict | None) -> None:
        """One result row; ``base`` None: no peer (--skip-torch); ``{"failed": why}``: the
        peer failed (the row keeps the reason)."""
        if base is not None and "failed" in base:
            self.results["workloads"][name] = dict(ours=ours, torch=base, ratio=None,
                                                   load_average_after=load_average())
            line = f"{name} {ours['per_s']:.2f} FAILED {base['failed']}"
            self.lines.append(line)
            print(line, flush=True)
            return
        r = None if base is None else ours["per_s"] / base["per_s"]
        row = dict(ours=ours, torch=base, ratio=r, load_average_after=load_average())
        self.results["workloads"][name] = row
        tp = "-" if base is None else f"{base['per_s']:.2f}"
        line = (f"{name} {ours['per_s']:.2f} {tp} {'-' if r is None else f'{r:.2f}'} "
                f"{ours['mfu']:.3f}" + ("" if base is None else f"/{base['mfu']:.3f}")
                + f" {_mem(ours)}" + ("" if base is None else f"/{_mem(base)}"))
        self.lines.append(line)
        print(line, flush=True)

    def check(self, key: str, ok: bool, text: str, **fields) -> None:
        self.results["checks"][key] = dict(**fields, ok=ok)
        print(f"# check {key}: {text} {'OK' if ok else 'FAIL'}", flush=True)


def _mem(side: dict) -> str:
    """A side's peak resident-memory growth during its passes, MB (see machine.PeakRSS)."""
    return f"{side['peak_rss_delta_mb']:.0f}" if "peak_rss_delta_mb" in side else "-"


# --------------------------------------------------------------------------- training


def run_ours_train(st, params0, host, mesh, repeats: int):
    """(first-step loss, first-step seconds, warm-up pass s, [timed pass s], peak memory) of
    our train step,
    stepping through the host batches exactly as phases.train_phase does (put_batch, step,
    no host sync until the end of the pass)."""
    import jax

    from forget_jax import sharding as shd

    mem = PeakRSS().start()
    # a private copy of the weights: the train step donates its state
    state = st.init_state(jax.tree.map(lambda x: x.copy(), params0))
    t0 = time.perf_counter()
    state, m0 = st.train(state, shd.put_batch(host[0], mesh))
    loss0 = float(m0["loss"])  # first step from the pretrained weights: the check
    first_s = time.perf_counter() - t0  # includes compiling the first shape
    box = {"state": state}

    def one_pass():
        s = box["state"]
        for b in host:
            s, m = st.train(s, shd.put_batch(b, mesh))
        jax.block_until_ready(m)
        box["state"] = s

    warm, ts = timed_passes(one_pass, repeats)
    return loss0, first_s, warm, ts, mem.stop()


def train_rows(bx: Bench, rng) -> None:
    """``train_b{B}`` for every batch size, then (mixed) the first size in mixed precision."""
    args = bx.args
    sizes = [int(b) for b in args.train_batch_sizes.split(",")]
    batches_idx = {B: rng.permutation(len(bx.data.train))[: B * args.train_steps] for B in sizes}
    for B in sizes:
        train_row(bx, B, batches_idx[B], mixed=False, compiled=args.compile and B == sizes[0])
    if args.mixed:
        train_row(bx, sizes[0], batches_idx[sizes[0]], mixed=True, compiled=args.compile)


def train_row(bx: Bench, B: int, idx, mixed: bool, compiled: bool) -> None:
    """One ``train_b{B}`` line: float32 on both sides, or (``mixed``) our mixed_bfloat16
    against PyTorch autocast bf16, on the same batches; ``compiled``: then the same against
    the torch.compile'd model (``..._vs_compile``, ``..._mixed_vs_compile_autocast``)."""
    from forget_jax import batching
    from forget_jax import sharding as shd
    from forget_jax import steps as steps_lib

    args, mesh, n_params = bx.args, bx.mesh, bx.n_params
    name = f"train_b{B}" + ("_mixed_vs_autocast" if mixed else "")
    exs = [bx.data.train[i] for i in idx]
    encs = batching.encode(bx.tok, [e.prompt for e in exs], [e.choices for e in exs])
    gold = [e.gold for e in exs]
    tokens = sum(len(e.ctx) + len(e.conts[g]) for e, g in zip(encs, gold, strict=True))
    st = steps_lib.make_steps(bx.graphdef_mixed if mixed else bx.graphdef, bx.params0, mesh,
                              lr=LR, grad_clip=1.0)
    Bp = shd.pad_batch_size(B, mesh)
    host = []
    for s in range(args.train_steps):
        chunk = encs[s * B:(s + 1) * B]
        # exactly what phases.train_phase builds for one step
        pad = Bp - len(chunk)
        host.append(batching.train_batch(
            chunk + [None] * pad, gold[s * B:(s + 1) * B] + [0] * pad, Bp,
            pack_len=batching.PACK_LEN, row_multiple=shd.batch_divisor(mesh)))
    shapes = sorted({tuple(b["tokens"].shape) + tuple(b["tgt_pos"].shape) for b in host})
    loss_ours, first_s, warm, ts, mem = run_ours_train(st, bx.params0, host, mesh, args.repeats)
    med = statistics.median(ts)
    pk = bx.peak_bf16 if mixed else bx.peak
    ours = dict(per_s=B * args.train_steps / med, step_s=med / args.train_steps,
                pass_s=ts, warmup_s=first_s + warm,
                compile_s=first_s - med / args.train_steps + max(warm - med, 0.0),
                shapes=[list(s) for s in shapes], tokens_per_pass=tokens,
                precision="mixed_bfloat16" if mixed else "float32",
                mfu=6 * n_params * tokens / med / pk, **mem)
    if bx.ref is None:
        bx.report(name, ours, None)
        return
    tb = peers.torch_train_batches(encs, gold, B)
    tol = 2e-2 if mixed else 1e-3
    peer_rows = [(name, bx.ref)]
    if compiled:
        peer_rows.append((f"train_b{B}" + ("_mixed_vs_compile_autocast" if mixed
                                            else "_vs_compile"), peers.compile_model(bx.ref)))
    for row_name, model in peer_rows:
        try:
            loss_ref, twarm, tts, tmem = peers.run_torch_train(model, tb, args.repeats, LR,
                                                               autocast=mixed)
        except Exception as exc:  # inductor failing on this CPU: the row records how
            bx.report(row_name, ours, dict(failed=peers.failure(exc)))
            continue
        tmed = statistics.median(tts)
        ttokens = sum(int(b[1].sum()) for b in tb)
        base = dict(per_s=B * args.train_steps / tmed, step_s=tmed / args.train_steps,
                    pass_s=tts, warmup_s=twarm, tokens_per_pass=ttokens,
                    padded_tokens_per_pass=sum(b[0].numel() for b in tb),
                    precision="autocast bfloat16" if mixed else "float32",
                    mfu=6 * n_params * ttokens / tmed / pk, **tmem)
        if model is not bx.ref:  # compiled: the warm-up's excess, as ours
            base.update(compile_s=max(twarm - tmed, 0.0), compiler="torch.compile inductor")
        if model is bx.ref:  # eager: against ours
            key, who, want = f"{row_name}_first_loss", "ours", loss_ours
        else:  # compiled: against eager PyTorch float32 (bf16 rounding differs per backend)
            key, who = f"{row_name}_torch_vs_eager", "torch eager fp32"
            want = bx.results["checks"][f"train_b{B}_first_loss"]["torch"]
        diff = abs(want - loss_ref)
        bx.check(key, diff < tol, f"first-step loss {who} {want:.6f} torch "
                 f"{loss_ref:.6f} |diff| {diff:.2e} (tol {tol:g})", ours=want,
                 torch=loss_ref, abs_diff=diff, tol=tol)
        bx.report(row_name, ours, base)


# --------------------------------------------------------------------------- scoring


def score_check(bx: Bench, key: str, ll, n, ref_mean, ref_n, same: bool, tol: float,
                min_agree: float, who: str = "ours") -> None:
    d_mean = abs(float(ll.mean()) - float(ref_mean.mean()))
    d_max = float(np.abs(ll - ref_mean).max())
    agree = float(np.mean(ll.argmax(1) == ref_mean.argmax(1)))
    ok = same and d_mean < tol and agree >= min_agree and bool((n == ref_n).all())
    bx.check(key, ok,
             f"same token ids {same}; mean per-token loglik {who} {ll.mean():.6f} torch fp32 "
             f"{ref_mean.mean():.6f} |diff| {d_mean:.2e} (tol {tol:g}), max per-choice |diff| "
             f"{d_max:.2e}, predictions agree {agree:.3f} (min {min_agree:g})",
             same_tokens=same, mean_loglik_ours=float(ll.mean()),
             mean_loglik_torch=float(ref_mean.mean()), abs_diff_mean=d_mean,
             max_abs_diff_per_choice=d_max, prediction_agreement=agree, tol=tol,
             min_agreement=min_agree)


def score_rows(bx: Bench) -> None:
    """``score_<task>_{N}``: ours float32 vs the lm-eval loop, then (mixed) ours mixed vs the
    same float32 loop and vs the loop on the model in bfloat16."""
    import torch

    from forget_jax import batching, scoring
    from forget_jax import steps as steps_lib

    args, n_params, ref = bx.args, bx.n_params, bx.ref
    exs = bx.data.test[: args.score_n]
    encs = batching.encode(bx.tok, [e.prompt for e in exs], [e.choices for e in exs])
    tokens = sum(e.packed_len for e in encs)
    name = f"score_arc_easy_{len(exs)}"

    def ours_score(graphdef, mixed: bool) -> tuple[dict, np.ndarray, np.ndarray]:
        sst = steps_lib.make_steps(graphdef, bx.params0, bx.mesh)
        out = {}

        def one_pass():
            out["ll"], out["n"], _ = scoring.score_encoded(sst, bx.params0, encs,
                                                           args.eval_batch_size, progress=False)

        mem = PeakRSS().start()
        warm, ts = timed_passes(one_pass, args.repeats)
        mem = mem.stop()
        med = statistics.median(ts)
        row = dict(per_s=len(exs) / med, pass_s=ts, warmup_s=warm,
                   compile_s=max(warm - med, 0.0), eval_batch_size=args.eval_batch_size,
                   tokens_per_pass=tokens, precision="mixed_bfloat16" if mixed else "float32",
                   mfu=2 * n_params * tokens / med / (bx.peak_bf16 if mixed else bx.peak),
                   **mem)
        return row, out["ll"], out["n"]

    def torch_score(requests, ref_n, bf16: bool, model=None,
                    autocast: bool = False) -> tuple[dict, np.ndarray]:
        """The lm-eval loop on ``ref`` (``bf16``: cast to bfloat16, lm-eval's --model_args
        dtype=bfloat16) or on ``model`` (the compiled peer, under autocast or not)."""
        compiled = model is not None
        if not compiled:
            model = ref.to(torch.bfloat16) if bf16 else ref
        ref.eval()
        res = {}

        def one_pass():
            res["r"] = peers.lm_eval_loglikelihood(model, requests, autocast=autocast)

        mem = PeakRSS().start()
        twarm, tts = timed_passes(one_pass, args.repeats)
        mem = mem.stop()
        tmed = statistics.median(tts)
        ttokens = sum(len(c) + len(x) - 1 for c, x in requests)
        row = dict(per_s=len(exs) / tmed, pass_s=tts, warmup_s=twarm,
                   batch_size=peers.LM_EVAL_BATCH, tokens_per_pass=ttokens,
                   precision="bfloat16" if bf16 else "autocast bfloat16" if autocast
                   else "float32",
                   mfu=2 * n_params * ttokens / tmed / (bx.peak_bf16 if bf16 or autocast
                                                        else bx.peak), **mem)
        if compiled:  # the warm-up's excess, as ours
            row.update(compile_s=max(twarm - tmed, 0.0), compiler="torch.compile inductor")
        return row, np.array([s for s, _ in res["r"]]).reshape(-1, 2) / ref_n

    ours, ll, n = ours_score(bx.graphdef, mixed=False)
    base = ref_mean = None
    if ref is not None:
        requests = [peers.lm_eval_encode_pair(bx.ref_tok, e.prompt, c)
                    for e in exs for c in e.choices]
        same = all(list(e.ctx) == requests[2 * i][0] and
                   [list(e.conts[j]) for j in (0, 1)] == [requests[2 * i + j][1] for j in (0, 1)]
                   for i, e in enumerate(encs))
        ref_n = np.array([len(x) for _, x in requests]).reshape(-1, 2)
        base, ref_mean = torch_score(requests, ref_n, bf16=False)
        score_check(bx, name, ll, n, ref_mean, ref_n, same, tol=2e-3, min_agree=0.99)
    bx.report(name, ours, base)

    def compiled_row(row: str, ours_row: dict, autocast: bool) -> None:
        """``ours_row`` against the lm-eval loop on the torch.compile'd model; its logliks are
        checked against the eager float32 loop's."""
        try:
            cbase, c_mean = torch_score(requests, ref_n, False, peers.compile_model(ref),
                                        autocast=autocast)
        except Exception as exc:  # inductor failing on this CPU: the row records how
            bx.report(row, ours_row, dict(failed=peers.failure(exc)))
            return
        score_check(bx, f"{row}_torch_vs_eager", c_mean, ref_n, ref_mean, ref_n, same,
                    tol=2e-2 if autocast else 2e-3, min_agree=0.98 if autocast else 0.99,
                    who="torch compile" + (" autocast" if autocast else ""))
        bx.report(row, ours_row, cbase)

    if ref is not None and args.compile:
        compiled_row(f"{name}_vs_compile", ours, autocast=False)
    if args.mixed:
        ours_m, ll_m, n_m = ours_score(bx.graphdef_mixed, mixed=True)
        if ref is not None:
            # against the same float32 lm-eval loop (timed above; one baseline per run) ...
            score_check(bx, f"{name}_mixed", ll_m, n_m, ref_mean, ref_n, same, tol=2e-2,
                        min_agree=0.98, who="ours mixed")
        bx.report(f"{name}_mixed_vs_fp32", ours_m, base)
        if ref is not None and args.compile:
            compiled_row(f"{name}_mixed_vs_compile_autocast", ours_m, autocast=True)
        base_bf16 = None
        if ref is not None:
            # ... and against lm-eval's loop with the model in bfloat16 (last: casts `ref`)
            base_bf16, ref_mean_bf16 = torch_score(requests, ref_n, bf16=True)
            score_check(bx, f"{name}_torch_bf16_vs_fp32", ref_mean_bf16, ref_n, ref_mean,
                        ref_n, same, tol=2e-2, min_agree=0.98, who="torch bf16")
        bx.report(f"{name}_mixed_vs_bf16", ours_m, base_bf16)
