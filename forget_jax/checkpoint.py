"""The only module that touches Orbax.

Layout under ``<workdir>/checkpoints/``:

* ``<phase>/`` (phase = finetune | forget | relearn): the latest epoch of that phase, for exact
  resume. Each step holds the TrainState (``state``) and a JSON ``meta`` record (phase, epoch,
  history so far, best-so-far bookkeeping, done flag). ``max_to_keep=1``.
* ``finetune_best/``: the best fine-tuned state by validation accuracy (Orbax best-retention,
  ``best_fn`` over the ``validation_acc`` metric, ``max_to_keep=1``).

Resume order (documented in the README): this workdir's own checkpoints first, then
``init_from`` (another run's ``finetune_best``), then the Hugging Face / GGUF weights.
Orbax writes atomically (temporary directory + rename), so a killed run leaves either the previous
or the new checkpoint, never a torn one; a killed save's ``*.orbax-checkpoint-tmp*`` directory is
removed when the directory is next opened. A save replaces a committed step of the same number:
epoch e's best checkpoint is saved before its latest one, so a run killed between the two resumes
from epoch e - 1, recomputes epoch e (deterministically) and saves step e of ``finetune_best``
again (Orbax refuses to overwrite a step even with ``force=True``). Every process takes part in
saves.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def _manager(directory: str | os.PathLike, best: bool = False) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=1,
        create=True,
        enable_async_checkpointing=False,
        best_fn=(lambda m: m["validation_acc"]) if best else None,
        best_mode="max",
        keep_checkpoints_without_metrics=not best,
        cleanup_tmp_directories=True,  # what a save killed before its commit left behind
    )
    return ocp.CheckpointManager(pathlib.Path(directory).absolute(), options=options)


def _save(mgr: ocp.CheckpointManager, step: int, args, **kwargs) -> None:
    """Saves ``step`` synchronously, replacing a committed step of that number (a resumed
    run recomputing an epoch whose checkpoint an interrupted attempt already committed)."""
    if step in mgr.all_steps():
        mgr.delete(step)
    mgr.save(step, args=args, force=True, **kwargs)
    mgr.wait_until_finished()


class PhaseCheckpoints:
    """Latest-epoch checkpoints of one training phase (for resume)."""

    def __init__(self, workdir: str | os.PathLike, phase: str):
        self.dir = pathlib.Path(workdir) / "checkpoints" / phase
        self._mgr: ocp.CheckpointManager | None = None

    @property
    def mgr(self) -> ocp.CheckpointManager:
        if self._mgr is None:
            self._mgr = _manager(self.dir)
        return self._mgr

    def exists(self) -> bool:
        return self.dir.is_dir() and self.mgr.latest_step() is not None

    def save(self, step: int, state: Any, meta: dict) -> None:
        _save(self.mgr, step, ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

    def restore_meta(self) -> dict | None:
        step = self.mgr.latest_step() if self.dir.is_dir() else None
        if step is None:
            return None
        return self.mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def restore(self, abstract_state: Any) -> tuple[Any, dict]:
        """Restores the latest (state, meta) into the shardings of ``abstract_state``."""
        step = self.mgr.latest_step()
        out = self.mgr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return out["state"], out["meta"]

    def close(self) -> None:
        if self._mgr is not None:
            self._mgr.wait_until_finished()
            self._mgr.close()
            self._mgr = None


class BestCheckpoint:
    """The best fine-tuned parameters by validation accuracy (Orbax best-retention)."""

    def __init__(self, workdir: str | os.PathLike):
        self.dir = pathlib.Path(workdir) / "checkpoints" / "finetune_best"
        self._mgr: ocp.CheckpointManager | None = None

    @property
    def mgr(self) -> ocp.CheckpointManager:
        if self._mgr is None:
            self._mgr = _manager(self.dir, best=True)
        return self._mgr

    def exists(self) -> bool:
        return self.dir.is_dir() and self.mgr.latest_step() is not None

    def save(self, step: int, params: Any, validation_acc: float, meta: dict) -> None:
        _save(self.mgr, step, ocp.args.Composite(
            params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(meta)),
            metrics={"validation_acc": float(validation_acc)})

    def restore(self, abstract_params: Any) -> tuple[Any, dict]:
        step = self.mgr.best_step()
        if step is None:
            raise FileNotFoundError(f"no fine-tuned checkpoint in {self.dir}")
        out = self.mgr.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_params), meta=ocp.args.JsonRestore()))
        return out["params"], out["meta"]

    def close(self) -> None:
        if self._mgr is not None:
            self._mgr.wait_until_finished()
            self._mgr.close()
            self._mgr = None


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) of a tree of arrays, for restoring into place."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        tree)


def save_activations(path: str | os.PathLike, tree: dict, dtype: str = "float32") -> None:
    """Saves a tree of numpy activations (see CONTRACT: activations/<phase>/) with Orbax.

    Float arrays are cast to ``dtype`` ("float32" or "bfloat16") on disk; others are kept.
    """
    import ml_dtypes

    target = np.float32 if dtype == "float32" else ml_dtypes.bfloat16

    def cast(x):
        x = np.asarray(x)
        return x.astype(target) if np.issubdtype(x.dtype, np.floating) or x.dtype == \
            ml_dtypes.bfloat16 else x

    path = pathlib.Path(path).absolute()
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(path, jax.tree.map(cast, tree), force=True)
    ckptr.wait_until_finished()
    ckptr.close()


def load_activations(path: str | os.PathLike) -> dict:
    """Loads an activations tree saved by :func:`save_activations` as numpy arrays."""
    path = pathlib.Path(path).absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"no activations at {path}")
    ckptr = ocp.StandardCheckpointer()
    tree = ckptr.restore(path)
    ckptr.close()
    return jax.tree.map(np.asarray, tree)
