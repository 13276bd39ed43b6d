"""Probabilistic divergence boundary: the critical-LR area criterion of opt-laws.md §5 as a Bayesian logistic model.

A critical (normalised) learning rate ``rho = c · D^a / N^b`` (written on centred logs).  A run is at risk when
the area of its schedule **above** rho dominates the warmup area **below** rho:

    A(rho) = ∫_0^T max(eta - rho, 0) dt          W(rho) = ∫_0^{t1} min(eta, rho) dt      (normalised LR × B tokens)
    score  = (A - kappa·W) / (A + kappa·W)          in [-1, 1]; 0 on the boundary A = kappa·W
    P(diverge) = logistic(k · score)

Five parameters (c, a, b, kappa, k), all with posteriors, so every schedule gets a probability with uncertainty.
``W`` is floored at half a step at ``min(eta_max, rho)`` (a zero-warmup run = one-step warmup).  A schedule that
never exceeds rho has score -1 whatever its LR, so its P(diverge) is the floor ``logistic(-k)`` (~0.25 % at the prior
median k = 6).  The bounded score varies smoothly with rho (A grows like (eta_max - rho)^2 for linear pieces); a
log-ratio score was tried first and made NUTS crawl (ESS ~20 in 100 s on the grid) because log A plunges as rho
approaches eta_max.  For linear warmup + linear cooldown this is the paper's closed form:
``A = T (eta_max - rho)^2 / (2 eta_max)`` and ``W = rho t1 (1 - rho / (2 eta_max))`` (tested).
The exact score form is ours (the paper's equations are lost); it is tested by the evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from .schedules import Schedule

GRID_POINTS = 128
DEFAULT_DIVERGENCE_CONFIG = {"grid_points": GRID_POINTS}


@dataclass
class DivergenceInputs:
    """Per-run schedule grids (midpoint rule) in normalised units.

    ``eta``/``w``: whole-stage LR samples and their token weights (runs × K); ``eta_wu``/``w_wu``: the warmup
    ``[0, t1]``; ``floor_dt``: half a step in B tokens; ``eta_max``; centred ``log_N``, ``log_D``.
    """

    eta: np.ndarray
    w: np.ndarray
    eta_wu: np.ndarray
    w_wu: np.ndarray
    floor_dt: np.ndarray
    eta_max: np.ndarray
    log_N: np.ndarray
    log_D: np.ndarray


def schedule_grid(schedule: Schedule, start: float, end: float, k: int) -> tuple[np.ndarray, float]:
    """LR at the ``k`` midpoints of ``[start, end]`` (steps) and the width of each sub-interval in steps."""
    if end <= start:
        return np.zeros(k), 0.0
    width = (end - start) / k
    t = start + (np.arange(k) + 0.5) * width
    return schedule.lr_at(t), width


def divergence_inputs(schedules: list[Schedule], tokens_per_step, model_params, lr_ref: float,
                      log_N_center: float, log_D_center: float, k: int = GRID_POINTS) -> DivergenceInputs:
    """Grids for every run; ``log_*_center`` are the training means (stored with the model)."""
    R = len(schedules)
    eta, w = np.zeros((R, k)), np.zeros((R, k))
    eta_wu, w_wu = np.zeros((R, k)), np.zeros((R, k))
    floor_dt, eta_max, D = np.zeros(R), np.zeros(R), np.zeros(R)
    for i, (s, tps) in enumerate(zip(schedules, tokens_per_step)):
        delta = float(tps) / 1e9
        g, width = schedule_grid(s, 0, s.total, k)
        eta[i], w[i] = g / lr_ref, width * delta
        t1 = s.phases().t1
        g, width = schedule_grid(s, 0, t1, k)
        eta_wu[i], w_wu[i] = g / lr_ref, width * delta
        floor_dt[i] = 0.5 * delta
        eta_max[i] = s.peak_lr / lr_ref
        D[i] = s.total * delta
    N = np.asarray(model_params, float) / 1e9
    return DivergenceInputs(eta, w, eta_wu, w_wu, floor_dt, eta_max, np.log(N) - log_N_center,
                            np.log(D) - log_D_center)


def build_divergence_model(inp: DivergenceInputs, diverged: np.ndarray, log_c_center: float) -> pm.Model:
    """The PyMC graph of the Bayesian boundary."""
    with pm.Model(coords={"run": np.arange(len(diverged))}) as model:
        log_c = pm.Normal("log_c", log_c_center, 1.0)
        a = pm.Normal("a", 0.0, 0.3)
        b = pm.Normal("b", 0.0, 0.3)
        log_kappa = pm.Normal("log_kappa", 0.0, 1.0)
        k = pm.LogNormal("k", np.log(6.0), 0.5)
        log_rho = log_c + a * inp.log_D - b * inp.log_N
        rho = pt.exp(log_rho)[:, None]
        area_above = (inp.w * pt.maximum(inp.eta - rho, 0.0)).sum(axis=1)
        warm_below = (inp.w_wu * pt.minimum(inp.eta_wu, rho)).sum(axis=1)
        floor = inp.floor_dt * pt.minimum(inp.eta_max, rho[:, 0])
        warm_below = pt.maximum(warm_below, floor)
        kw = pt.exp(log_kappa) * warm_below
        score = (area_above - kw) / (area_above + kw)
        p = pm.Deterministic("p_diverge", pm.math.invlogit(k * score), dims="run")
        pm.Bernoulli("diverged", p=p, observed=diverged.astype("int64"), dims="run")
    return model


def sample_divergence_model(model: pm.Model, draws: int = 1000, tune: int = 1000, chains: int = 4,
                            random_seed: int = 0, nuts_sampler: str | None = "nutpie",
                            progressbar: bool = False) -> xr.DataTree:
    kwargs = dict(draws=draws, tune=tune, chains=chains, random_seed=random_seed, progressbar=progressbar,
                  target_accept=0.95)
    if nuts_sampler:
        kwargs["nuts_sampler"] = nuts_sampler
    with model:
        idata = pm.sample(**kwargs)
    return idata


PARAMS = ("log_c", "a", "b", "log_kappa", "k")


def posterior_arrays(idata: xr.DataTree) -> dict[str, np.ndarray]:
    return {p: idata.posterior[p].values.reshape(-1) for p in PARAMS}


def _relu_area(eta: np.ndarray, w: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """``Σ_k w_k max(eta_k - rho_s, 0)`` for every ``rho_s`` (one run's grid; sorted cumulative sums)."""
    order = np.argsort(eta)
    e, ww = eta[order], w[order]
    tail_w = np.concatenate([np.cumsum((ww)[::-1])[::-1], [0.0]])
    tail_we = np.concatenate([np.cumsum((ww * e)[::-1])[::-1], [0.0]])
    idx = np.searchsorted(e, rho, side="right")
    return tail_we[idx] - rho * tail_w[idx]


def _min_area(eta: np.ndarray, w: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """``Σ_k w_k min(eta_k, rho_s)`` = ``Σ w eta - relu area``."""
    return float(np.sum(w * eta)) - _relu_area(eta, w, rho)


def predict_p_diverge(post: dict[str, np.ndarray], inp: DivergenceInputs) -> np.ndarray:
    """Posterior draws of P(diverge) (samples × runs), vectorised over draws."""
    S = post["log_c"].shape[0]
    R = inp.eta.shape[0]
    out = np.empty((S, R))
    log_rho = post["log_c"][:, None] + post["a"][:, None] * inp.log_D[None] - post["b"][:, None] * inp.log_N[None]
    rho = np.exp(log_rho)
    for r in range(R):
        A = _relu_area(inp.eta[r], inp.w[r], rho[:, r])
        W = _min_area(inp.eta_wu[r], inp.w_wu[r], rho[:, r])
        W = np.maximum(W, inp.floor_dt[r] * np.minimum(inp.eta_max[r], rho[:, r]))
        kW = np.exp(post["log_kappa"]) * W
        score = (A - kW) / (A + kW)
        out[:, r] = 1.0 / (1.0 + np.exp(-post["k"] * score))
    return out
