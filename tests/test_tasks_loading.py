"""Role carving, the load_task API on all 19 staged tasks, hub loading and bad input."""

import json

import pytest

from forget_jax import tasks
from forget_jax.tasks import TASK_NAMES, TaskError, TaskUnavailable, load_task
from forget_jax.tasks.roles import holdout_size

ROLES = ("train", "validation", "test")

# At seed 0, n_train=1000, from ../shared/data: (train, validation, test) sizes, paper_splits,
# and the source split of each role (the middle part of every example id).
EXPECTED = {
    "piqa": ((1000, 285, 354), False, ("validation", "validation", "validation")),
    "arc_easy": ((1000, 569, 1000), True, ("train", "validation", "test")),
    "arc_challenge": ((1000, 299, 1000), True, ("train", "validation", "test")),
    "creak": ((1000, 1000, 1000), True, ("train", "train", "validation")),
    "boolq": ((1000, 401, 1000), False, ("train", "train", "validation")),
    "sciq": ((786, 198, 985), False, ("validation", "validation", "test")),
    "pubmedqa": ((424, 49, 469), True, ("train", "validation", "test")),
    "mathqa": ((1000, 895, 1000), False, ("validation", "validation", "test")),
    "toxigen": ((1000, 1000, 1000), False, ("train", "train", "train")),
    "cola": ((1000, 994, 1000), True, ("train", "train", "validation")),
    "mnli": ((1000, 1000, 1000), False, ("train", "train", "validation")),
    "mrpc": ((1000, 733, 408), True, ("train", "train", "validation")),
    "qnli": ((1000, 1000, 1000), False, ("train", "train", "validation")),
    "rte": ((1000, 498, 277), True, ("train", "train", "validation")),
    "wnli": ((508, 127, 71), True, ("train", "train", "validation")),
    "cb": ((200, 50, 56), True, ("train", "train", "validation")),
    "copa": ((320, 80, 100), True, ("train", "train", "validation")),
    "wic": ((1000, 1000, 638), True, ("train", "train", "validation")),
    "wsc": ((444, 109, 104), True, ("train", "train", "validation")),
}

EXPECTED_SOURCE_ROWS = {"rte": 2490, "cb": 250, "creak": 10176}


@pytest.fixture(scope="module")
def loaded(shared_data):
    """Every task loaded (or its TaskUnavailable), at seed 0 and seed 1."""
    out = {}
    for seed in (0, 1):
        for task in TASK_NAMES:
            try:
                out[task, seed] = load_task(task, data_dir=shared_data, seed=seed)
            except TaskUnavailable as e:
                out[task, seed] = e
    return out


def ids(examples):
    return [e.id for e in examples]


def test_task_names_order():
    assert TASK_NAMES == tuple(EXPECTED)


def test_every_task_loads_from_shared_data(loaded, capsys):
    """All 19 tasks load from the staged data (none needs TaskUnavailable); sizes as pinned."""
    lines = [f"{'task':14s} {'train':>5s} {'valid':>5s} {'test':>5s}  paper  sources"]
    for task in TASK_NAMES:
        data = loaded[task, 0]
        assert not isinstance(data, TaskUnavailable), f"{task}: {data}"
        sizes = tuple(len(data.split(r)) for r in ROLES)
        sources = tuple({e.id.split("/")[1] for e in data.split(r)} for r in ROLES)
        lines.append(
            f"{task:14s} {sizes[0]:5d} {sizes[1]:5d} {sizes[2]:5d}  {str(data.paper_splits):5s}  "
            + " / ".join(",".join(sorted(s)) for s in sources)
        )
        want_sizes, want_paper, want_sources = EXPECTED[task]
        assert sizes == want_sizes, task
        assert data.paper_splits is want_paper, task
        assert sources == tuple({s} for s in want_sources), task
        assert data.source.startswith("local:")
    with capsys.disabled():
        print("\nRole sizes at n_train=1000, seed 0, from ../shared/data:\n" + "\n".join(lines))


