"""The end-of-run summary text and scalars (forget_jax.summary), the TensorBoard timeline's
phase starts, and the default log levels (forget_jax.logs), on hand-written inputs."""

import logging
import os

from forget_jax import logs, phases, summary
from forget_jax.analysis.stats import Interval

RESULTS = {
    "task": "copa", "model": "smollm2-135m", "forget_mode": "random",
    "forget_method": "random_labels", "eval_task": "copa",
    "forget_set": {"task": "copa", "split": "copa.train", "n": 60,
                   "accuracy": {"pretrained": 0.55, "finetuned": 0.9, "forgotten": 0.6}},
    "accuracy": {"pretrained": {"train": 0.55, "validation": 0.5, "test": 0.6},
                 "finetuned": {"train": 0.9, "validation": 0.75, "test": 0.8},
                 "forgotten": {"train": 0.6, "validation": 0.6, "test": 0.65}},
    "forget_gap": 0.15000000000000002, "forget_ratio": 0.5000000000000001, "complete": True}
CIS = {"forget_gap": Interval(0.65, 0.5, 0.775, 60),
       "forget_ratio": Interval(0.5, 0.2, 0.8125, 60),
       "forget_set": Interval(0.6, 0.4833333, 0.7166667, 60)}


def test_table_exact_text():
    got = summary.table(RESULTS, CIS, 3725.4, "/runs/copa")
    assert got == """\
run complete: copa, model smollm2-135m, forget method random_labels
accuracy            pretrained  fine-tuned   forgotten
train (forget set)       0.550       0.900       0.600
validation               0.500       0.750       0.600
test                     0.600       0.800       0.650
wall time: 1h 02m 05s (this invocation)
results: /runs/copa/results.json  predictions: /runs/copa/predictions
tensorboard: tensorboard --logdir /runs/copa/tensorboard
forget gap (forgotten test acc - 0.5): +0.150  [95% CI 0.000, 0.275]
forget set accuracy after forgetting: 0.600  [95% CI 0.483, 0.717]  (copa.train, n=60)
forget ratio (random): 0.500  [95% CI 0.200, 0.812]"""


def test_table_of_a_run_without_forgetting_and_an_undefined_ratio():
    res = {"task": "rte", "model": "m", "complete": True,
           "accuracy": {"pretrained": {"validation": 0.5, "test": 0.25}}}
    assert summary.table(res, {}, 59.6, "/w") == """\
run complete: rte, model m
accuracy    pretrained
validation       0.500
test             0.250
wall time: 1m 00s (this invocation)
results: /w/results.json  predictions: /w/predictions
tensorboard: tensorboard --logdir /w/tensorboard"""
    res = dict(RESULTS, forget_ratio_note="undefined: fine-tuned test accuracy does not beat "
               "chance")
    del res["forget_ratio"]
    assert summary.table(res, {}, 1, "/w").splitlines()[-1] == \
        "forget ratio: undefined: fine-tuned test accuracy does not beat chance"


def test_scalars():
    got = summary.scalars(RESULTS)
    assert got["summary/accuracy/finetuned/validation"] == 0.75
    assert got["summary/forget_ratio"] == 0.5000000000000001
    assert got["summary/forget_gap"] == 0.15000000000000002
    assert got["summary/forget_set_accuracy/forgotten"] == 0.6
    assert len(got) == 9 + 2 + 3


def test_timeline_start():
    assert phases.timeline_start([]) == 1  # step 0 holds the config (hparams)
    rows = [{"phase": "finetune", "step": 4}, {"phase": "finetune", "step": 8},
            {"phase": "forget", "step": 16}]
    assert phases.timeline_start(rows[:2]) == 10  # epoch 0 at 1, steps 2..9
    assert phases.timeline_start(rows) == 27  # forget: epoch 0 at 10, steps 11..26


def test_logs_quiet_by_default_and_verbose_keeps_levels(monkeypatch):
    for var in ("TRANSFORMERS_VERBOSITY", "TRANSFORMERS_NO_ADVISORY_WARNINGS"):
        monkeypatch.delenv(var, raising=False)
    names = ("absl", "jax", "jax._src.xla_bridge", "orbax")
    saved = {n: logging.getLogger(n).level for n in (*names, "forget_jax")}
    try:
        for n in names:
            logging.getLogger(n).setLevel(logging.NOTSET)
        logging.getLogger().setLevel(logging.INFO)
        logs.configure(verbose=True)
        assert all(logging.getLogger(n).isEnabledFor(logging.INFO) for n in names)
        assert "TRANSFORMERS_VERBOSITY" not in os.environ
        logs.configure(verbose=False)
        assert not any(logging.getLogger(n).isEnabledFor(logging.INFO) for n in names)
        assert all(logging.getLogger(n).isEnabledFor(logging.WARNING) for n in names)
        assert logging.getLogger("forget_jax").isEnabledFor(logging.INFO)
        assert os.environ["TRANSFORMERS_VERBOSITY"] == "error"  # read at transformers' import
    finally:
        for var in ("TRANSFORMERS_VERBOSITY", "TRANSFORMERS_NO_ADVISORY_WARNINGS"):
            os.environ.pop(var, None)
        for n, lvl in saved.items():
            logging.getLogger(n).setLevel(lvl)
