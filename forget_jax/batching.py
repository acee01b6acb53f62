"""Host-side tokenization and batch building (numpy only, no JAX).

Tokenization follows lm-eval's ``_encode_pair`` (TASKS.md §0): ``ctx = tok(prompt)``,
``cont_j = tok(prompt + continuation_j)[len(ctx):]``; BOS, if the tokenizer adds one, belongs to
the context. Scoring packs the two answers of one prompt into one row that shares the prompt:
``[ctx, cont_0, cont_1]`` where ``cont_1`` attends to ``ctx`` and itself only (segment ids) and
its positions restart after ``ctx``, so each answer sees exactly what it would see alone. Only the
positions that predict answer tokens are sent through the vocabulary projection.

Shapes are bucketed (``T`` and ``S`` rounded up to a few fixed sizes) so a split compiles a
handful of times, and the batch dimension is fixed (padded with empty rows of weight 0).

Short examples are packed several to a row (``pack_len`` tokens) for throughput: scoring puts
``E`` examples one after another in a row, each ``[ctx, cont_0, cont_1]`` blind to the others
(segment ids ``3j``, ``3j+1``, ``3j+2`` for slot ``j``); training rows hold several prompt+answer
sequences (``mask`` carries 1-based segment ids, positions restart per segment). Results are
those of one example per row: packing only removes padding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

# Steps of 16 up to 256 tokens (short tasks: a packed batch wastes < 16 tokens a row), then
# coarser; each distinct T (x S) is one compilation.
T_BUCKETS = (32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 320, 384, 448,
             512, 640, 768, 1024, 1536, 2048, 3072, 4096, 8192)
S_BUCKETS = (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096)
E_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)  # examples per packed scoring row
# Target row length when packing: long enough that a row holds several short examples (bigger,
# faster matmuls, little padding), short enough that the dense [T,T] attention stays cheap.
PACK_LEN = 256


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
    """A packed scoring batch, one example per row; ``None`` entries (and missing rows) are padding.

    Returns tokens/positions/seg [B,T] (seg: 0 prompt, 1 and 2 the answers, -1 pad), tgt_pos /
    tgt_ids / tgt_choice [B,S] (the position whose logits predict each answer token, that token,
    and which answer it belongs to, -1 pad) and feat_pos [B,3] (last prompt token, last token of
    prompt+answer 0, of prompt+answer 1).
    """
    rows = [[] if e is None else [e] for e in encs]
    return score_rows(rows + [[]] * (batch_size - len(rows)))


def score_rows(rows: Sequence[Sequence[Encoded]]) -> dict[str, np.ndarray]:
    """A scoring batch whose row ``b`` holds the examples ``rows[b]`` one after another.

    Example ``j`` of a row is ``[ctx, cont_0, cont_1]`` with segment ids ``3j, 3j+1, 3j+2``
    (``cont_1`` sees ``ctx`` and itself only, its positions restart after ``ctx``; nothing sees
    other examples), answer tokens ``tgt_choice = 2j + c``, and ``feat_pos[b, 3j:3j+3]``.
    ``E`` (slots per row, bucketed) is ``feat_pos.shape[1] // 3``; with one example per row the
    batch is exactly :func:`score_batch`'s.
    """
    real = [r for r in rows if r]
    T = bucket(max(sum(e.packed_len for e in r) for r in real), T_BUCKETS)
    S = bucket(max(sum(len(e.conts[0]) + len(e.conts[1]) for e in r) for r in real), S_BUCKETS)
    E = bucket(max(len(r) for r in real), E_BUCKETS)
    B = len(rows)
    tokens = np.zeros((B, T), np.int32)
    positions = np.zeros((B, T), np.int32)
    seg = np.full((B, T), -1, np.int32)
    tgt_pos = np.zeros((B, S), np.int32)
    tgt_ids = np.zeros((B, S), np.int32)
    tgt_choice = np.full((B, S), -1, np.int32)
    feat_pos = np.zeros((B, 3 * E), np.int32)
    for b, row in enumerate(rows):
        o = s = 0  # token and answer-token offsets of example j in the row
        for j, e in enumerate(row):
            C, n0, n1 = len(e.ctx), len(e.conts[0]), len(e.conts[1])
            tokens[b, o : o + C + n0 + n1] = np.concatenate([e.ctx, e.conts[0], e.conts[1]])
            positions[b, o : o + C + n0] = np.arange(C + n0)
            positions[b, o + C + n0 : o + C + n0 + n1] = C + np.arange(n1)
            seg[b, o : o + C] = 3 * j
            seg[b, o + C : o + C + n0] = 3 * j + 1
            seg[b, o + C + n0 : o + C + n0 + n1] = 3 * j + 2
            src0 = o + C - 1 + np.arange(n0)
            src1 = np.concatenate([[o + C - 1], o + C + n0 + np.arange(n1 - 1)])
            tgt_pos[b, s : s + n0 + n1] = np.concatenate([src0, src1])
            tgt_ids[b, s : s + n0 + n1] = np.concatenate([e.conts[0], e.conts[1]])
            tgt_choice[b, s : s + n0], tgt_choice[b, s + n0 : s + n0 + n1] = 2 * j, 2 * j + 1
            feat_pos[b, 3 * j : 3 * j + 3] = (o + C - 1, o + C + n0 - 1, o + C + n0 + n1 - 1)
            o += C + n0 + n1
            s += n0 + n1
    return dict(tokens=tokens, positions=positions, seg=seg, tgt_pos=tgt_pos, tgt_ids=tgt_ids,
                tgt_choice=tgt_choice, feat_pos=feat_pos)


def train_batch(encs: Sequence[Encoded | None], targets: Sequence[int], batch_size: int, *,
                pack_len: int | None = None, row_multiple: int = 1) -> dict[str, np.ndarray]:
    """A training batch: prompt + the target answer; the loss covers the answer tokens only.

    Returns tokens/mask [B,T] and tgt_pos/tgt_ids/tgt_w [B,S]. ``mask`` holds segment ids: 0 for
    padding, 1.. for the sequences of a row (attention stays within a segment, positions restart).
    By default each example has its own row (``B = batch_size``). With ``pack_len`` the examples
    share rows instead: as few rows (a multiple of ``row_multiple``, the data-parallel size) as
    keep every row within ``max(pack_len, longest sequence)`` tokens, balanced longest-first.
    The loss (mean NLL over all answer tokens of the batch) does not depend on the layout.
    """
    real = [(e, t) for e, t in zip(encs, targets, strict=True) if e is not None]
    lens = [len(e.ctx) + len(e.conts[t]) for e, t in real]
    if pack_len is None:
        it = iter(range(len(real)))  # row b holds encs[b]; None and missing rows are padding
        rows = [[] if e is None else [next(it)] for e in encs]
        rows += [[]] * (batch_size - len(rows))
    else:
        rows = _balanced_rows(lens, max(pack_len, max(lens)), row_multiple)
    T = bucket(max(sum(lens[i] for i in r) for r in rows if r), T_BUCKETS)
    S = bucket(max(sum(len(real[i][0].conts[real[i][1]]) for i in r) for r in rows if r),
               S_BUCKETS)
    B = len(rows)
    tokens = np.zeros((B, T), np.int32)
    mask = np.zeros((B, T), np.int32)
    tgt_pos = np.zeros((B, S), np.int32)
    tgt_ids = np.zeros((B, S), np.int32)
    tgt_w = np.zeros((B, S), np.float32)
    for b, row in enumerate(rows):
        o = s = 0
        for j, i in enumerate(row):
            e, t = real[i]
            C, n = len(e.ctx), len(e.conts[t])
            tokens[b, o : o + C + n] = np.concatenate([e.ctx, e.conts[t]])
            mask[b, o : o + C + n] = j + 1
            tgt_pos[b, s : s + n] = o + C - 1 + np.arange(n)
            tgt_ids[b, s : s + n] = e.conts[t]
            tgt_w[b, s : s + n] = 1.0
            o += C + n
            s += n
    return dict(tokens=tokens, mask=mask, tgt_pos=tgt_pos, tgt_ids=tgt_ids, tgt_w=tgt_w)


def _balanced_rows(lens: Sequence[int], cap: int, row_multiple: int) -> list[list[int]]:
    """Indices in the fewest rows (a multiple of ``row_multiple``) whose totals stay <= ``cap``:
    longest first, each into the emptiest row."""
    order = sorted(range(len(lens)), key=lambda i: -lens[i])
    n = pad_rows(max(-(-sum(lens) // cap), 1), row_multiple)
    while True:
        rows: list[list[int]] = [[] for _ in range(n)]
        load = [0] * n
        for i in order:
            r = min(range(n), key=load.__getitem__)
            rows[r].append(i)
            load[r] += lens[i]
        if max(load) <= cap or n >= len(lens):
            return rows
        n += row_multiple


def packed_score_batches(encs: Sequence[Encoded], batch_size: int, pack_len: int = PACK_LEN,
                         row_multiple: int = 1,
                         ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Yields (slots [B,E]: example index in each row slot, -1 empty; :func:`score_rows` batch).

    Examples go longest-first into rows of ``max(pack_len, own length)`` tokens (first fit), so
    a row holds several short examples and little padding; ``batch_size`` rows per batch, and
    the last batch only as many (a power of two times ``row_multiple``) as it needs.
    """
    order = np.argsort([-e.packed_len for e in encs], kind="stable")
    rows: list[list[int]] = []
    free: list[int] = []  # tokens left in each row
    for i in order:
        n = encs[i].packed_len
        r = next((r for r in range(len(rows)) if free[r] >= n), None) if n <= pack_len else None
        if r is None:
            rows.append([])
            free.append(max(pack_len, n))
            r = len(rows) - 1
        rows[r].append(int(i))
        free[r] -= n
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        B = batch_size
        while B // 2 >= len(chunk) and (B // 2) % row_multiple == 0:
            B //= 2
        chunk += [[]] * (B - len(chunk))
        batch = score_rows([[encs[i] for i in r] for r in chunk])
        slots = np.full((B, batch["feat_pos"].shape[1] // 3), -1, np.int64)
        for b, r in enumerate(chunk):
            slots[b, : len(r)] = r
        yield slots, batch


def length_sorted_batches(encs: Sequence[Encoded], batch_size: int,
                          ) -> Iterator[tuple[np.ndarray, list[Encoded | None]]]:
    """Yields (example indices, padded batch) longest-first, like lm-eval's sorted loop."""
    order = np.argsort([-e.packed_len for e in encs], kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch: list[Encoded | None] = [encs[i] for i in idx]
        batch += [None] * (batch_size - len(batch))
        yield idx, batch
