"""Reading task rows (local jsonl or the hub) and turning them into the three roles.

Pipeline of :func:`load_task` (TASKS.md §3, roles as in :mod:`forget_jax.tasks.roles`):

1. read every source split the role plan needs;
2. render and binarize each row; rows whose gold does not resolve are dropped (counted as
   ``unresolved_gold``; this includes k > 2 rows whose every other option equals the gold);
3. carve the held-out slices;
4. decontaminate the eval roles, length-filter and cap every role, counting each removal
   under the role's source split;
5. subsample the train role to ``n_train`` and every role to at most ``limit`` (seeded).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from forget_jax.tasks import hygiene, roles
from forget_jax.tasks.base import REMOVAL_STEPS, Example, TaskData, TaskError, TaskUnavailable
from forget_jax.tasks.specs import TASK_NAMES, TaskSpec
from forget_jax.tasks.templates import FieldError, render

log = logging.getLogger(__name__)


# --- reading --------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Reads one JSON object per line (UTF-8).

    Raises:
        TaskError: naming the file and 1-based line number of a blank, non-UTF-8, non-JSON or
            non-object line, or naming the file if it has no rows.
    """
    rows = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            if not raw.strip():
                raise TaskError(f"{where}: blank line (expected one JSON object per line)")
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise TaskError(f"{where}: not UTF-8 ({e.reason} at byte {e.start})") from None
            except json.JSONDecodeError as e:
                # e.msg may end in "at" ("Unterminated string starting at"): one "at column"
                msg = e.msg.removesuffix(" at")
                raise TaskError(f"{where}: malformed JSON ({msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise TaskError(f"{where}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    if not rows:
        raise TaskError(f"{path}: empty split file (no rows)")
    return rows


def read_hub(spec: TaskSpec, split: str) -> list[dict[str, Any]]:
    """Reads one split from the Hugging Face hub with ``datasets.load_dataset``.

    ClassLabel columns come back as their integer ids, as in the local files.

    Raises:
        TaskUnavailable: with the dataset id and the cause, if it cannot be loaded.
    """
    hub_id = spec.hub_path + (f" (config {spec.hub_name})" if spec.hub_name else "")
    try:
        import datasets  # noqa: PLC0415 -- heavy, and only needed for hub loading

        ds = datasets.load_dataset(spec.hub_path, spec.hub_name, split=spec.hub_split(split))
        return ds.to_list()
    except Exception as e:  # noqa: BLE001 -- any hub failure means "unavailable", said once
        cause = (str(e).strip().splitlines() or [""])[0][:300]
        raise TaskUnavailable(
            f"{spec.name}: cannot load split {spec.hub_split(split)!r} of {hub_id} from the "
            f"Hugging Face hub ({type(e).__name__}: {cause}). The hub may be unreachable "
            "(offline machine, HF_DATASETS_OFFLINE/HF_HUB_OFFLINE set) or the dataset gated or "
            "script-based; pass data_dir= with <data_dir>/<task>/<split>.jsonl files instead."
        ) from None


# --- rows -> examples -----------------------------------------------------------------------


def render_rows(
    task: str,
    split: str,
    docs: Sequence[Mapping[str, Any]],
    where: Callable[[int], str] | None = None,
) -> tuple[list[Example], list[str], int]:
    """Renders and binarizes every row of one source split (TASKS.md §3.2).

    Args:
        task: task name.
        split: source split name; with the row index it forms the example id and the
            binarization seed.
        docs: the split's documents, in their source order (row ``i`` = ``docs[i]``).
        where: row -> location for error messages (file:line); default ``"<task>/<split>"``.

    Returns:
        ``(examples whose gold resolved, prompt_key of every row, number of rows dropped)``.

    Raises:
        TaskError: naming the location and the field, if a row lacks a required field or
            cannot be rendered.
    """
    if where is None:
        where = lambda row: f"{task}/{split}"  # noqa: E731
    examples, prompts, dropped = [], [], 0
    for row, doc in enumerate(docs):
        try:
            rendered = render(task, doc)
        except FieldError as e:
            raise TaskError(f"{where(row)}: {task} row {row}: {e}") from None
        except (TypeError, ValueError, IndexError, KeyError, AttributeError) as e:
            raise TaskError(f"{where(row)}: {task} row {row} cannot be rendered: {e!r}") from None
        prompts.append(hygiene.prompt_key(rendered.prompt))
        pair = None
        if rendered.gold is not None:
            pair = hygiene.binarize(
                rendered.choices, rendered.gold, task=task, split=split, row=row
            )
        if pair is None:
            dropped += 1
            continue
        choices, gold = pair
        continuations = (hygiene.DELIMITER + choices[0], hygiene.DELIMITER + choices[1])
        examples.append(Example(f"{task}/{split}/{row}", rendered.prompt, continuations, gold))
    return examples, prompts, dropped


def _row(example: Example) -> int:
    return int(example.id.rsplit("/", 1)[1])


def _take_slice(pool: list[Example], key: str) -> tuple[list[Example], list[Example]]:
    """Splits ``pool`` into (held-out slice of ``holdout_size`` rows, rest), order kept."""
    size = roles.holdout_size(len(pool))
    chosen = set(hygiene.subsample(range(len(pool)), size, key))
    held = [e for i, e in enumerate(pool) if i in chosen]
    rest = [e for i, e in enumerate(pool) if i not in chosen]
    return held, rest


def _check_args(n_train: int, seed: int, limit: int | None) -> None:
    if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 1:
        raise TaskError(f"n_train must be a positive int, got {n_train!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TaskError(f"seed must be an int, got {seed!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise TaskError(f"limit must be None or a non-negative int, got {limit!r}")


def load_task(
    task: str,
    *,
    data_dir: str | os.PathLike | None,
    n_train: int = hygiene.CAP,
    seed: int = 0,
    limit: int | None = None,
    limit_train: bool = True,
) -> TaskData:
    """Loads a task's train / validation / test roles after all of TASKS.md §2-§3.

    Args:
        task: one of ``TASK_NAMES``.
        data_dir: directory holding ``<task>/<split>.jsonl``; None or ``""`` loads from the
            Hugging Face hub (TASKS.md §4 ids).
        n_train: size of the train role, a run-seeded subsample of the (capped) train rows in
            their original order. The default, 1000, is the paper's cap and means "all train
            rows, at most 1000" (CB, COPA, WNLI, WSC, PubMedQA have fewer); any other value
            larger than the train rows available raises TaskError.
        seed: the run seed. It selects the held-out validation slice and the ``n_train``
            subsample only; binarization, the 1000-cap and carved test slices use the project
            ``SEED`` so choices and test sets are the same in every run.
        limit: keep a seeded subsample (original order) of at most ``limit`` examples of every
            role (quick runs); None = all.
        limit_train: False leaves the train role to ``n_train`` (``limit`` caps validation and
            test only), as the training jobs want.

    Returns:
        The task's roles, descriptions and removal counts.

    Raises:
        TaskError: unknown task, nonexistent ``data_dir``, malformed rows, empty split file,
            bad arguments, or ``n_train`` larger than the train rows available.
        TaskUnavailable: a needed split is missing and cannot be carved (e.g. CREAK from the
            hub, or the hub unreachable).
    """
    spec = roles.get_spec(task)
    _check_args(n_train, seed, limit)
    if roles.is_hub(data_dir):
        plan = roles.hub_plan(task)
        docs = {split: read_hub(spec, split) for split in plan.sources}
        hub_id = f"hub {spec.hub_path}" + (f"/{spec.hub_name}" if spec.hub_name else "")

        def where_for(split: str) -> Callable[[int], str]:
            return lambda row: f"{hub_id} split {spec.hub_split(split)!r} row {row}"
    else:
        root = roles.check_data_dir(data_dir)
        plan = roles.local_plan(task, root)
        paths = {split: roles.split_path(root, task, split) for split in plan.sources}
        docs = {split: read_jsonl(path) for split, path in paths.items()}

        def where_for(split: str) -> Callable[[int], str]:
            return lambda row: f"{paths[split]}:{row + 1}"

    counts = {split: dict.fromkeys(REMOVAL_STEPS, 0) for split in plan.sources}
    examples, prompts = {}, {}
    for split in plan.sources:
        examples[split], prompts[split], counts[split]["unresolved_gold"] = render_rows(
            task, split, docs[split], where_for(split)
        )

    # Carve. The test slice uses the project SEED only, the validation slice the run seed.
    pool = examples[plan.train_src]
    test = examples[plan.test_src]
    test_rows: set[int] = set()
    if plan.test_carved:
        test, pool = _take_slice(pool, f"carve|{hygiene.SEED}|{task}|{plan.test_src}|test")
        test_rows = set(map(_row, test))
    validation = examples[plan.validation_src]
    validation_rows: set[int] = set()
    if plan.validation_carved:
        key = f"carve|{hygiene.SEED}|{task}|{plan.train_src}|validation|seed={seed}"
        validation, pool = _take_slice(pool, key)
        validation_rows = set(map(_row, validation))

    # Decontamination references (§3.3). A separate eval split: every row of the train source
    # split. A carved test slice: every other row of its split (so it does not depend on the
    # run seed). A carved validation slice: the rows left outside both slices.
    src_prompts = prompts[plan.train_src]
    held_rows = test_rows | validation_rows
    reference = {
        "test": {p for r, p in enumerate(src_prompts) if r not in test_rows},
        "validation": {p for r, p in enumerate(src_prompts) if r not in held_rows},
    }

    def clean(role: str, rows: list[Example], split: str) -> list[Example]:
        c = counts[split]
        if role != "train":
            kept = hygiene.decontaminate(rows, reference[role])
            c["decontaminated"] += len(rows) - len(kept)
            rows = kept
        kept = hygiene.length_filter(rows)
        c["too_long"] += len(rows) - len(kept)
        rows = hygiene.cap(kept, task=task, split=split)
        c["capped"] += len(kept) - len(rows)
        return rows

    train = clean("train", pool, plan.train_src)
    validation = clean("validation", validation, plan.validation_src)
    test = clean("test", test, plan.test_src)

    if n_train < len(train):
        train = hygiene.subsample(train, n_train, f"n_train|{hygiene.SEED}|{task}|seed={seed}")
    elif n_train > len(train) and n_train != hygiene.CAP:
        raise TaskError(
            f"{task}: n_train={n_train} but only {len(train)} train rows are available "
            f"(from {plan.train_src}, after hygiene and carving)"
        )
    if limit is not None:
        # A seeded subsample in original order, not the first rows: some staged files are
        # sorted by label (PubMedQA's first 276 test rows are all "yes").
        train, validation, test = (
            hygiene.subsample(rows, limit, f"limit|{hygiene.SEED}|{task}|{role}")
            if len(rows) > limit and (role != "train" or limit_train) else rows
            for role, rows in (("train", train), ("validation", validation), ("test", test)))

    source = roles.source_name(data_dir)
    for split, c in counts.items():
        log.info("%s/%s: removed %s", task, split, ", ".join(f"{k}={v}" for k, v in c.items()))
    log.info(
        "%s (%s): train %d, validation %d, test %d%s",
        task,
        source,
        len(train),
        len(validation),
        len(test),
        "" if plan.paper_splits else " -- NOT the paper's splits",
    )
    return TaskData(
        task=task,
        train=train,
        validation=validation,
        test=test,
        split_roles=roles.describe_plan(plan, source=source, n_train=n_train),
        paper_splits=plan.paper_splits,
        removal_counts=counts,
        source=source,
    )


def available_tasks(data_dir: str | os.PathLike | None) -> dict[str, str | None]:
    """Which tasks can be loaded from ``data_dir``, judged from the split files present.

    The files are not parsed (a malformed row still surfaces in :func:`load_task`). For the
    hub (``data_dir`` None or ``""``) nothing is contacted: only tasks without a hub copy
    (CREAK) are reported unavailable.

    Args:
        data_dir: local data directory, or None/"" for the hub.

    Returns:
        task -> None if it can be loaded, else the reason it cannot, for all of
        ``TASK_NAMES`` in order.

    Raises:
        TaskError: if ``data_dir`` is given but is not a directory.
    """
    if not roles.is_hub(data_dir):
        roles.check_data_dir(data_dir)
    status: dict[str, str | None] = {}
    for task in TASK_NAMES:
        try:
            roles.describe_roles(task, data_dir)
            status[task] = None
        except TaskError as e:  # includes TaskUnavailable
            status[task] = str(e)
    return status
