"""Appendix D: two models' sweep roots side by side (forget_jax/report_models.py)."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from forget_jax import errors, report, report_models
from forget_jax.analysis import cross_task, rundir
from tests.test_report import _csv, forget_cell, ft_cell

report_configs = importlib.import_module("configs.report")


def _first(n: int, k: int) -> np.ndarray:
    """``k`` correct answers out of ``n`` (accuracy k / n exactly)."""
    return np.arange(n) < k


def _single(root: Path, task: str, n: int, k_ft: int, k_fo: int) -> dict:
    """``ft-<task>`` and ``forget-<task>-on-<task>`` with k_ft / k_fo of n test answers right."""
    ft = ft_cell(root, task, _first(n, k_ft), _first(n, n // 2))
    return forget_cell(root, f"forget-{task}-on-{task}", task, ft, _first(n, k_fo),
                       _first(30, 15))


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("appD")
    gemma, smol = base / "gemma", base / "smol"
    _single(gemma, "copa", 40, 34, 22)  # ratio (.85 - .55) / (.85 - .5) = 6/7
    _single(gemma, "rte", 40, 22, 20)  # ft .55: its CI lower bound < .5 -> undefined
    _single(smol, "copa", 40, 36, 20)  # (.9 - .5) / (.9 - .5) = 1
    _single(smol, "cb", 40, 32, 26)  # (.8 - .65) / (.8 - .5) = 1/2
    return base, gemma, smol


def test_forget_ratios_side_by_side_per_task(roots):
    base, gemma, smol = roots
    md = report_models.write_comparison([f"gemma3-270m={gemma}", f"smollm2-135m={smol}"],
                                        base / "out", n_bootstrap=200, seed=0)
    out = base / "out" / "report_models"
    assert md == out / "models.md"
    rows = _csv(out / "tables" / report_models.TABLE)
    assert [r["task"] for r in rows] == ["rte", "cb", "copa"]  # the paper's task order
    by = {r["task"]: r for r in rows}
    g, s = "gemma3-270m_", "smollm2-135m_"
    assert float(by["copa"][g + "forget_ratio"]) == pytest.approx(6 / 7, abs=1e-12)
    assert float(by["copa"][s + "forget_ratio"]) == pytest.approx(1.0, abs=1e-12)
    assert float(by["cb"][s + "forget_ratio"]) == pytest.approx(0.5, abs=1e-12)
    assert by["rte"][g + "forget_ratio"] == cross_task.UNDEFINED
    assert by["rte"][g + "forget_ratio_lo"] == ""
    for col, value in (("finetuned_acc", 0.85), ("forgotten_acc", 0.55),
                       ("pretrained_acc", 0.5), ("n_test", 40)):
        assert float(by["copa"][g + col]) == pytest.approx(value, abs=1e-12)
    assert by["copa"][g + "cell"] == "forget-copa-on-copa"
    # a model without the task: empty cells, not zeros
    assert {by["cb"][g + c] for c in report_models.COLUMNS} == {""}
    assert {by["rte"][s + c] for c in report_models.COLUMNS} == {""}
    for task, prefix in (("copa", g), ("copa", s), ("cb", s)):
        v = float(by[task][prefix + "forget_ratio"])
        assert float(by[task][prefix + "forget_ratio_lo"]) <= v
        assert float(by[task][prefix + "forget_ratio_hi"]) >= v
    png = out / "figures" / f"{report_models.FIGURE}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    assert f"figures/{report_models.FIGURE}.png" in text and str(gemma) in text
    assert "| copa | 0.850 | 0.550 | 0.857 | 0.900 | 0.500 | 1.000 |" in text


def test_report_config_models_hook(roots, tmp_path):
    base, gemma, smol = roots
    config = report_configs.get_config()
    config.models, config.n_bootstrap = f"gemma3-270m={gemma},smollm2-135m={smol}", 50
    path = report.main(config, str(tmp_path / "appD"))
    assert path == tmp_path / "appD" / "report_models" / "models.md"
    assert "--config.models=gemma3-270m=" in path.read_text()
    assert not (gemma / "report").exists()  # the roots' own reports are not touched


@pytest.mark.parametrize("items, match", [
    (["gemma3-270m"], "expected label=<sweep root>"),
    (["a={gemma}", "a={smol}"], "given twice"),
    (["a={gemma}"], "at least two"),
    (["a={gemma}", "b={missing}"], "not a sweep root"),
])
def test_bad_model_lists_are_user_errors(roots, items, match):
    base, gemma, smol = roots
    items = [i.format(gemma=gemma, smol=smol, missing=base / "nope") for i in items]
    with pytest.raises(rundir.RunDirError, match=match) as e:
        report_models.parse_models(items)
    assert isinstance(e.value, errors.user_errors())
    assert not (base / "out-bad").exists()

