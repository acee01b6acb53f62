"""Every config file and every documented ``--config=configs/X.py:arg`` loads (levanter style)."""

import importlib
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PATTERN = re.compile(r"--config=configs/(\w+)\.py(?::([^\s`'\"\\]+))?")


def documented():
    found = set()
    for f in [*REPO.glob("configs/*.py"), REPO / "main.py", REPO / "README.md",
              *REPO.glob("launch/*")]:
        if f.is_file():
            found.update(PATTERN.findall(f.read_text()))
    return sorted(found)


def test_something_is_documented():
    names = {n for n, _ in documented()}
    assert {"forget", "eval", "sweep", "report"} <= names


@pytest.mark.parametrize(("name", "arg"), documented())
def test_documented_config_loads(name, arg):
    mod = importlib.import_module(f"configs.{name}")
    config = mod.get_config(arg or None)
    assert config.job in ("forget", "eval", "sweep", "report")
    config.lock()  # main.py loads configs with lock_config=True: a typo'd field fails
    with pytest.raises(AttributeError):
        config.no_such_field_typo = 1


def test_unknown_arg_is_an_error():
    from configs import forget

    with pytest.raises(ValueError, match="unknown config arg"):
        forget.get_config("task=rte,no_such_arg=1")


def test_runlocal_shrinks_the_budget_without_another_file():
    from configs import forget

    full, small = forget.get_config("rte"), forget.get_config("task=rte,runlocal=True")
    assert full.finetune.max_epochs == 100 and full.n_train == 1000
    assert small.finetune.max_epochs == 2 and small.forget.max_epochs == 3
    assert small.n_train == 60
    assert (small.finetune.lr, small.forget.lr, small.relearn.lr) == (1e-2, 3e-1, 1e-2)
    assert forget.get_config("task=rte,runlocal=True,n_train=300").n_train == 300  # explicit wins
    assert (full.finetune.lr, full.forget.lr, full.relearn.lr) == (3e-3, 1e-4, 3e-5)
    assert full.finetune.batch_size == 3 and full.forget.stop_test_acc == 0.5
