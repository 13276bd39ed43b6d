"""A byte-level pre-LN GPT in plain JAX (no framework beyond jax + optax).

Learned absolute positions, tied input/output embedding (vocab 256), GELU (tanh) MLP 4×, causal multi-head
attention with biases, LayerNorm before each sub-block and at the end, fp32.  Init: normal(0, 0.02) for
embeddings and weights, residual output projections scaled by 1/sqrt(2L), biases 0, LayerNorm gain 1.
Activations are kept 2-D, shape (batch·time, d), for the dense layers (faster on XLA:CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

VOCAB = 256


@dataclass(frozen=True)
class ModelShape:
    d: int
    layers: int
    heads: int
    seq_len: int

    def __post_init__(self):
        if self.d % self.heads:
            raise ValueError(f"d_model {self.d} is not divisible by heads {self.heads}")

    @property
    def non_embedding_params(self) -> int:
        """Parameters outside the token and position embeddings (LayerNorms, attention, MLP, final LN)."""
        d = self.d
        return self.layers * (12 * d * d + 13 * d) + 2 * d

    @property
    def total_params(self) -> int:
        return self.non_embedding_params + VOCAB * self.d + self.seq_len * self.d

    @property
    def name(self) -> str:
        return f"d{self.d}L{self.layers}"

    def flops_per_token(self) -> float:
        """Approximate training FLOPs per token (6·N matmul + attention scores), for cost estimates."""
        return 6.0 * (self.non_embedding_params + VOCAB * self.d) + 6.0 * self.layers * self.seq_len * self.d


def init_params(shape: ModelShape, key) -> dict:
    d, L = shape.d, shape.layers
    keys = jax.random.split(key, 2 + 4 * L)
    std, rstd = 0.02, 0.02 / math.sqrt(2 * L)

    def normal(k, shp, s):
        return s * jax.random.normal(k, shp, dtype=jnp.float32)

    params = {
        "wte": normal(keys[0], (VOCAB, d), std),
        "wpe": normal(keys[1], (shape.seq_len, d), std),
        "lnf_g": jnp.ones((d,), jnp.float32),
        "lnf_b": jnp.zeros((d,), jnp.float32),
        "blocks": [],
    }
    for i in range(L):
        k = keys[2 + 4 * i: 6 + 4 * i]
        params["blocks"].append({
            "ln1_g": jnp.ones((d,), jnp.float32), "ln1_b": jnp.zeros((d,), jnp.float32),
            "w_qkv": normal(k[0], (d, 3 * d), std), "b_qkv": jnp.zeros((3 * d,), jnp.float32),
            "w_o": normal(k[1], (d, d), rstd), "b_o": jnp.zeros((d,), jnp.float32),
            "ln2_g": jnp.ones((d,), jnp.float32), "ln2_b": jnp.zeros((d,), jnp.float32),
            "w_fc": normal(k[2], (d, 4 * d), std), "b_fc": jnp.zeros((4 * d,), jnp.float32),
            "w_proj": normal(k[3], (4 * d, d), rstd), "b_proj": jnp.zeros((d,), jnp.float32),
        })
    return params


def _ln(x, g, b, eps=1e-5):
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mu), axis=-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + eps) * g + b


def forward(params: dict, tokens, shape: ModelShape):
    """Logits (B·T, 256) for ``tokens`` of shape (B, T)."""
    B, T = tokens.shape
    d, H = shape.d, shape.heads
    hd = d // H
    x = (params["wte"][tokens] + params["wpe"][None, :T]).reshape(B * T, d)
    mask = jnp.tril(jnp.ones((T, T), dtype=bool))
    scale = 1.0 / math.sqrt(hd)
    for blk in params["blocks"]:
        h = _ln(x, blk["ln1_g"], blk["ln1_b"])
        qkv = (h @ blk["w_qkv"] + blk["b_qkv"]).reshape(B, T, 3, H, hd)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k) * scale
        s = jnp.where(mask, s, jnp.float32(-1e30))
        p = jax.nn.softmax(s, axis=-1)
        a = jnp.einsum("bhqk,bkhd->bqhd", p, v).reshape(B * T, d)
        x = x + a @ blk["w_o"] + blk["b_o"]
        h = _ln(x, blk["ln2_g"], blk["ln2_b"])
        h = jax.nn.gelu(h @ blk["w_fc"] + blk["b_fc"], approximate=True)
        x = x + h @ blk["w_proj"] + blk["b_proj"]
    x = _ln(x, params["lnf_g"], params["lnf_b"])
    return x @ params["wte"].T


def loss_fn(params: dict, window, shape: ModelShape):
    """Mean next-byte cross-entropy (nats) of windows (B, T+1): inputs window[:, :-1], targets window[:, 1:]."""
    x, y = window[:, :-1], window[:, 1:]
    logits = forward(params, x, shape)
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, y.reshape(-1, 1), axis=-1)
    return jnp.mean(nll)
