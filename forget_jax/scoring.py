"""Zero-shot scoring: mean per-token log-likelihood of both answers, prediction, confidence.

The paper's rule (TASKS.md §1): ``score_j = LL_j / n_j`` (mean log-probability per continuation
token); prediction = argmax with ties to the lower index; confidence =
``p_gold / (p_gold + p_other)`` with ``p = exp(score)``. lm-eval's ``acc`` (sum) and ``acc_norm``
(per character) on the same two choices are logged alongside for sanity checks.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence

import numpy as np

from forget_jax import batching
from forget_jax import sharding as shd
from forget_jax.progress import Bar

# Batches in flight ahead of the one being fetched: the device keeps working while the host
# reads results, and the progress bar counts only what is done (forget_jax.progress).
IN_FLIGHT = 2


def score_encoded(steps, params, encs: Sequence[batching.Encoded], batch_size: int,
                  desc: str = "score", progress: bool = True, bar: Bar | None = None,
                  label: str = "") -> tuple[np.ndarray, np.ndarray, dict]:
    """Mean per-token log-likelihood [N,2] and token counts [N,2] of encoded examples.

    ``bar``: the phase's progress bar, advanced (field ``scoring`` = ``label``) as each batch's
    results reach the host; None = a bar of its own (``desc``; none when not ``progress``).
    """
    B = shd.pad_batch_size(batch_size, steps.mesh)
    n = len(encs)
    mean_ll = np.zeros((n, 2), np.float64)
    counts = np.zeros((n, 2), np.int64)
    pending: collections.deque = collections.deque()
    t0 = time.perf_counter()
    own = bar is None
    if own:
        bar = Bar(desc, n, enabled=progress)

    def fetch(keep: int) -> None:
        while len(pending) > keep:
            slots, out = pending.popleft()
            # to_host gathers rows held by other processes (multi-host); a plain fetch otherwise.
            ll = shd.to_host(out["loglik_sum"]).astype(np.float64).reshape(*slots.shape, 2)
            nt = shd.to_host(out["n_tokens"]).reshape(*slots.shape, 2)
            real = slots >= 0
            mean_ll[slots[real]] = ll[real] / nt[real]
            counts[slots[real]] = nt[real]
            bar.update(int(real.sum()), **({"scoring": label} if label else {}))

    # B rows per batch, several short examples per row (batching.packed_score_batches).
    packed = batching.packed_score_batches(encs, B, row_multiple=shd.batch_divisor(steps.mesh))
    for slots, batch in packed:
        pending.append((slots, steps.score(params, shd.put_batch(batch, steps.mesh))))
        fetch(IN_FLIGHT)
    fetch(0)
    if own:
        bar.close()
    secs = time.perf_counter() - t0
    return mean_ll, counts, dict(seconds=secs, examples_per_s=n / max(secs, 1e-9))


def predictions(mean_ll: np.ndarray, gold: np.ndarray) -> dict[str, np.ndarray]:
    """Prediction (ties -> lower index), correctness and confidence p_gold/(p_gold+p_other)."""
    pred = np.argmax(mean_ll, axis=1)  # np.argmax returns the first maximum
    g = gold.astype(int)
    lg = mean_ll[np.arange(len(g)), g]
    lo = mean_ll[np.arange(len(g)), 1 - g]
    confidence = 1.0 / (1.0 + np.exp(lo - lg))  # = p_g / (p_g + p_o), numerically stable
    return dict(pred=pred, correct=pred == g, confidence=confidence)


def lm_eval_metrics(mean_ll: np.ndarray, counts: np.ndarray, choices: Sequence[Sequence[str]],
                    gold: np.ndarray) -> dict[str, float]:
    """lm-eval's ``acc`` (summed LL) and ``acc_norm`` (LL per character of the choice)."""
    total = mean_ll * counts
    # lm-eval counts the choice string without the target delimiter (one leading space).
    chars = np.array([[max(len(c[j]) - 1, 1) for j in (0, 1)] for c in choices], np.float64)
    acc = float(np.mean(np.argmax(total, 1) == gold))
    acc_norm = float(np.mean(np.argmax(total / chars, 1) == gold))
    return dict(acc_sum=acc, acc_norm=acc_norm)


def prediction_records(examples, mean_ll: np.ndarray, counts: np.ndarray) -> list[dict]:
    """One CONTRACT.md prediction record per example."""
    gold = np.array([e.gold for e in examples])
    p = predictions(mean_ll, gold)
    out = []
    for i, e in enumerate(examples):
        out.append({
            "id": e.id, "prompt": e.prompt, "choices": list(e.choices), "gold": int(e.gold),
            "loglik": [float(mean_ll[i, 0]), float(mean_ll[i, 1])],
            "n_tokens": [int(counts[i, 0]), int(counts[i, 1])],
            "pred": int(p["pred"][i]), "correct": bool(p["correct"][i]),
            "confidence": float(p["confidence"][i]),
        })
    return out
