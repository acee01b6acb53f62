"""Which source split plays which role (train / validation / test), and how missing ones are carved.

Roles: ``train`` (fine-tuning and forgetting, at most ``n_train`` rows), ``validation`` (early
stopping) and ``test`` (the labeled eval split of TASKS.md §3.1). One rule covers every task
and every combination of locally available labeled splits:

1. **test** = the paper's eval split (TASKS.md §3.1: the labeled test split where one exists,
   else validation) if present; else the task's other labeled non-train split; else a
   held-out slice of the only available split, drawn with a *fixed* seed (the same rows in
   every run, like a real test split).
2. **train** = the ``train`` split if present; else the remaining labeled split that is not
   the test source (SciQ/MathQA: their validation split); else the rows of the test source
   that are outside every held-out slice.
3. **validation** = the task's own labeled validation split, if it has one separate from its
   eval split (ARC, SciQ, PubMedQA, MathQA on the hub) and it is not already the train or test
   source; else a held-out slice of the train source drawn with the *run* seed.

A held-out slice has ``min(1000, n // 5)`` rows, where ``n`` counts the rows of the split
(minus an earlier held-out slice) whose gold resolves. Slices are carved after render and
binarization and before the other hygiene steps, so every role then goes through TASKS.md §3 in
order: eval roles (test, validation) are decontaminated against the train source split
(all of its rows when the eval role is a different split; for a carved test slice, all the
other rows of its split, so that it stays the same in every run; for a carved validation slice,
the rows outside both slices), all roles are length-filtered, and each role is capped at 1000
with the key ``subsample|SEED|<task>|<source split>``. Finally the train role is subsampled to
``n_train`` (run seed) and every role truncated to ``limit``.

``paper_splits`` is False whenever this deviates from the paper/hub protocol: a carved test
or train role, a validation role that is not the task's own split where it has one, or a local
source split smaller than the hub split (a subset).

Resulting table for the data staged in ``shared/data`` (``describe_roles`` gives the details;
"slice" = held-out slice, "- slice" = minus the held-out slice(s), run/fixed = seed):

=============  ================================  =======================  ===================  =====
task           train role                        validation role          test role            paper
=============  ================================  =======================  ===================  =====
piqa           validation - 2 slices             validation slice (run)   val. slice (fixed)   no
arc_easy       train                             validation               test                 yes
arc_challenge  train                             validation               test                 yes
creak          train - slice                     train slice (run)        validation (= dev)   yes
boolq          train (2,008-row subset) - slice  train slice (run)        validation           no
sciq           validation - slice                validation slice (run)   test                 no
pubmedqa       train                             validation               test                 yes
mathqa         validation - slice                validation slice (run)   test                 no
toxigen        train - 2 slices                  train slice (run)        train slice (fixed)  no
cola, mrpc,    train - slice                     train slice (run)        validation           yes
rte, wnli, cb,
copa, wic, wsc
mnli, qnli     train (~10k-row subset) - slice   train slice (run)        validation           no
=============  ================================  =======================  ===================  =====

From the hub every task gets the paper protocol (PIQA: train / slice of train / validation;
ToxiGen: train / slice of train / test), except CREAK, which has no hub copy.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from forget_jax.tasks.base import ROLES, TaskError, TaskUnavailable
from forget_jax.tasks.hygiene import CAP
from forget_jax.tasks.specs import SPECS, TASK_NAMES, TaskSpec

HOLDOUT_FRACTION_DENOM = 5  # a held-out slice is 1/5 (20%) of the split, at most CAP rows


def holdout_size(n: int) -> int:
    """Rows in a held-out slice of a split with ``n`` usable rows: ``min(1000, n // 5)``."""
    return min(CAP, n // HOLDOUT_FRACTION_DENOM)


@dataclasses.dataclass(frozen=True)
class RolePlan:
    """The source of each role for one task and one set of available splits.

    Attributes:
        task: task name.
        sizes: available labeled split -> number of rows (local line count or hub size).
        train_src: source split of the train role.
        validation_src: source split of the validation role.
        test_src: source split of the test role.
        test_carved: the test role is a held-out slice of ``test_src`` (== ``train_src``).
        validation_carved: the validation role is a held-out slice of ``train_src``.
        deviations: ``(roles concerned, reason)`` for every way the plan departs from the
            paper's protocol (empty when it follows it).
    """

    task: str
    sizes: dict[str, int]
    train_src: str
    validation_src: str
    test_src: str
    test_carved: bool
    validation_carved: bool
    deviations: tuple[tuple[tuple[str, ...], str], ...]

    @property
    def paper_splits(self) -> bool:
        """True when every role comes from the paper's (hub) splits, in full."""
        return not self.deviations

    @property
    def sources(self) -> tuple[str, ...]:
        """The source splits read, in canonical order."""
        used = {self.train_src, self.validation_src, self.test_src}
        return tuple(s for s in ("train", "validation", "test") if s in used)


def plan_roles(spec: TaskSpec, sizes: dict[str, int], *, check_sizes: bool = True) -> RolePlan:
    """Applies the role rule of this module's docstring.

    Args:
        spec: the task.
        sizes: labeled split -> rows, for the splits that are available.
        check_sizes: compare ``sizes`` with the hub sizes and flag subsets (local data).

    Returns:
        The plan.

    Raises:
        TaskUnavailable: if no labeled split is available.
    """
    avail = [s for s in spec.labeled_splits if s in sizes]
    if not avail:
        raise TaskUnavailable(
            f"{spec.name}: no labeled split available (needs one of "
            f"{', '.join(spec.labeled_splits)})"
        )
    others = [s for s in avail if s != "train"]
    test_src = spec.eval_split if spec.eval_split in avail else (others[-1] if others else "train")
    train_src = next((s for s in avail if s != test_src), test_src)  # avail starts with train
    test_carved = train_src == test_src
    own_val = spec.own_validation and "validation" in avail
    validation_direct = own_val and "validation" not in (train_src, test_src)
    validation_src = "validation" if validation_direct else train_src

    deviations: list[tuple[tuple[str, ...], str]] = []
    if test_carved:
        deviations.append((("test",), f"carved from {test_src} (no separate labeled split)"))
    elif test_src != spec.eval_split:
        deviations.append((("test",), f"{test_src}, but the paper evaluates on {spec.eval_split}"))
    if train_src != "train":
        deviations.append((("train",), f"from {train_src}: no train split available"))
    if spec.own_validation and not validation_direct:
        reason = f"held out from {train_src} (the train source), not the task's own validation"
        deviations.append((("validation",), reason))
    if check_sizes:
        sources = {"train": train_src, "validation": validation_src, "test": test_src}
        for split in dict.fromkeys(sources.values()):
            if sizes[split] < spec.sizes[split]:
                # A subset train source concerns every role: the eval roles are decontaminated
                # against it, so their decontamination is partial.
                roles = (
                    ROLES
                    if split == train_src
                    else tuple(r for r, s in sources.items() if s == split)
                )
                full = spec.sizes[split]
                reason = f"{split} is a local subset, {sizes[split]:,} of {full:,} rows"
                deviations.append((roles, reason))
    return RolePlan(
        spec.name,
        dict(sizes),
        train_src,
        validation_src,
        test_src,
        test_carved,
        not validation_direct,
        tuple(deviations),
    )


def describe_plan(plan: RolePlan, *, source: str, n_train: int = CAP) -> dict[str, str]:
    """Human-readable description of every role of ``plan`` (``TaskData.split_roles``)."""
    sz = plan.sizes
    slices = []
    if plan.test_carved:
        slices.append("the test slice")
    if plan.validation_carved:
        slices.append("the validation slice")
    train = f"{plan.train_src} ({sz[plan.train_src]:,} rows)"
    if slices:
        train += " minus " + " and ".join(slices)
    train += f"; 1000-cap; n_train={n_train} (run-seeded subsample, original order)"
    if plan.validation_carved:
        base = "held-out slice of" + (" the rest of" if plan.test_carved else "")
        validation = (
            f"{base} {plan.train_src}: min(1000, 20%) rows, run-seeded, disjoint from the "
            "train role; decontaminated against the rows left for training"
        )
    else:
        validation = (
            f"{plan.validation_src} ({sz[plan.validation_src]:,} rows), decontaminated against "
            f"all {plan.train_src} rows; 1000-cap"
        )
    if plan.test_carved:
        test = (
            f"held-out slice of {plan.test_src}: min(1000, 20%) rows, fixed seed (same in every "
            f"run), disjoint from the other roles; decontaminated against all other "
            f"{plan.test_src} rows"
        )
    else:
        test = (
            f"{plan.test_src} ({sz[plan.test_src]:,} rows), decontaminated against all "
            f"{sz[plan.train_src]:,} {plan.train_src} rows; 1000-cap"
        )
    roles = {"train": train, "validation": validation, "test": test}
    for role in roles:
        notes = [reason for concerned, reason in plan.deviations if role in concerned]
        if notes:
            roles[role] += " -- NOT the paper's split: " + "; ".join(notes)
        roles[role] += f" [{source}]"
    return roles


def get_spec(task: str) -> TaskSpec:
    """The spec of ``task``; TaskError listing the known tasks if it is unknown."""
    if task not in SPECS:
        raise TaskError(f"unknown task {task!r}; known tasks: {', '.join(TASK_NAMES)}")
    return SPECS[task]


def is_hub(data_dir: str | os.PathLike | None) -> bool:
    """True when ``data_dir`` asks for the hub (None or empty)."""
    return data_dir is None or str(data_dir) == ""


def check_data_dir(data_dir: str | os.PathLike) -> Path:
    """``data_dir`` as a Path; TaskError if it is not an existing directory."""
    root = Path(data_dir)
    if not root.is_dir():
        raise TaskError(
            f"data_dir {str(root)!r} does not exist or is not a directory (expected "
            "<data_dir>/<task>/<split>.jsonl files; an empty one, --config.data_dir=, loads "
            "from the hub)"
        )
    return root


def split_path(root: Path, task: str, split: str) -> Path:
    """``<root>/<task>/<split>.jsonl``."""
    return root / task / f"{split}.jsonl"


def local_sizes(root: Path, task: str) -> dict[str, int]:
    """Row counts of the task's labeled split files present under ``root``.

    Raises:
        TaskError: if a present split file is empty.
        TaskUnavailable: if no labeled split file is present.
    """
    spec = get_spec(task)
    sizes = {}
    for split in spec.labeled_splits:
        path = split_path(root, task, split)
        if path.is_file():
            with path.open("rb") as f:
                n = sum(1 for line in f if line.strip())
            if n == 0:
                raise TaskError(f"{path}: empty split file (no rows)")
            sizes[split] = n
    if not sizes:
        raise TaskUnavailable(
            f"{task}: no labeled split file under {root / task} (looked for "
            f"{', '.join(s + '.jsonl' for s in spec.labeled_splits)})"
        )
    return sizes


def hub_plan(task: str) -> RolePlan:
    """The plan when loading from the hub (all labeled hub splits, full size)."""
    spec = get_spec(task)
    if spec.hub_path is None:
        raise TaskUnavailable(
            f"{task}: there is no Hugging Face hub copy (it is not in lm-eval); pass data_dir= "
            f"with {task}/train.jsonl and {task}/validation.jsonl (the authors' train/dev files)"
        )
    return plan_roles(spec, spec.sizes, check_sizes=False)


def local_plan(task: str, data_dir: str | os.PathLike) -> RolePlan:
    """The plan for the split files present under ``data_dir``."""
    spec = get_spec(task)
    return plan_roles(spec, local_sizes(check_data_dir(data_dir), task))


def source_name(data_dir: str | os.PathLike | None) -> str:
    """``"hub"`` or ``"local:<dir>"``."""
    return "hub" if is_hub(data_dir) else f"local:{Path(data_dir)}"


def describe_roles(
    task: str, data_dir: str | os.PathLike | None, *, n_train: int = CAP
) -> dict[str, str]:
    """Where each role of ``task`` comes from, without loading the rows.

    Args:
        task: task name.
        data_dir: local data directory, or None/"" for the hub.
        n_train: the ``n_train`` to mention for the train role.

    Returns:
        role -> description; identical to ``load_task(...).split_roles``.

    Raises:
        TaskError: unknown task, missing ``data_dir`` or an empty split file.
        TaskUnavailable: no labeled split of the task is available.
    """
    plan = hub_plan(task) if is_hub(data_dir) else local_plan(task, data_dir)
    return describe_plan(plan, source=source_name(data_dir), n_train=n_train)
