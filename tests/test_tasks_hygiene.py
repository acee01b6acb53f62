"""Binarization, decontamination, the length filter and the 1000-cap (TASKS.md §2-§3, §7)."""

import hashlib
import json
import random

import numpy as np
import pytest

from forget_jax.tasks import Example, hygiene, load_task
from forget_jax.tasks.loading import render_rows
from forget_jax.tasks.templates import render


def read_rows(shared_data, task, split):
    with (shared_data / task / f"{split}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def ex(prompt, choices=(" a", " b"), gold=0, id="t/s/0"):
    return Example(id, prompt, choices, gold)


# --- binarization ----------------------------------------------------------------------------


def test_seed_from_is_the_documented_sha256():
    key = "binarize|1234|cb|validation|7"
    expected = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")
    assert hygiene.seed_from(key) == expected


def reference_binarize(choices, gold, task, split, row):
    """TASKS.md §2 written out independently of the implementation."""
    candidates = [i for i in range(len(choices)) if i != gold and choices[i] != choices[gold]]
    key = f"binarize|{hygiene.SEED}|{task}|{split}|{row}"
    seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")
    d = sorted(candidates)[np.random.default_rng(seed).integers(len(candidates))]
    keep = sorted({gold, d})
    return [choices[i] for i in keep], keep.index(gold)


MULTI = [  # (task, split) of every staged split whose rows have more than two choices
    ("arc_easy", "train"),
    ("arc_easy", "test"),
    ("arc_challenge", "test"),
    ("sciq", "test"),
    ("pubmedqa", "test"),
    ("mathqa", "test"),
    ("mnli", "validation"),
    ("cb", "train"),
    ("cb", "validation"),
]


@pytest.mark.parametrize("task,split", MULTI)
def test_binarization_follows_the_formula_and_keeps_the_gold(shared_data, task, split):
    docs = read_rows(shared_data, task, split)
    examples, _, dropped = render_rows(task, split, docs)
    by_id = {e.id: e for e in examples}
    n_checked = 0
    for row, doc in enumerate(docs):
        r = render(task, doc)
        if f"{task}/{split}/{row}" not in by_id:
            continue
        e = by_id[f"{task}/{split}/{row}"]
        assert len(r.choices) > 2
        pair, gold = reference_binarize(r.choices, r.gold, task, split, row)
        assert e.choices == tuple(" " + c for c in pair) and e.gold == gold
        assert e.choices[e.gold] == " " + r.choices[r.gold]  # always keeps the gold
        assert e.choices[1 - e.gold] != e.choices[e.gold]  # never a gold-identical distractor
        n_checked += 1
    assert n_checked == len(docs) - dropped > 0


def test_binarization_is_deterministic_and_independent_of_row_order(shared_data):
    docs = read_rows(shared_data, "mnli", "validation")
    full, _, _ = render_rows("mnli", "validation", docs)
    again, _, _ = render_rows("mnli", "validation", docs)
    assert full == again
    # Each row alone, visited in a shuffled order, gives the same pair as the full pass.
    order = list(range(len(docs)))
    random.Random(0).shuffle(order)
    alone = {}
    for row in order[:2000]:
        r = render("mnli", docs[row])
        alone[row] = hygiene.binarize(r.choices, r.gold, task="mnli", split="validation", row=row)
    for row, (pair, gold) in alone.items():
        assert full[row].choices == tuple(" " + c for c in pair) and full[row].gold == gold


def test_binarization_excludes_gold_identical_distractors():
    choices = ["x", "y", "x", "z"]
    picked = set()
    for row in range(300):
        pair, gold = hygiene.binarize(choices, 0, task="t", split="s", row=row)
        assert pair[gold] == "x" and pair[1 - gold] in ("y", "z")
        picked.add(pair[1 - gold])
    assert picked == {"y", "z"}
    assert hygiene.binarize(["m", "m", "m", "m", "m"], 2, task="t", split="s", row=0) is None
    assert hygiene.binarize(["a", "a"], 1, task="t", split="s", row=0) == (["a", "a"], 1)


def test_binarization_distractor_is_roughly_uniform():
    counts = np.zeros(4, int)
    for row in range(4000):
        pair, gold = hygiene.binarize(["a", "b", "c", "d"], 1, task="t", split="s", row=row)
        counts["abcd".index(pair[1 - gold])] += 1
    assert counts[1] == 0
    assert all(1100 < c < 1570 for c in counts[[0, 2, 3]])  # ~1333 each


def test_mathqa_all_identical_option_rows_are_dropped(shared_data):
    """MathQA test rows 2237 ('m' x5) and 2319 ('sec' x5) have no admissible distractor."""
    docs = read_rows(shared_data, "mathqa", "test")
    examples, _, dropped = render_rows("mathqa", "test", docs)
    assert dropped == 2
    ids = {e.id for e in examples}
    assert "mathqa/test/2237" not in ids and "mathqa/test/2319" not in ids


def test_unresolved_gold_rows_are_dropped_and_counted():
    docs = [
        {"goal": "g", "sol1": "a", "sol2": "b", "label": -1},
        {"goal": "g", "sol1": "a", "sol2": "b", "label": 1},
    ]
    examples, prompts, dropped = render_rows("piqa", "test", docs)
    assert dropped == 1 and [e.id for e in examples] == ["piqa/test/1"]
    assert len(prompts) == 2  # every row's prompt counts for decontamination
    arc = {"question": "q", "choices": {"text": ["a", "b", "c"], "label": ["A", "B", "C"]}}
    assert render_rows("arc_easy", "s", [{**arc, "answerKey": "E"}])[2] == 1
    math = {"Problem": "p", "options": "a ) 1 , b ) 2", "correct": "e"}  # e beyond the parse
    assert render_rows("mathqa", "s", [math])[2] == 1


# --- decontamination -------------------------------------------------------------------------


def test_decontaminate_synthetic():
    train = {hygiene.prompt_key(p) for p in ["Question: A?\nAnswer:", "B"]}
    evals = [ex("Question: A?\nAnswer: "), ex(" B\n"), ex("Question: A!\nAnswer:"), ex("b")]
    kept = hygiene.decontaminate(evals, train)
    assert [e.prompt for e in kept] == ["Question: A!\nAnswer:", "b"]


@pytest.mark.parametrize(
    "task,role,split,expected",
    [
        ("arc_easy", "test", "test", 7),
        ("arc_challenge", "test", "test", 7),
        ("cola", "test", "validation", 16),
    ],
)
def test_decontamination_counts_on_real_data(shared_data, task, role, split, expected):
    """TASKS.md §7: eval rows whose stripped prompt equals a staged train prompt."""
    data = load_task(task, data_dir=shared_data)
    assert data.removal_counts[split]["decontaminated"] == expected
    train_docs = read_rows(shared_data, task, "train")
    train_prompts = {hygiene.prompt_key(render(task, d).prompt) for d in train_docs}
    assert not any(hygiene.prompt_key(e.prompt) in train_prompts for e in data.split(role))


# --- length filter ---------------------------------------------------------------------------


def test_length_filter_boundary():
    prompt = "p" * 2040
    ok = ex(prompt, (" abcdefg", " x"))  # 2040 + 8 = 2048: kept
    long_second = ex(prompt, (" x", " abcdefgh"))  # 2040 + 9 = 2049: dropped
    assert hygiene.length_filter([ok, long_second]) == [ok]
    assert hygiene.too_long(ex("q" * 2048, (" a", " b")))


@pytest.mark.parametrize(
    "task,split,expected",
    [("boolq", "validation", 15), ("pubmedqa", "test", 31), ("pubmedqa", "train", 26)],
)
def test_length_filter_counts_on_real_data(shared_data, task, split, expected):
    """TASKS.md §7: BoolQ 15 long eval rows; PubMedQA 31 test and 26 of 450 train rows."""
    data = load_task(task, data_dir=shared_data)
    assert data.removal_counts[split]["too_long"] == expected
    for role in ("train", "validation", "test"):
        assert not any(hygiene.too_long(e) for e in data.split(role))


# --- cap -------------------------------------------------------------------------------------


def test_cap_keeps_exactly_1000_in_original_order_deterministically():
    items = [f"row{i}" for i in range(2500)]
    capped = hygiene.cap(items, task="creak", split="train")
    assert len(capped) == 1000 and capped == hygiene.cap(items, task="creak", split="train")
    positions = [items.index(x) for x in capped]
    assert positions == sorted(positions)
    key = f"subsample|{hygiene.SEED}|creak|train"
    seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")
    reference = sorted(np.random.default_rng(seed).choice(2500, 1000, replace=False))
    assert positions == reference
    assert hygiene.cap(items[:1000], task="creak", split="train") == items[:1000]
    assert hygiene.cap(items, task="creak", split="validation") != capped  # keyed by split


def test_cap_on_real_data(shared_data):
    data = load_task("creak", data_dir=shared_data)  # dev: 1,371 rows -> test role 1,000
    counts = data.removal_counts["validation"]
    assert counts == {"unresolved_gold": 0, "decontaminated": 0, "too_long": 0, "capped": 371}
    assert len(data.test) == 1000
    rows = [int(e.id.rsplit("/", 1)[1]) for e in data.test]
    assert rows == sorted(rows) and len(set(rows)) == 1000
    docs = read_rows(shared_data, "creak", "validation")
    key = f"subsample|{hygiene.SEED}|creak|validation"
    seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")
    assert rows == sorted(np.random.default_rng(seed).choice(len(docs), 1000, replace=False))
