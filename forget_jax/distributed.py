"""Multi-host initialisation (placeholder until the scale-out work lands)."""

from __future__ import annotations


def init_distributed(config) -> None:
    """Single process: nothing to do."""
    del config
