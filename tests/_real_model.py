"""Shared by the real-model tests: the PyTorch reference of lm-eval's scoring rule."""

from __future__ import annotations

import numpy as np
import torch


def torch_reference(gguf_path):
    """transformers' own GGUF loader on the same file, float32, 2 threads: (model, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    kw = dict(gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch.float32, **kw)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kw)
    return model.eval(), tokenizer


def torch_mean_logliks(model, tok, exs) -> tuple[np.ndarray, np.ndarray]:
    """Mean per-token log-likelihood [N,2] of each (prompt, choice) and its token counts, with
    lm-eval's tokenization (``ctx = tok(prompt)``, ``cont = tok(prompt + choice)[len(ctx):]``,
    so BOS, when the tokenizer adds one, is the first context token), one sequence at a time."""
    want, counts = np.zeros((len(exs), 2)), np.zeros((len(exs), 2), int)
    with torch.inference_mode():
        for i, e in enumerate(exs):
            ctx = tok(e.prompt)["input_ids"]
            for j, cont_text in enumerate(e.choices):
                cont = tok(e.prompt + cont_text)["input_ids"][len(ctx):]
                logits = model(torch.tensor([ctx + cont])).logits[0].float()
                logp = torch.log_softmax(logits, -1)
                ll = sum(float(logp[len(ctx) - 1 + k, t]) for k, t in enumerate(cont))
                want[i, j], counts[i, j] = ll / len(cont), len(cont)
    return want, counts


def our_mean_logliks(lm, exs) -> tuple[np.ndarray, np.ndarray]:
    """The same through our batched, packed, jitted scoring path on one device."""
    import jax

    from forget_jax import batching, scoring, sharding, steps

    encs = batching.encode(lm.tokenizer, [e.prompt for e in exs], [e.choices for e in exs])
    graphdef, params = steps.split_model(lm.model)
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    mean_ll, counts, _ = scoring.score_encoded(steps.make_steps(graphdef, params, mesh), params,
                                               encs, 16, progress=False)
    return mean_ll, counts
