"""Bootstrap confidence intervals over test examples, for accuracies and forget ratios.

Percentile bootstrap: resample the N examples of a test role with replacement ``n_resamples``
times, recompute the statistic, and take the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles.
Resampling is seeded (``numpy.random.default_rng(seed)``), so a report is reproducible. Paired
statistics (a forget ratio compares the fine-tuned and the forgotten model on the same examples)
resample the same example indices for both arrays, after aligning them by example ``id``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

N_RESAMPLES = 1000
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval.

    Attributes:
        value: the statistic on the full sample.
        lo: lower end of the interval.
        hi: upper end of the interval.
        n: number of examples.
    """

    value: float
    lo: float
    hi: float
    n: int


def resample_indices(n: int, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """``[n_resamples, n]`` indices drawn with replacement from ``range(n)``, seeded."""
    if n <= 0:
        raise ValueError("cannot bootstrap an empty sample")
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.nanquantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_mean(values: Sequence[float] | np.ndarray, n_resamples: int = N_RESAMPLES,
                   seed: int = 0, level: float = LEVEL) -> Interval:
    """Percentile bootstrap interval of a mean (e.g. accuracy from per-example ``correct``).

    Args:
        values: per-example values, e.g. 0/1 correctness.
        n_resamples: number of bootstrap resamples.
        seed: resampling seed.
        level: coverage of the interval.

    Returns:
        The sample mean and its interval.
    """
    x = np.asarray(values, dtype=np.float64)
    idx = resample_indices(x.size, n_resamples, seed)
    lo, hi = _percentiles(x[idx].mean(axis=1), level)
    return Interval(float(x.mean()), lo, hi, int(x.size))


def bootstrap_paired(stat: Callable[..., np.ndarray], arrays: Sequence[np.ndarray],
                     n_resamples: int = N_RESAMPLES, seed: int = 0,
                     level: float = LEVEL) -> Interval:
    """Percentile interval of ``stat(*means)`` with the same resampled examples for every array.

    Args:
        stat: maps the per-array means (each ``[R]`` or scalar) to the statistic, vectorized.
        arrays: per-example values of equal length, aligned example by example.
        n_resamples: number of bootstrap resamples.
        seed: resampling seed.
        level: coverage of the interval.

    Returns:
        The statistic on the full sample and its interval (NaN resamples are ignored).
    """
    xs = [np.asarray(a, dtype=np.float64) for a in arrays]
    if len({x.size for x in xs}) != 1:
        raise ValueError(f"paired arrays differ in length: {[x.size for x in xs]}")
    idx = resample_indices(xs[0].size, n_resamples, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = np.asarray(stat(*(x[idx].mean(axis=1) for x in xs)), dtype=np.float64)
        value = float(stat(*(x.mean() for x in xs)))
    lo, hi = _percentiles(boot, level)
    return Interval(value, lo, hi, int(xs[0].size))


def forget_ratio(finetuned: Any, forgotten: Any, mode: str = "random") -> Any:
    """The paper's forget ratio (Ch. 2 for random labels, Ch. 4 for flipped labels).

    random: ``(ft - fo) / (ft - 1/2)``; flipped: ``(ft - fo) / (ft - (1 - ft))``. Vectorized;
    NaN where the denominator is not positive (fine-tuning did not beat chance), as run.py leaves
    the ratio undefined there. Used only for the bootstrap intervals; point values come from
    results.json.
    """
    if mode not in ("random", "flipped"):
        raise ValueError(f"unknown forget_mode {mode!r}")
    ft = np.asarray(finetuned, dtype=np.float64)
    denom = ft - (0.5 if mode == "random" else 1.0 - ft)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, (ft - forgotten) / np.where(denom > 0, denom, 1.0), np.nan)


def read_correct(path: str | Path) -> dict[str, bool]:
    """``{id: correct}`` from a ``predictions/<phase>/<task>.<split>.jsonl`` file, in file order.

    Raises:
        FileNotFoundError: the file is absent.
        ValueError: a line is not JSON or lacks ``id``/``correct``.
    """
    out: dict[str, bool] = {}
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out[str(row["id"])] = bool(row["correct"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{i}: not a prediction line ({e})") from None
    return out


def accuracy_interval(path: str | Path, n_resamples: int = N_RESAMPLES, seed: int = 0,
                      level: float = LEVEL) -> Interval:
    """Bootstrap interval of the accuracy recorded in a predictions file."""
    correct = read_correct(path)
    if not correct:
        raise ValueError(f"{path}: no examples")
    return bootstrap_mean(np.fromiter(correct.values(), dtype=np.float64, count=len(correct)),
                          n_resamples, seed, level)


def ratio_interval(finetuned_path: str | Path, forgotten_path: str | Path, mode: str = "random",
                   n_resamples: int = N_RESAMPLES, seed: int = 0,
                   level: float = LEVEL) -> Interval:
    """Paired bootstrap interval of the forget ratio over the examples in both files.

    Raises:
        ValueError: the two files share no example ids.
    """
    ft: Mapping[str, bool] = read_correct(finetuned_path)
    fo: Mapping[str, bool] = read_correct(forgotten_path)
    ids = [k for k in ft if k in fo]
    if not ids:
        raise ValueError(f"{finetuned_path} and {forgotten_path} share no example ids")
    a = np.array([ft[k] for k in ids], dtype=np.float64)
    b = np.array([fo[k] for k in ids], dtype=np.float64)
    return bootstrap_paired(lambda x, y: forget_ratio(x, y, mode), [a, b], n_resamples, seed,
                            level)


class PredictionIntervals:
    """Cached intervals from prediction files; problems are appended to ``notes``, not raised.

    Args:
        n_resamples: bootstrap resamples per interval.
        seed: resampling seed.
        notes: receives a line per unreadable file or per accuracy that disagrees with the
            mean of a file's ``correct`` fields.
    """

    def __init__(self, n_resamples: int = N_RESAMPLES, seed: int = 0,
                 notes: list[str] | None = None):
        self.n_resamples, self.seed = n_resamples, seed
        self.notes = [] if notes is None else notes
        self._acc: dict[Path, Interval | None] = {}

    def accuracy(self, path: Path | None, expected: float | None = None,
                 label: str = "") -> Interval | None:
        """The accuracy interval of ``path`` (None without a file), checked against ``expected``."""
        if path is None:
            return None
        if path not in self._acc:
            try:
                self._acc[path] = accuracy_interval(path, self.n_resamples, self.seed)
            except ValueError as e:
                self.notes.append(f"no interval from `{path}`: {e}")
                self._acc[path] = None
        ci = self._acc[path]
        if ci is not None and expected is not None and abs(ci.value - expected) > 1e-6:
            self.notes.append(f"`{path}`: mean of `correct` {ci.value:.4f} != results.json "
                              f"{label} test accuracy {expected:.4f}")
        return ci

    def ratio(self, finetuned: Path | None, forgotten: Path | None,
              mode: str = "random") -> Interval | None:
        """Paired forget-ratio interval (None without both files)."""
        if finetuned is None or forgotten is None:
            return None
        try:
            return ratio_interval(finetuned, forgotten, mode, self.n_resamples, self.seed)
        except ValueError as e:
            self.notes.append(f"no forget-ratio interval from `{forgotten}`: {e}")
            return None
