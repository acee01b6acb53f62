"""Forgetting methods as losses of the one forget phase (issue 16): ``forget.method``.

The paper forgets by fine-tuning on random labels; the unlearning field uses other losses. Each
method here is a loss with the signature of :func:`forget_jax.steps.default_loss`
(``(params, aux, batch, graphdef) -> (loss, n_tokens)``) that :func:`forget_jax.phases.train_phase`
plugs into the ordinary train step: same loop, sharding, precision, checkpoints and resume. The
forget set is the forget task's training role with its *gold* answers; every loss reads the
answer (response) tokens only.

* ``random_labels`` (default) / ``flipped``: the paper's, the mean token NLL of a redrawn / the
  distractor answer (``steps.default_loss``).
* ``grad_ascent``: ``-NLL_forget`` (mean over the batch's answer tokens).
* ``grad_diff``: ``gamma * (-NLL_forget) + alpha * NLL_retain``.
* ``npo``: ``mean_i -(2/beta) log sigmoid(-beta (log p(y_i) - log p_ref(y_i)))``, log-probs summed
  over answer i's tokens, ``p_ref`` the frozen fine-tuned model (``aux["ref"]``); ``gamma`` x that
  (+ ``alpha * NLL_retain`` with a retain set).
* ``simnpo``: ``mean_i -(2/beta) log sigmoid(beta (NLL(y_i) / |y_i| - delta))``, no reference;
  ``gamma`` x that (+ ``alpha * NLL_retain`` with a retain set).
* ``rmu``: ``gamma * MSE(h_L(forget), c u) + alpha * MSE(h_L(retain), h_L^ref(retain))``: h_L the
  hidden states ``hidden_states[L]`` (HF indexing: the output of the first L layers) at the answer
  tokens, u a fixed random unit vector (numpy ``default_rng([seed, 16]).random(D)`` normalized:
  uniform [0, 1) entries as WMDP's/OpenUnlearning's ``torch.rand``), c ``steering_coeff``; only
  the parameters matching ``rmu.params`` in the ``rmu.n_layers`` layers ending at layer L train.

Definitions follow OpenUnlearning (locuslab/open-unlearning, ``src/trainer/unlearn/`` and
``trainer/utils.py``: ``compute_dpo_loss`` with no "win" term for NPO, ``SimNPO``, ``GradDiff``,
``RMU.compute_activation_loss``: per example the mean over its answer tokens of the mean over D
of the squared difference, then the mean over examples) and its default weights (NPO beta 0.1,
SimNPO beta 4.5, delta 0, gamma 0.125). Where it differs from the original papers we follow it:
RMU's MSE covers the answer tokens (WMDP's covers every token of plain forget text), and NPO /
SimNPO take the mean over the examples of a batch. RMU's layer and coefficients follow WMDP
(zephyr-7b: layer 7 of 32 = ``hidden_states[8]``, layers 5-7's down-projections, c 6.5, alpha
1200); ``rmu.layer = 0`` scales WMDP's choice to the model (``num_layers // 4``).

Packed training rows hold several examples; an example is a (row, segment) pair, and its sums
use a one-hot over the segment ids of the answer positions (like ``steps.score_step``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from forget_jax import sharding as shd
from forget_jax import steps as steps_lib

METHODS = ("random_labels", "flipped", "grad_ascent", "grad_diff", "npo", "simnpo", "rmu")
NEEDS_RETAIN = ("grad_diff", "rmu")  # the other methods take a retain set if one is given
NEEDS_REF = ("npo", "rmu")  # a frozen copy of the fine-tuned model
# Methods whose OpenUnlearning defaults carry the retain term (GradDiff, NPO, SimNPO and RMU all
# extend GradDiff there): the sweep's `methods` experiment gives these the retain set.
RETAIN_BY_DEFAULT = ("grad_diff", "npo", "simnpo", "rmu")


def resolve(method: str, forget_mode: str) -> str:
    """``forget.method`` with the older ``forget_mode`` mapped onto it: ``forget_mode=flipped``
    means ``flipped`` (with the default method). ValueError on an unknown or conflicting one."""
    if method not in METHODS:
        raise ValueError(f"unknown forget.method {method!r}; use one of {', '.join(METHODS)}")
    if forget_mode == "flipped":
        if method in ("random_labels", "flipped"):
            return "flipped"
        raise ValueError(f"forget_mode=flipped conflicts with forget.method={method!r}; "
                         "give one of them")
    return method


def label_mode(method: str) -> str:
    """The per-epoch targets (:func:`forget_jax.phases.epoch_targets`) a method trains on."""
    return {"random_labels": "random", "flipped": "flipped"}.get(method, "gold")


def ratio_mode(method: str) -> str:
    """Which forget ratio is the run's own: "flipped" for flipped labels, else "random"."""
    return "flipped" if method == "flipped" else "random"


