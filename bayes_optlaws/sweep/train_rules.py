"""Constants that describe the training rules (importable without jax, for metadata and reports)."""

#: EMA coefficient of the per-step training loss used by the early-spike rule
EMA_BETA = 0.95
SPIKE_NATS = 0.3
SPIKE_AFTER_FRAC = 0.05
UNIGRAM_MARGIN = 0.05

DIVERGENCE_RULE = (
    "diverged = non-finite loss, or final validation loss >= unigram entropy of the validation set - 0.05 nats, "
    "or an early spike: the training-loss EMA (beta 0.95, per step) rises more than 0.3 nats above its running "
    "minimum at any step after the first 5% of steps (x_early_spike, x_at_unigram, x_max_excursion record the "
    "parts)")

OPTIMIZER = ("global-norm gradient clipping 1.0, then AdamW (optax.adamw via inject_hyperparams): b1 0.9, b2 0.95, "
             "eps 1e-8, decoupled weight decay 0.1 (scaled by the LR) on 2-D weights only (embeddings included), "
             "minimum LR 0; LR set per update from the schedule")

MODEL = ("byte-level pre-LN GPT: vocab 256, learned absolute positions, tied input/output embedding, causal "
         "multi-head attention with biases, GELU (tanh) MLP 4x, final LayerNorm, fp32 (matmul precision "
         "'highest'), init normal(0, 0.02), residual projections scaled by 1/sqrt(2 L)")
