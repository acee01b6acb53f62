"""Issue 13 report tables on hand-made sweep roots whose answers are known: the significance
gate, the fixed-budget matrix, forget-set columns, seeds, the size table, the heatmap range."""

from __future__ import annotations

import csv
import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from forget_jax import report, report_analyses
from forget_jax.analysis import cross_task, stats
from forget_jax.analysis.cross_task import UNDEFINED
from tests.test_report import forget_cell, ft_cell

report_configs = importlib.import_module("configs.report")


def _k(n: int, k: int) -> np.ndarray:
    """``n`` examples of which the first ``k`` are correct (accuracy k/n exactly)."""
    return np.arange(n) < k


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """copa fine-tunes to 26/50 (CI reaches below 0.5: gain not significant), cb to 45/50."""
    root = tmp_path_factory.mktemp("gated")
    ft = {"copa": ft_cell(root, "copa", _k(50, 26), _k(50, 25)),
          "cb": ft_cell(root, "cb", _k(50, 45), _k(50, 25))}
    res = {}
    for kind, fo in (("forget", 30), ("fixed", 40)):  # forgotten test accuracy fo/50
        for a in ft:
            for b in ft:
                name = f"{kind}-{a}-on-{b}"
                res[name] = forget_cell(root, name, a, ft[b], _k(50, fo), _k(20, 10))
    del res["forget-cb-on-cb"]["forget_set"]  # an older run without the new keys
    del res["forget-cb-on-cb"]["forget_stop_rule"]
    (root / "runs/forget-cb-on-cb/results.json").write_text(json.dumps(res["forget-cb-on-cb"]))
    (root / "runs/forget-cb-on-cb/predictions/forgotten/cb.forget.jsonl").unlink()
    md = report.main(report_configs.get_config("n_bootstrap=300,order_inclusive=False"),
                     str(root)).read_text()
    return root, res, md


def test_insignificant_gain_makes_the_ratio_undefined(gated):
    root, res, md = gated
    single = {r["task"]: r for r in _csv(root / "report/tables/single_task.csv")}
    assert single["copa"]["ft_gain_significant"] == "False"
    assert single["copa"]["forget_ratio"] == UNDEFINED and single["copa"]["forget_ratio_lo"] == ""
    assert single["cb"]["ft_gain_significant"] == "True"
    # cb: (0.9 - 0.6) / 0.4 from results.json, no bootstrap draw with ft <= 0.5 at 45/50
    assert float(single["cb"]["forget_ratio"]) == pytest.approx(0.75)
    assert single["cb"]["forget_ratio_n_undefined_draws"] == "0"
    for table, fo in (("cross_task_forget_ratio.csv", 0.6), ("cross_task_forget_ratio_fixed.csv",
                                                             0.8)):
        rows = {r["forget_task"]: r for r in _csv(root / "report/tables" / table)}
        assert {r["copa"] for r in rows.values()} == {UNDEFINED}, table  # eval task copa
        assert [float(r["cb"]) for r in rows.values()] == pytest.approx([(0.9 - fo) / 0.4] * 2)
    # the gate empties eval task copa's column: the shares are over cb alone (one column)
    assert ("(eval tasks without any ratio left out: copa) ([`tables/cross_task_forget_ratio_"
            "shares.csv`](tables/cross_task_forget_ratio_shares.csv)): n/a") in md
    assert _csv(root / "report/tables/cross_task_forget_ratio_shares.csv") == [
        {"eval_tasks_left_out": "copa"}]


