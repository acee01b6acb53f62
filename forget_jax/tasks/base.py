"""The task data types (Example, TaskData) and the task errors."""

from __future__ import annotations

import dataclasses

ROLES: tuple[str, ...] = ("train", "validation", "test")
REMOVAL_STEPS: tuple[str, ...] = ("unresolved_gold", "decontaminated", "too_long", "capped")


class TaskError(ValueError):
    """Bad task input: unknown task, bad data directory, malformed or incomplete rows."""


class TaskUnavailable(TaskError):
    """A split the task needs is absent and cannot be carved by the documented rule."""


@dataclasses.dataclass(frozen=True)
class Example:
    """One binarized example, exactly as it is scored.

    Attributes:
        id: ``"<task>/<source split>/<0-based row in that source split>"``, e.g.
            ``"rte/validation/17"``; the source split is the file the row came from, not the
            role it plays.
        prompt: the exact context string (``doc_to_text``), nothing appended.
        choices: the two continuation strings, each with the leading delimiter ``" "``
            (COPA's therefore start with two spaces).
        gold: index of the correct continuation, 0 or 1.
    """

    id: str
    prompt: str
    choices: tuple[str, str]
    gold: int


def distractor(example: Example) -> int:
    """Index of the wrong continuation of a binarized example (``1 - gold``)."""
    return 1 - example.gold


@dataclasses.dataclass
class TaskData:
    """The three roles of a task after hygiene, carving and capping.

    Attributes:
        task: the task name.
        train: examples to fine-tune (and forget) on, at most ``n_train``.
        validation: examples for early stopping.
        test: the labeled eval examples (TASKS.md §3.1, or the documented stand-in).
        split_roles: role -> human-readable description of its source and of the rule used.
        paper_splits: False whenever the local data forced a deviation from the paper's
            (hub) splits: a carved test or train role, or a subset source split.
        removal_counts: source split -> rows removed by each hygiene step
            (``unresolved_gold``, ``decontaminated``, ``too_long``, ``capped``).
        source: ``"local:<dir>"`` or ``"hub"``.
    """

    task: str
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    split_roles: dict[str, str]
    paper_splits: bool
    removal_counts: dict[str, dict[str, int]]
    source: str

    def split(self, role: str) -> list[Example]:
        """The examples of ``role`` (``"train"``, ``"validation"`` or ``"test"``)."""
        if role not in ROLES:
            raise TaskError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        return getattr(self, role)
