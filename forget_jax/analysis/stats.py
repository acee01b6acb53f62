"""Bootstrap confidence intervals over test examples, for accuracies and forget ratios.

Percentile bootstrap: resample the N examples of a test role with replacement ``n_resamples``
times, recompute the statistic, and take the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles.
Resampling is seeded (``numpy.random.default_rng(seed)``), so a report is reproducible. Paired
statistics (a forget ratio compares the fine-tuned and the forgotten model on the same examples)
resample the same example indices for both arrays, after aligning them by example ``id``.

Several seeds (cells ``...-s<k>``): :func:`bootstrap_hierarchical` resamples the seeds with
replacement, then the examples within each drawn seed, and averages the per-seed statistic over
the drawn seeds; the interval so includes the seed-to-seed variance. With one seed it is the
plain (paired) bootstrap above, which is how :func:`bootstrap_mean` and
:func:`bootstrap_paired` are computed.

A forget ratio is undefined in a resample whose denominator (``ft - 1/2``, flipped
``2 ft - 1``) is not positive. Such draws are not silently dropped: ``Interval.n_undefined``
counts them (the percentiles are over the defined draws).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forget_jax.analysis import rundir

N_RESAMPLES = 1000
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval.

    Attributes:
        value: the statistic on the full sample.
        lo: lower end of the interval.
        hi: upper end of the interval.
        n: number of examples (summed over seeds).
        n_undefined: resamples where the statistic was undefined (NaN), e.g. a forget ratio
            whose resampled denominator was <= 0.
    """

    value: float
    lo: float
    hi: float
    n: int
    n_undefined: int = 0