def test_roles_are_disjoint_and_well_formed(loaded):
    for (task, seed), data in loaded.items():
        role_ids = {r: ids(data.split(r)) for r in ROLES}
        for r in ROLES:
            assert len(set(role_ids[r])) == len(role_ids[r]), (task, r)
            assert len(role_ids[r]) <= 1000
            rows = [int(i.rsplit("/", 1)[1]) for i in role_ids[r]]
            assert rows == sorted(rows), (task, r)  # original order kept
            for e in data.split(r):
                assert e.id.startswith(f"{task}/") and e.gold in (0, 1)
                assert len(e.choices) == 2 and all(c.startswith(" ") for c in e.choices)
        assert not set(role_ids["train"]) & set(role_ids["validation"]), (task, seed)
        assert not set(role_ids["train"]) & set(role_ids["test"]), (task, seed)
        assert not set(role_ids["validation"]) & set(role_ids["test"]), (task, seed)


def test_carved_eval_slices_do_not_share_prompts_with_training_rows(loaded):
    for task in ("piqa", "toxigen", "sciq", "mathqa", "cola", "wsc"):
        data = loaded[task, 0]
        train = {e.prompt.strip() for e in data.train}
        assert not any(e.prompt.strip() in train for e in data.validation + data.test), task


def test_split_roles_and_describe_roles(loaded, shared_data):
    for task in TASK_NAMES:
        data = loaded[task, 0]
        assert set(data.split_roles) == set(ROLES)
        assert data.split_roles == tasks.describe_roles(task, shared_data)
        deviates = "NOT the paper's split" in " ".join(data.split_roles.values())
        assert deviates is not data.paper_splits, task
        assert set(data.removal_counts) == {
            e.id.split("/")[1] for r in ROLES for e in data.split(r)
        }
        for counts in data.removal_counts.values():
            assert set(counts) == {"unresolved_gold", "decontaminated", "too_long", "capped"}
    roles = loaded["rte", 0].split_roles
    assert roles["validation"].startswith("held-out slice of train: min(1000, 20%) rows")
    assert roles["test"].startswith("validation (277 rows)")
    assert "local subset, 2,008 of 9,427 rows" in loaded["boolq", 0].split_roles["train"]
    assert "no train split available" in loaded["sciq", 0].split_roles["train"]
    assert "carved from train" in loaded["toxigen", 0].split_roles["test"]


def test_run_seed_moves_validation_slice_not_test_or_binarization(loaded):
    for task in ("rte", "cb", "creak"):
        a, b = loaded[task, 0], loaded[task, 1]
        assert ids(a.test) == ids(b.test)
        assert ids(a.validation) != ids(b.validation)
        for data in (a, b):  # the slice, minus rows whose prompt also occurs in training rows
            dropped = data.removal_counts["train"]["decontaminated"]
            assert len(data.validation) + dropped == holdout_size(EXPECTED_SOURCE_ROWS[task])
        by_id = {e.id: e for r in ROLES for e in b.split(r)}
        common = [e for r in ROLES for e in a.split(r) if e.id in by_id]
        assert common and all(by_id[e.id] == e for e in common)  # same choices/gold per row
    for task in ("piqa", "toxigen"):  # carved test slices use the project SEED only
        assert ids(loaded[task, 0].test) == ids(loaded[task, 1].test)
        assert ids(loaded[task, 0].validation) != ids(loaded[task, 1].validation)


def test_validation_slice_sizes_follow_the_rule(loaded):
    # min(1000, n // 5) of the resolved source rows (no other removals on these tasks).
    assert len(loaded["copa", 0].validation) == 400 // 5
    assert len(loaded["rte", 0].validation) == 2490 // 5
    assert len(loaded["creak", 0].validation) == 1000
    assert len(loaded["mathqa", 0].validation) == 4475 // 5


def test_n_train(shared_data, loaded):
    full = loaded["rte", 0]
    small = load_task("rte", data_dir=shared_data, n_train=100)
    assert len(small.train) == 100 and set(ids(small.train)) <= set(ids(full.train))
    assert ids(small.validation) == ids(full.validation) and ids(small.test) == ids(full.test)
    assert "n_train=100" in small.split_roles["train"]
    other = load_task("rte", data_dir=shared_data, n_train=100, seed=1)
    assert ids(other.train) != ids(small.train)
    assert ids(load_task("rte", data_dir=shared_data, n_train=100).train) == ids(small.train)
    with pytest.raises(TaskError, match=r"n_train=5000 but only 1000 train rows"):
        load_task("rte", data_dir=shared_data, n_train=5000)
    # The default (the paper's cap) takes all rows of smaller tasks; other values must fit.
    assert len(loaded["copa", 0].train) == 320
    with pytest.raises(TaskError, match=r"n_train=500 but only 320 train rows"):
        load_task("copa", data_dir=shared_data, n_train=500)
    with pytest.raises(TaskError, match="n_train must be a positive int"):
        load_task("copa", data_dir=shared_data, n_train=0)


