"""The report over a synthetic sweep root: tables equal results.json, figures, CIs, UPGMA."""

from __future__ import annotations

import csv
import importlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.cluster import hierarchy

from forget_jax import report, report_analyses, sweep
from forget_jax.analysis import cross_task, rundir, stats

TASKS = ["copa", "cb", "rte"]
N_TEST = {"copa": 50, "cb": 40, "rte": 60}
PAPER = {"copa": (0.51, 0.50), "cb": (0.61, 0.50), "rte": (0.57, 0.50)}
report_configs = (sweep.load_forget_get_config(), importlib.import_module("configs.report"))[1]


def _jsonl(path: Path, task: str, correct: np.ndarray) -> float:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": f"{task}/validation/{i}", "prompt": "Q:\nAnswer:",
                         "choices": [" yes", " no"], "gold": 0, "loglik": [-1.0, -2.0],
                         "n_tokens": [1, 1], "pred": 0 if c else 1, "correct": bool(c),
                         "confidence": 0.7 if c else 0.3}) for i, c in enumerate(correct)]
    path.write_text("\n".join(lines) + "\n")
    return float(np.mean(correct))


def _run_dir(root: Path, name: str, results: dict, init_from: str = "",
             seconds: tuple[tuple[str, float], ...] = ()) -> Path:
    d = root / "runs" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.json").write_text(json.dumps(results))
    (d / "config.json").write_text(json.dumps({"task": results["task"], "init_from": init_from}))
    hist = [{"phase": p, "epoch": i, "step": i, "lr": 1e-4, "train_loss": 0.5, "train_acc": 0.5,
             "validation_acc": 0.6, "test_acc": 0.6, "seconds": s}
            for i, (p, s) in enumerate(seconds)]
    (d / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in hist))
    return d


def ft_cell(root: Path, t: str, correct_ft: np.ndarray, correct_pre: np.ndarray,
            seed: int = 0) -> dict:
    """An ``ft-<t>[-s<k>]`` cell with pretrained/fine-tuned test predictions."""
    name = f"ft-{t}" + (f"-s{seed}" if seed else "")
    d = root / "runs" / name
    n = correct_ft.size
    acc = {"pretrained": _jsonl(d / "predictions/pretrained" / f"{t}.test.jsonl", t, correct_pre),
           "finetuned": _jsonl(d / "predictions/finetuned" / f"{t}.test.jsonl", t, correct_ft)}
    res = {"task": t, "model": "smollm2-135m", "seed": seed, "eval_task": t, "forget_task": t,
           "forget_mode": "random", "n_examples": {"train": 1000, "validation": n, "test": n},
           "accuracy": {p: {"test": v} for p, v in acc.items()}, "epochs": {"finetune": 3},
           "params_changed_fraction": {"finetune": 0.25}, "complete": True}
    _run_dir(root, name, res, seconds=(("finetune", 10.0), ("finetune", 12.5)))
    return res


def forget_cell(root: Path, name: str, a: str, ft: dict, correct_fo: np.ndarray,
                forget_set_correct: np.ndarray, mode: str = "random", seed: int = 0,
                n_forget: int = 1000) -> dict:
    """A forget cell started from ``ft`` (an ft_cell result): test + forget-set predictions."""
    b = ft["task"]
    d = root / "runs" / name
    acc = {p: v["test"] for p, v in ft["accuracy"].items()}
    acc["forgotten"] = _jsonl(d / "predictions/forgotten" / f"{b}.test.jsonl", b, correct_fo)
    fs_acc = _jsonl(d / "predictions/forgotten" / f"{a}.forget.jsonl", a, forget_set_correct)
    f, o = acc["finetuned"], acc["forgotten"]
    floor = 0.5 if mode == "random" else 1 - f
    init = str(root / "runs" / (f"ft-{b}" + (f"-s{seed}" if seed else "")))
    res = {**ft, "forget_task": a, "forget_mode": mode, "seed": seed, "init_from": init,
           "accuracy": {p: {"test": v} for p, v in acc.items()},
           "epochs": {"finetune": 3, "forget": 4}, "forget_gap": o - 0.5,
           "forget_stop_rule": "fixed" if name.startswith("fixed-") else "chance",
           "forget_set": {"task": a, "split": f"{a}.forget", "n": forget_set_correct.size,
                          "accuracy": {"finetuned": 0.9, "forgotten": fs_acc},
                          "confidence": {"finetuned": 0.8, "forgotten": 0.5 + fs_acc / 10}},
           "params_changed_fraction": {"finetune": 0.25, "forget": 0.125},
           "n_forget_train": n_forget, "complete": True}
    if f > floor:
        res["forget_ratio"] = (f - o) / (f - floor)
    _run_dir(root, name, res, init_from=init,
             seconds=(("finetune", 99.0), ("forget", 5.0), ("forget", 6.0)))
    return res


