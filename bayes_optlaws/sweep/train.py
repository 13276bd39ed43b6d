"""Training loop: a group of runs that share model shape, step count and data source, trained together.

The runs of a group are stacked along a leading axis and trained with one jitted function that ``jax.vmap``s a
``lax.scan`` of ``chunk`` optimizer steps over (params, opt_state, per-step LR, per-step batch offsets).  A group
of one run skips ``vmap`` (2-D activations, the fast path on CPU).  The LR of update ``k`` is passed as data
through ``optax.inject_hyperparams`` (no recompilation per schedule) and read back from the optimizer state after
the update, so the curve records the LR the optimizer actually applied.

Optimizer (as in the Opt-Laws paper): global-norm clipping at 1.0, then AdamW (β1 0.9, β2 0.95, ε 1e-8, weight
decay 0.1 on 2-D weights only, decoupled and scaled by the LR as in ``optax.adamw``).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import jax
import jax.numpy as jnp
import optax

from .model import ModelShape, init_params, loss_fn

from .train_rules import DIVERGENCE_RULE, EMA_BETA, SPIKE_AFTER_FRAC, SPIKE_NATS, UNIGRAM_MARGIN  # noqa: F401


def _tree_norm(tree):
    fn = getattr(getattr(optax, "tree", None), "norm", None) or optax.global_norm
    return fn(tree)


def make_optimizer() -> optax.GradientTransformation:
    def decay_mask(params):
        return jax.tree_util.tree_map(lambda a: a.ndim == 2, params)

    return optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.inject_hyperparams(optax.adamw)(learning_rate=0.0, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1,
                                              mask=decay_mask),
    )


def _with_lr(opt_state, lr):
    clip_state, inj = opt_state
    hp = dict(inj.hyperparams)
    hp["learning_rate"] = jnp.asarray(lr, dtype=hp["learning_rate"].dtype)
    return (clip_state, inj._replace(hyperparams=hp))


def _applied_lr(opt_state):
    return opt_state[1].hyperparams["learning_rate"]


@dataclass
class GroupJob:
    """Everything needed to train one group of runs (all arrays host-side numpy)."""

    shape: ModelShape
    batch: int
    steps: int
    lrs: np.ndarray            # (G, steps) float32, LR applied at update k
    starts: np.ndarray         # (G, steps, batch) int32, window start offsets into ``data``
    data: np.ndarray           # uint8 training bytes
    val_windows: np.ndarray    # (E, T+1) uint8, the fixed evaluation set
    seeds: list[int]
    log_every: int = 10
    eval_every: int = 100
    periodic_eval_seqs: int = 256
    init_params: Any = None    # optional stacked params (leading axis G), e.g. a parent's final params
    precision: str = "highest"
    eval_batch: int = 128


@dataclass
class GroupResult:
    final_val_loss: np.ndarray            # (G,)
    step_losses: np.ndarray               # (G, steps) train loss at every update (before the update)
    applied_lrs: np.ndarray               # (G, steps) LR read back from the optimizer state
    grad_norms: np.ndarray                # (G, steps) global grad norm before clipping
    val_steps: list[int]
    val_losses: np.ndarray                # (G, n_val) periodic validation losses (periodic subset)
    final_params: Any                     # stacked params (G, ...), host numpy
    wall_s: float
    compile_s: float
    extra: dict = field(default_factory=dict)


@functools.lru_cache(maxsize=32)
def _init_fn(shape: ModelShape):
    return jax.jit(lambda k: init_params(shape, k))


def init_stack(shape: ModelShape, seeds: list[int]):
    """Initial params for each seed, computed on the CPU backend (bit-identical on every platform), stacked."""
    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        each = [_init_fn(shape)(jax.random.PRNGKey(int(s))) for s in seeds]
        each = [jax.device_get(p) for p in each]
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *each)


@functools.lru_cache(maxsize=32)
def _build_functions(shape: ModelShape, G: int, eval_batch: int, precision: str):
    tx = make_optimizer()
    T = shape.seq_len
    offs = jnp.arange(T + 1, dtype=jnp.int32)

    def one_step(carry, xs, data):
        params, opt = carry
        start, lr = xs
        window = data[start[:, None] + offs[None, :]].astype(jnp.int32)
        loss, grads = jax.value_and_grad(loss_fn)(params, window, shape)
        gnorm = _tree_norm(grads)
        opt = _with_lr(opt, lr)
        updates, opt = tx.update(grads, opt, params)
        params = optax.apply_updates(params, updates)
        return (params, opt), (loss, gnorm, _applied_lr(opt))

    def chunk(params, opt, starts, lrs, data):
        (params, opt), outs = jax.lax.scan(lambda c, x: one_step(c, x, data), (params, opt), (starts, lrs))
        return params, opt, outs

    def evaluate(params, windows):
        eb = min(eval_batch, windows.shape[0])
        nb = windows.shape[0] // eb
        wb = windows[: nb * eb].reshape(nb, eb, T + 1).astype(jnp.int32)
        losses = jax.lax.map(lambda w: loss_fn(params, w, shape), wb)
        return jnp.mean(losses)

    if G == 1:
        chunk_fn = jax.jit(chunk, donate_argnums=(0, 1))
        eval_fn = jax.jit(evaluate)
        init_opt = jax.jit(tx.init)
    else:
        chunk_fn = jax.jit(jax.vmap(chunk, in_axes=(0, 0, 0, 0, None)), donate_argnums=(0, 1))
        eval_fn = jax.jit(jax.vmap(evaluate, in_axes=(0, None)))
        init_opt = jax.jit(jax.vmap(tx.init))
    return chunk_fn, eval_fn, init_opt


def train_group(job: GroupJob, progress=None) -> GroupResult:
    """Train all runs of ``job`` for ``job.steps`` updates; ``progress(done_steps)`` is called after each chunk."""
    G = len(job.seeds)
    shape = job.shape
    t0 = time.perf_counter()
    with jax.default_matmul_precision(job.precision):
        chunk_fn, eval_fn, init_opt = _build_functions(shape, G, job.eval_batch, job.precision)
        if job.init_params is not None:
            params = job.init_params
        else:
            params = init_stack(shape, job.seeds)
        if G == 1:
            params = jax.tree_util.tree_map(lambda a: jnp.asarray(a[0]), params)
        else:
            params = jax.tree_util.tree_map(jnp.asarray, params)
        opt = init_opt(params)
        data = jnp.asarray(job.data)
        val_all = jnp.asarray(job.val_windows)
        val_periodic = jnp.asarray(job.val_windows[: job.periodic_eval_seqs])
        lrs = np.asarray(job.lrs, dtype=np.float32)
        starts = np.asarray(job.starts, dtype=np.int32)
        if G == 1:
            lrs, starts = lrs[0], starts[0]

        outs, val_steps, val_losses = [], [], []
        compile_s = 0.0
        k0 = 0
        while k0 < job.steps:
            k1 = min(k0 + job.log_every, job.steps)
            sl = (slice(None), slice(k0, k1)) if G > 1 else (slice(k0, k1),)
            tc = time.perf_counter()
            params, opt, out = chunk_fn(params, opt, jnp.asarray(starts[sl]), jnp.asarray(lrs[sl]), data)
            if k0 == 0:
                jax.block_until_ready(out)
                compile_s = time.perf_counter() - tc
            outs.append(out)
            if k1 % job.eval_every == 0 and k1 < job.steps:
                val_steps.append(k1)
                val_losses.append(eval_fn(params, val_periodic))
            k0 = k1
            if progress is not None:
                progress(k1)
        final = eval_fn(params, val_all)
        val_steps.append(job.steps)
        val_losses.append(eval_fn(params, val_periodic))
        outs = jax.device_get(outs)
        final = np.asarray(jax.device_get(final), dtype=np.float64).reshape(G)
        val_losses = np.asarray(jax.device_get(val_losses), dtype=np.float64).reshape(len(val_steps), G).T
        params = jax.device_get(params)
    step_losses = np.concatenate([np.asarray(o[0]).reshape(G, -1) for o in outs], axis=1)
    grad_norms = np.concatenate([np.asarray(o[1]).reshape(G, -1) for o in outs], axis=1)
    applied = np.concatenate([np.asarray(o[2]).reshape(G, -1) for o in outs], axis=1)
    if G == 1:
        params = jax.tree_util.tree_map(lambda a: np.asarray(a)[None], params)
    return GroupResult(final_val_loss=final, step_losses=step_losses.astype(np.float64),
                       applied_lrs=applied.astype(np.float64), grad_norms=grad_norms.astype(np.float64),
                       val_steps=val_steps, val_losses=val_losses, final_params=params,
                       wall_s=time.perf_counter() - t0, compile_s=compile_s)


def divergence(step_losses: np.ndarray, final_loss: float, unigram: float) -> dict:
    """Apply :data:`DIVERGENCE_RULE` to one run: returns diverged, early_spike, max_excursion, nonfinite."""
    losses = np.asarray(step_losses, dtype=float)
    nonfinite = (not np.all(np.isfinite(losses))) or not np.isfinite(final_loss)
    ema = np.empty_like(losses)
    m = losses[0] if np.isfinite(losses[0]) else np.inf
    for i, v in enumerate(losses):
        m = EMA_BETA * m + (1 - EMA_BETA) * v if i else v
        ema[i] = m
    runmin = np.minimum.accumulate(np.where(np.isfinite(ema), ema, np.inf))
    start = int(np.ceil(SPIKE_AFTER_FRAC * len(losses)))
    exc = ema[start:] - runmin[start:]
    exc = exc[np.isfinite(exc)]
    max_exc = float(exc.max()) if len(exc) else 0.0
    spike = max_exc > SPIKE_NATS
    at_unigram = bool(np.isfinite(final_loss) and final_loss >= unigram - UNIGRAM_MARGIN)
    return {"diverged": bool(nonfinite or spike or at_unigram), "early_spike": bool(spike),
            "max_excursion": max_exc, "nonfinite": bool(nonfinite), "at_unigram": at_unigram}


def stack_params(params_list):
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *params_list)


def take_params(stacked, i: int):
    return jax.tree_util.tree_map(lambda a: np.asarray(a[i]), stacked)
