"""Static facts about the 19 tasks: hub ids, labeled splits, their full sizes, the eval split.

Everything here is transcribed from TASKS.md §4 (and the ARC validation sizes from the staged
data's provenance). Split names are *our* canonical names, ``train`` / ``validation`` /
``test``; they are also the local file names (``<data_dir>/<task>/<split>.jsonl``), the
``<source split>`` of every example id and the ``split`` in the binarization/cap seeds, so an
example gets the same id, the same distractor and the same cap decision whether it was read
from local files or from the hub. Only the hub loader translates them (MNLI's ``validation``
is the hub's ``validation_matched``).
"""

from __future__ import annotations

import dataclasses

TASK_NAMES: tuple[str, ...] = (
    "piqa",
    "arc_easy",
    "arc_challenge",
    "creak",
    "boolq",
    "sciq",
    "pubmedqa",
    "mathqa",
    "toxigen",
    "cola",
    "mnli",
    "mrpc",
    "qnli",
    "rte",
    "wnli",
    "cb",
    "copa",
    "wic",
    "wsc",
)

SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Where a task's data lives and which of its splits carry labels.

    Attributes:
        name: our task name (a member of ``TASK_NAMES``).
        hub_path: the Hugging Face dataset id lm-eval loads, or None (CREAK: no hub copy).
        hub_name: the dataset config name, or None.
        sizes: labeled split -> its full size on the hub (or in the authors' release).
        eval_split: the split evaluated in the paper protocol (TASKS.md §3.1): the labeled test
            split where one exists, else validation.
        hub_split_names: our split name -> the hub's split name, where they differ.
    """

    name: str
    hub_path: str | None
    hub_name: str | None
    sizes: dict[str, int]
    eval_split: str
    hub_split_names: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def labeled_splits(self) -> tuple[str, ...]:
        """The labeled splits, in the order train, validation, test."""
        return tuple(s for s in SPLIT_NAMES if s in self.sizes)

    @property
    def own_validation(self) -> bool:
        """True if the task has a labeled validation split separate from its eval split."""
        return "validation" in self.sizes and self.eval_split != "validation"

    def hub_split(self, split: str) -> str:
        """The hub's name for our split ``split``."""
        return self.hub_split_names.get(split, split)


def _spec(name, hub_path, hub_name, eval_split, **sizes) -> TaskSpec:
    hub_split_names = {"validation": "validation_matched"} if name == "mnli" else {}
    return TaskSpec(name, hub_path, hub_name, sizes, eval_split, hub_split_names)


SPECS: dict[str, TaskSpec] = {
    s.name: s
    for s in (
        _spec("piqa", "baber/piqa", None, "validation", train=16113, validation=1838),
        _spec(
            "arc_easy", "allenai/ai2_arc", "ARC-Easy", "test", train=2251, validation=570, test=2376
        ),
        _spec(
            "arc_challenge",
            "allenai/ai2_arc",
            "ARC-Challenge",
            "test",
            train=1119,
            validation=299,
            test=1172,
        ),
        _spec("creak", None, None, "validation", train=10176, validation=1371),
        _spec("boolq", "aps/super_glue", "boolq", "validation", train=9427, validation=3270),
        _spec("sciq", "allenai/sciq", None, "test", train=11679, validation=1000, test=1000),
        _spec(
            "pubmedqa",
            "bigbio/pubmed_qa",
            "pubmed_qa_labeled_fold0_source",
            "test",
            train=450,
            validation=50,
            test=500,
        ),
        _spec("mathqa", "regisss/math_qa", None, "test", train=29837, validation=4475, test=2985),
        _spec("toxigen", "skg/toxigen-data", "annotated", "test", train=8960, test=940),
        _spec("cola", "nyu-mll/glue", "cola", "validation", train=8551, validation=1043),
        _spec("mnli", "nyu-mll/glue", "mnli", "validation", train=392702, validation=9815),
        _spec("mrpc", "nyu-mll/glue", "mrpc", "validation", train=3668, validation=408),
        _spec("qnli", "nyu-mll/glue", "qnli", "validation", train=104743, validation=5463),
        _spec("rte", "nyu-mll/glue", "rte", "validation", train=2490, validation=277),
        _spec("wnli", "nyu-mll/glue", "wnli", "validation", train=635, validation=71),
        _spec("cb", "aps/super_glue", "cb", "validation", train=250, validation=56),
        _spec("copa", "aps/super_glue", "copa", "validation", train=400, validation=100),
        _spec("wic", "aps/super_glue", "wic", "validation", train=5428, validation=638),
        _spec("wsc", "aps/super_glue", "wsc.fixed", "validation", train=554, validation=104),
    )
}
assert tuple(SPECS) == TASK_NAMES
