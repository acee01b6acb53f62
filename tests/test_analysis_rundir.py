"""Run-directory readers and the three analyses end to end on a synthetic sweep.

The sweep is built by hand in a temporary directory exactly as CONTRACT.md (plus the lead's
per-epoch npz and Orbax activations) lays it out, with values chosen so that every number the
analyses report can be computed by hand (see the comments).
"""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from forget_jax.analysis import orders, predictors, probes, rundir
from forget_jax.checkpoint import save_activations

N, N_EVAL, D = 120, 60, 6
# Per task: fine-tuned test accuracy, forget ratio, 4 groups of 30 train confidences under the
# fine-tuned model, which groups the forgotten model still gets right, and the scale of
# prompt_last (the rows of (0,0),(2,0),(0,2),(2,2) repeated 30 times have per-column sum of
# squared deviations 120, so total variance = 2 * 120 / 119 * scale^2).
TASKS = {
    "alpha": dict(ft_acc=0.9, ratio=0.2, conf=(0.9, 0.8, 0.7, 0.4), kept=(1, 0, 0, 1), scale=1),
    "beta": dict(ft_acc=0.6, ratio=0.5, conf=(0.6, 0.6, 0.6, 0.6), kept=(0, 0, 0, 0), scale=2),
    "gamma": dict(ft_acc=0.8, ratio=0.1, conf=(0.95, 0.95, 0.85, 0.85), kept=(0, 0, 1, 1),
                  scale=3),
}  # fmt: skip


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _results(task, ft_acc, ratio, *, forget_task=None, complete=True):
    acc = {"pretrained": 0.55, "finetuned": ft_acc, "forgotten": 0.5}
    return {"task": task, "forget_task": forget_task or task, "eval_task": task,
            "forget_mode": "random", "forget_ratio": ratio, "forget_gap": 0.0,
            "accuracy": {p: {"train": a, "validation": a, "test": a} for p, a in acc.items()},
            "complete": complete}  # fmt: skip


def _predictions(task, conf, correct):
    return "\n".join(json.dumps({
        "id": f"{task}/train/{i}", "prompt": "Q:", "choices": [" a", " b"], "gold": 0,
        "loglik": [-1.0, -2.0], "n_tokens": [1, 1], "pred": 0 if ok else 1,
        "correct": bool(ok), "confidence": float(c)}) for i, (c, ok) in enumerate(
        zip(conf, correct, strict=True))) + "\n"  # fmt: skip


def _histories(n_never_forgotten, n_never_learned):
    """Forget/relearn train confidences with forget time f in {1,2,3} and learn time 4 - f."""
    f_time = np.arange(N) % 3 + 1
    forget = np.where(np.arange(4)[:, None] < f_time, 0.9, 0.3)
    relearn = np.where(np.arange(5)[:, None] < 4 - f_time, 0.3, 0.9)
    forget[:, :n_never_forgotten] = 0.9
    relearn[:, N - n_never_learned :] = 0.3
    return forget, relearn


