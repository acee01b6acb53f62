"""Issue 13 sweep cells: the fixed-budget cross-task matrix, the paper's `size` reading (forget
on k examples of the full fine-tuned model), seeds, the cross-task start model, bad input;
issue 16's `methods` experiments (one cell per task and forgetting method)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from forget_jax import sweep
from tests.test_sweep import (
    FORGET_GET_CONFIG,
    FakeRun,
    _parse_main_argv,
    sweep_config,
    sweep_configs,
)

PAIRS = ["copa", "cb"]


def _cells(experiment, tasks=PAIRS, **kw):
    return {c.name: c for c in sweep.expand(experiment, tasks, "/r", **kw)}


def test_cross_task_fixed_reuses_the_ft_cells_and_fixes_the_budget():
    cells = _cells("cross_task+cross_task_fixed")
    pairs = [(a, b) for a in PAIRS for b in PAIRS]
    assert sorted(cells) == sorted(["ft-copa", "ft-cb"] + [f"forget-{a}-on-{b}" for a, b in pairs]
                                   + [f"fixed-{a}-on-{b}" for a, b in pairs])
    for a, b in pairs:
        paper, fixed = cells[f"forget-{a}-on-{b}"], cells[f"fixed-{a}-on-{b}"]
        assert fixed.deps == paper.deps == (f"ft-{b}",)
        assert fixed.overrides["init_from"] == f"/r/runs/ft-{b}"
        assert dict(fixed.overrides) == {**paper.overrides, "forget.stop_rule": "fixed"}
        assert "forget.stop_rule" not in paper.overrides  # the paper's stop rule (default)
    cfg = sweep.cell_config(cells["fixed-copa-on-cb"], FORGET_GET_CONFIG)
    assert (cfg.task, cfg.forget_task, cfg.forget.stop_rule) == ("cb", "copa", "fixed")


def test_size_forgets_k_examples_of_the_full_fine_tuned_model(tmp_path):
    config = sweep_config(experiment="size", runlocal=True, n_train=45, n_small=30)
    cells = {c.name: c for c in sweep.cells_from_config(config, tmp_path)}
    t = "rte"
    assert {n for n in cells if n.endswith(f"-{t}") or f"-{t}-" in n} == {
        f"ft-{t}", f"forget-{t}-on-{t}", f"forget-{t}-n30"}  # no separately fine-tuned small cell
    small = cells[f"forget-{t}-n30"]
    assert small.deps == (f"ft-{t}",)
    assert small.overrides["init_from"] == str(tmp_path / "runs" / f"ft-{t}")
    assert small.overrides["forget.n_train"] == 30 and small.overrides["n_train"] == 45
    cfg = sweep.cell_config(small, FORGET_GET_CONFIG)
    assert (cfg.n_train, cfg.forget.n_train, cfg.task, cfg.forget_task) == (45, 30, t, t)
    assert "forget.n_train" not in cells[f"forget-{t}-on-{t}"].overrides  # the full set
    default = {c.name: c for c in sweep.cells_from_config(sweep_config(experiment="size"),
                                                          tmp_path)}
    cfg = sweep.cell_config(default[f"forget-{t}-n100"], FORGET_GET_CONFIG)
    assert (cfg.n_train, cfg.forget.n_train) == (1000, 100)  # paper: 100 of the 1000
    assert cfg.init_from == str(tmp_path / "runs" / f"ft-{t}")
    for local in (sweep_configs.get_config("experiment=size,tasks=rte,runlocal=True"),
                  sweep_config(experiment="size", runlocal=True)):  # the arg or the flag
        assert f"forget-{t}-n20" in {c.name for c in sweep.cells_from_config(local, tmp_path)}
    fake = FakeRun()  # a forget set larger than the train role fails before anything runs
    with pytest.raises(sweep.SweepError, match=r"forget.n_train=100 > n_train=60"):
        sweep.main(sweep_config(experiment="size", runlocal=True, n_small=100), str(tmp_path),
                   run_fn=fake, get_config=FORGET_GET_CONFIG)
    assert fake.calls == [] and not (tmp_path / "sweep.json").exists()


def test_seeds_repeat_every_cell_with_suffixed_names():
    exp = "cross_task+cross_task_fixed+size+flipped"
    plain = _cells(exp)
    seeded = _cells(exp, seeds=[0, 1], analyses=True)
    assert set(seeded) == set(plain) | {f"{n}-s1" for n in plain}
    for name in ("ft-cb-s1", "forget-copa-on-cb-s1", "fixed-copa-on-cb-s1", "forget-cb-n100-s1",
                 "flip-cb-on-cb-s1"):
        assert name in seeded
    for name, c in seeded.items():
        seed = 1 if name.endswith("-s1") else 0
        assert c.overrides["seed"] == seed
        if c.deps:
            (dep,) = c.deps
            assert dep.startswith("ft-") and dep.endswith("-s1") == (seed == 1)
            assert c.overrides["init_from"] == f"/r/runs/{dep}"
            assert seeded[dep].overrides["task"] == c.overrides["task"]
    assert list(_cells("single", seeds=[3])) == [  # suffix for every seed other than 0
        "ft-copa-s3", "ft-cb-s3", "forget-copa-on-copa-s3", "forget-cb-on-cb-s3"]
    for s in ("", "-s1"):  # the analyses follow the diagonal into every seed
        assert seeded[f"ft-cb{s}"].overrides["activations.enabled"] is True
        assert seeded[f"forget-cb-on-cb{s}"].overrides["relearn.enabled"] is True
        for other in (f"fixed-cb-on-cb{s}", f"forget-copa-on-cb{s}", f"forget-cb-n100{s}"):
            assert "relearn.enabled" not in seeded[other].overrides
            assert "activations.enabled" not in seeded[other].overrides


@pytest.mark.parametrize(("text", "seeds"), [("", []), ("0+1+2", [0, 1, 2]), (" 3 ", [3])])
def test_parse_seeds(text, seeds):
    assert sweep.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["0+x", "-1", "1+1", "0++1", "1.5"])
def test_parse_seeds_rejects_bad_seeds(text):
    with pytest.raises(sweep.SweepError, match="seeds="):
        sweep.parse_seeds(text)


def test_base_may_not_set_what_a_cell_sets_but_may_set_the_budget(tmp_path):
    for key in ("forget.stop_rule", "forget.n_train", "init_from"):
        with pytest.raises(sweep.SweepError, match="may not set"):
            sweep.cells_from_config(sweep_config(base=f"{key}=1"), tmp_path)
    with pytest.raises(sweep.SweepError, match="seeds or seed"):
        sweep.cells_from_config(sweep_config(seeds="0+1", seed=2), tmp_path)
    config = sweep_config(experiment="cross_task_fixed", base="forget.max_epochs=7")
    cell = {c.name: c for c in sweep.cells_from_config(config, tmp_path)}["fixed-rte-on-cb"]
    cfg = sweep.cell_config(cell, FORGET_GET_CONFIG)
    assert (cfg.forget.max_epochs, cfg.forget.stop_rule) == (7, "fixed")


def test_cross_task_start_reading():
    assert _cells("cross_task", cross_task_start="eval_task") == _cells("cross_task")
    start_a = _cells("cross_task", cross_task_start="forget_task")
    cell = start_a["forget-copa-on-cb"]  # A = copa, B = cb: starts from A's fine-tune
    assert cell.deps == ("ft-copa",) and cell.overrides["init_from"].endswith("/runs/ft-copa")
    assert (cell.overrides["task"], cell.overrides["forget_task"]) == ("cb", "copa")
    assert start_a["forget-cb-on-cb"] == _cells("cross_task")["forget-cb-on-cb"]  # diagonal
    with pytest.raises(sweep.SweepError, match="unknown cross_task_start"):
        _cells("cross_task", cross_task_start="both")


def test_seeded_sweep_runs_and_records_a_resumable_command(tmp_path, monkeypatch):
    monkeypatch.chdir(sweep.REPO)
    config = sweep_config(experiment="cross_task+cross_task_fixed", seeds="0+1")
    fake = FakeRun()
    sweep.main(config, str(tmp_path), run_fn=fake, get_config=FORGET_GET_CONFIG)
    names = [c.name for c in sweep.cells_from_config(config, tmp_path)]
    assert fake.calls == names and len(names) == 2 * (3 + 2 * 9)
    index = json.loads((tmp_path / "sweep.json").read_text())
    assert {e["status"] for e in index["cells"]} == {"complete"}
    (command,) = index["commands"]
    assert "--config.seeds=0+1" in command
    parsed, workdir = _parse_main_argv(shlex.split(command)[2:])
    assert parsed.to_dict() == config.to_dict() and workdir == str(tmp_path)
    again = FakeRun()
    sweep.main(parsed, workdir, run_fn=again, get_config=FORGET_GET_CONFIG)
    assert again.calls == []  # the recorded command resumes the same root


BAD = [
    ("experiment=cross_task,tasks=copa+cb,seeds=0+x", "seeds="),
    ("experiment=cross_task,tasks=copa+cb,seeds=-1", "seeds="),
    ("experiment=cross_task,tasks=copa+cb,seeds=1+1", "repeats a seed"),
    ("experiment=cross_task,tasks=copa+cb,seeds=1,seed=2", "seeds or seed"),
    ("experiment=sideways,tasks=copa", "unknown experiment"),
    ("experiment=cross_task+nope,tasks=copa", "unknown experiment"),
]


@pytest.mark.parametrize(("arg", "message"), BAD + [
    ("experiment=cross_task,tasks=copa --config.cross_task_start=both",
     "unknown cross_task_start"),
    ("experiment=methods,tasks=copa+cb --config.methods=npo+sideways", "unknown method(s)"),
    ("experiment=methods,tasks=copa --config.methods=rmu", "method rmu needs a retain set"),
])
def test_bad_sweep_input_through_main_one_line_exit_2_nothing_written(tmp_path, arg, message):
    arg, *flags = arg.split(" ")
    root = tmp_path / "root"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    r = subprocess.run([sys.executable, "main.py", f"--config=configs/sweep.py:{arg}", *flags,
                        f"--workdir={root}"], cwd=sweep.REPO, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and message in err[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not (root / "sweep.json").exists() and not (root / "runs").exists()


def test_null_and_flipped_diagonal_cells():
    cells = _cells("null+flipped_diag", null_lr=1e-7)
    assert sorted(cells) == sorted(["ft-copa", "ft-cb", "null-copa", "null-cb", "flip-copa-on-copa",
                                    "flip-cb-on-cb"])
    forget = _cells("single")["forget-cb-on-cb"]
    null = cells["null-cb"]
    assert null.deps == forget.deps == ("ft-cb",)
    assert dict(null.overrides) == {**forget.overrides, "forget.lr": 1e-7,
                                    "forget.stop_rule": "fixed"}
    cfg = sweep.cell_config(null, FORGET_GET_CONFIG)
    assert (cfg.task, cfg.forget_task, cfg.forget.lr, cfg.forget.stop_rule) == (
        "cb", "cb", 1e-7, "fixed")
    assert cells["flip-cb-on-cb"].overrides["forget_mode"] == "flipped"
    # a sweep-wide forget lr (base) does not reach the null cells
    base = _cells("single+null", common={"forget.lr": 1e-3}, null_lr=0.0)
    assert base["forget-cb-on-cb"].overrides["forget.lr"] == 1e-3
    assert base["null-cb"].overrides["forget.lr"] == 0.0


def test_methods_cells_one_per_task_and_method_from_the_shared_ft_cells(tmp_path, monkeypatch):
    cells = _cells("methods+methods_fixed+single", ["copa", "cb", "rte"],
                   methods="random_labels+grad_ascent+npo+rmu")
    ms = ["random_labels", "grad_ascent", "npo", "rmu"]
    tasks = ["copa", "cb", "rte"]
    assert sorted(cells) == sorted([f"ft-{t}" for t in tasks]
                                   + [f"forget-{t}-on-{t}" for t in tasks]
                                   + [f"{p}-{m}-{t}" for p in ("method", "method_fixed")
                                      for m in ms for t in tasks])
    single = cells["forget-cb-on-cb"].overrides
    for m in ms:
        c, f = cells[f"method-{m}-cb"], cells[f"method_fixed-{m}-cb"]
        assert c.deps == f.deps == ("ft-cb",) and c.overrides["init_from"] == "/r/runs/ft-cb"
        assert dict(f.overrides) == {**c.overrides, "forget.stop_rule": "fixed"}
        want = {**{k: v for k, v in single.items() if k not in ("activations.enabled",
                                                                 "relearn.enabled")},
                "forget.method": m, "eval_tasks": "copa+rte"}  # the damage to other tasks
        if m in ("npo", "rmu"):  # retain=others: the sweep's other tasks
            want["forget.retain_tasks"] = "copa+rte"
        assert dict(c.overrides) == want, m
    cfg = sweep.cell_config(cells["method-rmu-cb"], FORGET_GET_CONFIG)
    assert (cfg.task, cfg.forget_task, cfg.forget.method, cfg.forget.retain_tasks,
            cfg.eval_tasks, cfg.forget.stop_rule) == ("cb", "cb", "rmu", "copa+rte",
                                                      "copa+rte", "auto")  # auto = chance
    # an explicit retain set drops the cell's own task; "" gives none to the optional takers
    ex = _cells("methods", ["copa", "cb"], methods="npo+rmu", retain="cb+rte")
    assert ex["method-npo-copa"].overrides["forget.retain_tasks"] == "cb+rte"
    assert ex["method-rmu-cb"].overrides["forget.retain_tasks"] == "rte"
    none = _cells("methods", ["copa", "cb"], methods="npo+simnpo+grad_ascent", retain="")
    assert not any("forget.retain_tasks" in c.overrides for c in none.values())
    base = _cells("methods", ["copa", "cb"], methods="npo", common={"eval_tasks": "rte"})
    assert base["method-npo-cb"].overrides["eval_tasks"] == "rte"  # base's eval_tasks wins
    for kw, message in [
            (dict(methods="npo+sideways"), r"unknown method\(s\) \['sideways'\]"),
            (dict(methods="grad_diff", retain=""), "method grad_diff needs a retain set"),
            (dict(methods="rmu", retain="copa"), "cell method-rmu-copa has none"),
            (dict(methods="npo", common={"forget.method": "rmu"}), "per cell"),
            (dict(methods="npo", retain="nosuch"), "unknown task")]:
        with pytest.raises(sweep.SweepError, match=message):
            _cells("methods", ["copa", "cb"], **kw)
    monkeypatch.chdir(sweep.REPO)  # the runner, and the recorded command resumes the root
    config = sweep_config(experiment="methods_fixed", methods="npo+simnpo", retain="rte",
                          tasks="copa+cb")
    fake = FakeRun()
    sweep.main(config, str(tmp_path), run_fn=fake, get_config=FORGET_GET_CONFIG)
    assert fake.calls == ["ft-copa", "ft-cb", "method_fixed-npo-copa", "method_fixed-npo-cb",
                          "method_fixed-simnpo-copa", "method_fixed-simnpo-cb"]
    (command,) = json.loads((tmp_path / "sweep.json").read_text())["commands"]
    assert "--config.methods=npo+simnpo" in command and "--config.retain=rte" in command
    parsed, _ = _parse_main_argv(shlex.split(command)[2:])
    assert parsed.to_dict() == config.to_dict()


def test_cross_task_runs_any_method_through_base():
    cells = _cells("cross_task", common={"forget.method": "grad_diff",
                                         "forget.retain_tasks": "rte"})
    cfg = sweep.cell_config(cells["forget-copa-on-cb"], FORGET_GET_CONFIG)
    assert (cfg.task, cfg.forget_task, cfg.forget.method, cfg.forget.retain_tasks) == (
        "cb", "copa", "grad_diff", "rte")
    from forget_jax import run

    cfg.init_from = ""  # no ft-cb on disk here; the rest is a valid single run
    run.validate(cfg)
