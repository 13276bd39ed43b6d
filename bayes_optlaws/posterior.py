"""Posterior draws as plain numpy: the one place that flattens ArviZ's (chain, draw) axes.

Every fitted component (loss law, divergence model, stage model) predicts with numpy over a single sample axis;
this turns the ``posterior`` group of its InferenceData into ``{name: array (samples, ...)}``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def posterior_arrays(idata, names: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """``{name: draws}`` with (chain, draw) flattened into one leading sample axis (chain-major).

    ``names``: the variables wanted (those absent from the posterior are skipped); default every variable of the
    posterior except ``exclude`` (e.g. deterministic per-run quantities the numpy predictors recompute)."""
    post = idata.posterior
    skip = set(exclude)
    wanted = [v for v in post.data_vars if v not in skip] if names is None else list(names)
    return {name: post[name].values.reshape((-1,) + post[name].shape[2:]) for name in wanted
            if name in post.data_vars}


def interval_coverage(draws: np.ndarray, observed: np.ndarray, levels=(0.5, 0.9)) -> dict[str, float]:
    """Share of ``observed`` values (one per column) inside the central interval of ``draws`` (samples ×
    columns) at each level: ``{"coverage_50": ..., "coverage_90": ...}`` — the posterior predictive check of
    every component (the intervals are numpy's linear-rule quantiles ``(1 ∓ level) / 2``)."""
    observed = np.asarray(observed, float)
    out = {}
    for level in levels:
        lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
        out[f"coverage_{int(round(level * 100))}"] = float(np.mean((observed >= lo) & (observed <= hi)))
    return out
