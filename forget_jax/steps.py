"""Pure jitted steps: ``train_step``, ``score_step``, ``features_step``.

Steps take the parameters as a plain pytree (``nnx.split`` + pure dict) and the model's
``GraphDef`` bound with ``functools.partial``; they know no schedule and no tasks. ``make_steps``
jits them with explicit ``in_shardings`` / ``out_shardings`` (from :mod:`forget_jax.sharding`)
and donates the training state.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from forget_jax import sharding as shd
from forget_jax.models import layers

Params = Any  # nested dict of arrays (nnx pure dict)


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Params
    opt_state: Any


def make_optimizer(lr: float, grad_clip: float = 1.0) -> optax.GradientTransformation:
    """The paper's optimizer: global-norm clipping then plain SGD at a constant rate."""
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.sgd(lr))


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, Params]:
    graphdef, state = nnx.split(model)
    return graphdef, nnx.to_pure_dict(state)


# Most float32 logits elements the vocabulary head materializes at once (512 MB): a scoring
# batch of 16 packed rows holds hundreds of answer tokens a row, and at Gemma 3's 262,144-token
# vocabulary their logits alone would be ~11 GB (log-softmax doubles it).
HEAD_CHUNK_ELEMENTS = 1 << 27


def _head_logliks(model, h_BSD, ids_BS):
    logits_BSV = model.logits(h_BSD).astype(jnp.float32)
    logp_BSV = jax.nn.log_softmax(logits_BSV, axis=-1)
    return jnp.take_along_axis(logp_BSV, ids_BS[..., None], axis=-1)[..., 0]


