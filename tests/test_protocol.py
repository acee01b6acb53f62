"""Issue 13's training-side protocol: forget stop rules, forget-set subsets, the forget set's
own accuracy, float16 (model.half() + SGD) and params_changed_fraction."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import forget as forget_config
from forget_jax import batching, run, sharding, steps
from forget_jax.models import llama
from forget_jax.tasks import TaskError
from tests._tiny_model import write_tiny_llama_dir
from tests.test_steps import TINY_LLAMA, toy_encoded


def test_stop_rules_resolve_and_decide():
    assert run.resolve_stop_rule("auto", "random") == "chance"
    assert run.resolve_stop_rule("auto", "flipped") == "mirror"
    assert run.resolve_stop_rule("fixed", "flipped") == "fixed"
    chance = run.forget_stop("chance", 0.5, acc_ft=0.9)
    mirror = run.forget_stop("mirror", 0.5, acc_ft=0.9)
    fixed = run.forget_stop("fixed", 0.5, acc_ft=0.9)
    # a flipped run on its way from 0.9 down to 0.1: chance stops it at 0.49, mirror does not
    assert chance({"test": 0.49}) and chance({"test": 0.5}) is None
    assert mirror({"test": 0.49}) is None and mirror({"test": 0.11}) is None
    assert mirror({"test": 0.1}) and mirror({"test": 1 / 10})  # exactly 1 - acc_ft stops
    assert fixed({"test": 0.0}) is None
    # ...so a model that fully flips its answers reaches flipped forget ratio 1 (chance: ~0.5)
    assert run.forget_ratio(0.9, 0.1, "flipped") == pytest.approx(1.0)
    assert run.forget_ratio(0.9, 0.49, "flipped") == pytest.approx(0.5125)
    assert run.forget_ratio(0.9, 0.5, "random") == pytest.approx(1.0)


def tiny_config(tiny_dir, data, **forget_overrides):
    c = forget_config.get_config("task=copa")
    c.model, c.data_dir, c.n_train, c.limit, c.eval_batch_size = str(tiny_dir), str(data), 12, 8, 8
    c.finetune.max_epochs, c.forget.max_epochs = 1, 2
    for k, v in forget_overrides.items():
        c.forget[k] = v
    return c


@pytest.mark.parametrize(("field", "value", "message"), [
    ("stop_rule", "sometimes", "unknown forget.stop_rule"),
    ("n_train", 13, r"forget.n_train must be in \[0, n_train=12\]"),
    ("n_train", -1, "forget.n_train must be in"),
])
def test_bad_forget_fields_are_config_errors(tmp_path, field, value, message):
    with pytest.raises(run.ConfigError, match=message):
        run.run(tiny_config(tmp_path, tmp_path, **{field: value}), str(tmp_path / "wd"))
    assert not (tmp_path / "wd").exists()  # raised before any file write


def test_forget_subset_is_a_seeded_subset_of_the_train_role():
    a = run.forget_indices("copa", 1000, 100, seed=0)
    assert len(a) == len(set(a)) == 100 and a.min() >= 0 and a.max() < 1000
    assert np.all(np.diff(a) > 0)  # original order
    assert np.array_equal(a, run.forget_indices("copa", 1000, 100, seed=0))
    assert not np.array_equal(a, run.forget_indices("copa", 1000, 100, seed=1))
    assert run.forget_indices("copa", 1000, 0, 0) is None
    assert run.forget_indices("copa", 1000, 1000, 0) is None
    with pytest.raises(TaskError, match="forget.n_train=101 but the copa train role has only 100"):
        run.forget_indices("copa", 100, 101, 0)


def _fp_step(precision):
    kw = {"float16": dict(dtype=jnp.float16, param_dtype=jnp.float16), "float32": {}}[precision]
    model = llama.Llama(llama.Config(**TINY_LLAMA), rngs=nnx.Rngs(0), **kw)
    graphdef, params = steps.split_model(model)
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    st = steps.make_steps(graphdef, params, mesh, lr=1e-4, grad_clip=1.0)
    rng = np.random.default_rng(0)
    batch = batching.train_batch(toy_encoded(8, rng), [int(t) for t in rng.integers(0, 2, 8)], 8)
    state, m = st.train(st.init_state(params), sharding.put_batch(batch, mesh))
    assert all(x.dtype == kw.get("param_dtype", jnp.float32) for x in jax.tree.leaves(state.params))
    assert np.isfinite(float(m["loss"])) and m["grad_norm"].dtype == jnp.float32
    return float(steps.changed_fraction(params, state.params))


def test_float16_sgd_loses_small_updates_float32_keeps_them():
    # clip 1.0 spreads a step of norm 1e-4 over ~15k elements: far below half a float16 ulp
    # of a weight ~0.02 for almost every element, far above a float32 ulp.
    f16, f32 = _fp_step("float16"), _fp_step("float32")
    assert f16 < 0.2, f16
    assert f32 > 0.9, f32


def test_changed_fraction_counts_elements():
    old = {"a": jnp.zeros(6), "b": {"c": jnp.ones((2, 2))}}
    new = {"a": jnp.zeros(6).at[:3].set(1.0), "b": {"c": jnp.ones((2, 2))}}
    assert float(steps.changed_fraction(old, new)) == pytest.approx(0.3)
    assert float(steps.changed_fraction(old, old)) == 0.0


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_llama_dir(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def ft_cell(tiny_dir, shared_data, tmp_path_factory):
    """A fixed-budget single-task run: fine-tune 1 epoch, forget exactly 2 epochs at a huge lr
    (test accuracy may drop below 0.5; "fixed" must not stop)."""
    wd = tmp_path_factory.mktemp("ft")
    c = tiny_config(tiny_dir, shared_data, stop_rule="fixed", lr=1.0)
    run.run(c, str(wd))
    return wd, json.loads((wd / "results.json").read_text())


def test_fixed_rule_runs_max_epochs_and_results_carry_the_new_keys(ft_cell):
    wd, res = ft_cell
    assert res["complete"] and res["epochs"]["forget"] == 2
    assert res["forget_stop_rule"] == "fixed" and res["forget_stop_reason"] == "max_epochs=2"
    fs = res["forget_set"]
    assert fs["task"] == "copa" and fs["split"] == "copa.train" and fs["n"] == 12
    assert set(fs["accuracy"]) == set(fs["confidence"]) == {"pretrained", "finetuned", "forgotten"}
    for phase in fs["accuracy"]:  # the forget set's numbers are its predictions file's means
        rows = [json.loads(x) for x in (wd / f"predictions/{phase}/copa.train.jsonl").open()]
        assert fs["accuracy"][phase] == pytest.approx(np.mean([r["correct"] for r in rows]))
        assert fs["confidence"][phase] == pytest.approx(np.mean([r["confidence"] for r in rows]))
    pcf = res["params_changed_fraction"]
    assert set(pcf) == {"finetune", "forget"} and all(0 <= v <= 1 for v in pcf.values())
    assert pcf["forget"] > 0.5  # float32 at lr 1.0: (nearly) everything moves


def test_subset_cell_from_init_from(ft_cell, tiny_dir, shared_data, tmp_path):
    src, src_res = ft_cell
    c = tiny_config(tiny_dir, shared_data, n_train=5, max_epochs=1)
    c.init_from = str(src)
    res = run.run(c, str(tmp_path))
    assert res["init_from"] == str(src) and res["n_forget_train"] == 5
    assert res["forget_stop_rule"] == "chance"
    fs = res["forget_set"]
    assert fs["split"] == "copa.forget" and fs["n"] == 5
    assert set(fs["accuracy"]) == {"finetuned", "forgotten"}  # pretrained was not scored here
    forget_rows = [json.loads(x) for x in
                   (tmp_path / "predictions/finetuned/copa.forget.jsonl").open()]
    train_ids = [json.loads(x)["id"] for x in
                 (tmp_path / "predictions/finetuned/copa.train.jsonl").open()]
    assert len(forget_rows) == 5 and {r["id"] for r in forget_rows} <= set(train_ids)
    assert len(train_ids) == 12  # the full train split keeps its own file
    # the fine-tuned weights are the source cell's: same train accuracy
    assert res["accuracy"]["finetuned"] == src_res["accuracy"]["finetuned"]
    assert res["params_changed_fraction"]["finetune"] == src_res["params_changed_fraction"][
        "finetune"]
    assert 0 <= res["params_changed_fraction"]["forget"] <= 1


def test_init_from_of_another_precision_is_refused(ft_cell, tiny_dir, shared_data, tmp_path):
    src, _ = ft_cell
    c = tiny_config(tiny_dir, shared_data)
    c.init_from, c.precision = str(src), "float16"
    with pytest.raises(run.ConfigError, match="fine-tuned with precision=float32, this run has "
                                              "precision=float16"):
        run.run(c, str(tmp_path / "wd"))
    assert not (tmp_path / "wd").exists()


def test_float16_params_and_compute_stay_close_to_float32():
    from forget_jax.models.registry import precision_kwargs
    from tests.test_models import low_precision_twin

    _, param_dtypes, h_dtype, err, scale = low_precision_twin(
        "llama_gqa_untied", **precision_kwargs("float16"))
    assert param_dtypes == {jnp.dtype(jnp.float16)} and h_dtype == jnp.float16
    assert err.max() < 0.02 * scale  # float16 has ~3.3 significant digits (bf16: ~2.4)


def test_cross_task_cell_scores_the_forget_set(tiny_dir, shared_data, tmp_path):
    c = tiny_config(tiny_dir, shared_data, max_epochs=1)
    c.forget_task, c.forget_mode = "rte", "flipped"
    res = run.run(c, str(tmp_path))
    assert res["forget_stop_rule"] == "mirror"
    fs = res["forget_set"]
    assert fs["task"] == "rte" and fs["split"] == "rte.train" and fs["n"] == 12
    assert set(fs["accuracy"]) == {"pretrained", "finetuned", "forgotten"}
    assert fs["accuracy"] == res["forget_train_accuracy"]
    for phase in ("finetuned", "forgotten"):
        assert (tmp_path / f"predictions/{phase}/rte.train.jsonl").exists()


def test_cross_task_cell_may_start_from_the_forget_tasks_fine_tune(ft_cell, tiny_dir,
                                                                   shared_data, tmp_path):
    """sweep cross_task_start="forget_task": A = copa's fine-tuned model forgets copa and is
    evaluated on B = rte; B's zero-shot and start ("finetuned") scores are measured here."""
    src, src_res = ft_cell
    c = tiny_config(tiny_dir, shared_data, max_epochs=1)
    c.task, c.forget_task, c.init_from = "rte", "copa", str(src)
    res = run.run(c, str(tmp_path / "a_to_b"))
    assert res["init_task"] == "copa" and res["eval_task"] == "rte"
    assert set(res["accuracy"]) == {"pretrained", "finetuned", "forgotten"}
    for phase in ("pretrained", "finetuned"):
        rows = [json.loads(x) for x in
                (tmp_path / f"a_to_b/predictions/{phase}/rte.test.jsonl").open()]
        assert res["accuracy"][phase]["test"] == pytest.approx(
            np.mean([r["correct"] for r in rows]))
    # the forget set is copa's train role, scored with copa's fine-tuned weights
    assert res["forget_set"]["accuracy"]["finetuned"] == src_res["accuracy"]["finetuned"]["train"]
    c.task, c.forget_task = "rte", "cb"  # a third task's fine-tune is not a start state
    with pytest.raises(run.ConfigError, match="was fine-tuned on 'copa'"):
        run.run(c, str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()
