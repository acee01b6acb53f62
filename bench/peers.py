"""The PyTorch peers: eager ``AutoModelForCausalLM`` training steps and lm-eval's HF
``_loglikelihood_tokens`` scoring loop, on the same GGUF weights as ours."""

from __future__ import annotations

import pathlib

import numpy as np

from bench.machine import PeakRSS, timed_passes

LM_EVAL_BATCH = 16


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


def torch_train_step(model, opt, batch, autocast: bool = False, clip: float = 1.0) -> float:
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
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
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


def lm_eval_loglikelihood(model, requests, batch_size: int = LM_EVAL_BATCH, max_length=2048,
                          autocast: bool = False):
    """lm-eval HFLM ``_loglikelihood_tokens`` for a causal LM: [(sum logp, is_greedy)].
    ``autocast``: the forward under ``torch.autocast("cpu", bfloat16)``, log-softmax in float32
    (not an lm-eval option: the torch.compile peer's mixed precision)."""
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
            if autocast:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    logits = model(batched).logits
                multi_logits = F.log_softmax(logits.float(), dim=-1)
            else:
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


def run_torch_train(model, batches, repeats: int, lr: float, autocast: bool = False):
    """(first-step loss, warm-up pass s, [timed pass s], peak memory); the weights are
    restored after."""
    import torch

    saved = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    mem = PeakRSS().start()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss0 = float(torch_train_step(model, opt, batches[0], autocast))

    def one_pass():
        for b in batches:
            loss = torch_train_step(model, opt, b, autocast)
        float(loss)

    warm, ts = timed_passes(one_pass, repeats)
    mem = mem.stop()
    model.load_state_dict(saved)
    return loss0, warm, ts, mem



def compile_model(model):
    """``torch.compile(model)`` with inductor in its default mode (the peer a PyTorch user
    reaches for); it shares ``model``'s parameters and compiles at its first call."""
    import torch

    return torch.compile(model, backend="inductor")


def failure(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}"
