"""Issue 16's forgetting methods (forget_jax/methods.py): each loss against a hand computation
on a tiny model, NPO at the reference, what gradient ascent / NPO / RMU do to a tiny model, a
sharded step per method, and the config / resume plumbing."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import forget as forget_config
from forget_jax import batching, methods, phases, run, sharding, steps
from forget_jax.models import llama
from tests.test_phases import Ex, make_env, run_phase
from tests.test_steps import TINY_LLAMA, toy_encoded

HP = dict(grad_diff=dict(gamma=1.0, alpha=1.0), npo=dict(beta=0.1, gamma=1.0, alpha=1.0),
          simnpo=dict(beta=4.5, delta=0.2, gamma=0.125, alpha=1.0),
          rmu=dict(layer=1, n_layers=3, params="mlp/down_proj/kernel", steering_coeff=6.5,
                   gamma=1.0, alpha=3.0))
ALL = ("random_labels", "flipped", "grad_ascent", "grad_diff", "npo", "simnpo", "rmu")


def tiny(seed):
    return llama.Llama(llama.Config(**TINY_LLAMA), rngs=nnx.Rngs(seed))


def _method(name, params, retain=True):
    return methods.build(name, HP, params, TINY_LLAMA["num_layers"], retain)


def _examples(seed, n):
    return toy_encoded(n, np.random.default_rng(seed))


def _by_hand(model, encs, targets, layer=None):
    """Per example, each scored alone: (answer-token log-probs, layer-`layer` answer states)."""
    lps, hss = [], []
    for e, t in zip(encs, targets, strict=True):
        seq = np.concatenate([e.ctx, e.conts[t]])[None]
        logp = np.asarray(jax.nn.log_softmax(model(jnp.asarray(seq)), -1), np.float64)[0]
        C = len(e.ctx)
        lps.append(np.array([logp[C - 1 + k, tok] for k, tok in enumerate(e.conts[t])]))
        if layer is not None:
            _, hs = model.encode(jnp.asarray(seq), output_hidden_states=True)
            hss.append(np.asarray(hs[layer][0, C:C + len(e.conts[t])], np.float64))
    return lps, hss


def _log_sigmoid(x):
    return -np.log1p(np.exp(-x))


def test_each_loss_equals_a_hand_computation():
    model, ref_model = tiny(0), tiny(1)
    g, params = steps.split_model(model)
    _, ref = steps.split_model(ref_model)
    forget, retain = _examples(0, 5), _examples(1, 4)
    tf, tr = [0, 1, 1, 0, 1], [1, 0, 0, 1]
    batch = {k: jnp.asarray(v) for k, v in batching.train_batch(
        forget, tf, 5, pack_len=64).items()}
    batch["retain"] = {k: jnp.asarray(v) for k, v in batching.train_batch(
        retain, tr, 4, pack_len=64).items()}
    assert batch["tokens"].shape[0] < 5  # packed: rows hold several examples
    lp, hf = _by_hand(model, forget, tf, layer=1)
    lp_ref, _ = _by_hand(ref_model, forget, tf)
    lr_, hr = _by_hand(model, retain, tr, layer=1)
    _, hr_ref = _by_hand(ref_model, retain, tr, layer=1)
    nll_f = -np.concatenate(lp).mean()
    nll_r = -np.concatenate(lr_).mean()
    sums = np.array([x.sum() for x in lp])
    lens = np.array([len(x) for x in lp])
    b, bs, d = HP["npo"]["beta"], HP["simnpo"]["beta"], HP["simnpo"]["delta"]
    u = np.random.default_rng([0, 16]).random(TINY_LLAMA["hidden_size"])
    cu = 6.5 * u / np.linalg.norm(u)
    rmu_f = np.mean([np.mean((h - cu) ** 2, -1).mean() for h in hf])
    rmu_r = np.mean([np.mean((h - h0) ** 2, -1).mean() for h, h0 in zip(hr, hr_ref, strict=True)])
    want = {
        "random_labels": nll_f, "flipped": nll_f, "grad_ascent": -nll_f,
        "grad_diff": -nll_f + nll_r,
        "npo": np.mean(-(2 / b) * _log_sigmoid(-b * (sums - np.array([x.sum() for x in lp_ref]))))
        + nll_r,
        "simnpo": 0.125 * np.mean(-(2 / bs) * _log_sigmoid(bs * (-sums / lens - d))) + nll_r,
        "rmu": rmu_f + 3.0 * rmu_r,
    }
    for name in ALL:
        m = _method(name, params)
        aux = m.aux(ref, TINY_LLAMA["hidden_size"], seed=0)
        got, n = jax.jit(m.loss, static_argnums=3)(params, aux, batch, g)
        assert float(n) == lens.sum()
        np.testing.assert_allclose(float(got), want[name], rtol=1e-6, atol=1e-6, err_msg=name)


def test_npo_at_the_reference_is_2_over_beta_log_2_per_example():
    g, params = steps.split_model(tiny(0))
    batch = {k: jnp.asarray(v) for k, v in batching.train_batch(
        _examples(2, 6), [0, 1] * 3, 6, pack_len=64).items()}
    ll = steps.answer_logliks(params, batch, g)
    logp, counts = methods.example_sums(ll, batch)
    assert int((counts > 0).sum()) == 6
    per = -(2 / 0.1) * jax.nn.log_sigmoid(-0.1 * (logp - logp))
    np.testing.assert_allclose(np.asarray(per)[np.asarray(counts) > 0], 20 * np.log(2),
                               rtol=1e-6)
    m = methods.build("npo", HP, params, 2, retain=False)
    got, _ = m.loss(params, m.aux(params, 32, 0), batch, g)
    assert float(got) == pytest.approx(20 * np.log(2), rel=1e-6)


def answer_set_split(n=48, seed=0):
    """Toy task whose gold answers are tokens 50-52 and distractors 53-55 (gold slot random):
    pushing the seen (gold) answers down, as gradient ascent does, flips the preference."""
    rng = np.random.default_rng(seed)
    exs, encs = [], []
    for i in range(n):
        g, d, slot = int(rng.integers(50, 53)), int(rng.integers(53, 56)), int(rng.integers(2))
        conts = (g, d) if slot == 0 else (d, g)
        ctx = rng.integers(2, 42, size=4).astype(np.int32)
        encs.append(batching.Encoded(ctx, tuple(np.array([c], np.int32) for c in conts)))
        exs.append(Ex(f"set/train/{i}", str(ctx.tolist()), (" a", " b"), slot))
    return phases.Split("set", "train", exs, encs)


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    model = llama.Llama(llama.Config(vocab_size=64, hidden_size=32, intermediate_size=64,
                                     num_layers=1, num_heads=2, num_kv_heads=2, head_dim=16),
                        rngs=nnx.Rngs(0))
    graphdef, params = steps.split_model(model)
    env = make_env(tmp_path_factory.mktemp("ft"), graphdef, params)
    split = answer_set_split()
    params, _ = run_phase(env, "finetune", params, split, "gold", 0.5, 10,
                          stop=lambda a: "done" if a["train"] >= 0.99 else None)
    return graphdef, jax.device_get(params), phases.score_split(env, params, split)["acc"]


def _forget(learned_, tmp_path, name, epochs=5, lr=0.2):
    graphdef, params, _ = learned_
    env = make_env(tmp_path, graphdef, params)
    split = answer_set_split()
    m = methods.build(name, HP, params, 1, retain=False)
    spec = phases.PhaseSpec("forget", lr, epochs, 4, 1.0, m.label_mode, split,
                            {"train": split}, lambda a: None, loss=m.loss,
                            aux=m.aux(params, 32, 0),
                            aux_shardings=m.aux_shardings(env.score_steps.param_shardings,
                                                          env.mesh))
    init = phases.score_split(env, params, split)
    return phases.train_phase(env, spec, params, {"train": init}, [])[1]["history"]


def test_gradient_ascent_forgets_and_diverges_npo_stays_bounded(learned, tmp_path):
    assert learned[2] >= 0.95
    ga = _forget(learned, tmp_path / "ga", "grad_ascent")
    npo = _forget(learned, tmp_path / "npo", "npo")
    assert ga[-1]["train_acc"] < 0.3, [h["train_acc"] for h in ga]
    ga_loss = [h["train_loss"] for h in ga]
    assert ga_loss[-1] < -20 and ga_loss[-1] < ga_loss[0] - 15, ga_loss  # -NLL: unbounded
    npo_loss = [h["train_loss"] for h in npo]
    assert all(0 <= x <= 20 * np.log(2) + 1e-4 for x in npo_loss), npo_loss  # in [0, (2/b)log2]


def test_rmu_steers_layer_states_to_cu_and_keeps_retain_states():
    g, params = steps.split_model(tiny(0))
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    forget, retain = _examples(3, 6), _examples(4, 6)
    batch = batching.train_batch(forget, [0] * 6, 6, pack_len=64)
    batch["retain"] = batching.train_batch(retain, [0] * 6, 6, pack_len=64)
    hp = {**HP, "rmu": {**HP["rmu"], "alpha": 50.0}}
    m = methods.build("rmu", hp, params, 2, retain=True)
    assert m.layer == 1
    aux = m.aux(params, 32, 0)
    st = steps.make_steps(g, params, mesh, lr=0.2, loss=m.loss,
                          aux_shardings=m.aux_shardings(
                              sharding.param_shardings(params, mesh), mesh), retain=True)
    jb = sharding.put_batch(batch, mesh)
    dist = lambda p: float(methods.activation_mse(  # noqa: E731
        methods.layer_states(p, jb, g, 1), aux["u"], jb))
    keep = lambda p: float(methods.activation_mse(  # noqa: E731
        methods.layer_states(p, jb["retain"], g, 1),
        methods.layer_states(params, jb["retain"], g, 1), jb["retain"]))
    state = st.init_state(params)
    d0 = dist(params)
    for _ in range(60):
        state, _ = st.train(state, jb, aux)
    new = jax.device_get(state.params)
    assert dist(new) < 0.5 * d0, (dist(new), d0)
    assert keep(new) < 0.02 * d0, (keep(new), d0)
    # only layer 0's down-projection trained (layers L - n_layers .. L - 1 = 0..0)
    old = jax.device_get(params)
    for path, a in jax.tree_util.tree_flatten_with_path(old)[0]:
        name = jax.tree_util.keystr(path)
        after = new
        for k in path:
            after = after[k.key]
        if "down_proj" in name:
            assert not np.array_equal(a[0], after[0]) and np.array_equal(a[1], after[1])
        else:
            assert np.array_equal(a, after), name


@pytest.mark.parametrize("name", ALL[2:])  # the paper's two: test_steps' sharded test
def test_sharded_step_equals_one_device_per_method(name):
    rng = np.random.default_rng(5)
    batch = batching.train_batch(toy_encoded(8, rng), [int(t) for t in rng.integers(0, 2, 8)],
                                 8, pack_len=64, row_multiple=4)
    batch["retain"] = batching.train_batch(toy_encoded(8, rng), [0] * 8, 8, pack_len=64,
                                           row_multiple=4)
    results = []
    for mesh in (sharding.make_mesh(devices=jax.devices()[:1]), sharding.make_mesh(2, 2, 2)):
        g, params = steps.split_model(tiny(0))
        _, ref = steps.split_model(tiny(1))
        p_sh = sharding.param_shardings(params, mesh)
        params, ref = jax.device_put(params, p_sh), jax.device_put(ref, p_sh)
        m = methods.build(name, HP, params, 2, retain=True)
        aux_sh = m.aux_shardings(p_sh, mesh)
        aux = m.aux(ref, 32, 0)
        aux = () if aux is None else (jax.device_put(aux, aux_sh),)
        st = steps.make_steps(g, params, mesh, lr=0.1, loss=m.loss, aux_shardings=aux_sh,
                              retain=True)
        state, losses = st.init_state(params), []
        for _ in range(2):
            state, met = st.train(state, sharding.put_batch(batch, mesh), *aux)
            losses.append(float(met["loss"]))
        results.append((losses, jax.device_get(state.params)))
    (l1, p1), (l8, p8) = results
    np.testing.assert_allclose(l1, l8, atol=1e-5, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_method_resolution_and_config_errors(tmp_path):
    assert methods.resolve("random_labels", "flipped") == "flipped"
    assert methods.resolve("npo", "random") == "npo"
    with pytest.raises(ValueError, match="conflicts"):
        methods.resolve("npo", "flipped")
    assert methods.rmu_layer(0, 32) == 8 and methods.rmu_layer(0, 30) == 7
    with pytest.raises(ValueError, match="out of range"):
        methods.rmu_layer(30, 30)
    c = forget_config.get_config("task=copa")
    for field, value, message in [
            ("method", "sideways", "unknown forget.method 'sideways'"),
            ("method", "grad_diff", "forget.method=grad_diff needs a retain set"),
            ("method", "rmu", "forget.method=rmu needs a retain set"),
            ("retain_tasks", "copa", "holds the forget task 'copa'"),
            ("retain_tasks", "nosuch", "unknown forget.retain_tasks task")]:
        c2 = forget_config.get_config("task=copa")
        c2.forget[field] = value
        with pytest.raises(run.ConfigError, match=message):
            run.validate(c2)
    run.validate(c)


class _Killed(BaseException):
    """Stands in for a SIGKILL right after the forget phase's epoch-1 checkpoint commits."""