def test_limit(shared_data, loaded):
    data = load_task("cb", data_dir=shared_data, limit=5)
    for r in ROLES:
        full = loaded["cb", 0].split(r)
        got = data.split(r)
        assert len(got) == 5 and set(got) <= set(full)
        pos = [full.index(e) for e in got]
        assert pos == sorted(pos)  # original order kept
    assert data.split("train") == load_task("cb", data_dir=shared_data, limit=5).split("train")


def test_limit_is_not_the_first_rows_of_a_label_sorted_split(shared_data):
    """PubMedQA's staged test rows are grouped by label; the first 200 are all "yes"."""
    data = load_task("pubmedqa", data_dir=shared_data, limit=200)
    golds = {e.choices[e.gold] for e in data.test}
    assert golds == {" yes", " no", " maybe"}


def test_split_accessor_and_distractor(loaded):
    data = loaded["copa", 0]
    assert data.split("test") is data.test
    with pytest.raises(TaskError, match="unknown role 'dev'"):
        data.split("dev")
    e = data.test[0]
    assert tasks.distractor(e) == 1 - e.gold
    assert e.choices[0].startswith("  ")  # COPA: delimiter + choice that starts with a space


def test_available_tasks(shared_data, tmp_path):
    assert tasks.available_tasks(shared_data) == dict.fromkeys(TASK_NAMES)
    write_rte(tmp_path)
    status = tasks.available_tasks(tmp_path)
    assert status["rte"] is None
    assert "no labeled split file" in status["cb"]
    hub = tasks.available_tasks(None)
    assert "no Hugging Face hub copy" in hub["creak"]
    assert all(v is None for k, v in hub.items() if k != "creak")


# --- synthetic data directories --------------------------------------------------------------


def rte_row(i, label=0):
    return {"sentence1": f"Premise {i}.", "sentence2": f"Hypothesis {i}.", "label": label, "idx": i}


def write_rte(root, train=None, validation=None):
    (root / "rte").mkdir(parents=True, exist_ok=True)
    train = train if train is not None else [rte_row(i, i % 2) for i in range(50)]
    validation = validation if validation is not None else [rte_row(100 + i) for i in range(10)]
    for split, rows in (("train", train), ("validation", validation)):
        text = "".join(json.dumps(r) + "\n" for r in rows) if isinstance(rows, list) else rows
        (root / "rte" / f"{split}.jsonl").write_text(text, encoding="utf-8")


def test_synthetic_decontamination_through_the_pipeline(tmp_path):
    write_rte(tmp_path, validation=[rte_row(3), rte_row(100), rte_row(7, 1)])  # 2 copy train
    data = load_task("rte", data_dir=tmp_path)
    assert ids(data.test) == ["rte/validation/1"]
    assert data.removal_counts["validation"]["decontaminated"] == 2
    assert len(data.validation) == 10 and len(data.train) == 40
    assert data.paper_splits is False  # 50 of 2,490 train rows: a subset
    assert "local subset, 50 of 2,490 rows" in data.split_roles["train"]


def test_unknown_task():
    with pytest.raises(TaskError, match="unknown task 'rtee'; known tasks: piqa, arc_easy"):
        load_task("rtee", data_dir=None)


