"""The 19 binary tasks: lm-eval prompts, binarization, hygiene and train/validation/test roles.

Plain Python + numpy (no JAX): a task turns into lists of :class:`Example` (prompt, two
continuations, gold). TASKS.md is the spec: templates in :mod:`.templates` (§5), hygiene in
:mod:`.hygiene` (§2-§3), role carving in :mod:`.roles` (its docstring holds the rule table),
reading and the pipeline in :mod:`.loading`.

Example::

    from forget_jax import tasks

    data = tasks.load_task("rte", data_dir="../shared/data", n_train=1000, seed=0)
    ex = data.test[0]              # Example(id="rte/validation/0", prompt=..., choices=..., gold=1)
    data.split_roles["validation"] # where the early-stopping rows come from
"""

from forget_jax.tasks.base import (
    Example,
    TaskData,
    TaskError,
    TaskUnavailable,
    distractor,
)
from forget_jax.tasks.hygiene import CAP, SEED
from forget_jax.tasks.loading import available_tasks, load_task
from forget_jax.tasks.roles import describe_roles
from forget_jax.tasks.specs import TASK_NAMES

__all__ = [
    "CAP",
    "SEED",
    "TASK_NAMES",
    "Example",
    "TaskData",
    "TaskError",
    "TaskUnavailable",
    "available_tasks",
    "describe_roles",
    "distractor",
    "load_task",
]
