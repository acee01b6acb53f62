"""Sweep runner: cell expansion, dependency order, commands, skip/resume (fake run_fn)."""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path

import pytest
from absl import flags
from ml_collections import config_flags

from forget_jax import resume, sweep

TASKS = ["copa", "cb", "rte"]
FORGET_GET_CONFIG = sweep.load_forget_get_config()  # also puts the repo's configs/ on sys.path
sweep_configs = importlib.import_module("configs.sweep")


def sweep_config(**kw):
    config = sweep_configs.get_config(f"tasks={'+'.join(TASKS)}")
    with config.unlocked():
        for k, v in kw.items():
            config[k] = v
    return config


class FakeRun:
    """Stands in for forget_jax.run.run: writes a complete results.json and counts calls.

    ``die_at``: the call number (1-based) at which it writes a partial workdir and then raises
    ``exc``, like a job killed mid-cell.
    """

    def __init__(self, die_at: int | None = None, exc: BaseException | None = None,
                 fail: set[str] = frozenset()):
        self.calls: list[str] = []
        self.resumed: list[str] = []
        self.die_at, self.exc, self.fail = die_at, exc, set(fail)

    def __call__(self, config, workdir: str) -> dict:
        wd = Path(workdir)
        self.calls.append(wd.name)
        if config.init_from:  # dependency order: the fine-tuned run must already be complete
            res = json.loads((Path(config.init_from) / "results.json").read_text())
            assert res["complete"] is True and res["task"] == config.task
        if (wd / "checkpoints" / "marker").exists():
            self.resumed.append(wd.name)
        (wd / "checkpoints").mkdir(parents=True, exist_ok=True)
        (wd / "checkpoints" / "marker").write_text("step 1")
        if len(self.calls) == self.die_at:
            raise self.exc
        if wd.name in self.fail:
            raise RuntimeError(f"boom in {wd.name}")
        results = {"task": config.task, "forget_task": config.forget_task or config.task,
                   "eval_task": config.task, "forget_mode": config.forget_mode,
                   "accuracy": {"finetuned": {"test": 0.8}}, "complete": True}
        (wd / "results.json").write_text(json.dumps(results))
        return results


@pytest.mark.parametrize("experiment,expected", [
    ("single", ["ft-copa", "ft-cb", "ft-rte",
                "forget-copa-on-copa", "forget-cb-on-cb", "forget-rte-on-rte"]),
    ("cross_task", ["ft-copa", "ft-cb", "ft-rte"]
     + [f"forget-{a}-on-{b}" for a in TASKS for b in TASKS]),
    ("flipped", ["ft-copa", "ft-cb", "ft-rte"]
     + [f"flip-{a}-on-{b}" for a in TASKS for b in TASKS]),
    ("cross_task_fixed", ["ft-copa", "ft-cb", "ft-rte"]
     + [f"fixed-{a}-on-{b}" for a in TASKS for b in TASKS]),
    ("size", [f"ft-{t}" for t in TASKS]
     + [f"forget-{t}-n100" for t in TASKS] + [f"forget-{t}-on-{t}" for t in TASKS]),
])
def test_expand_names_and_dependency_order(tmp_path, experiment, expected):
    cells = sweep.expand(experiment, "+".join(TASKS), tmp_path)
    names = [c.name for c in cells]
    assert sorted(names) == sorted(expected) and len(set(names)) == len(names)
    pos = {n: i for i, n in enumerate(names)}
    for c in cells:
        assert all(pos[d] < pos[c.name] for d in c.deps), c
        if c.deps:
            assert c.overrides["init_from"] == str(tmp_path / "runs" / c.deps[0])
            assert c.overrides["stop_after"] == "forget"
        else:
            assert c.overrides["stop_after"] == "finetune" and c.name.startswith("ft-")


def test_cross_task_cell_overrides(tmp_path):
    cells = {c.name: c for c in sweep.expand("cross_task+flipped", ["copa", "cb"], tmp_path)}
    assert dict(cells["ft-cb"].overrides) == {"task": "cb", "stop_after": "finetune"}
    assert dict(cells["forget-copa-on-cb"].overrides) == {
        "task": "cb", "forget_task": "copa", "forget_mode": "random",
        "init_from": str(tmp_path / "runs" / "ft-cb"), "stop_after": "forget"}
    assert cells["flip-copa-on-cb"].overrides["forget_mode"] == "flipped"
    assert cells["flip-copa-on-cb"].deps == ("ft-cb",)


