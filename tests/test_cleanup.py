"""Disk (issue 17): a complete run keeps only what later work reads; the cleanup of an existing
sweep root touches complete cells only and leaves what pending cells need
(forget_jax/cleanup.py)."""

import json
import os
import shutil

import pytest

from forget_jax import cleanup, resume, run
from tests._tiny_model import write_tiny_llama_dir
from tests.test_protocol import tiny_config


def _bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _files(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def root(tmp_path_factory, shared_data):
    """A sweep root made by code that kept every checkpoint: ``runs/ft-copa`` (fine-tune only,
    activations on) with ``keep_checkpoints`` missing from its config.json, as old cells."""
    root = tmp_path_factory.mktemp("root")
    tiny = write_tiny_llama_dir(tmp_path_factory.mktemp("tiny") / "model")
    c = tiny_config(tiny, shared_data)
    c.stop_after, c.keep_checkpoints, c.activations.enabled = "finetune", True, True
    ft = root / "runs" / "ft-copa"
    run.run(c, str(ft))
    stored = json.loads((ft / "config.json").read_text())
    del stored["keep_checkpoints"]
    (ft / "config.json").write_text(json.dumps(stored))
    return root, tiny, c


def test_cleanup_of_an_existing_root_frees_complete_cells_only(root, capsys):
    root, tiny, c = root
    ft = root / "runs" / "ft-copa"
    assert sorted(p.name for p in (ft / "checkpoints").iterdir()) == ["finetune",
                                                                      "finetune_best"]
    # A partial cell, a cell that asks to keep everything, one with a torn results.json and
    # one that another process holds: all four untouched.
    for name in ("partial", "keeper", "torn", "busy"):
        shutil.copytree(ft, root / "runs" / name)
    partial, keeper, torn, busy = (root / "runs" / n for n in ("partial", "keeper", "torn",
                                                               "busy"))
    res = json.loads((ft / "results.json").read_text())
    (partial / "results.json").write_text(json.dumps({**res, "complete": False}))
    (keeper / "config.json").write_text(json.dumps({**json.loads(
        (ft / "config.json").read_text()), "keep_checkpoints": True}))
    (torn / "results.json").write_text('{"complete": tr')
    untouched = {d: _files(d) for d in (partial, keeper, torn, busy)}
    kept = _files(ft / "checkpoints" / "finetune_best")
    acts = _files(ft / "activations")
    freed = _bytes(ft / "checkpoints" / "finetune")
    assert freed > 0

    with resume.workdir_lock(busy, main=True):
        assert cleanup.main([str(root), "--dry-run"]) == 0
        assert (ft / "checkpoints" / "finetune").is_dir()  # a dry run deletes nothing
        capsys.readouterr()
        assert cleanup.main([str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == sorted(out[:-1]) + [out[-1]]  # one line per cell, then the total
    assert f"ft-copa: freed {cleanup.human(freed)} (checkpoints/{{finetune}})" in out
    assert "partial: not complete, untouched" in out
    assert "keeper: keep_checkpoints=True, untouched" in out
    assert "busy: in use by another process, untouched" in out
    assert any(ln.startswith("torn: untouched, ") and "not readable JSON" in ln for ln in out)
    assert out[-1] == f"freed {cleanup.human(freed)} in all under {root}"
    assert sorted(p.name for p in (ft / "checkpoints").iterdir()) == ["finetune_best"]
    assert _files(ft / "checkpoints" / "finetune_best") == kept
    assert _files(ft / "activations") == acts
    for d, before in untouched.items():
        assert _files(d) == before, d.name
    assert cleanup.main([str(root / "nope")]) == 2


def test_a_cleaned_cell_still_feeds_a_cross_task_cell_and_reruns_as_complete(root,
                                                                             monkeypatch):
    root, tiny, c = root
    ft = root / "runs" / "ft-copa"
    cleanup.clean_run(ft)
    assert sorted(p.name for p in (ft / "checkpoints").iterdir()) == ["finetune_best"]
    src = json.loads((ft / "results.json").read_text())

    x = tiny_config(tiny, c.data_dir, max_epochs=1)  # forget rte on copa's fine-tune
    x.forget_task, x.init_from = "rte", str(ft)
    wd = root / "runs" / "forget-rte-on-copa"
    res = run.run(x, str(wd))
    assert res["complete"] and res["init_from"] == str(ft) and res["init_task"] == "copa"
    assert res["accuracy"]["finetuned"] == src["accuracy"]["finetuned"]  # ft-copa's weights
    assert list((wd / "checkpoints").iterdir()) == []  # its own epoch checkpoint: dropped
    assert (wd / "activations" / "pretrained").is_dir()  # copied from ft-copa, kept

    def no_compute(*a, **k):
        raise AssertionError("a complete run was recomputed")

    monkeypatch.setattr(run, "_setup", no_compute)
    before = _files(ft)
    again = tiny_config(tiny, c.data_dir)  # the current default: keep_checkpoints=False
    again.stop_after, again.activations.enabled = "finetune", True
    assert run.run(again, str(ft)) == src
    assert _files(ft) == before
