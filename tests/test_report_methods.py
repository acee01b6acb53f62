"""The report's forgetting-methods section (forget_jax/report_methods.py) on hand-written run
directories: exact table values, an unclipped ratio > 1, the damage to other tasks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from forget_jax import report, report_methods
from forget_jax.analysis import cross_task, stats


def _cell(root: Path, name: str, method: str, task: str, ft: float, fo: float, fs_ft: float,
          fs_fo: float, others: dict, retain: list[str] | None = None, seed: int = 0,
          rule: str = "chance") -> None:
    d = root / "runs" / name
    d.mkdir(parents=True)
    res = {"task": task, "forget_task": task, "eval_task": task, "model": "tiny", "seed": seed,
           "forget_mode": "random", "forget_method": method, "complete": True,
           "n_examples": {"train": 12, "validation": 8, "test": 8},
           "accuracy": {"finetuned": {"test": ft}, "forgotten": {"test": fo}},
           "forget_ratio": (ft - fo) / (ft - 0.5), "forget_gap": fo - 0.5,
           "forget_set": {"task": task, "split": f"{task}.train", "n": 12,
                          "accuracy": {"finetuned": fs_ft, "forgotten": fs_fo},
                          "confidence": {"finetuned": 0.8, "forgotten": 0.4}},
           "eval_tasks": {t: {"finetuned": b, "forgotten": a} for t, (b, a) in others.items()},
           "epochs": {"finetune": 2, "forget": 3}, "forget_stop_rule": rule}
    if retain:
        res["retain_set"] = {"tasks": retain, "n": 12}
    (d / "results.json").write_text(json.dumps(res))


@pytest.fixture
def root(tmp_path):
    _cell(tmp_path, "method-grad_ascent-copa", "grad_ascent", "copa", 0.75, 0.25, 1.0, 0.0,
          {"cb": (0.625, 0.5), "rte": (0.75, 0.5)})  # below chance: ratio 2, not clipped
    _cell(tmp_path, "method-npo-copa", "npo", "copa", 0.75, 0.625, 1.0, 0.5,
          {"cb": (0.625, 0.625), "rte": (0.75, 0.625)}, retain=["cb", "rte"])
    _cell(tmp_path, "method-npo-copa-s1", "npo", "copa", 0.75, 0.75, 1.0, 0.75,
          {"cb": (0.625, 0.5), "rte": (0.75, 0.75)}, retain=["cb", "rte"], seed=1)
    _cell(tmp_path, "method-random_labels-cb", "random_labels", "cb", 0.875, 0.875, 0.75, 0.5,
          {"copa": (0.75, 0.75)})
    _cell(tmp_path, "method_fixed-random_labels-cb", "random_labels", "cb", 0.875, 0.5, 0.75,
          0.5, {"copa": (0.75, 0.625)}, rule="fixed")
    return tmp_path


def test_method_rows_exact_values(root):
    notes: list[str] = []
    runs = cross_task.read_runs(root, notes)
    assert {r.kind for r in runs.values()} == {"method", "method_fixed"} and not notes
    main, other = report_methods.rows(runs, stats.PredictionIntervals(10, 0, notes))
    key = [(r["method"], r["variant"], r["task"]) for r in main]
    assert key == [("random_labels", "literal", "cb"), ("random_labels", "fixed", "cb"),
                   ("grad_ascent", "literal", "copa"), ("npo", "literal", "copa")]
    pick = lambda r: {k: r[k] for k in (  # noqa: E731
        "seeds", "finetuned_acc", "forgotten_acc", "forget_ratio", "forget_set_acc_ft",
        "forget_set_acc", "forget_set_ratio", "other_tasks", "other_acc_before",
        "other_acc_after", "other_drop", "forget_stop_rule", "retain_tasks")}
    rl, rlf, ga, npo = (pick(r) for r in main)
    assert ga == {"seeds": "0", "finetuned_acc": 0.75, "forgotten_acc": 0.25,
                  "forget_ratio": 2.0, "forget_set_acc_ft": 1.0, "forget_set_acc": 0.0,
                  "forget_set_ratio": 2.0, "other_tasks": "rte+cb",
                  "other_acc_before": 0.6875, "other_acc_after": 0.5, "other_drop": 0.1875,
                  "forget_stop_rule": "chance", "retain_tasks": ""}
    # two seeds: means (forgotten .6875, ratio (.5 + 0) / 2, forget set .625, others)
    assert npo == {"seeds": "0+1", "finetuned_acc": 0.75, "forgotten_acc": 0.6875,
                   "forget_ratio": 0.25, "forget_set_acc_ft": 1.0, "forget_set_acc": 0.625,
                   "forget_set_ratio": 0.75, "other_tasks": "rte+cb",
                   "other_acc_before": 0.6875, "other_acc_after": 0.625, "other_drop": 0.0625,
                   "forget_stop_rule": "chance", "retain_tasks": "cb+rte"}
    # the forget set at chance, the test untouched: forgetting did not generalize
    assert (rl["forget_set_ratio"], rl["forget_ratio"]) == (1.0, 0.0)
    assert (rlf["forget_ratio"], rlf["other_drop"], rlf["forget_stop_rule"]) == (1.0, 0.125,
                                                                                 "fixed")
    ga_other = [(o["other_task"], o["acc_before"], o["acc_after"], o["drop"], o["forget_ratio"])
                for o in other if o["method"] == "grad_ascent"]
    assert ga_other == [("rte", 0.75, 0.5, 0.25, 1.0), ("cb", 0.625, 0.5, 0.125, 1.0)]


def test_the_report_writes_the_methods_table_figure_and_section(root, tmp_path_factory):
    paper = tmp_path_factory.mktemp("paper")
    path = report.write_report(root, paper_dir=paper, n_bootstrap=10)
    md = path.read_text()
    assert "## Forgetting methods (issue 16)" in md and "figures/methods_generalization.png" in md
    assert (root / "report" / "figures" / "methods_generalization.png").stat().st_size > 1000
    with open(root / "report" / "tables" / "methods.csv") as f:
        table = list(csv.DictReader(f))
    ga = next(r for r in table if r["method"] == "grad_ascent")
    assert (float(ga["forget_ratio"]), float(ga["forget_set_acc"])) == (2.0, 0.0)
    with open(root / "report" / "tables" / "methods_other_tasks.csv") as f:
        assert len(list(csv.DictReader(f))) == 2 + 2 + 1 + 1
