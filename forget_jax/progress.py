"""One progress bar per phase: what is done (on the host, not merely queued), its rate, an ETA.

JAX dispatches work asynchronously: a loop that counts a batch when it is *queued* runs ahead
of the device (a scoring bar once read 60/60 at 442 ex/s while the real rate was ~10 ex/s).
Callers count a batch only once its results are on the host (:mod:`forget_jax.scoring` and
:func:`forget_jax.phases.train_phase` fetch each batch one or two batches behind the one in
flight, so the device stays busy). The bar's unit is examples (trained and scored), its rate
the average over the phase (``smoothing=0``) and its ETA the phase's remaining examples at that
rate. Only process 0 draws; ``enabled=False`` (tests) draws nothing.
"""

from __future__ import annotations

import contextlib
import sys

import jax
from tqdm import tqdm

_FORMAT = "{desc} {percentage:3.0f}%|{bar:12}| {n_fmt}/{total_fmt} ex [{elapsed}<{remaining}, " \
          "{rate_fmt}]{postfix}"


class Bar:
    """A phase's bar: ``desc`` (e.g. "finetune epoch 2/5"), a postfix of named fields."""

    def __init__(self, desc: str, total: int, enabled: bool = True):
        tty = sys.stderr.isatty()
        self._bar = tqdm(total=total, desc=desc, unit="ex", smoothing=0, bar_format=_FORMAT,
                         disable=not enabled or jax.process_index() != 0, leave=True,
                         mininterval=0.5 if tty else 30.0, dynamic_ncols=tty)
        self._fields: dict[str, str] = {}

    def describe(self, desc: str) -> None:
        self._bar.set_description_str(desc, refresh=False)

    def update(self, n: int, **fields: str) -> None:
        """``n`` more examples done; ``fields`` replace the postfix's values of those names."""
        self._fields.update(fields)
        self._bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in self._fields.items()),
                                  refresh=False)
        self._bar.update(n)

    @contextlib.contextmanager
    def above(self):
        """Log lines written inside this block appear above the bar, not through it."""
        with tqdm.external_write_mode(file=sys.stderr):
            yield

    def close(self) -> None:
        self._bar.close()
