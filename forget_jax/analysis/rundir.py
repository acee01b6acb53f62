"""Readers of run directories (CONTRACT.md) shared by the analyses, and atomic CSV/PNG writers.

Analyses only *read* what a run wrote; nothing here imports models, steps or phases. Every
reader raises :class:`RunDirError` (a ``ValueError``) naming the offending path when a file is
missing or malformed, so a report over a sweep says exactly which cell is broken.

Layout read here::

    <run>/results.json
    <run>/predictions/<phase>/<task>.<split>.jsonl  pretrained|finetuned|forgotten|relearned
                                                    (or .jsonl.gz, a study's compact copy)
    <run>/predictions/epochs/<training phase>.npz   finetune|forget|relearn
    <run>/activations/<phase>/                      Orbax, via forget_jax.checkpoint
    <run>/activations/<phase>.npz                   or the compact copy (write_activations_npz)
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forget_jax.rundir import atomic_write_bytes

PathLike = str | os.PathLike
SPLITS = ("train", "validation", "test")
_PRED_KEYS = ("id", "gold", "pred", "correct", "confidence")


class RunDirError(ValueError):
    """A run-directory file is missing or malformed.

    Attributes:
        path: the file (or directory) that could not be read.
    """

    def __init__(self, path: PathLike, reason: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: {reason}")


def init_from(run: PathLike, results: Mapping[str, Any]) -> str:
    """The run directory ``run`` started from (results.json ``init_from``, else config.json's);
    "" if none. A sweep root that was moved or exported (a study's committed copy) records the
    old absolute path: then the sibling cell of the same name is the one meant."""
    init = results.get("init_from")
    if not init:
        try:
            init = json.loads((Path(run) / "config.json").read_text(encoding="utf-8")).get(
                "init_from")
        except (OSError, ValueError, AttributeError):
            init = ""
    if init and not Path(init).exists() and (Path(run).parent / Path(init).name).exists():
        return str(Path(run).parent / Path(init).name)
    return str(init or "")


def read_text(path: PathLike) -> str:
    """A text file's contents, gunzipped when the name ends in ``.gz``."""
    if str(path).endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return f.read()
    return Path(path).read_text(encoding="utf-8")


def prediction_file(run: PathLike, phase: str, name: str) -> Path | None:
    """``<run>/predictions/<phase>/<name>.jsonl`` or its gzipped copy, whichever exists."""
    base = Path(run) / "predictions" / phase
    for suffix in (".jsonl", ".jsonl.gz"):
        if (base / f"{name}{suffix}").is_file():
            return base / f"{name}{suffix}"
    return None


def read_results(run: PathLike) -> dict[str, Any]:
    """Reads ``<run>/results.json``.

    Args:
        run: the run directory.

    Returns:
        The parsed results dict.

    Raises:
        RunDirError: if the file is missing, not JSON, or lacks ``task``/``accuracy``.
    """
    path = Path(run) / "results.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(path, "missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(path, f"not valid JSON ({e})") from None
    if not isinstance(results, dict) or "task" not in results or "accuracy" not in results:
        raise RunDirError(path, "expected an object with 'task' and 'accuracy'")
    return results


def read_predictions(run: PathLike, phase: str, task: str, split: str) -> list[dict[str, Any]]:
    """Reads ``<run>/predictions/<phase>/<task>.<split>.jsonl``.

    Args:
        run: the run directory.
        phase: ``pretrained``, ``finetuned``, ``forgotten`` or ``relearned``.
        task: task name.
        split: ``train``, ``validation`` or ``test``.

    Returns:
        One dict per example, in file order.

    Raises:
        RunDirError: if the file is missing, a line is not JSON, or a line lacks a contract key.
    """
    path = prediction_file(run, phase, f"{task}.{split}")
    if path is None:
        raise RunDirError(Path(run) / "predictions" / phase / f"{task}.{split}.jsonl", "missing")
    lines = read_text(path).splitlines()
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise RunDirError(path, f"line {i} is not valid JSON ({e})") from None
        missing = [k for k in _PRED_KEYS if k not in row]
        if missing:
            raise RunDirError(path, f"line {i} lacks {missing}")
        rows.append(row)
    return rows


def read_epochs(run: PathLike, training_phase: str) -> dict[str, np.ndarray]:
    """Reads the per-epoch, per-example history ``<run>/predictions/epochs/<phase>.npz``.

    Args:
        run: the run directory.
        training_phase: ``finetune``, ``forget`` or ``relearn``.

    Returns:
        Arrays ``epoch`` [E] and, per evaluated split ``s``, ``{s}_confidence`` [E, N],
        ``{s}_correct`` [E, N] and ``{s}_ids`` [N].

    Raises:
        RunDirError: if the file is missing, unreadable, or the shapes disagree.
    """
    path = Path(run) / "predictions" / "epochs" / f"{training_phase}.npz"
    if not path.is_file():
        raise RunDirError(path, "missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # any npz/zip failure means a malformed file
        raise RunDirError(path, f"unreadable npz ({type(e).__name__}: {e})") from None
    if "epoch" not in arrays or arrays["epoch"].ndim != 1:
        raise RunDirError(path, "lacks a 1-D 'epoch' array")
    n_epochs = arrays["epoch"].shape[0]
    splits = [s for s in SPLITS if f"{s}_confidence" in arrays]
    if not splits:
        raise RunDirError(path, "has no '<split>_confidence' array")
    for s in splits:
        for key in (f"{s}_confidence", f"{s}_correct", f"{s}_ids"):
            if key not in arrays:
                raise RunDirError(path, f"lacks '{key}'")
        conf, corr, ids = arrays[f"{s}_confidence"], arrays[f"{s}_correct"], arrays[f"{s}_ids"]
        if conf.ndim != 2 or conf.shape[0] != n_epochs or conf.shape != corr.shape:
            raise RunDirError(path, f"'{s}' arrays have shapes {conf.shape}, {corr.shape}")
        if ids.shape != (conf.shape[1],):
            raise RunDirError(path, f"'{s}_ids' has shape {ids.shape}, expected {conf.shape[1:]}")
    return arrays


def has_activations(run: PathLike, phase: str) -> bool:
    """True when ``<run>`` holds ``phase``'s activations, as Orbax or as the compact ``.npz``."""
    base = Path(run) / "activations"
    return (base / phase).is_dir() or (base / f"{phase}.npz").is_file()


def read_activations(run: PathLike, phase: str) -> dict[str, Any]:
    """Reads ``<run>/activations/<phase>/`` (Orbax, through
    ``forget_jax.checkpoint.load_activations``) or, where only it exists, the compact
    ``<run>/activations/<phase>.npz`` written by :func:`write_activations_npz`.

    Args:
        run: the run directory.
        phase: ``pretrained``, ``finetuned`` or ``forgotten``.

    Returns:
        ``{"<task>.<split>": {"prompt_last": [N, D], "answer_last": [N, 2, D], "gold": [N]},
        "layer": int}`` with numpy leaves (a compact copy may lack some fields).

    Raises:
        RunDirError: if neither form is there or it cannot be read.
    """
    path = Path(run) / "activations" / phase
    npz = path.with_name(f"{phase}.npz")
    if not path.exists() and npz.is_file():
        return _read_activations_npz(npz)
    if not path.exists():
        raise RunDirError(path, "missing")
    # Imported lazily: only this reader needs Orbax/JAX; the rest of the analyses are numpy.
    from forget_jax.checkpoint import load_activations

    try:
        tree = load_activations(path)
    except Exception as e:  # report any restore failure with its path
        raise RunDirError(path, f"cannot restore activations ({type(e).__name__}: {e})") from e
    return {
        k: (v if k == "layer" else {f: np.asarray(a) for f, a in v.items()})
        for k, v in tree.items()
    }


def write_activations_npz(tree: Mapping[str, Any], path: PathLike,
                          keep: Mapping[str, Sequence[str]] | None = None) -> Path:
    """Writes an activation tree as one compressed ``.npz`` in float16 (atomically): the compact
    copy a study commits instead of the Orbax directory.

    Args:
        tree: as :func:`read_activations` returns it.
        path: the ``.npz`` to write (``<run>/activations/<phase>.npz``).
        keep: ``{field: splits}`` — keep ``field`` only for those splits (e.g.
            ``{"prompt_last": ("train",)}``); fields not named are kept for every split.

    Raises:
        ValueError: if a float value does not fit float16 (nothing is written).
    """
    arrays: dict[str, np.ndarray] = {"layer": np.asarray(tree["layer"])}
    for key, entry in sorted((k, v) for k, v in tree.items() if k != "layer"):
        split = key.rsplit(".", 1)[-1]
        for field, a in sorted(entry.items()):
            if keep and field in keep and split not in keep[field]:
                continue
            a = np.asarray(a)
            if a.dtype.kind == "f" or a.dtype.name == "bfloat16":
                a = a.astype(np.float32)
                if a.size and float(np.abs(a).max()) > float(np.finfo(np.float16).max):
                    raise ValueError(f"{path}: {key}/{field} exceeds the float16 range")
                a = a.astype(np.float16)
            arrays[f"{key}/{field}"] = a
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _read_activations_npz(path: Path) -> dict[str, Any]:
    try:
        with np.load(path) as z:
            flat = {k: z[k] for k in z.files}
    except Exception as e:
        raise RunDirError(path, f"cannot read activations ({type(e).__name__}: {e})") from e
    if "layer" not in flat:
        raise RunDirError(path, "lacks 'layer'")
    tree: dict[str, Any] = {"layer": int(flat.pop("layer"))}
    for name, a in flat.items():
        key, _, field = name.rpartition("/")
        tree.setdefault(key, {})[field] = a
    return tree


def split_activations(
    tree: Mapping[str, Any], task: str, split: str, path: PathLike = "?",
    fields: Sequence[str] = ("prompt_last", "answer_last", "gold"),
) -> dict[str, np.ndarray]:
    """Returns the ``"<task>.<split>"`` entry of an activation tree, checked and as float32.

    Args:
        tree: an activation tree (see :func:`read_activations`).
        task: task name.
        split: split name.
        path: where the tree came from, for the error message.
        fields: the fields the caller reads (a compact copy may keep only some); ``gold`` is
            always read.

    Returns:
        ``{"prompt_last": [N, D] float32, "answer_last": [N, 2, D] float32, "gold": [N] int64}``,
        the fields asked for.

    Raises:
        RunDirError: if the entry or an asked field is absent, or shapes are inconsistent.
    """
    key = f"{task}.{split}"
    if key not in tree:
        raise RunDirError(path, f"activations lack '{key}' (have {sorted(tree)})")
    entry = tree[key]
    want = dict.fromkeys((*fields, "gold"))
    missing = [f for f in want if f not in entry]
    if missing:
        raise RunDirError(path, f"'{key}' lacks {', '.join(missing)} (has {sorted(entry)})")
    gold = np.asarray(entry["gold"])
    n = gold.shape[0]
    # Activations may be stored as bfloat16/float16; the analyses (numpy, sklearn) want float32.
    out = {f: np.asarray(entry[f]).astype(np.float32) for f in want if f != "gold"}
    bad = ("prompt_last" in out and (out["prompt_last"].ndim != 2 or len(out["prompt_last"]) != n)
           ) or ("answer_last" in out and (out["answer_last"].ndim != 3
                                           or out["answer_last"].shape[:2] != (n, 2)))
    if bad:
        shapes = ", ".join(f"{f} {a.shape}" for f, a in out.items())
        raise RunDirError(path, f"'{key}' has inconsistent shapes {shapes}, gold {gold.shape}")
    out["gold"] = gold.astype(np.int64)
    return out


def is_single_task(results: Mapping[str, Any]) -> bool:
    """True when a run forgot and was evaluated on its own task (task == forget == eval)."""
    task = results["task"]
    return results.get("forget_task", task) == task and results.get("eval_task", task) == task


def single_task_runs(run_dirs: Iterable[PathLike]) -> list[tuple[Path, dict[str, Any]]]:
    """Selects complete single-task runs, one per task, sorted by task name.

    Cross-task cells, incomplete runs and directories without ``results.json`` are skipped
    (logged), since the per-task analyses need a run that fine-tuned, forgot and was evaluated
    on the same task. A malformed ``results.json`` still raises :class:`RunDirError`.

    Raises:
        ValueError: if two selected runs share a task (pass one directory per task).
    """
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for run in map(Path, run_dirs):
        if not (run / "results.json").is_file():  # a cell that has not finished a phase yet
            logging.warning("skipping %s: no results.json yet", run)
            continue
        results = read_results(run)
        if not is_single_task(results):
            logging.info("skipping %s: not a single-task run", run)
            continue
        if not results.get("complete", False):
            logging.warning("skipping %s: results.json is not complete", run)
            continue
        task = results["task"]
        if task in out:
            raise ValueError(f"two single-task runs for {task!r}: {out[task][0]} and {run}")
        out[task] = (run, results)
    return [out[t] for t in sorted(out)]


def write_csv(rows: Sequence[Mapping[str, Any]], path: PathLike) -> Path:
    """Writes ``rows`` as a CSV table atomically (temp file in the same directory + os.replace).

    Columns are the union of the rows' keys, in first-seen order; absent cells are empty.

    Args:
        rows: one mapping per table row.
        path: destination file; parent directories are created.

    Returns:
        The destination path.
    """
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))
    return Path(path)


def save_figure(fig: Any, path: PathLike, dpi: int = 120) -> Path:
    """Saves a matplotlib ``Figure`` as PNG atomically (temp file + os.replace).

    Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so no GUI backend or global
    figure state is involved; rendering uses Agg.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