def test_fixed_matrix_and_cells_table(gated):
    root, res, md = gated
    for fig in ("fig3_2_cross_task", "fig3_2_cross_task_fixed"):
        assert (root / "report/figures" / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"](figures/{fig}.png)" in md
    assert "Fixed budget" in md and "fair test" in md and "Paper-literal" in md
    cells = _csv(root / "report/tables/cross_task_cells.csv")
    assert len(cells) == 8
    assert [c["variant"] for c in cells] == ["literal"] * 4 + ["fixed"] * 4
    for c in cells:
        r = res[f"{'forget' if c['variant'] == 'literal' else 'fixed'}-{c['forget_task']}-on-"
                f"{c['eval_task']}"]
        assert float(c["forgotten_acc"]) == r["accuracy"]["forgotten"]["test"]
        assert c["epochs_forget"] == "4" and c["seeds"] == "0"
        if "forget_set" in r:
            assert float(c["forget_set_acc"]) == pytest.approx(0.5)
            assert float(c["forget_set_confidence"]) == pytest.approx(0.55)
            assert c["forget_stop_rule"] == ("fixed" if c["variant"] == "fixed" else "chance")
        else:  # absent keys: empty, never a crash
            assert c["forget_set_acc"] == c["forget_set_confidence"] == c["forget_stop_rule"] == ""


def test_single_task_forget_set_and_params_columns(gated):
    root, res, md = gated
    single = {r["task"]: r for r in _csv(root / "report/tables/single_task.csv")}
    copa = single["copa"]
    assert float(copa["forget_set_acc"]) == pytest.approx(0.5)  # 10 of 20 from results.json
    assert float(copa["forget_set_acc_lo"]) < 0.5 < float(copa["forget_set_acc_hi"])  # from file
    assert copa["forget_set_split"] == "copa.forget" and copa["forget_set_n"] == "20"
    assert (float(copa["params_changed_finetune"]), float(copa["params_changed_forget"])) == (
        0.25, 0.125)
    assert single["cb"]["forget_set_acc"] == single["cb"]["forget_set_acc_lo"] == ""
    assert "strict, < 0.6 forgotten" in md and "--config.order_inclusive=False" in md
    assert "[-0.5, 1.5]" in md and "hierarchical bootstrap" in md


def test_seeds_are_averaged_with_a_seed_aware_interval(tmp_path):
    ft0 = ft_cell(tmp_path, "cb", _k(200, 180), _k(200, 100))
    ft1 = ft_cell(tmp_path, "cb", _k(200, 160), _k(200, 100), seed=1)
    forget_cell(tmp_path, "forget-cb-on-cb", "cb", ft0, _k(200, 60), _k(20, 10))
    forget_cell(tmp_path, "forget-cb-on-cb-s1", "cb", ft1, _k(200, 140), _k(20, 14), seed=1)
    report.write_report(tmp_path, n_bootstrap=400)
    (row,) = _csv(tmp_path / "report/tables/single_task.csv")
    assert (row["n_seeds"], row["seeds"], row["cell"]) == ("2", "0+1", "forget-cb-on-cb")
    assert float(row["finetuned_acc"]) == pytest.approx(0.85)
    assert float(row["forgotten_acc"]) == pytest.approx(0.5)
    assert float(row["forget_ratio"]) == pytest.approx(((0.9 - 0.3) / 0.4 + (0.8 - 0.7) / 0.3) / 2)
    assert float(row["forget_set_acc"]) == pytest.approx(0.6)
    # resampling the two seeds puts a quarter of the draws on each seed alone: the interval
    # spans (almost) from one seed's 0.3 to the other's 0.7, far wider than pooling 400 examples
    assert float(row["forgotten_acc_lo"]) < 0.36 and float(row["forgotten_acc_hi"]) > 0.64
    per_seed = _csv(tmp_path / "report/tables/single_task_per_seed.csv")
    assert [(r["cell"], float(r["forgotten_acc"])) for r in per_seed] == [
        ("forget-cb-on-cb", 0.3), ("forget-cb-on-cb-s1", 0.7)]
    cells = _csv(tmp_path / "report/tables/cross_task_cells.csv")  # per seed, then the mean
    assert [(r["seeds"], float(r["forgotten_acc"])) for r in cells] == [
        ("0", 0.3), ("0+1", 0.5), ("1", 0.7)]
    assert cells[1]["forgotten_acc_lo"] == row["forgotten_acc_lo"]


def test_size_table_from_the_large_ft_cell(tmp_path):
    ft = ft_cell(tmp_path, "cb", _k(50, 45), _k(50, 25))
    forget_cell(tmp_path, "forget-cb-on-cb", "cb", ft, _k(50, 30), _k(30, 15))
    forget_cell(tmp_path, "forget-cb-n100", "cb", ft, _k(50, 40), _k(20, 10), n_forget=100)
    md = report.write_report(tmp_path, paper_dir=tmp_path / "none", n_bootstrap=100).read_text()
    (row,) = _csv(tmp_path / "report/tables/size_100_vs_1000.csv")
    assert row["init_from_small"] == "ft-cb" and row["cell_large"] == "forget-cb-on-cb"
    assert (row["ours_n_train_small"], row["ours_n_train_large"]) == ("100", "1000")
    assert float(row["finetuned_acc"]) == pytest.approx(0.9)
    assert (float(row["ours_forget_acc_small"]), float(row["ours_forget_acc_large"])) == (0.8, 0.6)
    assert row["paper_forget_acc_100"] == "" and "shown once" in md
    (tmp_path / "runs/ft-cb/predictions/finetuned/cb.test.jsonl").unlink()
    md = report.write_report(tmp_path, n_bootstrap=100).read_text()
    (row,) = _csv(tmp_path / "report/tables/single_task.csv")
    assert row["ft_gain_significant"] == "" and float(row["forget_ratio"]) == pytest.approx(0.75)
    assert "forget-ratio gate not checked" in md


def test_undefined_bootstrap_draws_are_counted():
    ft = _k(100, 52).astype(float)  # 0.52: many resamples have ft <= 0.5
    fo = _k(100, 50).astype(float)
    iv = stats.bootstrap_paired(lambda x, y: stats.forget_ratio(x, y), [ft, fo], 500, seed=3)
    idx = np.random.default_rng(3).integers(0, 100, size=(500, 100))  # the same draws
    assert iv.n_undefined == int((ft[idx].mean(axis=1) <= 0.5).sum()) > 0
    assert iv.value == pytest.approx(0.02 / 0.02)


def test_heatmap_range_is_fixed_with_outliers_starred_and_undefined_hatched():
    from matplotlib.figure import Figure

    m = cross_task.build_matrix({("a", "a"): 5.0, ("a", "b"): 0.2, ("b", "a"): UNDEFINED,
                                 ("b", "b"): -2.0})
    assert cross_task.matrix_table(m)[1]["a"] == UNDEFINED
    ax = Figure().subplots()
    im = cross_task._draw(ax, m, "t")
    assert im.get_clim() == (cross_task.VMIN, cross_task.VMAX)
    texts = {t.get_text() for t in ax.texts}
    assert {"5.00*", "0.20", "n.s.", "-2.00*"} <= texts
    assert any(p.get_hatch() == "///" for p in ax.patches)


def test_ratio_analyses_leave_out_cells_with_an_undefined_ratio(gated, monkeypatch, tmp_path):
    root, _, _ = gated
    seen = {}

    def record(dirs, fig, table, seed, choices):
        seen[fig.stem] = sorted(d.name for d in dirs)
        return ""

    monkeypatch.setattr(report_analyses, "ANALYSES", tuple(a[:3] + ((),) + a[4:5] + (record,)
                                                           for a in report_analyses.ANALYSES))
    diag = [cross_task.read_runs(root, [])[f"forget-{t}-on-{t}"] for t in ("copa", "cb")]
    bodies = report.run_analyses(diag, tmp_path, 0, undefined=["forget-copa-on-copa"])
    assert seen["fig4_1_predictors"] == ["forget-cb-on-cb"]
    assert seen["fig5_1_orders"] == seen["fig6_1_probes"] == ["forget-cb-on-cb",
                                                              "forget-copa-on-copa"]
    assert "left out, forget ratio undefined" in bodies["fig4_1_predictors"]


@pytest.mark.parametrize("name, kind, seed, group", [
    ("ft-copa", "ft", 0, "ft-copa"), ("ft-copa-s2", "ft", 2, "ft-copa"),
    ("forget-copa-on-cb-s1", "forget", 1, "forget-copa-on-cb"),
    ("fixed-copa-on-cb", "fixed", 0, "fixed-copa-on-cb"),
    ("flip-rte-on-cb-s3", "flip", 3, "flip-rte-on-cb"),
    ("forget-cb-n100", "forget_small", 0, "forget-cb-n100"),
    ("forget-cb-n100-s1", "forget_small", 1, "forget-cb-n100"),
    ("ft-cb-n100", "ft", 0, "ft-cb-n100"), ("misc-cb", None, 0, "misc-cb")])
def test_cell_names(name, kind, seed, group):
    assert cross_task.cell_kind(name) == kind
    assert (cross_task.name_seed(name), cross_task.group_name(name)) == (seed, group)


def test_variance_shares_leave_out_undefined_columns(tmp_path):
    col = {"a": UNDEFINED, "b": 0.2, "c": 0.9}  # every row alike: all variance is the eval task's
    m = cross_task.build_matrix({(a, b): col[b] for a in "abc" for b in "abc"})
    md = report._matrix_section(m, tmp_path, "fig", "t.csv", "x")
    assert ("(eval tasks without any ratio left out: a) ([`tables/t_shares.csv`]"
            "(tables/t_shares.csv)): eval_task 1.00, forget_task 0.00") in md
    (row,) = _csv(tmp_path / "tables" / "t_shares.csv")
    assert row["eval_tasks_left_out"] == "a"
    assert (float(row["eval_task"]), float(row["forget_task"])) == pytest.approx((1.0, 0.0))