def test_analyses_switch_only_touches_the_diagonal(tmp_path):
    cells = {c.name: dict(c.overrides) for c in
             sweep.expand("cross_task+size", ["copa", "cb"], tmp_path, analyses=True)}
    assert cells["ft-cb"] == {"task": "cb", "stop_after": "finetune", "activations.enabled": True}
    assert cells["forget-cb-on-cb"]["relearn.enabled"] is True
    assert cells["forget-cb-on-cb"]["activations.enabled"] is True
    for name in ("forget-copa-on-cb", "forget-cb-n100"):
        assert "activations.enabled" not in cells[name] and "relearn.enabled" not in cells[name]
    cfg = sweep.cell_config(sweep.Cell("forget-cb-on-cb", cells["forget-cb-on-cb"]),
                            FORGET_GET_CONFIG)
    assert cfg.activations.enabled and cfg.relearn.enabled and cfg.stop_after == "forget"


def test_combined_experiments_share_fine_tuning_cells(tmp_path):
    cells = sweep.expand("cross_task+size+flipped+single", TASKS, tmp_path)
    names = [c.name for c in cells]
    n = len(TASKS)
    assert len(names) == len(set(names)) == n + n * n + n + n * n
    assert sum(name.startswith("ft-") for name in names) == n  # size reuses ft-<t>


def test_expand_rejects_bad_input(tmp_path):
    with pytest.raises(sweep.SweepError, match="unknown experiment"):
        sweep.expand("nope", TASKS, tmp_path)
    with pytest.raises(sweep.SweepError, match="may not set"):
        sweep.expand("single", TASKS, tmp_path, common={"task": "cb"})
    with pytest.raises(sweep.SweepError, match=r"unknown task\(s\) \['copaa'\]"):
        sweep.expand("cross_task", "copaa+cb", tmp_path)


def test_cell_config_uses_the_real_single_run_config(tmp_path):
    config = sweep_config(runlocal=True, base="forget.lr=0.01;relearn.enabled=True",
                          experiment="cross_task+size", data_dir="/data")
    cells = {c.name: c for c in sweep.cells_from_config(config, tmp_path)}
    cfg = sweep.cell_config(cells["forget-copa-on-cb"], FORGET_GET_CONFIG)
    assert (cfg.task, cfg.forget_task, cfg.stop_after) == ("cb", "copa", "forget")
    assert cfg.init_from == str(tmp_path / "runs" / "ft-cb")
    assert cfg.runlocal and cfg.n_train == 60 and cfg.finetune.max_epochs == 2  # runlocal budget
    assert cfg.forget.lr == 0.01 and cfg.relearn.enabled and cfg.data_dir == "/data"
    big = sweep_config(runlocal=True, experiment="size", n_train=45, n_small=30)
    cells = {c.name: c for c in sweep.cells_from_config(big, tmp_path)}
    assert sweep.cell_config(cells["ft-rte"], FORGET_GET_CONFIG).n_train == 45
    assert sweep.cell_config(cells["forget-rte-on-rte"], FORGET_GET_CONFIG).n_train == 45


def test_every_arg_key_is_a_forget_config_arg():
    arg = ",".join(f"{k}={v}" for k, v in zip(
        sweep.ARG_KEYS, ["cb", "copa", "flipped", "True", "7", "3", "gpt2"], strict=True))
    cfg = FORGET_GET_CONFIG(arg)
    assert (cfg.task, cfg.forget_task, cfg.forget_mode, cfg.seed, cfg.model) == (
        "cb", "copa", "flipped", 3, "gpt2")


def test_apply_overrides_rejects_typos_and_wrong_types():
    cfg = FORGET_GET_CONFIG(None)
    sweep.apply_overrides(cfg, {"finetune.batch_size": 8, "eval_tasks": "cb+rte"})
    assert cfg.finetune.batch_size == 8 and cfg.eval_tasks == "cb+rte"
    with pytest.raises(KeyError, match="finetune.btach_size"):
        sweep.apply_overrides(cfg, {"finetune.btach_size": 8})
    with pytest.raises(KeyError, match="nothere.x"):
        sweep.apply_overrides(cfg, {"nothere.x": 1})
    with pytest.raises(TypeError, match="n_train"):
        sweep.apply_overrides(cfg, {"n_train": "many"})
    with pytest.raises(KeyError, match="task.c"):  # a leaf is not a parent ("c" in "arc_easy")
        sweep.apply_overrides(cfg, {"task.c": 1})


def test_bad_base_override_fails_before_any_cell_runs(tmp_path):
    fake = FakeRun()
    with pytest.raises(sweep.SweepError, match="forget.lrr"):
        sweep.main(sweep_config(base="forget.lrr=0.1"), str(tmp_path), run_fn=fake,
                   get_config=FORGET_GET_CONFIG)
    assert fake.calls == [] and not (tmp_path / "sweep.json").exists()


