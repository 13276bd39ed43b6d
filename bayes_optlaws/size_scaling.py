"""A prior for how the loss changes with model size, for laws fitted on one size.

A law fitted on runs of a single model size cannot learn how the loss scales with N: the size features are
constant there (standardised to 0), and the terms that mix N with the schedule (``N/I``, ``(N*E_w/I)^pm``, ...)
only learn their schedule part.  Evaluated at another size, such a law extrapolated through those mixed terms
arbitrarily and its intervals held no size uncertainty at all (measured: LossCast Marin, fit 130M, score 300M,
50 % / 90 % intervals covered 16 % / 24 % of the runs).

With :data:`DEFAULT_SIZE_SCALING` on, a one-size law predicts a candidate at another size ``N`` as

    log L(N, D, schedule) = law(N_fit, D, schedule) + k · [log L_c(N, D) − log L_c(N_fit, D)],   k ~ prior

where ``L_c`` is the Chinchilla loss surface (Hoffmann et al. 2022, "Training Compute-Optimal Large Language
Models", arXiv 2203.15556, eq. 10 with the fitted values of their Approach 3: E = 1.69, A = 406.4, B = 410.7,
α = 0.34, β = 0.28; N in parameters, D in tokens) and ``k`` a factor on its size term, one draw per posterior
sample, shared by every candidate (a per-study uncertainty, not per-run noise).  The schedule's effect is the
law's, at the size it was fitted on; only the size step comes from the prior, and its spread grows with the
distance from the fitted size.

How well Chinchilla's size term transfers (``k`` measured as the ratio of observed to Chinchilla log-loss change
between the best runs of two sizes at the same D; ``benchmarks/bench_size_scaling.py``):

* LossCast StepLaw train split (72M–372M, D 1B–50B, 36 size pairs): k = 0.90 ± 0.18 (0.65–1.45, larger at large D);
* embedded tiny-LM grid (25K–793K, far below Chinchilla's range): k = 0.43 ± 0.05.

Hence the default prior ``k ~ LogNormal(0, 0.5)``: centred on Chinchilla (no tuning on any data), its 95 % range
0.38–2.7 covers both.  A law fitted on two or more sizes learns the size effect from its data and does not use
this prior.
"""

from __future__ import annotations

import numpy as np

from .runs import RunsError

#: Hoffmann et al. 2022 (arXiv 2203.15556), eq. 10, Approach 3: L(N, D) = E + A / N^alpha + B / D^beta (nats)
CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}

#: the size-scaling modes of ``model_config["one_size_scaling"]``
SIZE_SCALING_MODES = ("chinchilla", "none")
DEFAULT_SIZE_SCALING = "chinchilla"


def chinchilla_loss(model_params, tokens) -> np.ndarray:
    """Chinchilla's fitted loss surface ``E + A N^-α + B D^-β`` (nats; N in parameters, D in tokens)."""
    c = CHINCHILLA
    N = np.asarray(model_params, float)
    D = np.asarray(tokens, float)
    return c["E"] + c["A"] * N ** -c["alpha"] + c["B"] * D ** -c["beta"]


def chinchilla_log_shift(from_params, to_params, tokens) -> np.ndarray:
    """Change of log loss (nats of log L) from ``from_params`` to ``to_params`` parameters at ``tokens`` tokens,
    by Chinchilla's surface; negative when the target is larger."""
    return np.log(chinchilla_loss(to_params, tokens)) - np.log(chinchilla_loss(from_params, tokens))


def check_mode(mode) -> str:
    """``mode`` if it is one of :data:`SIZE_SCALING_MODES` (``None`` means ``"none"``), else a RunsError."""
    mode = "none" if mode is None else str(mode)
    if mode not in SIZE_SCALING_MODES:
        raise RunsError(f"one_size_scaling must be one of {', '.join(SIZE_SCALING_MODES)}, got {mode!r}")
    return mode


def size_shift_draws(factor_draws: np.ndarray, from_params: float, to_params, tokens) -> np.ndarray:
    """Draws (samples × rows) of the log-loss change from the fitted size to each row's size: the posterior's
    (here: the prior's) size-term factors ``factor_draws`` (samples,) times :func:`chinchilla_log_shift`."""
    shift = chinchilla_log_shift(float(from_params), np.asarray(to_params, float), np.asarray(tokens, float))
    return np.asarray(factor_draws, float)[:, None] * shift[None, :]
