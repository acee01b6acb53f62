"""The cross-task forgetting matrix (Fig. 3.2; flipped labels: Appendix C).

Entry ``[A, B]`` is the forget ratio of cell ``forget-<A>-on-<B>``: the model fine-tuned on B,
trained on A's training set with random (or flipped) labels, evaluated on B's test role. Rows
are forget tasks A, columns eval tasks B; the diagonal is the single-task experiment.

Ordering (as in the paper, "clustered using the UPGMA algorithm"): rows and columns are ordered
separately by the leaf order of an average-linkage (UPGMA) hierarchical clustering,
``scipy.cluster.hierarchy.linkage(X, method="average", metric="euclidean")``. The distance
between two rows is the euclidean distance between their vectors of forget ratios over all eval
tasks; between two columns, over all forget tasks. Missing entries are filled, for the
clustering only, by their column's mean (then the overall mean).

The cells are read from a sweep root by their CONTRACT.md names (:func:`read_runs`):
``forget-<A>-on-<B>`` (random labels, paper-literal stop on B's test accuracy),
``fixed-<A>-on-<B>`` (random labels, fixed budget), ``flip-<A>-on-<B>`` (flipped labels), and
for the other experiments ``forget-<t>-n<k>`` (small forget set, starting from ``ft-<t>``) and
the ``ft-<t>`` cells they all start from; each name optionally ends in ``-s<seed>``. A and B
come from each results.json (``forget_task``, ``eval_task``).

Heatmaps use one fixed colour range, :data:`VMIN`..:data:`VMAX` = -0.5..1.5 (0 = nothing
forgotten, 1 = back at chance, < 0 = better than after fine-tuning, > 1 = below chance), so one
outlier cannot stretch the scale: a value outside it gets the end colour and a ``*``. Cells
whose ratio is undefined (fine-tuning gain not significant) are hatched grey, ``n.s.``.

The paper's claim that "the degree of forgetting is largely determined by the tasks that LMs are
evaluated on" is quantified by a two-way decomposition of the matrix's sum of squares into a
column (eval task) part, a row (forget task) part, and a residual.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.cluster import hierarchy

from forget_jax.analysis import rundir

_SEED = r"(?:-s(\d+))?$"
_KINDS = (("ft", re.compile(r"^ft-\w+?(?:-n\d+)?" + _SEED)),  # -n<k>: roots made before issue 13
          ("forget_small", re.compile(r"^forget-\w+-n\d+" + _SEED)),
          ("forget", re.compile(r"^forget-\w+-on-\w+" + _SEED)),
          ("fixed", re.compile(r"^fixed-\w+-on-\w+" + _SEED)),
          ("flip", re.compile(r"^flip-\w+-on-\w+" + _SEED)),
          ("null", re.compile(r"^null-\w+?" + _SEED)),
          ("method", re.compile(r"^method-\w+-\w+" + _SEED)),  # method-<m>-<t>: issue 16
          ("method_fixed", re.compile(r"^method_fixed-\w+-\w+" + _SEED)))
VMIN, VMAX = -0.5, 1.5  # fixed colour range of every forget-ratio heatmap
UNDEFINED = "undefined: fine-tuning gain not significant"


def cell_kind(name: str) -> str | None:
    """``ft``, ``forget``, ``fixed``, ``flip``, ``forget_small``, ``null``, ``method`` or
    ``method_fixed`` from a cell name; None if none fits."""
    return next((k for k, rx in _KINDS if rx.match(name)), None)


def name_seed(name: str) -> int:
    """The seed a cell name ends in (``-s<k>``), 0 without one."""
    m = re.search(r"-s(\d+)$", name)
    return int(m.group(1)) if m else 0


def group_name(name: str) -> str:
    """The cell name without its seed suffix: cells of one group differ only in the seed."""
    return re.sub(r"-s\d+$", "", name)


@dataclasses.dataclass
class Run:
    """A cell's run directory and its results.json.

    Attributes:
        name: cell name.
        dir: run directory.
        results: parsed results.json.
        kind: see :func:`cell_kind`.
        a: forget task (results ``forget_task``).
        b: eval task (results ``eval_task``).
    """

    name: str
    dir: Path
    results: dict[str, Any]
    kind: str
    a: str
    b: str

    @property
    def complete(self) -> bool:
        return self.results.get("complete") is True

    @property
    def seed(self) -> int:
        """results.json ``seed``, else the name's ``-s<k>`` (0 without either)."""
        seed = self.results.get("seed")
        return int(seed) if isinstance(seed, int) else name_seed(self.name)

    @property
    def init_from(self) -> str:
        """The run it started from (:func:`rundir.init_from`); "" if none."""
        return rundir.init_from(self.dir, self.results)

    def acc(self, phase: str) -> float | None:
        """results.json ``accuracy.<phase>.test`` (None when absent)."""
        return self.results.get("accuracy", {}).get(phase, {}).get("test")

    def predictions(self, phase: str) -> Path | None:
        """``predictions/<phase>/<B>.test.jsonl`` of this run, else of the run it started from.

        A forget cell reuses its init's pretrained/fine-tuned results, so their per-example
        files may live only in the ``ft-*`` cell (``init_from`` in config.json).
        """
        dirs = [self.dir]
        if self.init_from:
            dirs.append(Path(self.init_from))
        dirs.append(self.dir.parent / (f"ft-{self.b}" + (f"-s{self.seed}" if self.seed else "")))
        for d in dirs:
            if p := rundir.prediction_file(d, phase, f"{self.b}.test"):
                return p
        return None


