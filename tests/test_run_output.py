"""What a run shows (tiny local model, the real CLI): quiet logs, the summary table as the last
lines, and one TensorBoard timeline that a resumed run continues without duplicates."""

import json
import os
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.hparams import plugin_data_pb2

from forget_jax import summary
from tests._tiny_model import write_tiny_llama_dir
from tests.test_cli import cli, forget_args, kill_in_save

NOISE = ("Unable to initialize backend", "[process=0]", "Queuing deletion", "PyTorch was not")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_llama_dir(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory):
    """Environment of a user without PyTorch (the project does not need it; the test extra
    installs it): a sitecustomize that hides torch, so transformers' import-time "PyTorch was not
    found" advice is really emitted -- checked here on a bare ``import transformers``."""
    shim = tmp_path_factory.mktemp("no_torch")
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    env = {"PYTHONPATH": str(shim)}
    bare = subprocess.run([sys.executable, "-c", "import transformers"], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300)
    assert "PyTorch was not found" in bare.stderr, bare.stderr[-2000:]
    return env


@pytest.fixture(scope="module")
def ref(tiny_dir, shared_data, no_torch, tmp_path_factory):
    """copa, 12 train examples, batch 3 (4 steps an epoch), 2 fine-tune + 4 forget epochs; run
    without PyTorch, as a user who installed only the project."""
    run = tmp_path_factory.mktemp("ref") / "run"
    r = cli(forget_args(tiny_dir, shared_data), run, env_extra=no_torch)
    assert r.returncode == 0, r.stderr[-3000:]
    return run, r


def scalars(run) -> dict[str, list[tuple[int, float]]]:
    acc = ea.EventAccumulator(str(run / "tensorboard"), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def f32(x):
    return pytest.approx(x, rel=1e-6, abs=1e-6)


def test_output_is_quiet_and_ends_with_the_summary(ref):
    run, r = ref
    assert not [n for n in NOISE if n in r.stderr + r.stdout]
    assert "run complete: {" not in r.stderr  # the raw dict is gone
    res = json.loads((run / "results.json").read_text())
    want = summary.table(res, summary.intervals(run, res), 0, run).splitlines()
    got = r.stdout.strip().splitlines()
    assert [ln for ln in got if not ln.startswith("wall time:")] == \
        [ln for ln in want if not ln.startswith("wall time:")]
    assert got[-2].startswith(f"forget set accuracy after forgetting: "
                              f"{res['forget_set']['accuracy']['forgotten']:.3f}  [95% CI ")
    assert got[-1].startswith(f"forget ratio (random): {res['forget_ratio']:.3f}  [95% CI ")
    assert got[1].split() == ["accuracy", "pretrained", "fine-tuned", "forgotten"]


def test_tensorboard_is_one_timeline(ref):
    run, _ = ref
    s = scalars(run)
    res = json.loads((run / "results.json").read_text())
    hist = [json.loads(x) for x in (run / "history.jsonl").open()]
    steps = {t: [st for st, _ in v] for t, v in s.items()}
    # fine-tune: epoch 0 at 1, steps 2..9, epochs at 5, 9; forget: epoch 0 at 10, steps 11..26
    assert steps["finetune/test_acc"] == [1, 5, 9]
    assert steps["finetune/train_loss"] == [5, 9]
    assert steps["finetune/step/train_loss"] == list(range(2, 10))
    assert steps["finetune/step/grad_norm"] == list(range(2, 10))
    assert steps["forget/test_acc"] == [10, 14, 18, 22, 26]
    assert steps["forget/step/train_loss"] == list(range(11, 27))
    acc = res["accuracy"]
    assert s["finetune/test_acc"][0][1] == f32(acc["pretrained"]["test"])  # epoch 0
    assert s["forget/test_acc"][0][1] == f32(acc["finetuned"]["test"])
    assert s["forget/train_acc"][0][1] == f32(res["forget_set"]["accuracy"]["finetuned"])
    for row in hist:
        ph, k = row["phase"], hist.index(row)
        base = 1 if ph == "finetune" else 10
        assert (base + row["step"], f32(row["test_acc"])) in s[f"{ph}/test_acc"]
        per_step = [v for st, v in s[f"{ph}/step/train_loss"] if row["step"] - 4 < st - base
                    <= row["step"]]
        assert sum(per_step) / 4 == f32(row["train_loss"]), k
    assert s["summary/forget_ratio"] == [(27, f32(res["forget_ratio"]))]
    assert s["summary/forget_gap"] == [(27, f32(res["forget_gap"]))]
    assert s["summary/accuracy/forgotten/validation"] == [(27, f32(acc["forgotten"]
                                                                   ["validation"]))]
    acc_ = ea.EventAccumulator(str(run / "tensorboard"))
    acc_.Reload()
    meta = acc_.SummaryMetadata("_hparams_/session_start_info")
    hp = plugin_data_pb2.HParamsPluginData.FromString(meta.plugin_data.content)
    assert hp.session_start_info.hparams["forget.lr"].number_value == f32(1e-4)
    assert hp.session_start_info.hparams["task"].string_value == "copa"
    assert hp.session_start_info.hparams["finetune.max_epochs"].number_value == 2


def test_resumed_run_continues_the_timeline(ref, tiny_dir, shared_data, tmp_path):
    """Killed inside forget epoch 2's checkpoint save (its points already logged), resumed with
    --config.verbose=True (a logging field: resuming with it is allowed): the timeline equals
    the uninterrupted run's, steps and values, with no duplicates."""
    args = forget_args(tiny_dir, shared_data)
    run = tmp_path / "run"
    kill_in_save(args, run, "checkpoints/forget/2")
    assert [st for st, _ in scalars(run)["forget/test_acc"]] == [10, 14, 18]
    r = cli([*args, "--config.verbose=True"], run)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming forget after epoch 1" in r.stderr
    assert "[process=0]" in r.stderr  # verbose: Orbax's INFO lines are back
    timing = ("examples_per_s",)
    got, want = scalars(run), scalars(ref[0])
    assert sorted(got) == sorted(want)
    for tag in want:
        if not tag.endswith(timing):
            assert [(st, f32(v)) for st, v in got[tag]] == want[tag], tag


def test_eval_job_writes_scalars_and_a_summary(tiny_dir, shared_data, tmp_path):
    r = cli(["--config=configs/eval.py:task=rte,limit=10", f"--config.model={tiny_dir}",
             f"--config.data_dir={shared_data}", "--config.splits=validation+test"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    s = scalars(tmp_path)
    assert sorted(s) == ["summary/accuracy/pretrained/test",
                         "summary/accuracy/pretrained/validation"]
    assert s["summary/accuracy/pretrained/test"] == \
        [(0, f32(res["accuracy"]["pretrained"]["test"]))]
    lines = r.stdout.strip().splitlines()
    assert lines[0] == f"run complete: rte, model {tiny_dir}"
    assert lines[3].split() == ["test", f"{res['accuracy']['pretrained']['test']:.3f}"]