def test_nonexistent_data_dir(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(TaskError, match="does not exist or is not a directory") as info:
        load_task("rte", data_dir=missing)
    assert str(missing) in str(info.value)
    with pytest.raises(TaskError, match="does not exist"):
        tasks.available_tasks(missing)


def test_malformed_jsonl_line(tmp_path):
    lines = [json.dumps(rte_row(0)), json.dumps(rte_row(1)), '{"sentence1": "x", ', ""]
    write_rte(tmp_path, train="\n".join(lines))
    path = tmp_path / "rte" / "train.jsonl"
    with pytest.raises(TaskError, match="malformed JSON") as info:
        load_task("rte", data_dir=tmp_path)
    assert f"{path}:3:" in str(info.value)
    write_rte(tmp_path, train=json.dumps(rte_row(0)) + "\n[1, 2]\n")
    with pytest.raises(TaskError, match=r"train.jsonl:2: expected a JSON object, got list"):
        load_task("rte", data_dir=tmp_path)
    write_rte(tmp_path, train=json.dumps(rte_row(0)) + "\n\n" + json.dumps(rte_row(1)) + "\n")
    with pytest.raises(TaskError, match=r"train.jsonl:2: blank line"):
        load_task("rte", data_dir=tmp_path)
    (tmp_path / "rte" / "train.jsonl").write_bytes(b'{"sentence1": "a"}\n{"sentence1": "\xff"}\n')
    with pytest.raises(TaskError, match=r"train.jsonl:2: not UTF-8"):
        load_task("rte", data_dir=tmp_path)


def test_row_missing_a_field(tmp_path):
    rows = [rte_row(i) for i in range(5)]
    del rows[3]["sentence2"]
    write_rte(tmp_path, train=rows)
    with pytest.raises(TaskError, match="field 'sentence2': missing") as info:
        load_task("rte", data_dir=tmp_path)
    assert f"{tmp_path / 'rte' / 'train.jsonl'}:4: rte row 3" in str(info.value)
    rows[3] = {**rte_row(3), "label": "entailment"}
    write_rte(tmp_path, train=rows)
    with pytest.raises(TaskError, match="field 'label': expected int, got str"):
        load_task("rte", data_dir=tmp_path)


def test_empty_split_file(tmp_path):
    write_rte(tmp_path, validation="")
    with pytest.raises(TaskError, match="empty split file") as info:
        load_task("rte", data_dir=tmp_path)
    assert str(tmp_path / "rte" / "validation.jsonl") in str(info.value)


def test_missing_task_directory_is_unavailable(tmp_path):
    write_rte(tmp_path)
    with pytest.raises(TaskUnavailable, match=r"cb: no labeled split file under .*train.jsonl"):
        load_task("cb", data_dir=tmp_path)


def test_single_split_is_carved_into_three_roles(tmp_path):
    """A task with only its eval split (like PIQA here) gets all three roles from it."""
    (tmp_path / "piqa").mkdir()
    rows = [{"goal": f"g{i}", "sol1": "a", "sol2": "b", "label": i % 2} for i in range(100)]
    (tmp_path / "piqa" / "validation.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    data = load_task("piqa", data_dir=tmp_path)
    assert (len(data.train), len(data.validation), len(data.test)) == (64, 16, 20)
    assert data.paper_splits is False


# --- hub -------------------------------------------------------------------------------------


def test_hub_offline_is_a_clear_task_unavailable(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TaskUnavailable) as info:
        load_task("rte", data_dir=None)
    message = str(info.value)
    assert message.startswith("rte: cannot load split 'train' of nyu-mll/glue (config rte)")
    assert "pass data_dir=" in message and "\n" not in message
    with pytest.raises(TaskUnavailable, match="creak: there is no Hugging Face hub copy"):
        load_task("creak", data_dir="")


def test_hub_rows_go_through_the_same_pipeline(monkeypatch):
    """A stand-in for datasets.load_dataset: split names, ClassLabel ints, hub role plan."""
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        rows = [
            {"premise": f"{split} premise {i}", "hypothesis": "h", "label": i % 3, "idx": i}
            for i in range(40)
        ]
        features = datasets.Features(
            {
                "premise": datasets.Value("string"),
                "hypothesis": datasets.Value("string"),
                "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
                "idx": datasets.Value("int32"),
            }
        )
        return datasets.Dataset.from_list(rows, features=features)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load_task("mnli", data_dir=None)
    assert calls == [
        ("nyu-mll/glue", "mnli", "train"),
        ("nyu-mll/glue", "mnli", "validation_matched"),
    ]
    assert data.source == "hub" and data.paper_splits
    assert (len(data.train), len(data.validation), len(data.test)) == (32, 8, 40)
    assert data.test[0].id == "mnli/validation/0"
    assert (
        data.test[0].prompt
        == "validation_matched premise 0\nQuestion: h. True, False or Neither?\nAnswer:"
    )
    assert data.split_roles == tasks.describe_roles("mnli", None)


def test_limit_can_leave_the_train_role_to_n_train(shared_data):
    data = load_task("cb", data_dir=shared_data, n_train=40, limit=5, limit_train=False)
    assert len(data.split("train")) == 40
    assert len(data.split("validation")) == 5 and len(data.split("test")) == 5