def _npo_config(tiny_dir, data, init_from):
    from tests.test_protocol import tiny_config

    c = tiny_config(tiny_dir, data, method="npo", retain_tasks="cb", stop_rule="fixed",
                    max_epochs=3)
    c.init_from = str(init_from)
    return c


def _files(wd):
    """results.json and the predictions, byte for byte; history.jsonl without wall times."""
    out = {str(f.relative_to(wd)): f.read_bytes()
           for f in [*sorted(wd.glob("predictions/**/*.jsonl")), wd / "results.json"]}
    out["history"] = [{k: v for k, v in json.loads(x).items()
                       if k not in ("seconds", "examples_per_s")}
                      for x in (wd / "history.jsonl").open()]
    return out


@pytest.fixture(scope="module")
def npo_runs(tmp_path_factory, shared_data):
    """ft-copa (tiny model, 1 epoch), then from it an uninterrupted NPO forget run and one killed
    after forget epoch 1 and resumed; the reference params each NPO run's loss was given."""
    from forget_jax import checkpoint as ckpt
    from tests._tiny_model import write_tiny_llama_dir
    from tests.test_protocol import tiny_config

    tmp = tmp_path_factory.mktemp("npo")
    tiny_dir = write_tiny_llama_dir(tmp / "model")
    mp = pytest.MonkeyPatch()
    one = sharding.make_mesh  # one device, as a laptop run (cheaper to compile here)
    mp.setattr(run.shd, "make_mesh", lambda *a: one(devices=jax.devices()[:1]))
    ft = tiny_config(tiny_dir, shared_data)
    ft.stop_after = "finetune"
    run.run(ft, str(tmp / "ft"))
    refs = []
    aux = methods.Method.aux
    mp.setattr(methods.Method, "aux", lambda self, ref, *a: (
        refs.append(jax.device_get(ref)), aux(self, ref, *a))[1])
    res = run.run(_npo_config(tiny_dir, shared_data, tmp / "ft"), str(tmp / "ref"))
    save = ckpt.PhaseCheckpoints.save

    def save_then_die(self, step, state, meta):
        save(self, step, state, meta)
        if self.dir.name == "forget" and step == 1:
            raise _Killed

    mp.setattr(ckpt.PhaseCheckpoints, "save", save_then_die)
    with pytest.raises(_Killed):
        run.run(_npo_config(tiny_dir, shared_data, tmp / "ft"), str(tmp / "killed"))
    mp.setattr(ckpt.PhaseCheckpoints, "save", save)
    killed_results = json.loads((tmp / "killed" / "results.json").read_text())
    epoch1 = ckpt.PhaseCheckpoints(tmp / "killed", "forget")
    state1, meta1 = epoch1.restore(None)
    epoch1.close()
    run.run(_npo_config(tiny_dir, shared_data, tmp / "ft"), str(tmp / "killed"))
    best = ckpt.BestCheckpoint(tmp / "ft")
    ft_params, _ = best.restore(ckpt.abstract_like(refs[0]))
    best.close()
    yield dict(tmp=tmp, tiny_dir=tiny_dir, res=res, refs=refs, ft_params=ft_params,
                killed_results=killed_results, state1=state1, meta1=meta1)
    mp.undo()