def read_runs(root: str | Path, notes: list[str]) -> dict[str, Run]:
    """Every ``<root>/runs/<cell>/results.json``, by cell name; problems are appended to notes."""
    runs: dict[str, Run] = {}
    for d in sorted(p for p in (Path(root) / "runs").glob("*") if p.is_dir()):
        kind = cell_kind(d.name)
        if kind is None:
            notes.append(f"`runs/{d.name}`: not a CONTRACT.md cell name, ignored")
            continue
        if not (d / "results.json").exists():
            continue
        try:
            res = rundir.read_results(d)
        except rundir.RunDirError as e:
            notes.append(f"`runs/{d.name}`: {e}")
            continue
        task = res["task"]
        runs[d.name] = Run(d.name, d, res, kind, res.get("forget_task") or task,
                           res.get("eval_task") or task)
    return runs


@dataclasses.dataclass(frozen=True)
class Matrix:
    """Forget ratios of cross-task cells.

    Attributes:
        rows: forget tasks A.
        cols: eval tasks B.
        values: ``[len(rows), len(cols)]`` forget ratios, NaN where a cell is missing or its
            ratio undefined.
        undefined: ``(A, B)`` pairs whose ratio is undefined (fine-tuning gain not significant).
    """

    rows: tuple[str, ...]
    cols: tuple[str, ...]
    values: np.ndarray
    undefined: frozenset[tuple[str, str]] = frozenset()

    def reindex(self, rows: Sequence[str], cols: Sequence[str]) -> Matrix:
        """The same entries with rows and columns in the given orders (NaN for new labels)."""
        out = np.full((len(rows), len(cols)), np.nan)
        r_pos = {r: i for i, r in enumerate(self.rows)}
        c_pos = {c: j for j, c in enumerate(self.cols)}
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                if r in r_pos and c in c_pos:
                    out[i, j] = self.values[r_pos[r], c_pos[c]]
        return Matrix(tuple(rows), tuple(cols), out, self.undefined)


def build_matrix(entries: Mapping[tuple[str, str], float | str | None],
                 tasks: Sequence[str] | None = None) -> Matrix:
    """A square matrix over ``tasks`` (default: every task named in ``entries``, sorted).

    Args:
        entries: ``{(forget task A, eval task B): forget ratio}``; :data:`UNDEFINED` marks an
            undefined ratio, None a missing one.
        tasks: row and column labels.
    """
    if tasks is None:
        tasks = sorted({t for pair in entries for t in pair})
    values = np.full((len(tasks), len(tasks)), np.nan)
    pos = {t: i for i, t in enumerate(tasks)}
    for (a, b), v in entries.items():
        if a in pos and b in pos and v is not None and v != UNDEFINED:
            values[pos[a], pos[b]] = float(v)
    undefined = frozenset(k for k, v in entries.items() if v == UNDEFINED)
    return Matrix(tuple(tasks), tuple(tasks), values, undefined)