def make_sweep(root: Path, rng: np.random.Generator) -> dict[str, dict]:
    """3x3 literal, fixed and flipped cross-task cells, size cells, their ft cells."""
    experiment = "cross_task+size+flipped"
    out: dict[str, dict] = {}
    for b in TASKS:
        n = N_TEST[b]
        out[f"ft-{b}"] = ft_cell(root, b, rng.random(n) < 0.85, rng.random(n) < 0.6)
    for b in TASKS:
        for a in TASKS:
            for kind, mode in (("forget", "random"), ("fixed", "random"), ("flip", "flipped")):
                name = f"{kind}-{a}-on-{b}"
                out[name] = forget_cell(root, name, a, out[f"ft-{b}"],
                                        rng.random(N_TEST[b]) < rng.uniform(0.3, 0.8),
                                        rng.random(30) < 0.5, mode)
        out[f"forget-{b}-n100"] = forget_cell(root, f"forget-{b}-n100", b, out[f"ft-{b}"],
                                              rng.random(N_TEST[b]) < 0.7, rng.random(20) < 0.5,
                                              n_forget=100)
    cells = [sweep.Cell(name, {"task": r["task"]}, () if name.startswith("ft-") else
                        (Path(r["init_from"]).name,)) for name, r in out.items()]
    sweep.write_index(root, experiment, cells, command=f"python main.py "
                      f"--config=configs/sweep.py:experiment={experiment},tasks=copa+cb+rte "
                      f"--workdir={root}")
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    results = make_sweep(root, np.random.default_rng(0))
    paper = root.parent / (root.name + "_paper")
    paper.mkdir()
    (paper / report.PAPER_CSV).write_text("task,forget_acc_100,forget_acc_1000\n" + "".join(
        f"{t},{a:.2f},{b:.2f}\n" for t, (a, b) in PAPER.items()))
    config = report_configs.get_config(f"paper_dir={paper},n_bootstrap=200")
    md = report.main(config, str(root))
    return root, results, md.read_text()


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_cross_task_table_equals_results_in_upgma_order(built):
    root, results, _ = built
    rows = _csv(root / "report/tables/cross_task_forget_ratio.csv")
    row_tasks = [r["forget_task"] for r in rows]
    col_tasks = [k for k in rows[0] if k != "forget_task"]
    assert sorted(row_tasks) == sorted(col_tasks) == sorted(TASKS)
    for r in rows:
        for b in col_tasks:
            assert float(r[b]) == pytest.approx(
                results[f"forget-{r['forget_task']}-on-{b}"]["forget_ratio"], abs=1e-12)
    order = report.task_order(TASKS)  # the matrix as built before clustering
    m = np.array([[results[f"forget-{a}-on-{b}"]["forget_ratio"] for b in order] for a in order])
    leaves = hierarchy.leaves_list
    assert row_tasks == [order[i] for i in leaves(hierarchy.linkage(m, method="average"))]
    assert col_tasks == [order[i] for i in leaves(hierarchy.linkage(m.T, method="average"))]
    # the variance shares, as a table too (FINDINGS.md cites tables): equal to effect_shares
    (shares,) = _csv(root / "report/tables/cross_task_forget_ratio_shares.csv")
    want = cross_task.effect_shares(cross_task.build_matrix(
        {(a, b): results[f"forget-{a}-on-{b}"]["forget_ratio"] for a in order for b in order}))
    assert {k: float(v) for k, v in shares.items() if k != "eval_tasks_left_out"} == \
        pytest.approx(want, abs=1e-12)