def _activations(rng, task, scale, separable):
    tree = {"layer": np.int32(-5)}
    for split, n in (("train", N), ("validation", N_EVAL), ("test", N_EVAL)):
        gold = rng.integers(0, 2, n).astype(np.int32)
        answer = rng.normal(size=(n, 2, D))
        if separable:
            answer[np.arange(n), gold, 0] += 8.0
        corners = np.array([[0, 0], [2, 0], [0, 2], [2, 2]], dtype=float)
        prompt = rng.normal(size=(n, D))
        if split == "train":
            prompt[:, :2] = scale * np.tile(corners, (N // 4, 1))
            prompt[:, 2:] = 0.0
        tree[f"{task}.{split}"] = {
            "prompt_last": prompt.astype(np.float32),
            "answer_last": answer.astype(np.float32),
            "gold": gold,
        }
    return tree


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(0)
    runs = []
    for task, spec in TASKS.items():
        run = root / f"ft-{task}"
        runs.append(run)
        _write_json(run / "results.json", _results(task, spec["ft_acc"], spec["ratio"]))
        conf = np.repeat(spec["conf"], N // 4)
        kept = np.repeat(spec["kept"], N // 4).astype(bool)
        for phase, correct in (("finetuned", conf > 0.5), ("forgotten", kept)):
            path = run / "predictions" / phase / f"{task}.train.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_predictions(task, conf, correct))
        for phase in probes.PHASES:
            tree = _activations(rng, task, spec["scale"], separable=phase != "pretrained")
            save_activations(run / "activations" / phase, tree)
        # alpha: 105 qualifying (plotted); beta: exactly 100 (not plotted); gamma: no relearn.
        if task != "gamma":
            forget, relearn = _histories(*{"alpha": (10, 5), "beta": (20, 0)}[task])
            ids = np.array([f"{task}/train/{i}" for i in range(N)])
            epochs = run / "predictions" / "epochs"
            epochs.mkdir(parents=True)
            np.savez(
                epochs / "forget.npz",
                epoch=np.arange(4),
                train_confidence=forget,
                train_correct=forget > 0.5,
                train_ids=ids,
            )
            # alpha's relearn history lists the examples in reverse: matched by id.
            order = slice(None, None, -1) if task == "alpha" else slice(None)
            np.savez(
                epochs / "relearn.npz",
                epoch=np.arange(5),
                train_confidence=relearn[:, order],
                train_correct=relearn[:, order] > 0.5,
                train_ids=ids[order],
            )
    # Skipped: a cross-task cell and an unfinished run.
    _write_json(
        root / "forget-alpha-on-beta" / "results.json",
        _results("beta", 0.6, 0.9, forget_task="alpha"),
    )
    _write_json(root / "ft-delta" / "results.json", _results("delta", 0.7, 0.3, complete=False))
    return runs + [root / "forget-alpha-on-beta", root / "ft-delta"]


def test_predictor_table_matches_hand_values(sweep):
    rows = predictors.predictor_table(sweep)
    assert [r["task"] for r in rows] == ["alpha", "beta", "gamma"]
    by = {r["task"]: r for r in rows}
    # mean of 4 equal groups: (0.9+0.8+0.7+0.4)/4, 0.6, (0.95+0.95+0.85+0.85)/4
    for task, conf in (("alpha", 0.7), ("beta", 0.6), ("gamma", 0.9)):
        assert by[task]["confidence"] == pytest.approx(conf)
        assert by[task]["total_variance"] == pytest.approx(
            240 / 119 * TASKS[task]["scale"] ** 2, rel=1e-6
        )
        assert by[task]["finetuned_acc"] == TASKS[task]["ft_acc"]
        assert by[task]["forget_ratio"] == TASKS[task]["ratio"]
        assert (by[task]["n_train"], by[task]["layer"]) == (N, -5)


def test_predictor_correlations_match_hand_values(sweep):
    corr = {
        c["predictor"]: c
        for c in predictors.predictor_correlations(predictors.predictor_table(sweep))
    }
    # forget ratio (0.2, 0.5, 0.1) has ranks (2, 3, 1). finetuned acc (0.9, 0.6, 0.8) -> ranks
    # (3, 1, 2), rho = 1 - 6*6/24 = -0.5 and p = 2/3 (1-dof t test); confidence (0.7, 0.6, 0.9)
    # -> (2, 1, 3), rho = -1, p = 0; variance increasing -> (1, 2, 3), rho = -0.5.
    assert corr["finetuned_acc"]["spearman_r"] == pytest.approx(-0.5)
    assert corr["finetuned_acc"]["spearman_p"] == pytest.approx(2 / 3)
    assert corr["confidence"]["spearman_r"] == pytest.approx(-1.0)
    assert corr["confidence"]["spearman_p"] == pytest.approx(0.0, abs=1e-12)
    assert corr["total_variance"]["spearman_r"] == pytest.approx(-0.5)
    # Pearson for finetuned acc by hand: deviations (4, -5, 1)/30 and (-2, 7, -5)/30:
    # r = (-8 - 35 - 5) / sqrt(42 * 78) = -48 / sqrt(3276).
    assert corr["finetuned_acc"]["pearson_r"] == pytest.approx(-48 / math.sqrt(3276))
    assert corr["finetuned_acc"]["n"] == 3


def test_example_level_matches_hand_values(sweep):
    rows = {r["task"]: r for r in predictors.example_level(sweep, "train")}
    assert sorted(rows) == ["alpha", "beta", "gamma"]
    # alpha: the 0.4 group was never right (excluded); of 90, groups 0.8 and 0.7 are forgotten.
    # flag deviations (-2/3 x30, 1/3 x60), confidence deviations (0.1, 0, -0.1) x30:
    # r = (30 * (-2/3 * 0.1) + 30 * (1/3 * -0.1)) / sqrt(20 * 0.6) = -3 / sqrt(12) = -sqrt(3)/2,
    # and the same on ranks (tied ranks keep the two-group / three-group structure).
    a = rows["alpha"]
    assert (a["n"], a["n_forgotten"]) == (90, 60)
    assert a["pointbiserial_r"] == pytest.approx(-math.sqrt(3) / 2)
    assert a["spearman_r"] == pytest.approx(-math.sqrt(3) / 2)
    # beta: everything forgotten -> constant indicator -> undefined.
    assert (rows["beta"]["n"], rows["beta"]["n_forgotten"]) == (N, N)
    assert math.isnan(rows["beta"]["pointbiserial_r"]) and math.isnan(rows["beta"]["spearman_p"])
    # gamma: exactly the confident half is forgotten.
    assert rows["gamma"]["pointbiserial_r"] == pytest.approx(1.0)
    assert rows["gamma"]["spearman_r"] == pytest.approx(1.0)


def test_order_table(sweep):
    rows = {r["task"]: r for r in orders.order_table(sweep)}
    assert sorted(rows) == ["alpha", "beta"]  # gamma has no relearn history
    a, b = rows["alpha"], rows["beta"]
    assert (a["n_never_forgotten"], a["n_never_relearned"], a["n_qualifying"]) == (10, 5, 105)
    assert (a["n_not_learned_by_finetuning"], a["relearn_cap_epochs"]) == (0, 4)
    assert a["plotted"] is True
    # learn time = 4 - forget time for every example (despite the reversed relearn order).
    assert a["spearman_r"] == pytest.approx(-1.0)
    assert (b["n_qualifying"], b["plotted"]) == (100, False)  # "no more than 100": not plotted
    assert b["spearman_r"] == pytest.approx(-1.0)


def test_probe_table(sweep):
    rows = probes.probe_table(sweep)
    assert [(r["task"], r["phase"]) for r in rows] == [
        (t, p) for t in ("alpha", "beta", "gamma") for p in probes.PHASES
    ]
    for r in rows:
        assert (
            r["model_acc"]
            == _results(r["task"], TASKS[r["task"]]["ft_acc"], 0)["accuracy"][r["phase"]]["test"]
        )
        assert r["C"] in probes.CS and (r["n_train"], r["n_test"], r["layer"]) == (N, N_EVAL, -5)
        if r["phase"] == "pretrained":  # pure-noise features: chance (60 test examples)
            assert 0.25 <= r["probe_acc_paired"] <= 0.75
        else:
            assert r["probe_acc_paired"] > 0.95 and r["probe_acc_samples"] > 0.95


def test_plots_are_nonempty_pngs(sweep, tmp_path):
    rows = predictors.predictor_table(sweep)
    paths = [
        predictors.plot_predictors(rows, predictors.predictor_correlations(rows),
                                   tmp_path / "fig4_1_predictors.png"),
        orders.plot_orders(sweep, tmp_path / "fig5_1_orders.png"),
        orders.plot_orders(sweep, tmp_path / "fig5_1_none.png", min_examples=1000),
        probes.plot_probes(probes.probe_table(sweep), tmp_path / "fig6_1_probes.png"),
    ]  # fmt: skip
    for path in paths:
        data = Path(path).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000, path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_readers_report_the_bad_path(tmp_path):
    with pytest.raises(rundir.RunDirError) as e:
        rundir.read_results(tmp_path)
    assert isinstance(e.value, ValueError) and e.value.path == tmp_path / "results.json"
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(rundir.RunDirError, match="not valid JSON"):
        rundir.read_results(tmp_path)
    pred = tmp_path / "predictions" / "finetuned" / "t.train.jsonl"
    pred.parent.mkdir(parents=True)
    pred.write_text('{"id": "t/train/0", "gold": 0, "pred": 0, "correct": true}\n')
    with pytest.raises(rundir.RunDirError, match=r"line 1 lacks \['confidence'\]") as e:
        rundir.read_predictions(tmp_path, "finetuned", "t", "train")
    assert e.value.path == pred
    with pytest.raises(rundir.RunDirError, match="missing"):
        rundir.read_predictions(tmp_path, "forgotten", "t", "train")
    epochs = tmp_path / "predictions" / "epochs"
    epochs.mkdir()
    np.savez(
        epochs / "forget.npz",
        epoch=np.arange(3),
        train_confidence=np.zeros((2, 4)),
        train_correct=np.zeros((2, 4), bool),
        train_ids=np.array(list("abcd")),
    )
    with pytest.raises(rundir.RunDirError, match="shapes"):
        rundir.read_epochs(tmp_path, "forget")
    (epochs / "relearn.npz").write_bytes(b"garbage")
    with pytest.raises(rundir.RunDirError, match="unreadable"):
        rundir.read_epochs(tmp_path, "relearn")
    with pytest.raises(rundir.RunDirError, match="missing"):
        rundir.read_activations(tmp_path, "finetuned")


def test_single_task_runs_selection(sweep, tmp_path):
    twin = tmp_path / "ft-alpha-n100"
    _write_json(twin / "results.json", _results("alpha", 0.9, 0.2))
    with pytest.raises(ValueError, match="two single-task runs for 'alpha'"):
        rundir.single_task_runs([*sweep, twin])
    (tmp_path / "not-started").mkdir()
    picked = rundir.single_task_runs([tmp_path / "not-started", *sweep])
    assert [results["task"] for _, results in picked] == ["alpha", "beta", "gamma"]


def test_write_csv_is_atomic_and_keeps_all_columns(tmp_path):
    rows = [{"task": "a", "r": 0.5}, {"task": "b", "n": 3, "r": math.nan}]
    path = rundir.write_csv(rows, tmp_path / "tables" / "t.csv")
    with open(path, newline="") as f:
        got = list(csv.DictReader(f))
    assert got == [{"task": "a", "r": "0.5", "n": ""}, {"task": "b", "r": "nan", "n": "3"}]
    assert [p.name for p in path.parent.iterdir()] == ["t.csv"]  # no temp file left


def test_compact_npz_activations_give_the_same_analyses(sweep, tmp_path):
    """The compact float16 .npz copy a study commits (train prompt_last only) stands in for the
    Orbax activations: same tables, up to float16 rounding of the total variance."""
    import shutil

    runs = []
    for run in sweep:
        dst = tmp_path / run.name
        shutil.copytree(run, dst)
        runs.append(dst)
        for phase in probes.PHASES:
            if (dst / "activations" / phase).is_dir():
                tree = rundir.read_activations(dst, phase)
                rundir.write_activations_npz(tree, dst / "activations" / f"{phase}.npz",
                                             keep={"prompt_last": ("train",)})
                shutil.rmtree(dst / "activations" / phase)
                assert rundir.has_activations(dst, phase)
    compact = rundir.read_activations(runs[0], "finetuned")
    assert compact["layer"] == -5 and "prompt_last" not in compact["alpha.test"]
    assert compact["alpha.train"]["answer_last"].dtype == np.float16
    original = rundir.read_activations(sweep[0], "finetuned")["alpha.train"]["answer_last"]
    np.testing.assert_array_equal(compact["alpha.train"]["answer_last"],
                                  original.astype(np.float16))
    with pytest.raises(rundir.RunDirError, match="lacks prompt_last"):
        rundir.split_activations(compact, "alpha", "test", "x")
    assert probes.probe_table(runs) == probes.probe_table(sweep)
    for a, b in zip(predictors.predictor_table(runs), predictors.predictor_table(sweep),
                    strict=True):
        assert a["total_variance"] == pytest.approx(b["total_variance"], rel=1e-3)
        assert {k: v for k, v in a.items() if k != "total_variance"} == \
            {k: v for k, v in b.items() if k != "total_variance"}


def test_compact_npz_refuses_values_beyond_float16(tmp_path):
    tree = {"layer": np.int32(-5), "t.train": {"prompt_last": np.full((2, 3), 7e4, np.float32),
                                              "answer_last": np.zeros((2, 2, 3), np.float32),
                                              "gold": np.zeros(2, np.int32)}}
    with pytest.raises(ValueError, match="float16 range"):
        rundir.write_activations_npz(tree, tmp_path / "a.npz")
    assert not list(tmp_path.iterdir())


def test_gzipped_predictions_and_a_moved_init_from_are_read(tmp_path):
    """A study's committed copy: predictions as .jsonl.gz, init_from still naming the old root."""
    import gzip

    from forget_jax.analysis import stats

    line = {"id": "t/test/0", "gold": 1, "pred": 1, "correct": True, "confidence": 0.8}
    ft, fo = tmp_path / "runs" / "ft-t", tmp_path / "runs" / "forget-t-on-t"
    path = ft / "predictions" / "finetuned" / "t.test.jsonl.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress((json.dumps(line) + "\n").encode(), mtime=0))
    _write_json(fo / "results.json", {"init_from": "/gone/old_root/runs/ft-t"})
    assert rundir.prediction_file(ft, "finetuned", "t.test") == path
    assert rundir.read_predictions(ft, "finetuned", "t", "test") == [line]
    assert stats.read_correct(path) == {"t/test/0": True}
    assert rundir.init_from(fo, json.loads((fo / "results.json").read_text())) == str(ft)
    assert rundir.prediction_file(ft, "forgotten", "t.test") is None
