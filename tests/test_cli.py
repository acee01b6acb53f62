"""The real command line on a tiny local model: eval, fine-tune -> forget, resume after SIGKILL,
and bad input (one clear line, exit 2, no results.json claiming success)."""

import json
import os
import pathlib
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from tests._tiny_model import write_tiny_llama_dir

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_llama_dir(tmp_path_factory.mktemp("tiny") / "model")


def cli(args, workdir, env_extra=None, **kw):
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # one CPU device, as a user's laptop run
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "main.py", *args, f"--workdir={workdir}"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600, **kw)


def forget_args(tiny_dir, shared_data, task="copa"):
    return [f"--config=configs/forget.py:task={task}", f"--config.model={tiny_dir}",
            f"--config.data_dir={shared_data}", "--config.n_train=12", "--config.limit=12",
            "--config.finetune.max_epochs=2", "--config.forget.max_epochs=4",
            "--config.forget.stop_test_acc=0.0", "--config.eval_batch_size=8"]


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_eval_cli_writes_contract_files(tiny_dir, shared_data, tmp_path, precision):
    r = cli(["--config=configs/eval.py:task=rte,limit=10", f"--config.model={tiny_dir}",
             f"--config.data_dir={shared_data}", "--config.splits=validation+test",
             f"--config.precision={precision}"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["complete"] is True and res["task"] == "rte"
    assert "throughput" not in res  # results.json holds no wall-clock figures
    assert set(res["accuracy"]["pretrained"]) == {"validation", "test"}
    rows = [json.loads(x) for x in (tmp_path / "predictions/pretrained/rte.test.jsonl").open()]
    assert len(rows) == 10 == res["n_examples"]["test"]
    assert rows[0]["id"].startswith("rte/validation/")
    assert set(rows[0]) == {"id", "prompt", "choices", "gold", "loglik", "n_tokens", "pred",
                            "correct", "confidence"}
    acc = sum(r["correct"] for r in rows) / len(rows)
    assert acc == pytest.approx(res["accuracy"]["pretrained"]["test"])
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["task"] == "rte" and saved["precision"] == precision


def _outputs(workdir: pathlib.Path) -> dict[str, bytes]:
    files = sorted(workdir.glob("predictions/**/*.jsonl")) + [workdir / "results.json"]
    return {str(f.relative_to(workdir)): f.read_bytes() for f in files}


def _history(workdir):
    drop = {"seconds", "examples_per_s"}
    return [{k: v for k, v in json.loads(x).items() if k not in drop}
            for x in (workdir / "history.jsonl").open()]


@pytest.fixture(scope="module")
def ref_run(tiny_dir, shared_data, tmp_path_factory):
    """One uninterrupted forget run (the reference every interrupted one must reproduce)."""
    ref = tmp_path_factory.mktemp("ref") / "run"
    r = cli(forget_args(tiny_dir, shared_data), ref)
    assert r.returncode == 0, r.stderr[-3000:]
    return ref


def test_reference_run_results_and_file_modes(ref_run):
    res = json.loads((ref_run / "results.json").read_text())
    assert res["complete"] and res["epochs"] == {"finetune": 2, "forget": 4}
    assert {"forget_gap", "forget_ratio_random", "forget_ratio_flipped"} <= set(res) or \
        "forget_ratio_note" in res
    umask = os.umask(0o022)
    os.umask(umask)
    for f in ("results.json", "config.json", "history.jsonl",
              "predictions/forgotten/copa.test.jsonl", "predictions/epochs/forget.npz"):
        assert stat.S_IMODE((ref_run / f).stat().st_mode) == 0o666 & ~umask, f  # not 0600


def test_rerunning_a_complete_run_says_so(ref_run, tiny_dir, shared_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ref_run, run)
    before = _outputs(run)
    r = cli(forget_args(tiny_dir, shared_data), run)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "complete; nothing to do" in r.stderr
    assert "loaded from" not in r.stderr  # no model load, no scoring
    assert _outputs(run) == before


# Run main.py with Orbax's commit (tmp dir -> step dir rename) of one checkpoint replaced by a
# SIGKILL: the process dies inside that save, leaving its *.orbax-checkpoint-tmp* directory.
_KILL_IN_SAVE = """
import os, runpy, signal, sys
from orbax.checkpoint._src.path import atomicity
cls = atomicity.AtomicRenameTemporaryPath
commit, target = cls.finalize, os.environ["KILL_AT"]
async def finalize(self):
    if str(self.get_final()).endswith(target):
        os.kill(os.getpid(), signal.SIGKILL)
    return await commit(self)
cls.finalize = finalize
sys.argv = ["main.py", *sys.argv[1:]]
runpy.run_path("main.py", run_name="__main__")
"""


def kill_in_save(args, run, at):
    """Runs main.py on ``run`` and SIGKILLs it inside the save of checkpoint ``at``
    (e.g. "checkpoints/forget/2"); asserts it died there."""
    env = dict(os.environ, KILL_AT=at)
    env.pop("XLA_FLAGS", None)
    p = subprocess.run([sys.executable, "-c", _KILL_IN_SAVE, *args, f"--workdir={run}"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]


def test_kill_inside_the_finetune_checkpoint_save_resumes(ref_run, tiny_dir, shared_data,
                                                          tmp_path):
    """Epoch 1's best checkpoint commits, then the kill lands in its latest-epoch save: the
    rerun recomputes epoch 1, replaces finetune_best/1 and finishes byte-identically (it used
    to die with StepAlreadyExistsError on every rerun)."""
    args = forget_args(tiny_dir, shared_data)
    run = tmp_path / "run"
    kill_in_save(args, run, "checkpoints/finetune/1")
    ck = run / "checkpoints"
    assert [d.name for d in (ck / "finetune_best").iterdir() if d.name.isdigit()] == ["1"]
    left = [d.name for d in (ck / "finetune").iterdir()]
    assert len(left) == 1 and left[0].startswith("1.orbax-checkpoint-tmp"), left  # stranded
    assert not (run / "results.json").exists() or \
        not json.loads((run / "results.json").read_text())["complete"]

    r = cli(args, run)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert _outputs(run) == _outputs(ref_run)
    assert _history(run) == _history(ref_run)
    assert not any("tmp" in d.name for d in ck.glob("*/*"))


def test_forget_run_resumes_after_sigkill_byte_identically(ref_run, tiny_dir, shared_data,
                                                           tmp_path):
    args = forget_args(tiny_dir, shared_data)
    ref, killed = ref_run, tmp_path / "killed"

    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    proc = subprocess.Popen([sys.executable, "main.py", *args, f"--workdir={killed}"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt_dir = killed / "checkpoints" / "forget"
    deadline = time.time() + 500
    while time.time() < deadline and proc.poll() is None:
        if ckpt_dir.is_dir() and any(p.name.isdigit() for p in ckpt_dir.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before the first forget checkpoint was seen"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = killed / "results.json"
    assert not partial.exists() or not json.loads(partial.read_text())["complete"]
    assert (killed / ".lock").exists()  # the dead run's lock file: no lock held, no block

    r = cli(args, killed)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming forget after epoch" in r.stderr
    assert _outputs(killed) == _outputs(ref)
    assert _history(killed) == _history(ref)


BAD = [
    (["--config=configs/eval.py:task=nosuchtask"], "unknown task 'nosuchtask'"),
    (["--config=configs/forget.py:copa", "--config.forget_mode=sideways"], "forget_mode"),
    (["--config=configs/forget.py:copa", "--config.forget.lr=-1.0"], "forget.lr must be > 0"),
    (["--config=configs/forget.py:copa", "--config.n_train=5000"], "n_train=5000"),
    (["--config=configs/eval.py:copa", "--config.data_dir=/nonexistent/dir"],
     "data_dir '/nonexistent/dir' does not exist or is not a directory (expected <data_dir>/"
     "<task>/<split>.jsonl files; an empty one, --config.data_dir=, loads from the hub)"),
    (["--config=configs/eval.py:copa", "--config.model=no-such-model"], "no-such-model"),
    (["--config=configs/forget.py:copa", "--config.model=/nonexistent/model"],
     "/nonexistent/model"),
    (["--config=configs/sweep.py:experiment=cross_task,tasks=copa+nosuch"], "unknown task(s)"),
    (["--config=configs/sweep.py:experiment=sideways,tasks=copa"], "unknown experiment"),
    (["--config=configs/report.py"], "not a sweep root"),
    (["--config=configs/eval.py:copa", "--config.precision=float8"], "precision must be one of"),
    (["--config=configs/forget.py:copa", "--config.forget.stop_rule=sometimes"],
     "unknown forget.stop_rule 'sometimes'"),
    (["--config=configs/forget.py:copa", "--config.forget.n_train=2000"],
     "forget.n_train must be in [0, n_train=1000]"),
    (["--config=configs/forget.py:copa", "--config.forget.method=sideways"],
     "unknown forget.method 'sideways'"),
    (["--config=configs/forget.py:copa", "--config.forget.method=grad_diff"],
     "forget.method=grad_diff needs a retain set"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_one_line_exit_2(args, message, tmp_path, shared_data):
    if not any(a.startswith("--config.data_dir") for a in args) and "report" not in args[0]:
        args = [*args, f"--config.data_dir={shared_data}"]
    r = cli(args, tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and message in err[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "results.json").exists()


# Rejected while the flags are parsed: nothing is imported beyond absl, nothing is written.
FLAG_ERRORS = [
    (["--config=configs/forget.py:copa", "--config.finetun.lr=1"],
     "error: unknown config field 'finetun'; Did you mean \"finetune\" instead of \"finetun\"?"),
    (["--config=configs/forget.py:copa", "--config.finetune.lrr=1"],
     "error: unknown config field 'lrr'; Did you mean \"lr\" instead of \"lrr\"?"),
    (["--config=configs/forget.py:taks=copa"],
     "error: flag --config=configs/forget.py:taks=copa: unknown config arg 'taks'; known: "
     "['forget_mode', 'forget_task', 'model', 'n_train', 'runlocal', 'seed', 'task']"),
    (["--config=configs/forget.py:task=copa,runlocal=yes"],
     "error: flag --config=configs/forget.py:task=copa,runlocal=yes: config arg runlocal='yes' "
     "is not a bool"),
    (["--config=configs/forget.py:copa", "--config.finetune.lr=abc"],
     "error: flag --config.finetune.lr=abc: could not convert string to float: 'abc'"),
    (["--config=configs/forgett.py"],
     "error: cannot load --config: [Errno 2] No such file or directory: 'configs/forgett.py'"),
]


@pytest.mark.parametrize(("args", "line"), FLAG_ERRORS)
def test_bad_flags_one_line_exit_2(args, line, tmp_path):
    r = cli(args, tmp_path / "run")
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert r.stderr.strip().splitlines() == [line], r.stderr[-2000:]  # that line and no other
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("workdir", "message"), [
    ("a_file", "is a file, not a directory"),
    ("/proc", "cannot write in --workdir /proc: "),  # read-only, for root too
])
def test_unusable_workdir_one_line_exit_2(workdir, message, tmp_path, shared_data, tiny_dir):
    (tmp_path / "a_file").write_text("x")
    wd = workdir if workdir.startswith("/") else tmp_path / workdir
    r = cli(["--config=configs/eval.py:copa", f"--config.data_dir={shared_data}",
             f"--config.model={tiny_dir}"], wd)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and message in err[0] and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "loaded from" not in r.stderr  # refused before the model is loaded
    assert (tmp_path / "a_file").read_text() == "x"


@pytest.mark.parametrize(("content", "message"), [
    ('{"sentence1": "a", "sentence2": "b", "label": 0}\n{not json\n', "train.jsonl:2"),
    ('{"sentence1": "a}', "train.jsonl:1: malformed JSON (Unterminated string starting at "
     "column 15)"),
    ('{"sentence1": "a", "label": 0}\n', "sentence2"),
    ("", "empty"),
])
def test_bad_data_one_line_exit_2(content, message, tmp_path, tiny_dir):
    data = tmp_path / "data" / "rte"
    data.mkdir(parents=True)
    for split in ("train", "validation"):
        (data / f"{split}.jsonl").write_text(content)
    r = cli(["--config=configs/eval.py:rte", f"--config.data_dir={tmp_path / 'data'}",
             f"--config.model={tiny_dir}"], tmp_path / "run")
    assert r.returncode == 2, r.stderr[-2000:]
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and message in err[0], r.stderr[-2000:]
    assert not (tmp_path / "run" / "results.json").exists()


def test_resuming_with_a_different_config_is_refused(tiny_dir, shared_data, tmp_path):
    args = ["--config=configs/eval.py:task=cb,limit=4", f"--config.model={tiny_dir}",
            f"--config.data_dir={shared_data}"]
    assert cli(args, tmp_path).returncode == 0
    r = cli([*args, "--config.limit=5"], tmp_path)
    assert r.returncode == 2
    assert "different config (limit differ)" in r.stderr
    r = cli([*args, "--config.eval_batch_size=4"], tmp_path)  # does not change results
    assert r.returncode == 0, r.stderr[-2000:]


def test_a_second_process_on_the_same_workdir_is_refused_by_the_lock(ref_run, tiny_dir,
                                                                     shared_data, tmp_path):
    """Run A is held (tests/_driver.py FJ_PAUSE) inside its first checkpoint save; B, the same
    command on the same workdir, refuses with one error: line and exit 2 before writing
    anything; A then finishes byte-identical to the reference run."""
    args = forget_args(tiny_dir, shared_data)
    run, pause = tmp_path / "run", tmp_path / "pause"
    pause.mkdir()
    env = dict(os.environ, FJ_PAUSE=str(pause))
    env.pop("XLA_FLAGS", None)
    log = (tmp_path / "a.log").open("w")
    a = subprocess.Popen([sys.executable, "tests/_driver.py", *args, f"--workdir={run}"],
                         cwd=REPO, env=env, stdout=log, stderr=log)
    try:
        deadline = time.time() + 300
        while not (pause / "paused").exists() and a.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert (pause / "paused").exists(), (tmp_path / "a.log").read_text()[-3000:]
        before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
        b = cli(args, run)
        assert b.returncode == 2, b.stderr[-3000:]
        err = [ln for ln in b.stderr.splitlines() if ln.startswith("error:")]
        assert len(err) == 1 and "Traceback" not in b.stderr, b.stderr[-3000:]
        assert f"is in use by another run (pid {a.pid} on " in err[0], err
        assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before
    finally:
        (pause / "go").write_text("")
        rc = a.wait(timeout=600)
        log.close()
    assert rc == 0, (tmp_path / "a.log").read_text()[-3000:]
    assert _outputs(run) == _outputs(ref_run)
    assert _history(run) == _history(ref_run)