# --- per-example pieces -----------------------------------------------------------------------


def example_sums(values: jax.Array, batch: Mapping) -> tuple[jax.Array, jax.Array]:
    """Sums of ``values`` [B,S] (one per answer position) per example, and token counts: [B,J].

    An example is a (row, segment); J = S bounds the segments of a row (each has >= 1 answer
    token). Columns with count 0 are no example."""
    seg = jnp.take_along_axis(batch["mask"], batch["tgt_pos"], axis=1)  # [B,S] 1-based
    S = values.shape[1]
    onehot = (seg[..., None] == jnp.arange(1, S + 1)).astype(jnp.float32)
    onehot = onehot * batch["tgt_w"][..., None]
    return jnp.einsum("bs,bsj->bj", values, onehot), onehot.sum(axis=1)


def mean_over_examples(x: jax.Array, counts: jax.Array) -> jax.Array:
    valid = counts > 0
    return jnp.where(valid, x, 0.0).sum() / jnp.maximum(valid.sum(), 1)


def npo_loss(logp: jax.Array, logp_ref: jax.Array, counts: jax.Array, beta: float) -> jax.Array:
    """``mean_i -(2/beta) log sigmoid(-beta (logp_i - logp_ref_i))``; (2/beta) log 2 at logp =
    logp_ref, -> 0 as logp -> -inf (bounded below, unlike gradient ascent)."""
    return mean_over_examples(-(2.0 / beta) * jax.nn.log_sigmoid(-beta * (logp - logp_ref)),
                              counts)


def simnpo_loss(logp: jax.Array, counts: jax.Array, beta: float, delta: float) -> jax.Array:
    """``mean_i -(2/beta) log sigmoid(beta (NLL_i / |y_i| - delta))``."""
    x = -logp / jnp.maximum(counts, 1.0) - delta
    return mean_over_examples(-(2.0 / beta) * jax.nn.log_sigmoid(beta * x), counts)


def layer_states(params, batch: Mapping, graphdef: nnx.GraphDef, layer: int) -> jax.Array:
    """``hidden_states[layer]`` at the answer tokens (``tgt_pos + 1``): [B,S,D] float32."""
    model = nnx.merge(graphdef, params)
    _, hs = steps_lib.encode_train(model, batch, output_hidden_states=True)
    pos = batch["tgt_pos"] + 1
    return jnp.take_along_axis(hs[layer], pos[..., None], axis=1).astype(jnp.float32)


def activation_mse(h: jax.Array, target: jax.Array, batch: Mapping) -> jax.Array:
    """Per example the mean over its answer tokens of ``mean_D (h - target)^2``; mean over
    examples (OpenUnlearning's ``RMU.compute_activation_loss``)."""
    sums, counts = example_sums(jnp.mean((h - target) ** 2, axis=-1), batch)
    return mean_over_examples(sums / jnp.maximum(counts, 1.0), counts)


def freeze(params, mask):
    """``params`` with the gradient stopped wherever ``mask`` (broadcastable bools) is False."""
    return jax.tree.map(lambda p, m: jnp.where(m, p, jax.lax.stop_gradient(p)), params, mask)


def trainable_mask(params, pattern: str, layers: range) -> Any:
    """Bools per leaf: leaves whose '/'-joined path matches ``pattern`` (re.search) train, in
    the stacked layers (leading axis = layer) only at ``layers``. ValueError if none match."""
    n_match = 0

    def one(path, leaf):
        nonlocal n_match
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        if not re.search(pattern, name):
            return np.False_
        n_match += 1
        if name.startswith("layers/"):
            m = np.zeros((leaf.shape[0],) + (1,) * (leaf.ndim - 1), bool)
            m[list(layers)] = True
            return m
        return np.True_

    mask = jax.tree_util.tree_map_with_path(one, params)
    if not n_match:
        raise ValueError(f"forget.rmu.params={pattern!r} matches no parameter")
    return mask


# --- the method object ------------------------------------------------------------------------


