"""The forgetting mechanism on a tiny model: random labels -> ~chance, flipped -> below chance."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from forget_jax import batching, phases, sharding, steps
from forget_jax.models import llama


@dataclasses.dataclass(frozen=True)
class Ex:
    id: str
    prompt: str
    choices: tuple
    gold: int


def toy_split(n=80, seed=0, role="train"):
    """Parity task: the last prompt token k decides the answer (token 50 if k even, else 51)."""
    rng = np.random.default_rng(seed)
    exs, encs = [], []
    for i in range(n):
        k = 2 + (i % 40)
        ctx = np.concatenate([rng.integers(2, 42, size=3), [k]]).astype(np.int32)
        encs.append(batching.Encoded(ctx, (np.array([50], np.int32), np.array([51], np.int32))))
        exs.append(Ex(f"toy/{role}/{i}", str(ctx.tolist()), (" a", " b"), int(k % 2)))
    return phases.Split("toy", role, exs, encs)


def make_env(tmp_path, graphdef, params):
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    st = steps.make_steps(graphdef, params, mesh)
    return phases.Env(str(tmp_path), mesh, graphdef, 16, 0, None, st, progress=False)


def run_phase(env, name, params, split, mode, lr, epochs, stop=lambda a: None, keep_best=False):
    init = phases.score_split(env, params, split)
    spec = phases.PhaseSpec(name, lr, epochs, 4, 1.0, mode, split,
                            {"train": split, "validation": split, "test": split}, stop,
                            keep_best=keep_best)
    return phases.train_phase(env, spec, params, {r: init for r in spec.monitor}, [])


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ft")
    model = llama.Llama(llama.Config(vocab_size=64, hidden_size=32, intermediate_size=64,
                                     num_layers=1, num_heads=2, num_kv_heads=2, head_dim=16),
                        rngs=nnx.Rngs(0))
    graphdef, params = steps.split_model(model)
    env = make_env(tmp, graphdef, params)
    split = toy_split()
    before = phases.score_split(env, params, split)["acc"]
    params, summary = run_phase(env, "finetune", params, split, "gold", 0.5, 15,
                                stop=lambda a: "done" if a["train"] >= 0.99 else None,
                                keep_best=True)
    acc = phases.score_split(env, params, split)["acc"]
    return graphdef, jax.device_get(params), before, acc, summary


def test_finetune_learns_the_toy_task(finetuned):
    _, _, before, acc, summary = finetuned
    assert acc >= 0.95 > before
    assert summary["history"][-1]["train_acc"] >= 0.95


def test_random_label_forgetting_drives_train_accuracy_to_chance(finetuned, tmp_path):
    graphdef, params, _, ft_acc, _ = finetuned
    env = make_env(tmp_path, graphdef, params)
    split = toy_split()
    params, summary = run_phase(env, "forget", params, split, "random", 0.5, 12)
    accs = [h["train_acc"] for h in summary["history"]]
    late = float(np.mean(accs[-4:]))
    assert abs(late - 0.5) < 0.2, accs
    assert late < ft_acc - 0.25


def test_flipped_forgetting_drives_train_accuracy_below_chance(finetuned, tmp_path):
    graphdef, params, _, _, _ = finetuned
    env = make_env(tmp_path, graphdef, params)
    params, summary = run_phase(env, "forget", params, toy_split(), "flipped", 0.5, 8)
    assert summary["history"][-1]["train_acc"] < 0.2


def test_random_targets_are_seeded_per_epoch():
    gold = np.array([0, 1] * 50)
    a = phases.epoch_targets("random", gold, 0, "forget", 3)
    assert np.array_equal(a, phases.epoch_targets("random", gold, 0, "forget", 3))
    assert not np.array_equal(a, phases.epoch_targets("random", gold, 0, "forget", 4))
    assert 0.3 < np.mean(a == gold) < 0.7
    assert np.array_equal(phases.epoch_targets("flipped", gold, 0, "forget", 1), 1 - gold)


def test_epoch_history_file(finetuned, tmp_path):
    graphdef, params, _, _, _ = finetuned
    env = make_env(tmp_path, graphdef, params)
    run_phase(env, "relearn", params, toy_split(), "gold", 0.01, 2)
    with np.load(tmp_path / "predictions" / "epochs" / "relearn.npz") as z:
        assert list(z["epoch"]) == [0, 1, 2]
        assert z["train_confidence"].shape == (3, 80)
        assert z["train_ids"][0] == "toy/train/0"


def test_non_finite_loss_stops_with_phase_epoch_step(finetuned, tmp_path):
    graphdef, params, _, _, _ = finetuned
    params = jax.tree.map(lambda x: x * np.nan, params)
    env = make_env(tmp_path, graphdef, params)
    with pytest.raises(phases.NonFiniteLoss, match=r"phase forget, epoch 1, step 1"):
        run_phase(env, "forget", params, toy_split(), "random", 0.1, 2)