def test_single_task_and_size_tables_equal_results(built):
    root, results, _ = built
    single = {r["task"]: r for r in _csv(root / "report/tables/single_task.csv")}
    assert sorted(single) == sorted(TASKS)
    for t, row in single.items():
        res = results[f"forget-{t}-on-{t}"]
        for phase in report.PHASES:
            value = float(row[f"{phase}_acc"])
            assert value == pytest.approx(res["accuracy"][phase]["test"], abs=1e-12)
            assert float(row[f"{phase}_acc_lo"]) <= value <= float(row[f"{phase}_acc_hi"])
        assert float(row["forget_gap"]) == pytest.approx(res["forget_gap"], abs=1e-12)
        assert float(row["forget_ratio"]) == pytest.approx(res["forget_ratio"], abs=1e-12)
        assert float(row["forget_gap_lo"]) == pytest.approx(float(row["forgotten_acc_lo"]) - 0.5)
    size = {r["task"]: r for r in _csv(root / "report/tables/size_100_vs_1000.csv")}
    assert sorted(size) == sorted(TASKS)
    for t, row in size.items():
        for tag, cell in (("small", f"forget-{t}-n100"), ("large", f"forget-{t}-on-{t}")):
            assert float(row[f"ours_forget_acc_{tag}"]) == pytest.approx(
                results[cell]["accuracy"]["forgotten"]["test"], abs=1e-12)
            assert float(row[f"ours_forget_ratio_{tag}"]) == pytest.approx(
                results[cell]["forget_ratio"], abs=1e-12)
        assert int(row["ours_n_train_small"]) == 100 and int(row["ours_n_train_large"]) == 1000
        assert (float(row["paper_forget_acc_100"]), float(row["paper_forget_acc_1000"])) == PAPER[t]
    flipped = _csv(root / "report/tables/appC_flipped_forget_ratio.csv")
    for r in flipped:
        for b in TASKS:
            assert float(r[b]) == pytest.approx(
                results[f"flip-{r['forget_task']}-on-{b}"]["forget_ratio"], abs=1e-12)


