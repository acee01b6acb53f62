"""Data hygiene of TASKS.md §2-§3: binarization, decontamination, length filter, 1000-cap.

All randomness is keyed, never sequential: every decision draws from
``numpy.random.default_rng(seed_from(key))`` with a key naming the project ``SEED``, the task,
the split and (for binarization) the row, so a row's distractor does not depend on the order
or presence of other rows, and a cap does not depend on anything but the rows it is given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import TypeVar

import numpy as np

from forget_jax.tasks.base import Example

SEED = 1234
"""Project constant of the binarization and cap seeds (TASKS.md §2, §3.5). Never change it:
it fixes which distractor every example keeps and which rows survive the cap."""

CAP = 1000
"""Maximum rows per split after hygiene (TASKS.md §3.5)."""

MAX_CHARS = 2048
"""Longest allowed ``len(prompt) + len(continuation)``, in characters (TASKS.md §3.4)."""

DELIMITER = " "
"""lm-eval's default ``target_delimiter``; none of the 19 yamls overrides it."""

T = TypeVar("T")


def seed_from(key: str) -> int:
    """A 64-bit seed from a string key: the first 8 bytes of its SHA-256, little-endian."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")


def rng_for(key: str) -> np.random.Generator:
    """``numpy.random.default_rng(seed_from(key))``."""
    return np.random.default_rng(seed_from(key))


def binarize(
    choices: Sequence[str], gold: int, *, task: str, split: str, row: int
) -> tuple[list[str], int] | None:
    """Keeps the gold and one distractor, in their original relative order (TASKS.md §2).

    Two-choice rows are returned unchanged. Otherwise the distractor is drawn uniformly from the
    other options, excluding options whose text equals the gold's, with
    ``default_rng(seed_from(f"binarize|{SEED}|{task}|{split}|{row}"))``.

    Args:
        choices: all answer options (without delimiter).
        gold: index of the correct option.
        task: task name (part of the seed).
        split: source split name (part of the seed).
        row: 0-based row of the document in its source split (part of the seed).

    Returns:
        ``(two choices, new gold index)``, or None when no admissible distractor exists.
    """
    if len(choices) == 2:
        return list(choices), gold
    candidates = [i for i, c in enumerate(choices) if i != gold and c != choices[gold]]
    if not candidates:
        return None
    rng = rng_for(f"binarize|{SEED}|{task}|{split}|{row}")
    d = sorted(candidates)[int(rng.integers(len(candidates)))]
    keep = sorted({gold, d})
    return [choices[i] for i in keep], keep.index(gold)


def prompt_key(prompt: str) -> str:
    """The string compared by decontamination: the stripped rendered prompt."""
    return prompt.strip()


def decontaminate(examples: Iterable[Example], train_prompts: set[str]) -> list[Example]:
    """Drops examples whose stripped prompt equals a train prompt (TASKS.md §3.3).

    Args:
        examples: eval examples.
        train_prompts: ``prompt_key`` of every row of the full train source split.

    Returns:
        The examples that do not occur in train, in order.
    """
    return [e for e in examples if prompt_key(e.prompt) not in train_prompts]


def too_long(example: Example) -> bool:
    """True if prompt + either continuation exceeds ``MAX_CHARS`` characters (TASKS.md §3.4)."""
    return any(len(example.prompt) + len(c) > MAX_CHARS for c in example.choices)


def length_filter(examples: Iterable[Example]) -> list[Example]:
    """Drops the examples that are :func:`too_long`, keeping order."""
    return [e for e in examples if not too_long(e)]


def subsample(items: Sequence[T], k: int, key: str) -> list[T]:
    """``k`` items drawn without replacement with ``rng_for(key)``, in their original order."""
    if k >= len(items):
        return list(items)
    idx = np.sort(rng_for(key).choice(len(items), k, replace=False))
    return [items[i] for i in idx]


def cap(items: Sequence[T], *, task: str, split: str, limit: int = CAP) -> list[T]:
    """Keeps at most ``limit`` rows of a source split (TASKS.md §3.5), in original order.

    The rows kept are ``default_rng(seed_from(f"subsample|{SEED}|{task}|{split}"))
    .choice(n, limit, replace=False)``, sorted.
    """
    return subsample(items, limit, f"subsample|{SEED}|{task}|{split}")