def _answer_logliks(model, h, tgt_pos, tgt_ids, max_elements: int = HEAD_CHUNK_ELEMENTS):
    """Log p(token) at the gathered answer positions only: [B,S] float32.

    The head runs on chunks of ``C`` answer positions (all rows at once, so the batch axis keeps
    its sharding) with ``B*C*V <= max_elements``; a batch that fits runs as one chunk (training
    batches always do). Chunks are rematerialized in the backward pass, so gradients do not
    keep every chunk's logits either."""
    h_BSD = jnp.take_along_axis(h, tgt_pos[..., None], axis=1)
    B, S, D = h_BSD.shape
    C = max(1, max_elements // (B * model.config.vocab_size))
    if S <= C:
        return _head_logliks(model, h_BSD, tgt_ids)
    n = -(-S // C)
    h_nBCD = jnp.pad(h_BSD, ((0, 0), (0, n * C - S), (0, 0))).reshape(B, n, C, D).swapaxes(0, 1)
    ids_nBC = jnp.pad(tgt_ids, ((0, 0), (0, n * C - S))).reshape(B, n, C).swapaxes(0, 1)
    ll_nBC = jax.lax.map(jax.checkpoint(lambda x: _head_logliks(model, *x)), (h_nBCD, ids_nBC))
    return ll_nBC.swapaxes(0, 1).reshape(B, n * C)[:, :S]


def packed_attention(seg):
    """[B,T,T] mask for packed scoring rows (example ``j``: prompt ``3j``, answers ``3j+1``,
    ``3j+2``): causal within an example, answers see its prompt and themselves only."""
    q, k = seg[:, :, None], seg[:, None, :]
    T = seg.shape[1]
    causal = jnp.arange(T)[:, None] >= jnp.arange(T)[None, :]
    same = (q // 3) == (k // 3)
    return causal[None] & (k >= 0) & (q >= 0) & same & ((k % 3 == 0) | (k == q))


def segment_attention(seg):
    """[B,T,T] mask for packed training rows (segment ids, 0 = padding): causal within one
    segment. A row with a single segment is plain causal attention over its real tokens."""
    T = seg.shape[1]
    causal = jnp.arange(T)[:, None] >= jnp.arange(T)[None, :]
    return causal[None] & (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] > 0)


def segment_positions(seg):
    """[B,T] positions restarting at 0 at the first token of every segment."""
    t = jnp.arange(seg.shape[1], dtype=jnp.int32)
    first = jnp.concatenate([jnp.ones_like(seg[:, :1], bool), seg[:, 1:] != seg[:, :-1]], 1)
    return t - jax.lax.cummax(jnp.where(first, t, 0), axis=1)


def encode_train(model, batch: dict, output_hidden_states: bool = False):
    """``model.encode`` of a training batch (packed rows: ``mask`` = segment ids)."""
    seg = batch["mask"]
    return model.encode(batch["tokens"], mask=segment_attention(seg),
                        positions=segment_positions(seg),
                        output_hidden_states=output_hidden_states)


def answer_logliks(params: Params, batch: dict, graphdef: nnx.GraphDef) -> jax.Array:
    """Log p(target token) at every answer position of a training batch: [B,S] float32."""
    model = nnx.merge(graphdef, params)
    h, _ = encode_train(model, batch)
    return _answer_logliks(model, h, batch["tgt_pos"], batch["tgt_ids"])


def token_nll(ll: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean NLL over the weighted answer tokens, their count)."""
    n = jnp.maximum(w.sum(), 1.0)
    return -(ll * w).sum() / n, n


def loss_fn(params: Params, batch: dict, graphdef: nnx.GraphDef):
    """Mean token NLL over the response tokens (prompt masked); rows may hold several
    sequences (``mask`` = segment ids, see :func:`forget_jax.batching.train_batch`)."""
    return token_nll(answer_logliks(params, batch, graphdef), batch["tgt_w"])


def default_loss(params: Params, aux, batch: dict, graphdef: nnx.GraphDef):
    """The training loss of fine-tune / relearn / random-label forgetting (``aux`` unused).
    A forgetting method's loss has this signature (:mod:`forget_jax.methods`)."""
    del aux
    return loss_fn(params, batch, graphdef)


def train_step(state: TrainState, batch: dict, aux=None, *, graphdef: nnx.GraphDef,
               tx: optax.GradientTransformation, grad_clip: float, loss: Callable = default_loss
               ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step. Returns the new state and loss / raw and clipped grad norm.

    ``loss(params, aux, batch, graphdef) -> (loss, n_tokens)``; ``aux`` is a frozen pytree the
    loss reads but never trains (a forgetting method's reference model), None by default.

    The gradients (in the parameters' dtype) are upcast to float32 for the global norm, the
    clip and ``-lr * g``; ``apply_updates`` adds in float32 and rounds once to the parameters'
    dtype. With float16/bfloat16 parameters this is torch's ``model.half()`` + SGD (no float32
    master copy: an update below half an ulp of the parameter is lost); float32 is unchanged.
    """
    (value, n_tok), grads = jax.value_and_grad(loss, has_aux=True)(
        state.params, aux, batch, graphdef)
    grads = jax.tree.map(lambda g: g.astype(jnp.float32), grads)
    raw = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(loss=value, grad_norm=raw, grad_norm_clipped=jnp.minimum(raw, grad_clip),
                   n_tokens=n_tok)
    return TrainState(state.step + 1, params, opt_state), metrics


def score_step(params: Params, batch: dict, *, graphdef: nnx.GraphDef) -> dict[str, jax.Array]:
    """Summed log-likelihood and token count of both answers of each example slot: [B,2E]
    (``E = feat_pos.shape[1] // 3`` examples per row; [B,2] with one example per row)."""
    model = nnx.merge(graphdef, params)
    h, _ = model.encode(batch["tokens"], mask=packed_attention(batch["seg"]),
                        positions=batch["positions"])
    ll = _answer_logliks(model, h, batch["tgt_pos"], batch["tgt_ids"])
    slots = 2 * (batch["feat_pos"].shape[1] // 3)
    onehot = (batch["tgt_choice"][..., None] == jnp.arange(slots)).astype(jnp.float32)
    return dict(loglik_sum=jnp.einsum("bs,bsc->bc", ll, onehot),
                n_tokens=onehot.sum(axis=1).astype(jnp.int32))


def features_step(params: Params, batch: dict, *, graphdef: nnx.GraphDef,
                  layer: int) -> jax.Array:
    """Hidden states of one layer at (last prompt token, last token of each answer): [B,3,D]."""
    model = nnx.merge(graphdef, params)
    _, hs = model.encode(batch["tokens"], mask=packed_attention(batch["seg"]),
                         positions=batch["positions"], output_hidden_states=True)
    h_BTD = hs[layer]
    return jnp.take_along_axis(h_BTD, batch["feat_pos"][..., None], axis=1).astype(jnp.float32)


@jax.jit
def changed_fraction(old: Params, new: Params) -> jax.Array:
    """Fraction of parameter elements (over all leaves) whose value differs, on device: each
    leaf reduces where it lives (sharded leaves give partial sums), only a scalar leaves."""
    changed = sum(jnp.sum(a != b, dtype=jnp.float32) for a, b in
                  zip(jax.tree.leaves(old), jax.tree.leaves(new), strict=True))
    return changed / sum(a.size for a in jax.tree.leaves(old))


@dataclasses.dataclass
class Steps:
    """The jitted steps of one model on one mesh."""

    mesh: Mesh
    graphdef: nnx.GraphDef
    param_shardings: Any
    train: Callable | None
    score: Callable
    features: Callable
    tx: optax.GradientTransformation | None

    def init_state(self, params: Params) -> TrainState:
        """A sharded TrainState around (already sharded) params."""
        assert self.tx is not None
        opt_shardings = _opt_shardings(self.tx, params, self.param_shardings, self.mesh)
        init = jax.jit(lambda p: TrainState(jnp.zeros((), jnp.int32), p, self.tx.init(p)),
                       out_shardings=TrainState(shd.replicated(self.mesh), self.param_shardings,
                                                opt_shardings))
        return init(params)

    def abstract_state(self, params: Params) -> TrainState:
        """ShapeDtypeStructs with shardings of the TrainState, for restoring a checkpoint."""
        shapes = jax.eval_shape(
            lambda p: TrainState(jnp.zeros((), jnp.int32), p, self.tx.init(p)), params)
        return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                            shapes, self.state_shardings(params))

    def state_shardings(self, params: Params) -> TrainState:
        return TrainState(shd.replicated(self.mesh), self.param_shardings,
                          _opt_shardings(self.tx, params, self.param_shardings, self.mesh))


def _opt_shardings(tx, params, param_shardings, mesh):
    """Optimizer state leaves shaped like params take the param's sharding; others replicate."""
    abstract = jax.eval_shape(tx.init, params)
    flat_p = {tuple(map(str, path)): s for path, s in
              jax.tree_util.tree_flatten_with_path(param_shardings)[0]}
    shapes = {tuple(map(str, path)): x.shape for path, x in
              jax.tree_util.tree_flatten_with_path(params)[0]}

    def one(path, leaf):
        key = tuple(map(str, path))
        for n in range(len(key)):
            sub = key[n:]
            if sub in flat_p and shapes[sub] == leaf.shape:
                return flat_p[sub]
        return NamedSharding(mesh, P())

    return jax.tree_util.tree_map_with_path(one, abstract)


def _in_mesh(fn: Callable, mesh: Mesh, remat: bool = False) -> Callable:
    """Traces ``fn`` under the mesh's abstract mesh (so the model can keep activations split
    over the batch axes) and, optionally, with per-layer rematerialisation."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), layers.remat_layers(remat):
            return fn(*args, **kwargs)

    return wrapped


def make_steps(graphdef: nnx.GraphDef, params: Params, mesh: Mesh, *, lr: float | None = None,
               grad_clip: float = 1.0, feature_layer: int = -5, remat: bool = False,
               loss: Callable = default_loss, aux_shardings: Any = None,
               retain: bool = False) -> Steps:
    """Jits the steps with explicit shardings; ``lr=None`` builds scoring/features only.

    ``remat`` recomputes each layer's activations in the backward pass (memory for 7B models).
    ``loss`` replaces the training loss (see :func:`train_step`); with ``aux_shardings`` (the
    shardings of its frozen ``aux`` pytree) ``train(state, batch, aux)`` takes it as a third
    argument; ``retain`` adds a nested ``batch["retain"]`` training batch (a retain set).
    """
    p_shard = shd.param_shardings(params, mesh)
    rep = shd.replicated(mesh)
    bs = lambda nd: shd.batch_sharding(mesh, nd)  # noqa: E731
    score_in = dict(tokens=bs(2), positions=bs(2), seg=bs(2), tgt_pos=bs(2), tgt_ids=bs(2),
                    tgt_choice=bs(2), feat_pos=bs(2))
    score = jax.jit(_in_mesh(functools.partial(score_step, graphdef=graphdef), mesh),
                    in_shardings=(p_shard, score_in),
                    out_shardings=dict(loglik_sum=bs(2), n_tokens=bs(2)))
    features = jax.jit(_in_mesh(functools.partial(features_step, graphdef=graphdef,
                                                  layer=feature_layer), mesh),
                       in_shardings=(p_shard, score_in), out_shardings=bs(3))
    train, tx = None, None
    if lr is not None:
        tx = make_optimizer(lr, grad_clip)
        state_sh = TrainState(rep, p_shard, _opt_shardings(tx, params, p_shard, mesh))
        train_in = dict(tokens=bs(2), mask=bs(2), tgt_pos=bs(2), tgt_ids=bs(2), tgt_w=bs(2))
        if retain:
            train_in["retain"] = dict(train_in)
        in_sh = (state_sh, train_in) + (() if aux_shardings is None else (aux_shardings,))
        train = jax.jit(_in_mesh(functools.partial(train_step, graphdef=graphdef, tx=tx,
                                                   grad_clip=grad_clip, loss=loss), mesh, remat),
                        in_shardings=in_sh,
                        out_shardings=(state_sh, dict(loss=rep, grad_norm=rep,
                                                      grad_norm_clipped=rep, n_tokens=rep)),
                        donate_argnums=0)
    return Steps(mesh, graphdef, p_shard, train, score, features, tx)
