"""Host-side tokenization and batch building (numpy only, no JAX).

Tokenization follows lm-eval's ``_encode_pair`` (TASKS.md §0): ``ctx = tok(prompt)``,
``cont_j = tok(prompt + continuation_j)[len(ctx):]``; BOS, if the tokenizer adds one, belongs to
the context. Scoring packs the two answers of one prompt into one row that shares the prompt:
``[ctx, cont_0, cont_1]`` where ``cont_1`` attends to ``ctx`` and itself only (segment ids) and
its positions restart after ``ctx``, so each answer sees exactly what it would see alone. Only the
positions that predict answer tokens are sent through the vocabulary projection.

Shapes are bucketed (``T`` and ``S`` rounded up to a few fixed sizes) so a split compiles a
handful of times, and the batch dimension is fixed (padded with empty rows of weight 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

T_BUCKETS = (32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 8192)
S_BUCKETS = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class SequenceTooLong(ValueError):
    """An example does not fit ``max_seq_len`` tokens."""


@dataclasses.dataclass(frozen=True)
class Encoded:
    """Token ids of one example: the shared context and both continuations."""

    ctx: np.ndarray  # int32 [C]
    conts: tuple[np.ndarray, np.ndarray]  # int32 [n_0], [n_1]

    @property
    def packed_len(self) -> int:
        return len(self.ctx) + len(self.conts[0]) + len(self.conts[1])


def bucket(n: int, buckets: Sequence[int]) -> int:
    for b in buckets:
        if n <= b:
            return b
    raise SequenceTooLong(f"length {n} exceeds the largest bucket {buckets[-1]}")


def encode(tokenizer, prompts: Sequence[str], choices: Sequence[Sequence[str]],
           max_seq_len: int = 2048) -> list[Encoded]:
    """Tokenizes (prompt, two continuations) triples with lm-eval's rule."""
    ctx_ids = tokenizer(list(prompts))["input_ids"]
    whole = [tokenizer([p + c[j] for p, c in zip(prompts, choices, strict=True)])["input_ids"]
             for j in (0, 1)]
    out = []
    for i, ctx in enumerate(ctx_ids):
        conts = tuple(np.asarray(whole[j][i][len(ctx):], np.int32) for j in (0, 1))
        if not len(ctx) or min(len(c) for c in conts) == 0:
            raise ValueError(f"example {i}: empty context or continuation after tokenization")
        enc = Encoded(np.asarray(ctx, np.int32), conts)
        if enc.packed_len > max_seq_len:
            raise SequenceTooLong(
                f"example {i} ({prompts[i][:60]!r}...) needs {enc.packed_len} tokens > "
                f"max_seq_len={max_seq_len}")
        out.append(enc)
    return out


def pad_rows(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def score_batch(encs: Sequence[Encoded | None], batch_size: int) -> dict[str, np.ndarray]:
    """A packed scoring batch; ``None`` entries (and missing rows) are padding.

    Returns tokens/positions/seg [B,T] (seg: 0 prompt, 1 and 2 the answers, -1 pad), tgt_pos /
    tgt_ids / tgt_choice [B,S] (the position whose logits predict each answer token, that token,
    and which answer it belongs to, -1 pad) and feat_pos [B,3] (last prompt token, last token of
    prompt+answer 0, of prompt+answer 1).
    """
    real = [e for e in encs if e is not None]
    T = bucket(max(e.packed_len for e in real), T_BUCKETS)
    S = bucket(max(len(e.conts[0]) + len(e.conts[1]) for e in real), S_BUCKETS)
    B = batch_size
    tokens = np.zeros((B, T), np.int32)
    positions = np.zeros((B, T), np.int32)
    seg = np.full((B, T), -1, np.int32)
    tgt_pos = np.zeros((B, S), np.int32)
    tgt_ids = np.zeros((B, S), np.int32)
    tgt_choice = np.full((B, S), -1, np.int32)
    feat_pos = np.zeros((B, 3), np.int32)
    for b, e in enumerate(encs):
        if e is None:
            continue
        C, n0, n1 = len(e.ctx), len(e.conts[0]), len(e.conts[1])
        tokens[b, : C + n0 + n1] = np.concatenate([e.ctx, e.conts[0], e.conts[1]])
        positions[b, : C + n0] = np.arange(C + n0)
        positions[b, C + n0 : C + n0 + n1] = C + np.arange(n1)
        seg[b, :C], seg[b, C : C + n0], seg[b, C + n0 : C + n0 + n1] = 0, 1, 2
        src0 = C - 1 + np.arange(n0)
        src1 = np.concatenate([[C - 1], C + n0 + np.arange(n1 - 1)])
        tgt_pos[b, : n0 + n1] = np.concatenate([src0, src1])
        tgt_ids[b, : n0 + n1] = np.concatenate([e.conts[0], e.conts[1]])
        tgt_choice[b, :n0], tgt_choice[b, n0 : n0 + n1] = 0, 1
        feat_pos[b] = (C - 1, C + n0 - 1, C + n0 + n1 - 1)
    return dict(tokens=tokens, positions=positions, seg=seg, tgt_pos=tgt_pos, tgt_ids=tgt_ids,
                tgt_choice=tgt_choice, feat_pos=feat_pos)


def train_batch(encs: Sequence[Encoded | None], targets: Sequence[int],
                batch_size: int) -> dict[str, np.ndarray]:
    """A training batch: prompt + the target answer; the loss covers the answer tokens only.

    Returns tokens/mask [B,T] and tgt_pos/tgt_ids/tgt_w [B,S].
    """
    real = [(e, t) for e, t in zip(encs, targets, strict=True) if e is not None]
    T = bucket(max(len(e.ctx) + len(e.conts[t]) for e, t in real), T_BUCKETS)
    S = bucket(max(len(e.conts[t]) for e, t in real), S_BUCKETS)
    B = batch_size
    tokens = np.zeros((B, T), np.int32)
    mask = np.zeros((B, T), np.int32)
    tgt_pos = np.zeros((B, S), np.int32)
    tgt_ids = np.zeros((B, S), np.int32)
    tgt_w = np.zeros((B, S), np.float32)
    for b, (e, t) in enumerate(zip(encs, targets, strict=True)):
        if e is None:
            continue
        C, n = len(e.ctx), len(e.conts[t])
        tokens[b, : C + n] = np.concatenate([e.ctx, e.conts[t]])
        mask[b, : C + n] = 1
        tgt_pos[b, :n] = C - 1 + np.arange(n)
        tgt_ids[b, :n] = e.conts[t]
        tgt_w[b, :n] = 1.0
    return dict(tokens=tokens, mask=mask, tgt_pos=tgt_pos, tgt_ids=tgt_ids, tgt_w=tgt_w)


def length_sorted_batches(encs: Sequence[Encoded], batch_size: int,
                          ) -> Iterator[tuple[np.ndarray, list[Encoded | None]]]:
    """Yields (example indices, padded batch) longest-first, like lm-eval's sorted loop."""
    order = np.argsort([-e.packed_len for e in encs], kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch: list[Encoded | None] = [encs[i] for i in idx]
        batch += [None] * (batch_size - len(batch))
        yield idx, batch