def _fill_for_clustering(x: np.ndarray) -> np.ndarray:
    x = np.array(x, dtype=np.float64)
    if np.isnan(x).all():
        return np.zeros_like(x)
    with warnings.catch_warnings():  # an all-NaN column is expected here
        warnings.simplefilter("ignore", RuntimeWarning)
        col_mean = np.nanmean(x, axis=0)
    col_mean = np.where(np.isnan(col_mean), np.nanmean(x), col_mean)
    return np.where(np.isnan(x), col_mean[None, :], x)


def upgma_order(matrix: np.ndarray | Sequence[Sequence[float]]) -> list[int]:
    """Leaf order of a UPGMA clustering of the matrix's rows.

    Equals ``scipy.cluster.hierarchy.leaves_list(linkage(matrix, method="average"))`` (euclidean
    distance between rows) for a complete matrix; NaNs are filled as in the module docstring.
    Order columns with ``upgma_order(matrix.T)``.

    Args:
        matrix: ``[n, d]`` values, one row per item to order.

    Returns:
        A permutation of ``range(n)``.
    """
    x = _fill_for_clustering(np.atleast_2d(np.asarray(matrix, dtype=np.float64)))
    n = x.shape[0]
    if n < 2:  # scipy needs two observations
        return list(range(n))
    z = hierarchy.linkage(x, method="average", metric="euclidean")
    return [int(i) for i in hierarchy.leaves_list(z)]


def upgma_ordered(m: Matrix) -> Matrix:
    """``m`` with rows and columns each in their own UPGMA order."""
    rows = [m.rows[i] for i in upgma_order(m.values)]
    cols = [m.cols[j] for j in upgma_order(m.values.T)]
    return m.reindex(rows, cols)


def effect_shares(m: Matrix) -> dict[str, float] | None:
    """Shares of the matrix's total sum of squares due to eval task, forget task and residual.

    Two-way decomposition without replication: ``SS_cols = n_rows * sum_j (mean_j - mean)^2``,
    ``SS_rows = n_cols * sum_i (mean_i - mean)^2``, residual = the rest.

    Returns:
        ``{"eval_task": .., "forget_task": .., "residual": ..}`` summing to 1, or None when the
        matrix has missing entries, fewer than 2 rows/columns, or no variance.
    """
    x = m.values
    if x.shape[0] < 2 or x.shape[1] < 2 or np.isnan(x).any():
        return None
    mean = x.mean()
    total = float(((x - mean) ** 2).sum())
    if total <= 0:
        return None
    ss_cols = x.shape[0] * float(((x.mean(axis=0) - mean) ** 2).sum())
    ss_rows = x.shape[1] * float(((x.mean(axis=1) - mean) ** 2).sum())
    return {"eval_task": ss_cols / total, "forget_task": ss_rows / total,
            "residual": (total - ss_cols - ss_rows) / total}


def diagonal_summary(m: Matrix) -> list[dict[str, Any]]:
    """Per eval task B: own-task ratio, mean other-task ratio, count of A != B forgetting more.

    Reproduces the paper's observation that "many tasks are more effectively forgotten when
    training on randomized labels of other tasks than from training on their own".
    """
    out = []
    for j, b in enumerate(m.cols):
        if b not in m.rows:
            continue
        col = m.values[:, j]
        diag = col[m.rows.index(b)]
        other = np.array([col[i] for i, a in enumerate(m.rows) if a != b and not np.isnan(col[i])])
        out.append({"eval_task": b, "own_ratio": None if np.isnan(diag) else float(diag),
                    "mean_other_ratio": float(other.mean()) if other.size else None,
                    "n_other": int(other.size),
                    "n_other_higher": int((other > diag).sum()) if not np.isnan(diag) else None})
    return out