@dataclasses.dataclass
class Method:
    """A resolved method: its hyperparameters, loss and frozen inputs.

    Attributes:
        name: one of :data:`METHODS`.
        hp: its hyperparameters (``config.forget.<name>``; {} for the paper's two).
        retain: whether batches carry a retain batch (``batch["retain"]``).
        layer: rmu: the resolved ``hidden_states`` index L.
        mask: rmu: :func:`trainable_mask` of the parameters.
    """

    name: str
    hp: Mapping[str, Any]
    retain: bool = False
    layer: int = 0
    mask: Any = None

    @property
    def label_mode(self) -> str:
        return label_mode(self.name)

    def loss(self, params, aux, batch, graphdef):
        """The method's loss (``steps.train_step``'s ``loss``): (loss, forget answer tokens)."""
        name, hp = self.name, self.hp
        if name in ("random_labels", "flipped"):
            return steps_lib.loss_fn(params, batch, graphdef)
        if self.mask is not None:
            params = freeze(params, self.mask)
        n = jnp.maximum(batch["tgt_w"].sum(), 1.0)
        retain = 0.0
        if name == "rmu":
            h = layer_states(params, batch, graphdef, self.layer)
            forget = activation_mse(h, aux["u"], batch)
            r = batch["retain"]
            ref = jax.lax.stop_gradient(layer_states(aux["ref"], r, graphdef, self.layer))
            retain = activation_mse(layer_states(params, r, graphdef, self.layer), ref, r)
            return hp["gamma"] * forget + hp["alpha"] * retain, n
        if self.retain:
            retain = steps_lib.loss_fn(params, batch["retain"], graphdef)[0]
        ll = steps_lib.answer_logliks(params, batch, graphdef)
        if name == "grad_ascent":
            return -steps_lib.token_nll(ll, batch["tgt_w"])[0], n
        if name == "grad_diff":
            forget = -steps_lib.token_nll(ll, batch["tgt_w"])[0]
        elif name == "npo":
            logp, counts = example_sums(ll, batch)
            ll_ref = jax.lax.stop_gradient(steps_lib.answer_logliks(aux["ref"], batch, graphdef))
            forget = npo_loss(logp, example_sums(ll_ref, batch)[0], counts, hp["beta"])
        elif name == "simnpo":
            logp, counts = example_sums(ll, batch)
            forget = simnpo_loss(logp, counts, hp["beta"], hp["delta"])
        else:
            raise ValueError(f"unknown method {name!r}")
        return hp["gamma"] * forget + hp["alpha"] * retain, n

    def aux(self, ref_params, hidden_size: int, seed: int):
        """The frozen pytree the loss reads: the reference (fine-tuned) params for NPO / RMU,
        RMU's target ``c u``; None for the others."""
        if self.name == "npo":
            return {"ref": ref_params}
        if self.name == "rmu":
            u = np.random.default_rng([seed, 16]).random(hidden_size)
            return {"ref": ref_params,
                    "u": jnp.asarray(self.hp["steering_coeff"] * u / np.linalg.norm(u),
                                     jnp.float32)}
        return None

    def aux_shardings(self, param_shardings, mesh: Mesh):
        if self.name == "npo":
            return {"ref": param_shardings}
        if self.name == "rmu":
            return {"ref": param_shardings, "u": shd.replicated(mesh)}
        return None


def rmu_layer(layer: int, num_layers: int) -> int:
    """``forget.rmu.layer`` resolved: 0 = ``num_layers // 4`` (WMDP's 8 of 32); else it must be
    in [1, num_layers - 1] (hidden_states[num_layers] is the final norm's output)."""
    L = layer or max(num_layers // 4, 1)
    if not 1 <= L <= num_layers - 1:
        raise ValueError(f"forget.rmu.layer={layer} is out of range for a model with "
                         f"{num_layers} layers; use 1..{num_layers - 1} (0 = num_layers // 4)")
    return L


def build(name: str, forget_cfg: Mapping, params, num_layers: int, retain: bool) -> Method:
    """The :class:`Method` of a resolved name from the ``forget`` config section.

    Raises:
        ValueError: rmu's layer out of range or a parameter pattern that matches nothing.
    """
    sub = forget_cfg[name] if name in forget_cfg else {}
    hp = sub.to_dict() if hasattr(sub, "to_dict") else dict(sub)
    if name != "rmu":
        return Method(name, hp, retain=retain)
    L = rmu_layer(int(hp["layer"]), num_layers)
    first = max(L - int(hp["n_layers"]), 0)
    return Method(name, hp, retain=True, layer=L,
                  mask=trainable_mask(params, hp["params"], range(first, L)))
