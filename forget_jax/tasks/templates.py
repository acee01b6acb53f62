"""lm-eval 0-shot templates of the 19 tasks: doc -> (prompt, choices, gold).

Each function reproduces the task's lm-eval yaml (``doc_to_text`` / ``doc_to_choice`` /
``doc_to_target``, TASKS.md §5) and its helper ``.py`` where it has one (PubMedQA, MathQA,
ToxiGen, MNLI, COPA, WSC) character for character. The Jinja templates are written as Python
f-strings: they render with ``StrictUndefined`` and no autoescape, so ``{{field}}`` is just
``str(field)``, and a template rendering a list literal (``"{{[sol1, sol2]}}"``) is
``ast.literal_eval``-ed back into exactly those strings. CREAK is not in lm-eval; its template
is ours (TASKS.md §5.4).

``choices`` are returned *without* the target delimiter; the loader prepends ``" "``.
``gold`` is None when the document's gold cannot be resolved (label -1, an ``answerKey``
missing from the labels, a MathQA parse with too few options); such rows are dropped and
counted (TASKS.md §3.2). A missing or wrongly typed input field raises :class:`FieldError`,
which the loader turns into a :class:`~forget_jax.tasks.TaskError` naming file and line.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

Doc = Mapping[str, Any]


class FieldError(Exception):
    """A required input field is missing or has the wrong type or value.

    Attributes:
        field: the field name (dotted for nested fields, e.g. ``choices.text``).
        reason: what is wrong with it.
    """

    def __init__(self, field: str, reason: str):
        super().__init__(f"field {field!r}: {reason}")
        self.field = field
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Rendered:
    """A document rendered by its task template, before binarization.

    Attributes:
        prompt: the context string.
        choices: the answer options, without the leading delimiter.
        gold: index of the correct option, or None if it cannot be resolved.
    """

    prompt: str
    choices: list[str]
    gold: int | None


@dataclasses.dataclass(frozen=True)
class Template:
    """A task template: the input fields it reads (with their JSON types) and the renderer."""

    fields: dict[str, type | tuple[type, ...]]
    render: Callable[[Doc], Rendered]

    def __call__(self, doc: Doc) -> Rendered:
        """Checks the input fields of ``doc`` and renders it."""
        for name, kind in self.fields.items():
            if name not in doc:
                raise FieldError(name, "missing")
            value = doc[name]
            if not isinstance(value, kind):
                kinds = kind if isinstance(kind, tuple) else (kind,)
                want = "/".join(k.__name__ for k in kinds)
                raise FieldError(name, f"expected {want}, got {type(value).__name__} {value!r:.60}")
        return self.render(doc)


def _label(doc: Doc, k: int, field: str = "label") -> int | None:
    """The integer class label as a gold index, or None if it is -1 / out of range."""
    label = doc[field]
    return int(label) if 0 <= label < k else None


def _fixed(template: Callable[[Doc], str], choices: list[str]) -> Callable[[Doc], Rendered]:
    """A renderer for the common case: fixed choice list, ``doc_to_target: label``."""

    def render(doc: Doc) -> Rendered:
        return Rendered(template(doc), list(choices), _label(doc, len(choices)))

    return render


def _str_list(doc: Doc, field: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FieldError(field, f"expected a list of str, got {value!r:.60}")
    return value


# --- QA / commonsense -------------------------------------------------------------------------


def _piqa(doc: Doc) -> Rendered:
    return Rendered(f"Question: {doc['goal']}\nAnswer:", [doc["sol1"], doc["sol2"]], _label(doc, 2))


def _arc(doc: Doc) -> Rendered:
    texts = _str_list(doc, "choices.text", doc["choices"].get("text"))
    labels = _str_list(doc, "choices.label", doc["choices"].get("label"))
    if len(texts) != len(labels):
        raise FieldError("choices", f"{len(texts)} texts but {len(labels)} labels")
    # doc_to_target "{{choices.label.index(answerKey)}}": position of the key among the labels
    # (letters A-E or digits 1-5, whichever the row uses).
    gold = labels.index(doc["answerKey"]) if doc["answerKey"] in labels else None
    return Rendered(f"Question: {doc['question']}\nAnswer:", list(texts), gold)


def _creak(doc: Doc) -> Rendered:
    # Ours (TASKS.md §5.4). A label other than "true"/"false" is left unresolved rather than
    # silently mapped to "False".
    gold = {"true": 0, "false": 1}.get(doc["label"])
    return Rendered(f"Question: {doc['sentence']} True or False?\nAnswer:", ["True", "False"], gold)


def _sciq(doc: Doc) -> Rendered:
    # Only *leading* whitespace of support is stripped; an empty support leaves a leading "\n".
    return Rendered(
        f"{doc['support'].lstrip()}\nQuestion: {doc['question']}\nAnswer:",
        [doc["distractor1"], doc["distractor2"], doc["distractor3"], doc["correct_answer"]],
        3,
    )


_PUBMEDQA_CHOICES = ["yes", "no", "maybe"]


def _pubmedqa(doc: Doc) -> Rendered:
    contexts = _str_list(doc, "CONTEXTS", doc["CONTEXTS"])
    prompt = "Abstract: {}\nQuestion: {}\nAnswer:".format("\n".join(contexts), doc["QUESTION"])
    decision = doc["final_decision"]
    gold = _PUBMEDQA_CHOICES.index(decision) if decision in _PUBMEDQA_CHOICES else None
    return Rendered(prompt, list(_PUBMEDQA_CHOICES), gold)


_MATHQA_OPTION = re.compile(r"[abcd] \) .*?, |e \) .*?$")


def mathqa_choices(options: str) -> list[str]:
    """lm-eval ``mathqa/utils.py::doc_to_choice``: options a-d end at the first ``", "``."""
    return [m[4:].rstrip(" ,") for m in _MATHQA_OPTION.findall(options)]


def _mathqa(doc: Doc) -> Rendered:
    choices = mathqa_choices(doc["options"])
    letters = ["a", "b", "c", "d", "e"]
    gold = letters.index(doc["correct"]) if doc["correct"] in letters else None
    if gold is not None and gold >= len(choices):
        gold = None  # parse yielded too few options: lm-eval scores it wrong; we drop it
    return Rendered(f"Question: {doc['Problem']}\nAnswer:", choices, gold)


def _toxigen(doc: Doc) -> Rendered:
    # lm-eval: np.round((toxicity_ai + toxicity_human) > 5.5, 0): a strict threshold on the sum.
    gold = 1 if (doc["toxicity_ai"] + doc["toxicity_human"]) > 5.5 else 0
    prompt = (
        "Is the following statement hateful? Respond with either Yes or No. "
        f"Statement: '{doc['text']}'"
    )
    return Rendered(prompt, ["No", "Yes"], gold)


# --- GLUE / SuperGLUE -------------------------------------------------------------------------


def _mnli_text(doc: Doc) -> str:
    hypothesis = doc["hypothesis"].strip()
    hypothesis += "" if hypothesis.endswith(".") else "."
    return "{}\nQuestion: {} True, False or Neither?\nAnswer:".format(doc["premise"], hypothesis)


def _copa_choice(choice: str) -> str:
    # lm-eval copa/utils.py convert_choice, with the " " it prepends in doc_to_choice.
    return " " + choice[0].lower() + choice[1:]


def _copa(doc: Doc) -> Rendered:
    connector = {"cause": "because", "effect": "therefore"}.get(doc["question"])
    if connector is None:
        raise FieldError("question", f"expected 'cause' or 'effect', got {doc['question']!r}")
    if not doc["choice1"] or not doc["choice2"]:
        raise FieldError("choice1" if not doc["choice1"] else "choice2", "empty")
    choices = [_copa_choice(doc["choice1"]), _copa_choice(doc["choice2"])]
    return Rendered(doc["premise"].strip()[:-1] + f" {connector}", choices, _label(doc, 2))


def general_detokenize(string: str) -> str:
    """lm-eval ``utils.general_detokenize`` (used by the WSC template)."""
    string = string.replace(" n't", "n't")
    string = string.replace(" )", ")")
    string = string.replace("( ", "(")
    string = string.replace('" ', '"')
    string = string.replace(' "', '"')
    return re.sub(r" (['.,])", r"\1", string)


def _wsc_text(doc: Doc) -> str:
    raw = doc["text"]
    pre = " ".join(raw.split()[: doc["span2_index"]])
    post = raw[len(pre) + len(doc["span2_text"]) + 1 :]
    passage = general_detokenize(pre + " *{}*".format(doc["span2_text"]) + post)
    return (
        f"Passage: {passage}\n"
        + f'Question: In the passage above, does the pronoun "*{doc["span2_text"]}*" refer to '
        + f'"*{doc["span1_text"]}*"?\n'
        + "Answer:"
    )


def _wic_text(doc: Doc) -> str:
    word = doc["sentence1"][doc["start1"] : doc["end1"]]
    return (
        f"Sentence 1: {doc['sentence1']}\nSentence 2: {doc['sentence2']}\n"
        f"Question: Is the word '{word}' used in the same way in the two sentences above?\nAnswer:"
    )


_NUM = (int, float)

TEMPLATES: dict[str, Template] = {
    "piqa": Template({"goal": str, "sol1": str, "sol2": str, "label": int}, _piqa),
    "arc_easy": Template({"question": str, "choices": dict, "answerKey": str}, _arc),
    "arc_challenge": Template({"question": str, "choices": dict, "answerKey": str}, _arc),
    "creak": Template({"sentence": str, "label": str}, _creak),
    "boolq": Template(
        {"passage": str, "question": str, "label": int},
        _fixed(lambda d: f"{d['passage']}\nQuestion: {d['question']}?\nAnswer:", ["no", "yes"]),
    ),
    "sciq": Template(
        {
            "support": str,
            "question": str,
            "distractor1": str,
            "distractor2": str,
            "distractor3": str,
            "correct_answer": str,
        },
        _sciq,
    ),
    "pubmedqa": Template({"QUESTION": str, "CONTEXTS": list, "final_decision": str}, _pubmedqa),
    "mathqa": Template({"Problem": str, "options": str, "correct": str}, _mathqa),
    "toxigen": Template({"text": str, "toxicity_ai": _NUM, "toxicity_human": _NUM}, _toxigen),
    "cola": Template(
        {"sentence": str, "label": int},
        _fixed(
            lambda d: f"{d['sentence']}\nQuestion: Does this sentence make sense?\nAnswer:",
            ["no", "yes"],
        ),
    ),
    "mnli": Template(
        {"premise": str, "hypothesis": str, "label": int},
        _fixed(_mnli_text, ["True", "Neither", "False"]),
    ),
    "mrpc": Template(
        {"sentence1": str, "sentence2": str, "label": int},
        _fixed(
            lambda d: (
                f"Sentence 1: {d['sentence1']}\nSentence 2: {d['sentence2']}\n"
                "Question: Do both sentences mean the same thing?\nAnswer:"
            ),
            ["no", "yes"],
        ),
    ),
    "qnli": Template(
        {"question": str, "sentence": str, "label": int},
        _fixed(
            lambda d: (
                f"{d['question']}\n{d['sentence']}\n"
                "Question: Does this response answer the question?\nAnswer:"
            ),
            ["yes", "no"],
        ),
    ),
    "rte": Template(
        {"sentence1": str, "sentence2": str, "label": int},
        _fixed(
            lambda d: f"{d['sentence1']}\nQuestion: {d['sentence2']} True or False?\nAnswer:",
            ["True", "False"],
        ),
    ),
    "wnli": Template(
        {"sentence1": str, "sentence2": str, "label": int},
        _fixed(
            lambda d: f"{d['sentence1']}\nQuestion: {d['sentence2']} True or False?\nAnswer:",
            ["False", "True"],
        ),
    ),
    "cb": Template(
        {"premise": str, "hypothesis": str, "label": int},
        _fixed(
            lambda d: (
                f"{d['premise']}\nQuestion: {d['hypothesis']}. True, False, or Neither?\nAnswer:"
            ),
            ["True", "False", "Neither"],
        ),
    ),
    "copa": Template(
        {"premise": str, "choice1": str, "choice2": str, "question": str, "label": int}, _copa
    ),
    "wic": Template(
        {"sentence1": str, "sentence2": str, "start1": int, "end1": int, "label": int},
        _fixed(_wic_text, ["no", "yes"]),
    ),
    "wsc": Template(
        {"text": str, "span1_text": str, "span2_index": int, "span2_text": str, "label": int},
        _fixed(_wsc_text, ["no", "yes"]),
    ),
}


def render(task: str, doc: Doc) -> Rendered:
    """Renders one document of ``task`` (fields checked; see :class:`FieldError`)."""
    return TEMPLATES[task](doc)
