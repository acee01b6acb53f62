"""Every command README.md documents runs (issue 17: the README cannot rot).

Commands: every line of a fenced ``bash`` block and every inline code span that starts with
``python``, ``python3``, ``sbatch`` or ``.`` (the Jobs table, examples in the prose), a span
broken across lines joined with spaces. Each is classified, and an unclassified one fails the
test. How a command is shrunk to a CI budget (the command is otherwise run verbatim, from the
repository root, one CPU device):

* paths: ``runs/...`` and ``/tmp/plan`` move under the test's temporary directory;
  ``<t>`` (a placeholder task) becomes ``copa``; a command without ``--workdir`` (a fragment of
  prose) gets a fresh one;
* forget / eval jobs: the tiny random LLaMA (tests/_tiny_model.py) unless the command names a
  model (only the dry run does: no weights are read), and ``--config.n_train=6
  --config.limit=6 --config.{finetune,forget,relearn}.max_epochs=1`` appended (eval: only
  ``limit``; later flags win); a ``forget.n_train=K`` becomes 3 (a subset of the 6);
* an ``init_from=runs/ft-<t>`` that no earlier command made is made first by the shrunk
  ``--config=configs/forget.py:task=<t> --config.stop_after=finetune``;
* sweeps: listed with ``--config.mode=print_cells`` (every cell's config is built and
  checked); the first of at most 6 cells (the Jobs table's "a sweep") is then run for real
  with the tiny model, n_train 6, n_small 3 and ``base=limit=6;...max_epochs=1``; the others
  stay listed only (each would be another 6-30 cells of the same code);
* a report on a root that was only listed reads the last sweep root run for real instead.

NOT_RUN lists, with the reason, what no CI run does.
"""

import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from tests._tiny_model import write_tiny_llama_dir

pytestmark = pytest.mark.slow
REPO = pathlib.Path(__file__).resolve().parents[1]
NOT_RUN = {  # command prefix -> why this test does not run it
    "python3 -m venv .venv": "the install itself (a venv, pip from the registry): .ci/run "
                             "runs exactly this line's install steps; its job is the "
                             "laptop-budget row of the Jobs table, run below",
    ". .venv/bin/activate && pip install": "the test command: .ci/run runs it (recursion)",
    "python bench/compare.py": "the benchmark: ~25 min of timed passes of SmolLM2-135M and "
                               "PyTorch, not a correctness check",
    "sbatch ": "needs a SLURM cluster; the cell commands it runs are the print_commands line",
}
MAX_REAL_CELLS = 6
BUDGET = ["--config.n_train=6", "--config.limit=6", "--config.finetune.max_epochs=1",
          "--config.forget.max_epochs=1", "--config.relearn.max_epochs=1",
          "--config.eval_batch_size=8"]
SWEEP_BASE = ("--config.base=limit=6;finetune.max_epochs=1;forget.max_epochs=1;"
              "relearn.max_epochs=1;eval_batch_size=8")


def readme_commands() -> list[str]:
    """The README's commands in document order (fenced bash lines and inline spans)."""
    out = []
    for seg in re.split(r"(```.*?```)", (REPO / "README.md").read_text(), flags=re.S):
        if seg.startswith("```bash\n"):
            for line in seg[len("```bash\n"):-3].splitlines():
                line = line.split("  #")[0].strip()
                if line and not line.startswith("#"):
                    out.append(line)
        elif not seg.startswith("```"):
            for span in re.findall(r"`([^`]+)`", seg):
                span = " ".join(span.split())
                if span.startswith(("python ", "python3 ", "sbatch ", ". ")):
                    out.append(span)
    return list(dict.fromkeys(out))


def test_readme_commands_are_found_and_classified():
    cmds = readme_commands()
    assert any("configs/sweep.py" in c for c in cmds) and any("dry_run" in c for c in cmds)
    for c in cmds:
        assert c.startswith(("python main.py ", "python -m forget_jax.cleanup ")) or any(
            c.startswith(p) for p in NOT_RUN), f"unclassified README command: {c}"


def _flags(argv, name):
    return [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]


def test_every_readme_command_runs_shrunk(tmp_path, shared_data):
    tiny = write_tiny_llama_dir(tmp_path / "tiny")
    env = dict(os.environ, FORGET_JAX_DATA_DIR=str(shared_data))
    env.pop("XLA_FLAGS", None)
    real_roots: list[str] = []

    def rewrite(cmd: str) -> list[str]:
        cmd = cmd.replace("<t>", "copa").replace("=runs/", f"={tmp_path}/runs/")
        cmd = cmd.replace(" runs/", f" {tmp_path}/runs/").replace("=/tmp/plan", f"={tmp_path}/plan")
        return shlex.split(cmd)

    def sh(argv, what):
        r = subprocess.run([sys.executable, *argv[1:]], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=900)
        assert r.returncode == 0, (what, r.stderr[-3000:])
        assert "Traceback" not in r.stderr, what
        return r

    def shrink_run(argv):
        config = _flags(argv, "config")[0]
        if "model=" not in config and not _flags(argv, "config.model"):
            argv = [*argv, f"--config.model={tiny}"]
        if "dry_run" in " ".join(argv):
            return argv
        if config.startswith("configs/eval.py"):
            return [*argv, "--config.limit=6", "--config.eval_batch_size=8"]
        argv = [*argv, *BUDGET]
        if _flags(argv, "config.forget.n_train"):
            argv.append("--config.forget.n_train=3")
        return argv

    ran = []
    for i, cmd in enumerate(readme_commands()):
        if any(cmd.startswith(p) for p in NOT_RUN):
            continue
        argv = rewrite(cmd)
        if argv[:2] == ["python", "main.py"] and not _flags(argv, "workdir"):
            argv.append(f"--workdir={tmp_path}/runs/no-workdir-{i}")
        if argv[:3] == ["python", "-m", "forget_jax.cleanup"]:
            r = sh(argv, cmd)
            assert "in all under" in r.stdout, cmd
            ran.append(cmd)
            continue
        config = _flags(argv, "config")[0]
        job = re.match(r"configs/(\w+)\.py", config).group(1)
        if job in ("forget", "eval"):
            for src in _flags(argv, "config.init_from"):
                if not (pathlib.Path(src) / "results.json").exists():  # make the ft cell
                    task = pathlib.Path(src).name.removeprefix("ft-")
                    sh(shrink_run(["python", "main.py", f"--config=configs/forget.py:task={task}",
                                   "--config.stop_after=finetune", f"--workdir={src}"]), cmd)
            sh(shrink_run(argv), cmd)
        elif job == "sweep":
            if "mode=print" in config:
                sh(argv, cmd)
            else:
                cells = sh([*argv, "--config.mode=print_cells"], cmd).stdout.splitlines()
                assert cells, cmd
                if len(cells) <= MAX_REAL_CELLS and not real_roots:
                    sh([*argv, f"--config.model={tiny}", "--config.n_train=6",
                        "--config.n_small=3", SWEEP_BASE], cmd)
                    real_roots.append(_flags(argv, "workdir")[0])
        elif job == "report":
            root = _flags(argv, "workdir")[0]
            if root not in real_roots:  # a root this test only listed
                argv = [a for a in argv if not a.startswith("--workdir=")]
                argv.append(f"--workdir={real_roots[-1]}")
            sh(argv, cmd)
        else:
            raise AssertionError(f"unknown job in README command: {cmd}")
        ran.append(cmd)
    assert len(ran) >= 20, ran