def _parse_main_argv(argv: list[str]):
    """Parses a `python main.py ...` line the way main.py does (absl + config_flags)."""
    argv = ["main.py", *argv]
    fv = flags.FlagValues()
    # config_flags finds `--config.x` overrides in sys.argv unless given the argv itself.
    config_flags.DEFINE_config_file("config", flag_values=fv, lock_config=True, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "", flag_values=fv)
    fv(argv)
    return fv.config, fv.workdir


def test_print_commands_are_runnable_and_reproduce_each_cell(tmp_path, monkeypatch):
    monkeypatch.chdir(sweep.REPO)  # commands are relative to the repo root, like main.py
    config = sweep_config(mode="print_commands", experiment="cross_task+size", runlocal=True,
                          data_dir="/data dir", base="forget.lr=0.01")
    lines: list[str] = []
    sweep.main(config, str(tmp_path), out=lines.append)
    cells = sweep.cells_from_config(config, tmp_path)
    assert len(lines) == len(cells) == 3 + 9 + 3
    for line, cell in zip(lines, cells, strict=True):
        argv = shlex.split(line)
        assert argv[:2] == ["python", "main.py"] and "\n" not in line
        parsed, workdir = _parse_main_argv(argv[2:])
        assert workdir == str(tmp_path / "runs" / cell.name)
        assert parsed.to_dict() == sweep.cell_config(cell, FORGET_GET_CONFIG).to_dict()
    assert not (tmp_path / "sweep.json").exists()  # printing has no side effects


def test_print_cells_and_sweep_command_round_trip(tmp_path, monkeypatch):
    monkeypatch.chdir(sweep.REPO)
    config = sweep_config(mode="print_cells", stage=1, n_small=50, experiment="size")
    lines: list[str] = []
    sweep.main(config, str(tmp_path), out=lines.append)
    assert [ln.split("\t")[:2] for ln in lines] == [
        [str(i), c.name] for i, c in enumerate(sweep.cells_from_config(config, tmp_path))]
    assert all(ln.endswith("\tstage=1\tpending") for ln in lines) and len(lines) == 6
    assert "forget-cb-n50" in "".join(lines)
    parsed, workdir = _parse_main_argv(shlex.split(sweep.sweep_command(config, tmp_path))[2:])
    assert parsed.to_dict() == {**config.to_dict(), "mode": "run"}
    assert workdir == str(tmp_path)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(137)])
def test_killed_sweep_resumes_without_redoing_done_cells(tmp_path, exc):
    config = sweep_config(experiment="cross_task")
    cells = [c.name for c in sweep.cells_from_config(config, tmp_path)]
    killed = FakeRun(die_at=5, exc=exc)
    with pytest.raises(type(exc)):
        sweep.main(config, str(tmp_path), run_fn=killed, get_config=FORGET_GET_CONFIG)
    assert killed.calls == cells[:5]
    index = json.loads((tmp_path / "sweep.json").read_text())
    status = {e["name"]: e["status"] for e in index["cells"]}
    assert [status[n] for n in cells[:4]] == ["complete"] * 4
    assert status[cells[4]] == "running" and set(status[n] for n in cells[5:]) == {"pending"}

    rerun = FakeRun()
    sweep.main(config, str(tmp_path), run_fn=rerun, get_config=FORGET_GET_CONFIG)
    assert rerun.calls == cells[4:]  # the 4 done cells are not run again
    assert rerun.resumed == [cells[4]]  # the killed cell reran on its own workdir
    index = json.loads((tmp_path / "sweep.json").read_text())
    assert {e["status"] for e in index["cells"]} == {"complete"}
    assert index["name"] == "cross_task" and len(index["commands"]) == 1
    assert all(e["workdir"] == str(tmp_path / "runs" / e["name"]) for e in index["cells"])

    third = FakeRun()
    sweep.main(config, str(tmp_path), run_fn=third, get_config=FORGET_GET_CONFIG)
    assert third.calls == []


def test_failed_cell_blocks_its_dependents_and_is_retried(tmp_path):
    config = sweep_config(experiment="cross_task")
    failing = FakeRun(fail={"ft-cb"})
    with pytest.raises(sweep.SweepError, match="not complete"):
        sweep.main(config, str(tmp_path), run_fn=failing, get_config=FORGET_GET_CONFIG)
    assert not any(c.endswith("-on-cb") for c in failing.calls)
    status = {e["name"]: e["status"] for e in
              json.loads((tmp_path / "sweep.json").read_text())["cells"]}
    assert status["ft-cb"] == "failed" and status["forget-rte-on-cb"] == "blocked"
    assert status["forget-cb-on-rte"] == "complete"
    retry = FakeRun()
    sweep.main(config, str(tmp_path), run_fn=retry, get_config=FORGET_GET_CONFIG)
    assert sorted(retry.calls) == sorted(["ft-cb"] + [f"forget-{a}-on-cb" for a in TASKS])


