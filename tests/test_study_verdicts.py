"""studies/smollm2-cpu/verdicts.py: the pre-registered readings (PROTOCOL.md §5) on hand-written
report tables, each verdict worked out by hand."""

import csv
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "studies" / "smollm2-cpu" / "verdicts.py"


@pytest.fixture(scope="module")
def verdicts():
    spec = importlib.util.spec_from_file_location("verdicts", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _read(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _single(task, forgotten, fs_acc, ratio, lo, hi, variant="literal", seeds="0", cell=None):
    return {"task": task, "forget_task": task, "eval_task": task, "variant": variant,
            "cell": cell or f"forget-{task}-on-{task}", "seeds": seeds,
            "forgotten_acc": forgotten, "forget_set_acc": fs_acc, "forget_ratio": ratio,
            "forget_ratio_lo": lo, "forget_ratio_hi": hi}


def test_each_claim_reads_as_preregistered(verdicts, tmp_path):
    t = tmp_path / "report" / "tables"
    single = [  # a, b stay up (CI < 0.5), c falls (CI > 0.5); d's forget set stayed at .75
        _single("a", 0.80, 0.55, 0.1, -0.1, 0.3), _single("b", 0.70, 0.45, 0.2, 0.0, 0.4),
        _single("c", 0.55, 0.60, 0.8, 0.6, 1.0), _single("d", 0.50, 0.75, 0.9, 0.7, 1.1),
        _single("e", 0.60, 0.50, "undefined", "", "")]
    _write(t / "single_task.csv", single)
    _write(t / "single_task_per_seed.csv", single)
    paper = tmp_path / "paper.csv"  # our forgotten acc a > b > c ranks like the paper's
    _write(paper, [{"task": k, "forget_acc_100": 0, "forget_acc_1000": v}
                   for k, v in (("a", 0.9), ("b", 0.8), ("c", 0.6), ("d", 0.1))])
    _write(t / "cross_task_forget_ratio_shares.csv",
           [{"eval_task": 0.7, "forget_task": 0.1, "residual": 0.2, "eval_tasks_left_out": ""}])
    _write(t / "cross_task_forget_ratio_fixed_shares.csv",
           [{"eval_task": 0.2, "forget_task": 0.5, "residual": 0.3, "eval_tasks_left_out": ""}])
    _write(t / "predictors_correlations.csv", [
        {"predictor": "confidence", "pearson_r": -0.9, "pearson_p": 0.01, "spearman_r": -0.8,
         "spearman_p": 0.04, "n": 6},
        {"predictor": "total_variance", "pearson_r": -0.9, "pearson_p": 0.01,
         "spearman_r": -0.3, "spearman_p": 0.5, "n": 6}])
    _write(t / "predictors_example_level.csv", [
        {"task": "a", "pointbiserial_p": 0.01}, {"task": "b", "pointbiserial_p": 0.3},
        {"task": "c", "pointbiserial_p": "nan"}])
    _write(t / "orders.csv", [  # 2 of 3 qualifying tasks negative and significant
        {"task": "a", "n_qualifying": 150, "spearman_r": -0.3, "spearman_p": 0.001},
        {"task": "b", "n_qualifying": 120, "spearman_r": -0.2, "spearman_p": 0.02},
        {"task": "c", "n_qualifying": 100, "spearman_r": 0.1, "spearman_p": 0.4},
        {"task": "d", "n_qualifying": 99, "spearman_r": 0.9, "spearman_p": 0.0}])
    _write(t / "probes.csv", [
        {"task": "a", "phase": "finetuned", "probe_acc_paired": 0.90, "model_acc": 0.9},
        {"task": "a", "phase": "forgotten", "probe_acc_paired": 0.87, "model_acc": 0.6},
        {"task": "b", "phase": "finetuned", "probe_acc_paired": 0.90, "model_acc": 0.9},
        {"task": "b", "phase": "forgotten", "probe_acc_paired": 0.70, "model_acc": 0.6}])
    _write(t / "size_100_vs_1000.csv", [
        {"task": "a", "cell_small": "forget-a-n100", "seeds": "0", "ours_n_train_small": 100,
         "ours_n_train_large": 240, "ours_forget_acc_small": 0.62,
         "ours_forget_acc_small_lo": 0.55, "ours_forget_acc_small_hi": 0.69,
         "ours_forget_acc_large": 0.60, "ours_forget_acc_large_lo": 0.53,
         "ours_forget_acc_large_hi": 0.67, "ours_forget_set_acc_small": 0.52},
        {"task": "b", "cell_small": "forget-b-n100", "seeds": "0", "ours_n_train_small": 100,
         "ours_n_train_large": 240, "ours_forget_acc_small": 0.80,
         "ours_forget_acc_small_lo": 0.74, "ours_forget_acc_small_hi": 0.86,
         "ours_forget_acc_large": 0.60, "ours_forget_acc_large_lo": 0.53,
         "ours_forget_acc_large_hi": 0.67, "ours_forget_set_acc_small": 0.35}])
    _write(t / "flipped_vs_random.csv", [
        {"task": k, "forget_ratio_random": r, "forget_ratio_flipped": f}
        for k, r, f in (("a", 0.1, 0.2), ("b", 0.2, 0.1), ("c", 0.8, 0.9), ("d", "", 0.5))])
    _write(t / "null_control.csv", [
        {"task": "a", "forget_ratio": 0.01, "forget_ratio_lo": -0.05, "forget_ratio_hi": 0.07},
        {"task": "c", "forget_ratio": 0.1, "forget_ratio_lo": 0.02, "forget_ratio_hi": 0.2}])
    _write(t / "cross_task_cells.csv", [
        {"cell": "fixed-a-on-b", "variant": "fixed", "forget_task": "a", "eval_task": "b",
         "seeds": "0", "forget_set_acc": 0.39},
        {"cell": "flip-a-on-a", "variant": "flipped", "forget_task": "a", "eval_task": "a",
         "seeds": "0", "forget_set_acc": 0.0}])

    assert verdicts.main(str(tmp_path / "report"), str(paper)) == 0
    claims = _read(t / "claims.csv")
    verdict = {(r["claim"], r["statistic"]): r for r in claims}
    final = {c: [r["verdict"] for r in claims if r["claim"] == c and r["verdict"]]
             for c in ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "null")}
    # C1: d did not forget, e undefined -> a, b below, c above; Spearman over a, b, c = 1.0
    c1 = verdict[("C1", "Spearman(our forgotten test acc, paper forget_acc_1000)")]
    assert float(c1["value"]) == pytest.approx(1.0) and c1["n"] == "3"
    assert float(c1["p"]) == pytest.approx(2 / 6)  # exact: 2 of the 3! orders reach |rho| = 1
    assert final["C1"] == ["inconclusive"]
    assert verdict[("C1", "cells whose forget set reached chance")]["value"] == "4"
    assert final["C2"] == ["inconclusive"]  # eval share larger in one variant only
    assert final["C3"] == ["confirmed", "inconclusive"]  # confidence both < 0 at p < .05
    assert final["C4"] == ["confirmed"]  # 2 of the 3 tasks with >= 100 qualifying
    assert final["C5"] == ["confirmed", "not confirmed", "inconclusive"]  # a yes, b no
    assert final["C6"] == ["similar", "different", "not confirmed"]  # 1 of 2 is not a majority
    c7 = verdict[("C7", "Spearman(forget ratio random, flipped) across tasks")]
    assert (float(c7["value"]), float(c7["p"])) == pytest.approx((0.5, 1.0))  # every order
    assert final["C7"] == ["inconclusive"]
    assert final["null"] == ["includes 0", "excludes 0"]
    missed = _read(t / "not_forgotten.csv")
    assert [(r["cell"], r["forget_set_acc"]) for r in missed] == [
        ("fixed-a-on-b", "0.39"), ("forget-b-n100", "0.35"), ("forget-d-on-d", "0.75")]


def test_no_report_is_one_error_line(verdicts, tmp_path, capsys):
    assert verdicts.main(str(tmp_path / "nothing")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