def test_an_npo_run_records_its_method_and_a_bad_rmu_layer_is_refused(npo_runs, shared_data):
    from tests.test_protocol import tiny_config

    res, tmp = npo_runs["res"], npo_runs["tmp"]
    assert res["complete"] and res["forget_method"] == "npo" and res["forget_mode"] == "random"
    assert res["retain_set"] == {"tasks": ["cb"], "n": 12} and res["epochs"]["forget"] == 3
    c = tiny_config(npo_runs["tiny_dir"], shared_data, method="rmu", retain_tasks="cb")
    c.forget.rmu.layer = 2  # the tiny model has 2 layers: 1 is the only valid layer
    with pytest.raises(run.ConfigError, match=r"forget.rmu.layer=2 is out of range"):
        run.run(c, str(tmp / "rmu"))
    assert not (tmp / "rmu" / "results.json").exists()


def test_npo_killed_mid_forget_resumes_identically_with_the_reference_restored(npo_runs):
    tmp, refs = npo_runs["tmp"], npo_runs["refs"]
    assert npo_runs["killed_results"]["complete"] is False  # it died inside the forget phase
    assert npo_runs["meta1"]["epoch"] == 1 and not npo_runs["meta1"]["done"]
    assert _files(tmp / "killed") == _files(tmp / "ref")
    # three NPO starts (uninterrupted, killed, resumed): each loss got the same reference, the
    # fine-tuned checkpoint `ft` wrote (restored from it on resume), not the resumed weights
    assert len(refs) == 3
    leaves = [jax.tree.leaves(r) for r in refs]
    for ft_leaf, *run_leaves in zip(jax.tree.leaves(npo_runs["ft_params"]), *leaves,
                                    strict=True):
        for x in run_leaves:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(ft_leaf))
    s1 = npo_runs["state1"]
    epoch1 = jax.tree.leaves(s1["params"] if isinstance(s1, dict) else s1.params)
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))  # forget epoch 1 moved them
               for a, b in zip(epoch1, leaves[2], strict=True))