def matrix_table(m: Matrix, corner: str = "forget_task") -> list[dict[str, Any]]:
    """CSV rows: one per forget task A, a column per eval task B (empty where missing,
    :data:`UNDEFINED` where the ratio is undefined)."""
    def cell(a: str, b: str, v: float) -> float | str:
        return UNDEFINED if (a, b) in m.undefined else ("" if np.isnan(v) else float(v))

    return [{corner: a, **{b: cell(a, b, v) for b, v in zip(m.cols, row, strict=True)}}
            for a, row in zip(m.rows, m.values, strict=True)]


_CAPTION = (f"colour range fixed to [{VMIN}, {VMAX}]; * = outside it (clipped colour);\n"
            "hatched n.s. = undefined (fine-tuning gain not significant)")


def _draw(ax: Any, m: Matrix, title: str) -> Any:
    """Heatmap on the fixed range VMIN..VMAX: out-of-range values clipped and starred,
    undefined cells hatched."""
    from matplotlib.patches import Rectangle

    im = ax.imshow(np.clip(m.values, VMIN, VMAX), cmap="viridis", vmin=VMIN, vmax=VMAX,
                   aspect="auto")
    ax.set_xticks(range(len(m.cols)), m.cols, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(m.rows)), m.rows, fontsize=7)
    ax.set_xlabel("evaluated on (B)\n" + _CAPTION, fontsize=7)
    ax.set_ylabel("trained to forget (A)")
    ax.set_title(title, fontsize=9)
    size = 7 if len(m.rows) <= 8 else 5
    for i, a in enumerate(m.rows):
        for j, b in enumerate(m.cols):
            v = m.values[i, j]
            if (a, b) in m.undefined:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.85",
                                       hatch="///", edgecolor="0.5", lw=0))
                ax.text(j, i, "n.s.", ha="center", va="center", fontsize=size)
            elif not np.isnan(v):
                shade = (np.clip(v, VMIN, VMAX) - VMIN) / (VMAX - VMIN)
                star = "*" if v < VMIN or v > VMAX else ""
                ax.text(j, i, f"{v:.2f}{star}", ha="center", va="center", fontsize=size,
                        color="black" if shade > 0.6 else "white")
    return im


def plot_cross_task(m: Matrix, out_png: str | Path, title: str = "") -> Path:
    """Figure 3.2: heatmap of forget ratios, rows/columns as given (order them first)."""
    from matplotlib.figure import Figure

    side = 1.6 + 0.42 * max(len(m.rows), len(m.cols))
    fig = Figure(figsize=(side + 1.2, side + 0.5))
    ax = fig.subplots()
    im = _draw(ax, m, title or "Cross-task forget ratio (Fig. 3.2; higher = more forgetting)")
    fig.colorbar(im, ax=ax, label="forget ratio")
    return rundir.save_figure(fig, out_png)


def plot_flipped_vs_random(flipped: Matrix, random: Matrix | None, out_png: str | Path) -> Path:
    """Appendix C.1: flipped-label heatmap next to the random-label one, in the same orders.

    The orders are the random matrix's UPGMA orders when it covers the flipped tasks, else the
    flipped matrix's own; both panels share one colour scale.
    """
    from matplotlib.figure import Figure

    if random is not None and set(flipped.rows) <= set(random.rows):
        ref = upgma_ordered(random.reindex(flipped.rows, flipped.cols))
    else:
        ref = upgma_ordered(flipped)
    panels = [(flipped.reindex(ref.rows, ref.cols), "flipped labels")]
    if random is not None:
        panels.append((random.reindex(ref.rows, ref.cols), "random labels"))
    side = 1.6 + 0.42 * len(ref.rows)
    fig = Figure(figsize=((side + 0.6) * len(panels) + 1.0, side))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for k, (ax, (mat, name)) in enumerate(zip(axes, panels, strict=True)):
        im = _draw(ax, mat, f"Forget ratio, {name}")
        if k:
            ax.set_ylabel("")
    fig.colorbar(im, ax=list(axes), label="forget ratio")
    fig.suptitle("Flipped vs random label forgetting (Appendix C)", fontsize=10, y=1.02)
    return rundir.save_figure(fig, out_png)