def resample_indices(n: int, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """``[n_resamples, n]`` indices drawn with replacement from ``range(n)``, seeded."""
    if n <= 0:
        raise ValueError("cannot bootstrap an empty sample")
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.nanquantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_hierarchical(stat: Callable[..., np.ndarray],
                           groups: Sequence[Sequence[np.ndarray]],
                           n_resamples: int = N_RESAMPLES, seed: int = 0,
                           level: float = LEVEL) -> Interval:
    """Interval of the mean over seeds of ``stat(*means)``, resampling seeds then examples.

    Args:
        stat: maps the per-array means (each ``[R]`` or scalar) to the statistic, vectorized.
        groups: one entry per seed: its per-example arrays, of equal length and aligned example
            by example (paired statistics resample the same examples for every array).
        n_resamples: number of bootstrap resamples.
        seed: resampling seed.
        level: coverage of the interval.

    Returns:
        The mean over seeds of the statistic on each full sample, its interval over the defined
        resamples, and the count of undefined (NaN) resamples.
    """
    if not groups:
        raise ValueError("cannot bootstrap without a sample")
    rng = np.random.default_rng(seed)
    per_seed, values, n = [], [], 0
    with np.errstate(divide="ignore", invalid="ignore"):
        for arrays in groups:
            xs = [np.asarray(a, dtype=np.float64) for a in arrays]
            if len({x.size for x in xs}) != 1:
                raise ValueError(f"paired arrays differ in length: {[x.size for x in xs]}")
            if xs[0].size == 0:
                raise ValueError("cannot bootstrap an empty sample")
            idx = rng.integers(0, xs[0].size, size=(n_resamples, xs[0].size))
            per_seed.append(np.asarray(stat(*(x[idx].mean(axis=1) for x in xs)), np.float64))
            values.append(float(stat(*(x.mean() for x in xs))))
            n += xs[0].size
    boot = np.stack(per_seed, axis=1)  # [R, seeds]
    if len(groups) > 1:
        drawn = rng.integers(0, len(groups), size=boot.shape)
        boot = np.take_along_axis(boot, drawn, axis=1)
    boot = boot.mean(axis=1)
    undefined = int(np.isnan(boot).sum())
    lo, hi = _percentiles(boot, level) if undefined < boot.size else (np.nan, np.nan)
    return Interval(float(np.mean(values)), lo, hi, n, undefined)


def bootstrap_mean(values: Sequence[float] | np.ndarray, n_resamples: int = N_RESAMPLES,
                   seed: int = 0, level: float = LEVEL) -> Interval:
    """Percentile bootstrap interval of a mean (e.g. accuracy from per-example ``correct``)."""
    return bootstrap_hierarchical(lambda m: m, [[values]], n_resamples, seed, level)


def bootstrap_paired(stat: Callable[..., np.ndarray], arrays: Sequence[np.ndarray],
                     n_resamples: int = N_RESAMPLES, seed: int = 0,
                     level: float = LEVEL) -> Interval:
    """Percentile interval of ``stat(*means)`` with the same resampled examples for every array
    (one seed of :func:`bootstrap_hierarchical`)."""
    return bootstrap_hierarchical(stat, [arrays], n_resamples, seed, level)


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
    for i, line in enumerate(rundir.read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out[str(row["id"])] = bool(row["correct"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{i}: not a prediction line ({e})") from None
    return out


def _correct_array(path: str | Path) -> np.ndarray:
    correct = read_correct(path)
    if not correct:
        raise ValueError(f"{path}: no examples")
    return np.fromiter(correct.values(), dtype=np.float64, count=len(correct))


def _paired_arrays(finetuned_path: str | Path, forgotten_path: str | Path
                   ) -> tuple[np.ndarray, np.ndarray]:
    ft: Mapping[str, bool] = read_correct(finetuned_path)
    fo: Mapping[str, bool] = read_correct(forgotten_path)
    ids = [k for k in ft if k in fo]
    if not ids:
        raise ValueError(f"{finetuned_path} and {forgotten_path} share no example ids")
    return (np.array([ft[k] for k in ids], dtype=np.float64),
            np.array([fo[k] for k in ids], dtype=np.float64))


def accuracy_interval(paths: str | Path | Sequence[str | Path], n_resamples: int = N_RESAMPLES,
                      seed: int = 0, level: float = LEVEL) -> Interval:
    """Bootstrap interval of the accuracy in one predictions file, or the mean over several
    (one per seed, resampled hierarchically)."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    return bootstrap_hierarchical(lambda m: m, [[_correct_array(p)] for p in paths],
                                  n_resamples, seed, level)


def ratio_interval(finetuned_paths: str | Path | Sequence[str | Path],
                   forgotten_paths: str | Path | Sequence[str | Path], mode: str = "random",
                   n_resamples: int = N_RESAMPLES, seed: int = 0,
                   level: float = LEVEL) -> Interval:
    """Paired bootstrap interval of the forget ratio over the examples in both files (one pair
    per seed; several are resampled hierarchically). ``n_undefined`` counts the resamples whose
    denominator was <= 0.

    Raises:
        ValueError: two paired files share no example ids.
    """
    if isinstance(finetuned_paths, str | Path):
        finetuned_paths, forgotten_paths = [finetuned_paths], [forgotten_paths]
    groups = [_paired_arrays(a, b) for a, b in zip(finetuned_paths, forgotten_paths, strict=True)]
    return bootstrap_hierarchical(lambda x, y: forget_ratio(x, y, mode), groups, n_resamples,
                                  seed, level)


def _key(paths: Sequence[Path | None] | Path | None) -> tuple[Path, ...] | None:
    """Paths as a tuple (None when a seed lacks its file: no interval then)."""
    paths = [paths] if paths is None or isinstance(paths, Path) else list(paths)
    return None if not paths or any(p is None for p in paths) else tuple(paths)


class PredictionIntervals:
    """Cached intervals from prediction files; problems are appended to ``notes``, not raised.

    Each method takes one path, or one per seed (then the interval is hierarchical).

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
        self._acc: dict[tuple[Path, ...], Interval | None] = {}

    def accuracy(self, paths: Sequence[Path | None] | Path | None,
                 expected: Sequence[float | None] | float | None = None,
                 label: str = "") -> Interval | None:
        """The accuracy interval (None without every file), each file checked against
        ``expected`` (results.json)."""
        key = _key(paths)
        if key is None:
            return None
        if key not in self._acc:
            try:
                self._acc[key] = accuracy_interval(key, self.n_resamples, self.seed)
            except ValueError as e:
                self.notes.append(f"no interval from `{', '.join(map(str, key))}`: {e}")
                self._acc[key] = None
        ci = self._acc[key]
        exp = expected if isinstance(expected, Sequence) else [expected] * len(key)
        if ci is not None:
            for path, want in zip(key, exp, strict=False):
                got = float(_correct_array(path).mean())
                if want is not None and abs(got - want) > 1e-6:
                    self.notes.append(f"`{path}`: mean of `correct` {got:.4f} != results.json "
                                      f"{label} accuracy {want:.4f}")
        return ci

    def ratio(self, finetuned: Sequence[Path | None] | Path | None,
              forgotten: Sequence[Path | None] | Path | None,
              mode: str = "random") -> Interval | None:
        """Paired forget-ratio interval (None without every file)."""
        ft, fo = _key(finetuned), _key(forgotten)
        if ft is None or fo is None:
            return None
        try:
            return ratio_interval(ft, fo, mode, self.n_resamples, self.seed)
        except ValueError as e:
            self.notes.append(f"no forget-ratio interval from `{fo[0]}`: {e}")
            return None
