"""Which log lines a run prints: ours at INFO, third-party libraries' only when asked.

By default a run shows forget_jax's own INFO lines, every library's warnings and errors, and
nothing else: not Orbax's per-save INFO chatter (most of a run's log), not jax's "Unable to
initialize backend 'tpu'" (INFO, on every CPU/GPU start), not transformers' "PyTorch was not
found" advice. ``--config.verbose=True``, or absl's ``-v``/``--verbosity`` on the command line,
brings them all back (the absl verbosity then applies as absl defines it).
"""

from __future__ import annotations

import logging
import os

# Loggers quieted to WARNING by default: absl's (Orbax logs through absl.logging) and jax's.
QUIET = ("absl", "jax", "orbax")


def configure(verbose: bool) -> None:
    """Sets the levels; call once, after flag parsing and before transformers is imported."""
    logging.getLogger("forget_jax").setLevel(logging.INFO)
    if verbose:
        return
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    # transformers configures its own logger from these on first import.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