def test_figures_are_pngs_and_report_mentions_everything(built):
    root, results, md = built
    made = ["fig3_1_accuracy_arrows", "fig3_1_forget_gap", "fig3_1_forget_ratio",
            "fig3_2_cross_task", "appC_flipped"]
    for name in made:
        data = (root / "report/figures" / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
        assert f"](figures/{name}.png)" in md
    for name in report.FIGURES:
        assert name in md
    for name in ("fig4_1_predictors", "fig5_1_orders", "fig6_1_probes"):  # no activations
        assert not (root / "report/figures" / f"{name}.png").exists()
    assert md.count("skipped: no single-task cell has") == 3
    for table in ("cross_task_forget_ratio.csv", "single_task.csv", "size_100_vs_1000.csv"):
        assert f"tables/{table}" in md
    assert "python main.py --config=configs/sweep.py:experiment=cross_task+size+flipped" in md
    paper = root.parent / (root.name + "_paper")
    assert (f"drawn by `python main.py --config=configs/report.py --config.paper_dir={paper} "
            f"--config.n_bootstrap=200 --workdir={root}`") in md
    assert "our reading" in md.lower() and "UPGMA" in md
    # wall time counts each cell's own phases: ft cells 22.5 s, forget cells 11 s (not the
    # 99 s "finetune" lines a forget cell's history may carry over from its init)
    wall = sum(22.5 if name.startswith("ft-") else 11.0 for name in results)
    assert f"training phases): {wall:.1f} s" in md
    assert not list((root / "report").rglob("*.tmp"))
    assert "## Notes" not in md  # predictions agree with results.json everywhere


def test_report_cli_is_deterministic(built, tmp_path):
    root, _, _ = built
    first = (root / "report/tables/single_task.csv").read_text()
    report.cli([str(root), "--paper_dir", str(root.parent / (root.name + "_paper")),
                "--n_bootstrap", "200"])
    assert (root / "report/tables/single_task.csv").read_text() == first


def test_analysis_failure_is_reported_not_raised(tmp_path, monkeypatch):
    make_sweep(tmp_path, np.random.default_rng(1))
    for t in TASKS:
        for p in report.PHASES:
            (tmp_path / "runs" / f"forget-{t}-on-{t}" / "activations" / p).mkdir(parents=True)
        epochs = tmp_path / "runs" / f"forget-{t}-on-{t}" / "predictions" / "epochs"
        epochs.mkdir(parents=True)
        (epochs.parent / "finetuned").mkdir()
        for phase in ("forget", "relearn"):
            (epochs / f"{phase}.npz").write_bytes(b"")

    def broken(dirs, fig, table, seed, choices):
        raise ValueError(f"cannot restore {len(dirs)} dirs")

    monkeypatch.setattr(report_analyses, "ANALYSES",
                        tuple(a[:5] + (broken,) for a in report_analyses.ANALYSES))
    md = report.write_report(tmp_path, paper_dir=tmp_path / "nowhere", n_bootstrap=50).read_text()
    assert md.count("failed: ValueError: cannot restore 3 dirs") == 3
    assert "paper reference" in md and "not found" in md  # paper columns left empty, said so
    size = _csv(tmp_path / "report/tables/size_100_vs_1000.csv")
    assert all(r["paper_forget_acc_100"] == "" for r in size)


def test_a_directory_that_is_not_a_sweep_root_is_an_error(tmp_path):
    with pytest.raises(rundir.RunDirError, match="not a sweep root"):
        report.write_report(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere" / "report").exists()


def test_rerun_drops_outputs_it_can_no_longer_draw(tmp_path):
    make_sweep(tmp_path, np.random.default_rng(6))
    report.write_report(tmp_path, n_bootstrap=20)
    assert (tmp_path / "report/figures/appC_flipped.png").exists()
    for d in (tmp_path / "runs").glob("flip-*"):
        (d / "results.json").unlink()  # e.g. the flipped cells are being rerun
    md = report.write_report(tmp_path, n_bootstrap=20).read_text()
    assert not (tmp_path / "report/figures/appC_flipped.png").exists()
    assert not (tmp_path / "report/tables/appC_flipped_forget_ratio.csv").exists()
    assert "appC_flipped: skipped" in md
    assert (tmp_path / "report/figures/fig3_2_cross_task.png").exists()


def test_prediction_mismatch_is_noted(tmp_path):
    make_sweep(tmp_path, np.random.default_rng(2))
    path = tmp_path / "runs/forget-cb-on-cb/results.json"
    res = json.loads(path.read_text())
    res["accuracy"]["forgotten"]["test"] += 0.1
    path.write_text(json.dumps(res))
    md = report.write_report(tmp_path, n_bootstrap=50).read_text()
    assert "## Notes" in md and "forgotten test accuracy" in md


def test_bootstrap_interval_contains_estimate_and_is_seeded():
    correct = np.random.default_rng(3).random(80) < 0.7
    a = stats.bootstrap_mean(correct, 1000, seed=5)
    assert a == stats.bootstrap_mean(correct, 1000, seed=5)
    assert a.lo < a.value < a.hi and a.value == pytest.approx(correct.mean()) and a.n == 80
    assert a.hi - a.lo == pytest.approx(2 * 1.96 * np.sqrt(0.7 * 0.3 / 80), rel=0.35)
    assert not np.array_equal(stats.resample_indices(80, 10, 5), stats.resample_indices(80, 10, 6))
    assert stats.bootstrap_mean(np.ones(20)) == stats.Interval(1.0, 1.0, 1.0, 20)
    r = stats.bootstrap_paired(lambda x, y: stats.forget_ratio(x, y), [correct, correct[::-1]])
    assert r.value == pytest.approx(0.0) and r.lo < 0 < r.hi
    assert stats.forget_ratio(0.9, 0.1, "flipped") == pytest.approx(1.0)
    assert stats.forget_ratio(0.9, 0.5) == pytest.approx(1.0)


def test_upgma_order_equals_scipy():
    m = np.array([[0.9, 0.1, 0.8, 0.2, 0.5], [0.1, 0.9, 0.2, 0.7, 0.4],
                  [0.85, 0.15, 0.75, 0.25, 0.5], [0.2, 0.8, 0.1, 0.9, 0.3],
                  [0.5, 0.5, 0.5, 0.5, 0.5], [0.0, 1.0, 0.3, 0.6, 0.2]])
    for x in (m, m.T):
        expected = hierarchy.leaves_list(hierarchy.linkage(x, method="average",
                                                           metric="euclidean")).tolist()
        assert cross_task.upgma_order(x) == expected
    order = cross_task.upgma_order(m)
    assert abs(order.index(0) - order.index(2)) == 1  # near-identical rows end up adjacent
    assert cross_task.upgma_order(np.ones((1, 3))) == [0]
    holey = m.copy()
    holey[1, 2] = np.nan  # filled with its column mean for the clustering
    filled = m.copy()
    filled[1, 2] = np.nanmean(holey[:, 2])
    assert cross_task.upgma_order(holey) == cross_task.upgma_order(filled)


def test_effect_shares_and_diagonal_summary():
    cols_only = cross_task.Matrix(("a", "b", "c"), ("a", "b", "c"),
                                  np.tile([0.1, 0.5, 0.9], (3, 1)))
    shares = cross_task.effect_shares(cols_only)
    assert shares["eval_task"] == pytest.approx(1.0) and shares["forget_task"] == pytest.approx(0)
    diag = {r["eval_task"]: r for r in cross_task.diagonal_summary(cross_task.build_matrix(
        {("a", "a"): 0.2, ("b", "a"): 0.5, ("a", "b"): 0.1, ("b", "b"): 0.3}))}
    assert diag["a"]["n_other_higher"] == 1 and diag["b"]["n_other_higher"] == 0
    assert cross_task.effect_shares(cross_task.build_matrix({("a", "b"): 0.1})) is None


def _analysis_inputs(run: Path, task: str, rng: np.random.Generator) -> None:
    """What the analyses read from a single-task cell: activations, train predictions, histories."""
    from forget_jax import checkpoint

    n = {"train": 150, "validation": 30, "test": 40}
    for phase in report.PHASES:
        tree: dict = {"layer": np.array(-5)}
        for split, k in n.items():
            gold = rng.integers(0, 2, k)
            ans = rng.normal(size=(k, 2, 8)).astype(np.float32)
            ans[np.arange(k), gold, 0] += 2.0  # the correct answer is linearly decodable
            tree[f"{task}.{split}"] = {"prompt_last": rng.normal(size=(k, 8)).astype(np.float32),
                                       "answer_last": ans, "gold": gold}
        checkpoint.save_activations(run / "activations" / phase, tree)
    conf = rng.uniform(0.55, 0.95, n["train"])
    _jsonl(run / "predictions/finetuned" / f"{task}.train.jsonl", task, conf > 0.6)
    _jsonl(run / "predictions/forgotten" / f"{task}.train.jsonl", task, rng.random(n["train"]) < .5)
    lines = (run / "predictions/finetuned" / f"{task}.train.jsonl").read_text().splitlines()
    (run / "predictions/finetuned" / f"{task}.train.jsonl").write_text("".join(
        json.dumps({**json.loads(ln), "confidence": float(c)}) + "\n"
        for ln, c in zip(lines, conf, strict=True)))
    ids = np.array([f"{task}/train/{i}" for i in range(n["train"])])
    epochs = np.arange(6)
    t_forget, t_learn = rng.integers(1, 6, n["train"]), rng.integers(1, 6, n["train"])
    for phase, t, hi_first in (("forget", t_forget, True), ("relearn", t_learn, False)):
        before = (epochs[:, None] < t[None, :]) == hi_first
        confidence = np.where(before, 0.8, 0.4)
        np.savez(run / "predictions/epochs" / f"{phase}.npz", epoch=epochs, train_ids=ids,
                 train_confidence=confidence, train_correct=confidence > 0.5)


def test_analyses_run_when_their_inputs_exist(tmp_path):
    make_sweep(tmp_path, np.random.default_rng(4))
    rng = np.random.default_rng(5)
    for t in TASKS:
        run = tmp_path / "runs" / f"forget-{t}-on-{t}"
        (run / "predictions/epochs").mkdir(parents=True)
        _analysis_inputs(run, t, rng)
    md = report.write_report(tmp_path, n_bootstrap=50).read_text()
    for fig, table in (("fig4_1_predictors", "predictors"), ("fig5_1_orders", "orders"),
                       ("fig6_1_probes", "probes")):
        assert (tmp_path / "report/figures" / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
        rows = _csv(tmp_path / "report/tables" / f"{table}.csv")
        assert sorted({r["task"] for r in rows}) == sorted(TASKS), table
        assert f"](figures/{fig}.png)" in md
    skipped = [line for line in md.splitlines() if "skipped:" in line or "failed:" in line]
    assert skipped == ["null_control.csv: skipped: no complete `null-<t>` cells.",  # none made
                       "methods.csv: skipped: no complete `method-<m>-<t>` cells."]
    assert "Choices (from `forget_jax.analysis.orders`)" in md
    predictors = {r["task"]: r for r in _csv(tmp_path / "report/tables/predictors.csv")}
    for t in TASKS:  # the forget ratio there is the cell's results.json value too
        res = json.loads((tmp_path / "runs" / f"forget-{t}-on-{t}/results.json").read_text())
        assert float(predictors[t]["forget_ratio"]) == pytest.approx(res["forget_ratio"])
    corr = _csv(tmp_path / "report/tables/predictors_correlations.csv")
    from forget_jax.analysis import predictors as pred_lib
    want_corr = pred_lib.predictor_correlations(list(predictors.values()))
    assert [r["predictor"] for r in corr] == [r["predictor"] for r in want_corr]
    for got, want in zip(corr, want_corr, strict=True):
        assert float(got["spearman_r"]) == pytest.approx(want["spearman_r"])
        assert int(got["n"]) == want["n"] == len(TASKS)
    probes = _csv(tmp_path / "report/tables/probes.csv")
    assert all(float(r["probe_acc_paired"]) > 0.7 for r in probes)
    from forget_jax.analysis import predictors as pred
    examples = _csv(tmp_path / "report/tables/predictors_example_level.csv")
    diag = [tmp_path / "runs" / f"forget-{t}-on-{t}" for t in TASKS]
    want = {r["task"]: r for r in pred.example_level(diag)}  # held-out test examples
    assert {r["split"] for r in want.values()} == {"test"} and "held-out TEST examples" in md
    assert {r["task"] for r in examples} == set(TASKS) and "Example level, per task" in md
    for r in examples:
        assert int(r["n"]) == want[r["task"]]["n"]
        assert int(r["n_forgotten"]) == want[r["task"]]["n_forgotten"]


def test_null_control_and_flipped_diagonal_tables(tmp_path):
    rng = np.random.default_rng(3)
    ft = ft_cell(tmp_path, "cb", rng.random(40) < 0.9, rng.random(40) < 0.6)
    ft_correct = np.array([json.loads(x)["correct"] for x in (
        tmp_path / "runs/ft-cb/predictions/finetuned/cb.test.jsonl").read_text().splitlines()])
    res = {name: forget_cell(tmp_path, name, "cb", ft, c, rng.random(30) < 0.5, mode)
           for name, c, mode in (("null-cb", ft_correct, "random"),  # nothing moved
                                 ("forget-cb-on-cb", rng.random(40) < 0.55, "random"),
                                 ("flip-cb-on-cb", rng.random(40) < 0.2, "flipped"))}
    report.main(report_configs.get_config("n_bootstrap=200"), str(tmp_path))
    (null,) = _csv(tmp_path / "report/tables/null_control.csv")
    assert null["cell"] == "null-cb" and float(null["forget_ratio"]) == 0.0
    assert float(null["forget_ratio_lo"]) == float(null["forget_ratio_hi"]) == 0.0
    (flip,) = _csv(tmp_path / "report/tables/flipped_vs_random.csv")
    for tag, name in (("random", "forget-cb-on-cb"), ("flipped", "flip-cb-on-cb")):
        assert flip[f"cell_{tag}"] == name
        assert float(flip[f"forget_ratio_{tag}"]) == pytest.approx(res[name]["forget_ratio"])
    md = (tmp_path / "report/report.md").read_text()
    assert "## Null control" in md and "flipped_vs_random.csv" in md
