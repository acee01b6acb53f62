"""Writing the run directory (CONTRACT.md): atomic JSON/JSONL/NPZ files and TensorBoard scalars.

Only process 0 writes (callers check :func:`is_main`); every write is temp file + ``os.replace``
so no reader ever sees a half-written file.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import tempfile
import time
from collections.abc import Iterable

import jax
import numpy as np


def is_main() -> bool:
    return jax.process_index() == 0


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import (os.umask can only be read by setting it)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 -> what open() would give (umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def write_jsonl(path, rows: Iterable[dict]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_npz(path, **arrays) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


class EpochRecorder:
    """Per-epoch per-example confidences of one training phase -> predictions/epochs/<phase>.npz.

    Arrays: ``epoch`` [E]; per split ``{split}_confidence`` [E,N], ``{split}_correct`` [E,N],
    ``{split}_ids`` [N]. Epoch 0 is the state before the phase's first epoch.
    """

    def __init__(self, workdir, phase: str):
        self.path = pathlib.Path(workdir) / "predictions" / "epochs" / f"{phase}.npz"
        self.epochs: list[int] = []
        self.data: dict[str, list] = {}
        self.ids: dict[str, np.ndarray] = {}

    def resume(self, upto_epoch: int) -> None:
        """Keeps the recorded epochs <= upto_epoch (after a restart)."""
        if not self.path.exists():
            return
        with np.load(self.path, allow_pickle=False) as z:
            keep = [i for i, e in enumerate(z["epoch"]) if e <= upto_epoch]
            self.epochs = [int(z["epoch"][i]) for i in keep]
            for k in z.files:
                if k.endswith("_ids"):
                    self.ids[k[:-4]] = z[k]
                elif k != "epoch":
                    self.data[k] = [z[k][i] for i in keep]

    def add(self, epoch: int, split: str, confidence: np.ndarray, correct: np.ndarray,
            ids: list[str]) -> None:
        if not self.epochs or self.epochs[-1] != epoch:
            self.epochs.append(epoch)
        self.data.setdefault(f"{split}_confidence", []).append(confidence.astype(np.float32))
        self.data.setdefault(f"{split}_correct", []).append(correct.astype(bool))
        self.ids[split] = np.asarray(ids)

    def write(self) -> None:
        arrays = {"epoch": np.asarray(self.epochs, np.int32)}
        arrays.update({k: np.stack(v) for k, v in self.data.items()})
        arrays.update({f"{s}_ids": v for s, v in self.ids.items()})
        write_npz(self.path, **arrays)


class TensorBoard:
    """Scalar event files written with tensorboard's own EventFileWriter (no TensorFlow).

    One timeline per run (:func:`forget_jax.phases.timeline_start`). A resumed run first writes
    :meth:`restart` at the step it continues from: TensorBoard (its EventAccumulator) then
    drops every point at or after that step from the killed run's event files, so the
    timeline has no duplicates.
    """

    def __init__(self, logdir):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._writer = EventFileWriter(str(logdir))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=[
            summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                               summary=summary))

    def restart(self, step: int) -> None:
        """A SessionLog.START at ``step``: readers purge earlier files' points at >= step."""
        from tensorboard.compat.proto import event_pb2

        self._writer.add_event(event_pb2.Event(
            wall_time=time.time(), step=int(step),
            session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

    def hparams(self, values: dict) -> None:
        """The run's (flattened) config for TensorBoard's HParams view, at step 0; values that
        are not bool/int/float/str are written as their str()."""
        from tensorboard.compat.proto import event_pb2
        from tensorboard.plugins.hparams import summary_v2

        hp = {k: v if isinstance(v, bool | int | float | str) else str(v)
              for k, v in values.items()}
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=0,
                                               summary=summary_v2.hparams_pb(hp)))

    def text(self, tag: str, value: str) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.text import metadata as text_metadata
        from tensorboard.util import tensor_util

        meta = text_metadata.create_summary_metadata(display_name=tag, description="")
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
            tag=tag, metadata=meta, tensor=tensor_util.make_tensor_proto([value]))])
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=0, summary=summary))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