def test_cell_another_process_runs_is_skipped_not_failed(tmp_path):
    """Two sweeps on one root: the second skips the cell whose workdir lock the first holds
    (status stays running, not failed), blocks its dependents, runs the rest."""
    config = sweep_config(experiment="cross_task")
    busy = sweep.cell_workdir(tmp_path, "ft-cb")
    busy.mkdir(parents=True)
    second = FakeRun()
    with resume.workdir_lock(busy, main=True), \
            pytest.raises(sweep.SweepError, match="'ft-cb': 'running'"):
        sweep.main(config, str(tmp_path), run_fn=second, get_config=FORGET_GET_CONFIG)
    assert "ft-cb" not in second.calls and not any(c.endswith("-on-cb") for c in second.calls)
    assert "forget-cb-on-rte" in second.calls
    status = {e["name"]: e["status"] for e in
              json.loads((tmp_path / "sweep.json").read_text())["cells"]}
    assert status["ft-cb"] == "running" and status["forget-rte-on-cb"] == "blocked"
    assert resume.lock_holder(busy) is None  # released: the next sweep runs it
    retry = FakeRun()
    sweep.main(config, str(tmp_path), run_fn=retry, get_config=FORGET_GET_CONFIG)
    assert sorted(retry.calls) == sorted(["ft-cb"] + [f"forget-{a}-on-cb" for a in TASKS])


def test_run_cell_checks_dependencies_and_runs_one_cell(tmp_path):
    fake = FakeRun()
    with pytest.raises(sweep.SweepError, match=r"needs \['ft-cb'\]"):
        sweep.main(sweep_config(mode="run_cell", cell="forget-copa-on-cb"), str(tmp_path),
                   run_fn=fake, get_config=FORGET_GET_CONFIG)
    assert fake.calls == []
    stage0 = sweep_config(mode="run_cell", stage=0, cell="1")  # array task 1 of stage 0
    sweep.main(stage0, str(tmp_path), run_fn=fake, get_config=FORGET_GET_CONFIG)
    assert fake.calls == ["ft-cb"]
    sweep.main(sweep_config(mode="run_cell", cell="forget-copa-on-cb"), str(tmp_path),
               run_fn=fake, get_config=FORGET_GET_CONFIG)
    assert fake.calls == ["ft-cb", "forget-copa-on-cb"]
    status = {e["name"]: e["status"] for e in
              json.loads((tmp_path / "sweep.json").read_text())["cells"]}
    assert status["forget-copa-on-cb"] == "complete" and status["ft-copa"] == "pending"
    with pytest.raises(sweep.SweepError, match="no cell"):
        sweep.main(sweep_config(mode="run_cell", cell="99"), str(tmp_path), run_fn=fake,
                   get_config=FORGET_GET_CONFIG)


def test_sweep_config_defaults_and_lock(shared_data):
    config = sweep_configs.get_config()
    assert config.job == "sweep" and config.experiment == "cross_task" and config.mode == "run"
    assert all((shared_data / t / "train.jsonl").is_file()
               for t in sweep.parse_tasks(config.tasks))  # the default subset has local data
    with pytest.raises(AttributeError):
        config.experimnt = "single"
    assert sweep.parse_tasks("all") == list(sweep.PAPER_TASKS)
    assert sweep.parse_overrides("a.b=1e-3, c=True;d=x") == {"a.b": 1e-3, "c": True, "d": "x"}


@pytest.mark.parametrize("name", ["sweep", "report"])
def test_every_documented_config_arg_loads(name):
    module = importlib.import_module(f"configs.{name}")
    args = re.findall(rf"configs/{name}\.py(?::(\S+))?", module.__doc__)
    assert len(args) >= 3
    for arg in args:
        config = module.get_config(arg or None)
        assert config.job == name
        if name == "sweep":  # and the cells expand
            assert sweep.cells_from_config(config, "/tmp/root")


def _index_writer(root: str, k: int, n: int) -> None:
    for i in range(n):
        cell = sweep.Cell(f"cell-{k}-{i}", {"task": "copa"})
        sweep.write_index(root, f"w{k}", [cell], seconds={cell.name: float(i)},
                          command=f"writer {k}")


def test_concurrent_index_writers_lose_nothing(tmp_path):
    """Array tasks rewrite sweep.json at once: every cell, time and command must survive."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_index_writer, args=(str(tmp_path), k, 15)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    index = json.loads((tmp_path / "sweep.json").read_text())
    got = {c["name"]: c.get("seconds") for c in index["cells"]}
    assert got == {f"cell-{k}-{i}": float(i) for k in range(4) for i in range(15)}
    assert sorted(index["commands"]) == [f"writer {k}" for k in range(4)]
    assert set(index["name"].split("+")) == {f"w{k}" for k in range(4)}
