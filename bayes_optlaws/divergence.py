"""Probabilistic divergence boundary: the critical-LR area criterion of opt-laws.md §5 inside Bayesian logistic
models of the run's outcome, normal / unstable / diverged (:mod:`bayes_optlaws.instability`).

**The paper's core.**  A critical (normalised) learning rate ``rho = c · D^a / N^b`` (centred logs).  A run is at
risk when the area of its schedule **above** rho dominates the warmup area **below** rho:

    A(rho) = ∫_0^T max(eta - rho, 0) dt          W(rho) = ∫_0^{t1} min(eta, rho) dt      (normalised LR × B tokens)
    score  = (A - kappa·W) / (A + kappa·W)          in [-1, 1]; 0 on the boundary A = kappa·W

``W`` is floored at half a step at ``min(eta_max, rho)`` (a zero-warmup run = one-step warmup).  For linear warmup
+ linear cooldown this is the paper's closed form ``A = T (eta_max - rho)^2 / (2 eta_max)``,
``W = rho t1 (1 - rho / (2 eta_max))`` (tested).

**Ours: the linear predictor and the outcome model.**  The bounded score alone cannot say "clearly safe": every
schedule that stays below rho has score −1, so the old ``P(diverge) = logistic(k · score)`` could not fall below
``logistic(−k)`` ≈ 2 %.  The score therefore enters a logistic regression with companions and its own cut-points:

    eta_i = k · (score_i + 1) + beta_lr · log(eta_max / rho)_i + beta_batch · (log B_i − mean) + beta_warmup · f_i
            + sigma_size · z[size_i]                                   (z: zero-sum offsets over model sizes)

with ``f`` the warmup fraction t1 / T and ``B`` tokens per step (divergence on public data comes from peak LR ×
batch size too). With the ``beta_log_lr`` / ``beta_features`` priors on (default scale 2) the logistic baseline's
inputs enter as direct terms, ``+ beta_log_lr · z_lr + beta_features · (z_f, z_N, z_D)`` (:data:`FEATURES`,
standardised with the training mean / sd stored in the fit; ``beta_log_lr >= 0``), with the ``beta_lr`` prior's
scale 0 (collinear with them). The size offsets pool the level across ``model_params`` groups; a size the model has
not seen gets, per draw, the value at its log N of the least-squares line through the fitted sizes' offsets
(``new_size_offset="trend"``, the default; :func:`size_offsets` has the other choices, and ``"fresh"``, a new
``Normal(0, sigma_size)`` draw, is what models saved before the option do), shared by all its candidates.
Outcome models (``DEFAULT_DIVERGENCE_CONFIG["outcome"]``):

* ``"two_logistic"`` (default): two copies of the predictor, each with its own slopes, size levels and intercept:
  diverged vs not on every run, and unstable vs normal on the runs that did not diverge;
  ``P(unstable) = (1 − P(diverged)) · P(unstable | not diverged)``.  With ``unstable_boundary="shared"``
  (default) the unstable copy uses the diverged copy's rho and kappa (one critical LR, one area score; its own
  ``u_k``), with ``"own"`` it has its own;
* ``"ordered"``: cut-points ``cut_unstable < cut_diverged`` on one predictor.  With a ``diverged_slopes`` prior of
  scale > 0 the diverged cut gets its own slopes ``gamma`` on the standardised features (partial proportional odds) in
  the sequential form that never gives a negative probability: ``P(diverged) = σ(eta + gamma · z −
  cut_diverged)``, ``P(unstable) = (1 − P(diverged)) · σ(eta − cut_unstable)``; with 0 it is
  ``pm.OrderedLogistic``: ``P(diverged) = σ(eta − cut_diverged)``, ``P(unstable) = σ(eta − cut_unstable) −
  P(diverged)``;
* ``"binary"``: diverged vs not only (unstable runs count as normal); ``P(unstable)`` is NaN;
* ``"area_logistic"``: the first model, ``P(diverge) = σ(k · score)`` (five parameters, no companions, no
  cut-point; floor ``σ(−k)``), kept for comparison and to load models saved before the outcome model.

Every prior is a :class:`~bayes_optlaws.priors.Prior` in :data:`DEFAULT_DIVERGENCE_PRIORS`;
``divergence_config["priors"]`` replaces any of them by name (the number shorthands of earlier versions, e.g.
``k_median`` or ``cut_sd``, still work), and a fit records all of them, as dicts, in its config.  The other
settings are in :data:`DEFAULT_DIVERGENCE_CONFIG`; NUTS settings come from the law's ``sampler_config``.
:func:`fit_divergence` runs a prior predictive check, samples, and records R-hat / ESS / divergences.
:meth:`DivergenceFit.predict` is numpy, vectorised over draws and runs (sorted cumulative sums of each run's grid,
one ``searchsorted`` per 32 runs, run-major; the shared area score is computed once).

**Measured** on the embedded grid's 5 CV folds (``benchmarks/bench_divergence.py --variants V --draws 300``, the
folds of ``bayes-optlaws evaluate``; 367 runs, 49 diverged, 77 unstable), P(diverge) F1 / Brier, P(unstable)
Brier:

* default (``two_logistic``, shared rho / kappa, feature terms, ``k ~ LogNormal(log 0.5, 1)``, NUTS
  ``target_accept`` 0.85): **0.907 / 0.0195, 0.039** (81 s for the 5 folds; 0.907 / 0.0194 at 0.95 in
  230 s); the same with each copy's own rho / kappa: 0.907 / 0.0195, 0.039 (614 s); ``binary`` with the same
  priors: 0.898 / 0.0197; baselines: logistic regression 0.917 / 0.0208
  (0.130 on the unstable label), peak-LR threshold 0.907 / 0.0245, constant rate 0.166;
* the previous default (``ordered``, ``k ~ LogNormal(log 6, 0.5)``, ``beta_lr ~ HalfNormal(3)``, no feature
  terms): 0.817 / 0.0268, 0.092; the proportional-odds model let the 77 unstable runs pull the shared predictor;
  the opt-in diverged-only slopes gave 0.898 / 0.0211, 0.046 but P(diverge) was not monotone in peak LR;
* geometry: with ``k`` ~ 6 the score is a near-step in rho for the grid's 66 zero-warmup runs (their warmup area
  is the half-step floor), so NUTS adapted a step size of 0.008 and took ~680 leapfrog steps per draw (178 s of
  sampling for 4 × 2,000 iterations); the default takes ~290.  A softplus-smoothed area (tested, not kept) gave
  step size 0.22 but chains that disagree (R-hat 1.5): the posterior of rho is multi-modal once smoothed.

The default's priors were chosen by comparing these variants on the same folds, so its CV figures are
optimistic by that selection (the baselines involve no such choice).  Reliability of the default under CV: 240 runs at P(diverge) < 1 % (none diverged), 39 at ≥ 0.8 (mean 0.93,
97 % diverged); P(unstable) 176 runs < 1 % (none unstable), 53 at ≥ 0.8 (mean 0.90, 96 % unstable).  k and
log kappa stay close to their priors on this grid: the peak LR carries the signal, the warmup balance adds
little.  The exact score form and the linear predictor are ours (the paper's equations are lost); they are tested
by the evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from . import instability as ins
from . import loss_model as lm
from .posterior import posterior_arrays
from .priors import SCALE_PARAMETER, Prior, PriorError, recorded_config, resolve_priors, shorthand_priors
from .runset import RunSet
from .schedules import Schedule
from .unstable_loss import UnstableLossFit
from .user_warnings import warn_user

GRID_POINTS = 128

#: priors of the divergence / instability model (:class:`~bayes_optlaws.priors.Prior`); the unstable copy's
#: ``u_`` parameters have the same.  A slope prior of scale 0 leaves its term out of the model (slope fixed at 0).
DEFAULT_DIVERGENCE_PRIORS = {
    "log_c": Prior("Normal", mu=0.0, sigma=0.5),       # log rho level, about the centre between the largest safe
                                                       #   and the smallest diverged normalised peak LR
    "a": Prior("Normal", mu=0.0, sigma=0.3),           # exponent of D in rho
    "b": Prior("Normal", mu=0.0, sigma=0.3),           # exponent of N in rho
    "log_kappa": Prior("Normal", mu=0.0, sigma=1.0),   # log kappa (warmup weight)
    "k": Prior("LogNormal", mu=float(np.log(0.5)), sigma=1.0),  # slope on the area score
    "beta_lr": Prior("HalfNormal", sigma=0.0),         # slope on log(peak LR / rho) (>= 0: monotone in LR); off
                                                       #   with the feature terms (collinear with them)
    "beta_log_lr": Prior("HalfNormal", sigma=2.0),     # feature term: standardised log peak LR (>= 0)
    "beta_features": Prior("Normal", mu=0.0, sigma=2.0),  # feature terms: warmup fraction, log N, log D
    "diverged_slopes": Prior("Normal", mu=0.0, sigma=0.0),  # "ordered": diverged-only slopes on the FEATURES
                                                       #   (partial proportional odds, sequential form); off
    "beta_batch": Prior("Normal", mu=0.0, sigma=1.0),  # slope on centred log tokens per step
    "beta_warmup": Prior("Normal", mu=0.0, sigma=0.0),  # slope on the warmup fraction (0..1); off
    "cut": Prior("Normal", mu=0.0, sigma=5.0),         # each cut-point (cut_diverged, u_cut_unstable, cut_unstable)
    "cut_gap": Prior("LogNormal", mu=float(np.log(3.0)), sigma=1.0),  # "ordered": cut_diverged - cut_unstable
    "sigma_size": Prior("HalfNormal", sigma=1.0),      # scale of the per-size level offsets
}
#: priors that must be positive (scales, and slopes that keep P(diverge) monotone in the peak LR)
POSITIVE_PRIORS = ("k", "beta_lr", "beta_log_lr", "cut_gap", "sigma_size")
#: the number shorthands of earlier versions (and of the models they saved): ``<name>_sd: number`` sets that
#: prior's sigma (see :func:`divergence_priors` for ``k_median`` / ``k_log_sd``, ``cut_gap_median`` and
#: ``beta_features_sd``)
LEGACY_PRIOR_KEYS = {"log_c_sd": ("log_c", "Normal"), "a_sd": ("a", "Normal"), "b_sd": ("b", "Normal"),
                     "log_kappa_sd": ("log_kappa", "Normal"), "beta_lr_sd": ("beta_lr", "HalfNormal"),
                     "diverged_slopes_sd": ("diverged_slopes", "Normal"),
                     "beta_batch_sd": ("beta_batch", "Normal"), "beta_warmup_sd": ("beta_warmup", "Normal"),
                     "cut_sd": ("cut", "Normal"), "sigma_size_sd": ("sigma_size", "HalfNormal")}
SHORTHAND_KEYS = tuple(LEGACY_PRIOR_KEYS) + ("k_median", "k_log_sd", "cut_gap_median", "beta_features_sd")

#: settings of the divergence / instability model (every entry is used; see the module docstring)
DEFAULT_DIVERGENCE_CONFIG = {
    "priors": {},                    # name -> Prior (or its dict) over DEFAULT_DIVERGENCE_PRIORS; a fit records
                                     #   every prior it used here, as dicts
    "grid_points": 64,               # midpoints per schedule for the areas A and W
    "outcome": "two_logistic",       # "two_logistic" | "ordered" | "binary" | "area_logistic"
    "unstable_gap": ins.DEFAULT_UNSTABLE_GAP,  # nats above the block's best from which a run is unstable
    "exclude_unstable": True,        # fit the loss law on the normal runs only (BayesOptLaw.fit)
    "unstable_boundary": "shared",   # "two_logistic": the unstable copy's critical LR rho and warmup weight kappa
                                     #   are its own ("own") or the diverged copy's ("shared")
    "prior_draws": 300,              # draws of the prior predictive check
    "target_accept": 0.85,           # NUTS target acceptance of this model (None: the law's sampler_config):
                                     #   on the grid 81 leapfrog steps per draw vs 252 at 0.95, and log_c mixes
                                     #   better (R-hat 1.007, ESS 467 vs 1.033, 147); 0-1 divergent transitions
    "unstable_excess_above": "law",  # what an unstable run's excess loss (DivergenceFit.unstable_excess, added to
                                     #   the loss law's prediction) is measured from: "law" (the loss law's
                                     #   posterior mean for the run; BayesOptLaw passes it) or "block_best" (the
                                     #   best run of its block; the models saved before this option)
    "unstable_loss": "level",        # where an unstable run ends: "level" (its own regression on peak LR, model
                                     #   size and warmup, :mod:`bayes_optlaws.unstable_loss`; the fixed excess
                                     #   below when too few runs are unstable) or "excess" (the law's loss plus
                                     #   the fixed unstable_excess; the models saved before this option)
    "new_size_offset": "trend",      # level offset of a model size the fit has not seen (NEW_SIZE_OFFSETS):
                                     #   "trend" (per draw, the least-squares line of the fitted sizes' offsets
                                     #   in log N, read at the new size), "nearest" (the nearest fitted size's),
                                     #   "zero" (the pooled mean) or "fresh" (a new Normal(0, sigma_size) draw;
                                     #   the models saved before this option)
}


def divergence_priors(config: dict | None) -> dict[str, Prior]:
    """The priors of a divergence config: :data:`DEFAULT_DIVERGENCE_PRIORS`, then the number shorthands it
    holds (:data:`LEGACY_PRIOR_KEYS`; ``k_median`` / ``k_log_sd`` give ``k ~ LogNormal(log median, sd)``,
    ``cut_gap_median`` gives ``cut_gap ~ LogNormal(log median, 1)``, ``beta_features_sd`` sets both feature-term
    priors), then its ``priors`` entries; checked (PriorError, a RunsError, on a bad one)."""
    config = config or {}
    extra = {}
    if config.get("k_median") is not None or config.get("k_log_sd") is not None:
        k = DEFAULT_DIVERGENCE_PRIORS["k"].kwargs
        median = config.get("k_median")
        extra["k"] = Prior("LogNormal", mu=float(np.log(median)) if median is not None else k["mu"],
                           sigma=float(config.get("k_log_sd") if config.get("k_log_sd") is not None else k["sigma"]))
    if config.get("cut_gap_median") is not None:
        extra["cut_gap"] = Prior("LogNormal", mu=float(np.log(config["cut_gap_median"])), sigma=1.0)
    if config.get("beta_features_sd") is not None:
        sd = float(config["beta_features_sd"])
        extra.update(beta_log_lr=Prior("HalfNormal", sigma=sd), beta_features=Prior("Normal", mu=0.0, sigma=sd))
    overrides = {**shorthand_priors(config, LEGACY_PRIOR_KEYS), **extra, **(config.get("priors") or {})}
    priors = resolve_priors(DEFAULT_DIVERGENCE_PRIORS, overrides, positive=POSITIVE_PRIORS,
                            where="divergence_config priors")
    if is_off(priors["beta_log_lr"]) != is_off(priors["beta_features"]):
        raise PriorError("divergence_config priors: the feature terms beta_log_lr and beta_features are in or out "
                         f"of the model together, but one has scale 0 and the other not ({priors['beta_log_lr']!r}, "
                         f"{priors['beta_features']!r}); give both scale 0 to leave them out")
    return priors


def recorded_divergence_config(config: dict | None) -> dict:
    """What a fit records: ``config`` over the defaults, its number shorthands replaced by every prior, as dicts;
    every prior and every choice (:func:`check_choices`) checked."""
    return check_choices(recorded_config(config, DEFAULT_DIVERGENCE_CONFIG, dict.fromkeys(SHORTHAND_KEYS),
                                         divergence_priors(config)))


OUTCOME_MODELS = ("ordered", "two_logistic", "binary", "area_logistic")
#: the logistic baseline's inputs as direct linear terms, each standardised with its training mean and sd
FEATURES = ("log_peak_lr", "warmup_frac", "log_N", "log_D")
#: config entries added after models were first saved, with the values that reproduce those models
LATER_CONFIG_OFF = {"unstable_boundary": "own", "target_accept": None, "new_size_offset": "fresh",
                    "unstable_excess_above": "block_best", "unstable_loss": "excess"}
#: ``divergence_config["unstable_loss"]``: where a run that trains unstably ends
UNSTABLE_LOSS_MODES = ("level", "excess")
#: how an unseen model size's level offsets are predicted (``divergence_config["new_size_offset"]``)
NEW_SIZE_OFFSETS = ("trend", "nearest", "zero", "fresh")
#: the config entries that name one of a fixed set of choices, and those choices
CONFIG_CHOICES = {"outcome": OUTCOME_MODELS, "unstable_boundary": ("own", "shared"),
                  "new_size_offset": NEW_SIZE_OFFSETS, "unstable_loss": UNSTABLE_LOSS_MODES,
                  "unstable_excess_above": ("law", "block_best")}
#: prior shorthands added after models were first saved, with the values that reproduce those models (for a saved
#: config without a ``priors`` entry)
LATER_PRIORS_OFF = {"beta_features_sd": 0.0, "diverged_slopes_sd": 0.0}
AREA_PARAMS = ("log_c", "a", "b", "log_kappa", "k")


# ============================================================================ schedule grids
@dataclass
class DivergenceInputs:
    """Per-run schedule grids (midpoint rule) in normalised units.

    ``eta``/``w``: whole-stage LR samples and their token weights (runs × K); ``eta_wu``/``w_wu``: the warmup
    ``[0, t1]``; ``floor_dt``: half a step in B tokens; ``eta_max``; centred ``log_N``, ``log_D``, ``log_B``
    (tokens per step); ``warmup_frac`` = t1 / T; ``size``: index of the run's model size in the fit's sizes
    (−1 for a size the model has not seen); ``z``: the :data:`FEATURES` standardised with the training
    statistics (runs × 4, dimensionless; zeros until :func:`standardise_features` fills them).
    """

    eta: np.ndarray
    w: np.ndarray
    eta_wu: np.ndarray
    w_wu: np.ndarray
    floor_dt: np.ndarray
    eta_max: np.ndarray
    log_N: np.ndarray
    log_D: np.ndarray
    log_B: np.ndarray = None
    warmup_frac: np.ndarray = None
    size: np.ndarray = None
    z: np.ndarray = None

    def __post_init__(self) -> None:
        R = self.eta.shape[0]
        self.z = np.zeros((R, len(FEATURES))) if self.z is None else self.z
        self.log_B = np.zeros(R) if self.log_B is None else self.log_B
        self.warmup_frac = np.zeros(R) if self.warmup_frac is None else self.warmup_frac
        self.size = np.full(R, -1, dtype=int) if self.size is None else self.size


def schedule_grid(schedule: Schedule, start: float, end: float, k: int) -> tuple[np.ndarray, float]:
    """LR at the ``k`` midpoints of ``[start, end]`` (steps) and the width of each sub-interval in steps."""
    if end <= start:
        return np.zeros(k), 0.0
    width = (end - start) / k
    t = start + (np.arange(k) + 0.5) * width
    return schedule.lr_at(t), width


def divergence_inputs(schedules: list[Schedule], tokens_per_step, model_params, lr_ref: float,
                      log_N_center: float, log_D_center: float, k: int = GRID_POINTS, log_B_center: float = 0.0,
                      sizes: list[int] | None = None) -> DivergenceInputs:
    """Grids for every run; ``log_*_center`` are the training means (stored with the model); ``sizes``: the
    model sizes of the fit (for the per-size offsets)."""
    R = len(schedules)
    eta, w = np.zeros((R, k)), np.zeros((R, k))
    eta_wu, w_wu = np.zeros((R, k)), np.zeros((R, k))
    floor_dt, eta_max, D, frac = np.zeros(R), np.zeros(R), np.zeros(R), np.zeros(R)
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
        frac[i] = t1 / s.total
    params = np.asarray(model_params, float)
    N = params / 1e9
    B = np.asarray(tokens_per_step, float)
    index = {int(v): j for j, v in enumerate(sizes or [])}
    size = np.array([index.get(int(p), -1) for p in params], dtype=int)
    return DivergenceInputs(eta, w, eta_wu, w_wu, floor_dt, eta_max, np.log(N) - log_N_center,
                            np.log(D) - log_D_center, np.log(B) - log_B_center, frac, size)


def raw_features(inp: DivergenceInputs) -> np.ndarray:
    """The :data:`FEATURES` per run (runs × 4): log normalised peak LR, warmup fraction t1 / T, centred log N
    (N in billions of parameters) and centred log D (D in billions of tokens)."""
    return np.column_stack([np.log(inp.eta_max), inp.warmup_frac, inp.log_N, inp.log_D])


def feature_stats(inp: DivergenceInputs) -> dict[str, list[float]]:
    """Training mean and sd of every feature (``{name: [mean, sd]}``; an sd of 0, a constant feature, is
    stored as 1 so the feature standardises to 0)."""
    x = raw_features(inp)
    sd = x.std(axis=0)
    return {name: [float(m), float(v) if v > 1e-12 else 1.0] for name, m, v in zip(FEATURES, x.mean(axis=0), sd)}


def standardise_features(inp: DivergenceInputs, stats: dict[str, list[float]]) -> DivergenceInputs:
    """Fill ``inp.z`` with the features standardised by the training ``stats`` (returns ``inp``)."""
    mean = np.array([stats[name][0] for name in FEATURES])
    sd = np.array([stats[name][1] for name in FEATURES])
    inp.z = (raw_features(inp) - mean) / sd
    return inp


# ============================================================================ the PyMC model
#: the parameters of rho and kappa (the area score), which the unstable copy may share
RHO_PARAMS = ("log_c", "a", "b", "log_kappa")


def _param_names(prefix: str, own_area: bool = True) -> tuple[str, ...]:
    rest = ("k", "beta_lr", "beta_batch", "beta_warmup", "beta_log_lr", "beta_features", "sigma_size",
            "size_offset_raw")
    return tuple(prefix + p for p in (RHO_PARAMS if own_area else ()) + rest)


def is_off(prior: Prior) -> bool:
    """Whether ``prior`` leaves its term out of the model: a scale parameter of 0."""
    return prior.dist in SCALE_PARAMETER and prior.scale <= 0


def _slope(name: str, prior: Prior):
    """A companion's slope with its prior; a prior of scale 0 leaves the companion out (slope fixed at 0)."""
    return 0.0 if is_off(prior) else prior.create_variable(name)


def _shifted(prior: Prior, shift: float) -> Prior:
    """``prior`` with its location ``mu`` moved by ``shift`` (a prior stated relative to a data-derived centre)."""
    return Prior(prior.dist, **{**prior.kwargs, "mu": prior.kwargs.get("mu", 0.0) + float(shift)})


def _tensor_area(prefix: str, inp: DivergenceInputs, log_c_center: float, priors: dict):
    """Priors of the critical LR ``rho = c · D^a / N^b`` and the warmup weight kappa, and the area score of every
    run (PyTensor): ``(score, log_rho, log_c)``.  The ``log_c`` prior is about ``log_c_center``."""
    log_c = _shifted(priors["log_c"], log_c_center).create_variable(prefix + "log_c")
    a, b, log_kappa = (priors[name].create_variable(prefix + name) for name in ("a", "b", "log_kappa"))
    log_rho = log_c + a * inp.log_D - b * inp.log_N
    rho = pt.exp(log_rho)[:, None]
    area_above = (inp.w * pt.maximum(inp.eta - rho, 0.0)).sum(axis=1)
    warm_below = (inp.w_wu * pt.minimum(inp.eta_wu, rho)).sum(axis=1)
    warm_below = pt.maximum(warm_below, inp.floor_dt * pt.minimum(inp.eta_max, rho[:, 0]))
    kw = pt.exp(log_kappa) * warm_below
    return (area_above - kw) / (area_above + kw), log_rho, log_c


def _tensor_predictor(prefix: str, inp: DivergenceInputs, centers: tuple[float, float], priors: dict,
                      n_sizes: int, area_only: bool = False, area=None):
    """Priors and the linear predictor ``eta`` (runs) of one copy of the boundary, in PyTensor.

    ``centers`` = (prior centre of log rho, training mean of log peak LR).  The companions are centred so that
    the cut-points are nearly uncorrelated with the slopes: ``k · (score + 1)`` is 0 for a schedule that never
    exceeds rho, and ``log(peak / rho)`` is taken relative to its value for the mean peak LR at rho = the
    prior centre (the constants are absorbed by the cut-points; ``area_only``: the old ``k · score``).
    ``area``: another copy's ``(score, log_rho, log_c)`` to share instead of this copy's own rho and kappa."""
    log_c_center, log_lr_center = centers
    score, log_rho, log_c = area if area is not None else _tensor_area(prefix, inp, log_c_center, priors)
    k = priors["k"].create_variable(prefix + "k")
    # a higher peak LR relative to rho never makes a run safer: beta_lr >= 0 (with k > 0, P rises with peak LR)
    beta_lr, beta_batch, beta_warmup = (_slope(prefix + name, priors[name])
                                        for name in ("beta_lr", "beta_batch", "beta_warmup"))
    if area_only:
        return k * score
    log_ratio = np.log(inp.eta_max) - log_lr_center - (log_rho - log_c)
    eta = k * (score + 1.0) + beta_lr * log_ratio + beta_batch * inp.log_B + beta_warmup * inp.warmup_frac
    if not (is_off(priors["beta_log_lr"]) and is_off(priors["beta_features"])):
        eta = eta + _feature_terms(prefix, inp, priors)
    if n_sizes >= 2:
        sigma_size = priors["sigma_size"].create_variable(prefix + "sigma_size")
        raw = pm.ZeroSumNormal(prefix + "size_offset_raw", sigma=1.0, dims="size")
        eta = eta + sigma_size * raw[inp.size]
    return eta, (score, log_rho, log_c)


def _feature_terms(prefix: str, inp: DivergenceInputs, priors: dict):
    """``beta_log_lr · z_lr + beta_features · (z_warmup, z_N, z_D)`` on the standardised features: the log
    peak LR's slope is >= 0 (a positive prior: a higher LR never makes a run safer), the others have either
    sign.  The two are on or off together (both priors of scale 0: off)."""
    beta_log_lr = priors["beta_log_lr"].create_variable(prefix + "beta_log_lr")
    beta_features = priors["beta_features"].create_variable(prefix + "beta_features", shape=len(FEATURES) - 1)
    return beta_log_lr * inp.z[:, 0] + pt.dot(inp.z[:, 1:], beta_features)


def _cutpoints(prefix: str, priors: dict):
    lower = priors["cut"].create_variable(prefix + "cut_unstable")
    gap = priors["cut_gap"].create_variable(prefix + "cut_gap")
    return lower, lower + gap


def build_divergence_model(inp: DivergenceInputs, outcome: np.ndarray, log_c_center: float,
                           config: dict | None = None, sizes: list[int] | None = None,
                           log_lr_center: float = 0.0) -> pm.Model:
    """The PyMC graph.  ``outcome``: codes 0/1/2 (normal/unstable/diverged, :func:`instability.outcome_codes`),
    or booleans ``diverged`` (then unstable runs are unknown and count as normal)."""
    cfg = {**DEFAULT_DIVERGENCE_CONFIG, **(config or {})}
    priors = divergence_priors(cfg)
    kind = check_choices(cfg)["outcome"]
    y = np.asarray(outcome)
    y = np.where(y.astype(bool), 2, 0) if y.dtype == bool else y.astype("int64")
    n_sizes = len(sizes or [])
    centers = (log_c_center, log_lr_center)
    coords = {"run": np.arange(len(y))}
    if n_sizes >= 2:
        coords["size"] = list(sizes)
    with pm.Model(coords=coords) as model:
        if kind == "area_logistic":
            eta = _tensor_predictor("", inp, centers, priors, 0, area_only=True)
            pm.Deterministic("p_diverge", pm.math.invlogit(eta), dims="run")
            pm.Bernoulli("diverged", logit_p=eta, observed=(y == 2).astype("int64"), dims="run")
        elif kind == "ordered" and not is_off(priors["diverged_slopes"]):
            _sequential_ordered(inp, y, _tensor_predictor("", inp, centers, priors, n_sizes)[0], priors)
        elif kind == "ordered":
            eta, _ = _tensor_predictor("", inp, centers, priors, n_sizes)
            cut_u, cut_d = _cutpoints("", priors)
            p_div = pm.Deterministic("p_diverge", pm.math.invlogit(eta - cut_d), dims="run")
            pm.Deterministic("p_unstable", pm.math.invlogit(eta - cut_u) - p_div, dims="run")
            pm.OrderedLogistic("outcome", eta=eta, cutpoints=pt.stack([cut_u, cut_d]), observed=y, dims="run")
        else:
            eta, area = _tensor_predictor("", inp, centers, priors, n_sizes)
            cut_d = priors["cut"].create_variable("cut_diverged")
            p_div = pm.Deterministic("p_diverge", pm.math.invlogit(eta - cut_d), dims="run")
            pm.Bernoulli("diverged", logit_p=eta - cut_d, observed=(y == 2).astype("int64"), dims="run")
            if kind == "two_logistic":
                shared = area if cfg["unstable_boundary"] == "shared" else None
                eta_u, _ = _tensor_predictor("u_", inp, centers, priors, n_sizes, area=shared)
                cut_u = priors["cut"].create_variable("u_cut_unstable")
                p_u = pm.math.invlogit(eta_u - cut_u)
                pm.Deterministic("p_unstable", (1.0 - p_div) * p_u, dims="run")
                keep = np.flatnonzero(y < 2)
                pm.Bernoulli("unstable", logit_p=(eta_u - cut_u)[keep], observed=(y[keep] == 1).astype("int64"))
    return model


def _sequential_ordered(inp: DivergenceInputs, y: np.ndarray, eta, priors: dict) -> None:
    """The ordered outcome with diverged-only slopes (partial proportional odds), in the sequential form that
    keeps every probability valid: ``P(diverged) = σ(eta + gamma · z − cut_diverged)`` and
    ``P(unstable | not diverged) = σ(eta − cut_unstable)``, ``gamma`` ~ the ``diverged_slopes`` prior (shrunk
    towards the shared predictor)."""
    cut_u, cut_d = _cutpoints("", priors)
    gamma = priors["diverged_slopes"].create_variable("diverged_slopes", shape=len(FEATURES))
    logit_div = eta + pt.dot(inp.z, gamma) - cut_d
    p_div = pm.Deterministic("p_diverge", pm.math.invlogit(logit_div), dims="run")
    pm.Deterministic("p_unstable", (1.0 - p_div) * pm.math.invlogit(eta - cut_u), dims="run")
    pm.Bernoulli("diverged", logit_p=logit_div, observed=(y == 2).astype("int64"), dims="run")
    keep = np.flatnonzero(y < 2)
    pm.Bernoulli("unstable", logit_p=(eta - cut_u)[keep], observed=(y[keep] == 1).astype("int64"))


def model_params(config: dict) -> tuple[str, ...]:
    """Free parameters (posterior variables the numpy predictor needs) of the configured outcome model."""
    kind = config["outcome"]
    if kind == "area_logistic":
        return AREA_PARAMS
    names = _param_names("")
    if kind == "ordered":
        return names + ("cut_unstable", "cut_gap", "diverged_slopes")
    names = names + ("cut_diverged",)
    if kind == "two_logistic":
        names = names + _param_names("u_", config.get("unstable_boundary", "own") != "shared") + ("u_cut_unstable",)
    return names


def sample_divergence_model(model: pm.Model, sampler_config: dict, random_seed: int = 0,
                            draws: int | None = None, progressbar: bool = False) -> xr.DataTree:
    """NUTS with the law's ``sampler_config`` (draws, tune, chains, cores, nuts_sampler, target_accept)."""
    with model:
        return pm.sample(**lm.nuts_kwargs(sampler_config, random_seed, draws, progressbar))


# ============================================================================ numpy prediction
def _sorted_tails(eta: np.ndarray, w: np.ndarray):
    """Per run (rows): sorted LRs and tail sums ``Σ_{j>=i} w_j`` and ``Σ_{j>=i} w_j eta_j`` (K + 1 columns)."""
    order = np.argsort(eta, axis=1, kind="stable")
    e = np.take_along_axis(eta, order, axis=1)
    ww = np.take_along_axis(w, order, axis=1)
    zero = np.zeros((eta.shape[0], 1))
    tail_w = np.concatenate([np.cumsum(ww[:, ::-1], axis=1)[:, ::-1], zero], axis=1)
    tail_we = np.concatenate([np.cumsum((ww * e)[:, ::-1], axis=1)[:, ::-1], zero], axis=1)
    return e, tail_w, tail_we


RUN_CHUNK = 32  # runs per searchsorted call: small enough for the shifted grid to stay in cache (measured)


def relu_area_by_run(eta: np.ndarray, w: np.ndarray, rho_t: np.ndarray) -> np.ndarray:
    """``Σ_k w_rk max(eta_rk − rho_rs, 0)`` for grids ``eta, w`` (runs × K) and thresholds ``rho_t`` (runs × S).

    Vectorised over runs and draws: each run's sorted grid is shifted by ``run × span`` so that one
    ``searchsorted`` on the concatenation (``RUN_CHUNK`` runs at a time) finds, for every (run, draw), how many
    grid values lie at or below rho; the area is then ``Σ_{eta > rho} w·eta − rho · Σ_{eta > rho} w``."""
    eta, w = np.atleast_2d(eta), np.atleast_2d(w)
    rho_t = np.asarray(rho_t, float)
    R, K = eta.shape
    e, tail_w, tail_we = _sorted_tails(eta, w)
    lo, hi = float(e.min()) - 1.0, float(e.max()) + 1.0
    span = hi - lo + 1.0
    out = np.empty(rho_t.shape)
    for start in range(0, R, RUN_CHUNK):
        sl = slice(start, min(start + RUN_CHUNK, R))
        n = sl.stop - sl.start
        shift = (np.arange(n) * span)[:, None]
        flat = (e[sl] + shift).ravel()
        q = np.clip(rho_t[sl], lo, hi) + shift
        idx = np.searchsorted(flat, q.ravel(), side="right").reshape(n, -1) - (np.arange(n) * K)[:, None]
        out[sl] = (np.take_along_axis(tail_we[sl], idx, axis=1)
                   - rho_t[sl] * np.take_along_axis(tail_w[sl], idx, axis=1))
    return out


def relu_area(eta: np.ndarray, w: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """:func:`relu_area_by_run` for thresholds ``rho`` given as draws × runs (result draws × runs)."""
    return relu_area_by_run(eta, w, np.ascontiguousarray(np.asarray(rho, float).T)).T


def _relu_area(eta: np.ndarray, w: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """One run's grid (K,) against thresholds ``rho`` (S,)."""
    return relu_area(eta[None], w[None], np.asarray(rho, float)[:, None])[:, 0]


def _min_area(eta: np.ndarray, w: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """``Σ_k w_k min(eta_k, rho_s)`` = ``Σ w eta − relu area`` (one run)."""
    return float(np.sum(w * eta)) - _relu_area(eta, w, rho)


def area_score(post: dict[str, np.ndarray], inp: DivergenceInputs, prefix: str = "") -> tuple[np.ndarray,
                                                                                                np.ndarray]:
    """Draws of the area score and of ``log rho`` (both S × runs; computed run-major, returned as views)."""
    row = lambda name: np.asarray(post[prefix + name], float)[None, :]  # noqa: E731
    log_rho = row("log_c") + row("a") * inp.log_D[:, None] - row("b") * inp.log_N[:, None]  # runs × S
    rho = np.exp(log_rho)
    A = relu_area_by_run(inp.eta, inp.w, rho)
    W = np.sum(inp.w_wu * inp.eta_wu, axis=1)[:, None] - relu_area_by_run(inp.eta_wu, inp.w_wu, rho)
    W = np.maximum(W, inp.floor_dt[:, None] * np.minimum(inp.eta_max[:, None], rho))
    kW = np.exp(row("log_kappa")) * W
    return ((A - kW) / (A + kW)).T, log_rho.T


def area_terms(post: dict[str, np.ndarray], inp: DivergenceInputs, prefix: str = "") -> tuple[np.ndarray, ...]:
    """``(score, log_rho, log_c)`` draws (S × runs, S × runs, S × 1) of one copy of the boundary."""
    score, log_rho = area_score(post, inp, prefix)
    return score, log_rho, np.asarray(post[prefix + "log_c"], float)[:, None]


def check_choices(cfg: dict) -> dict:
    """``cfg`` when each entry of :data:`CONFIG_CHOICES` it holds is one of its choices, else a ValueError naming
    the entry, its choices and the value given."""
    for key, choices in CONFIG_CHOICES.items():
        if key in cfg and cfg[key] not in choices:
            raise ValueError(f"divergence config {key!r} must be one of {', '.join(choices)}, got {cfg[key]!r}")
    return cfg


def size_offsets(post: dict[str, np.ndarray], inp: DivergenceInputs, prefix: str = "",
                 rng: np.random.Generator | None = None, new_size: str = "fresh",
                 size_log_N: np.ndarray | None = None) -> np.ndarray:
    """Per-size level offsets (S × runs): the fitted offset for a known size; for an unseen one, by ``new_size``
    (:data:`NEW_SIZE_OFFSETS`): ``"fresh"``, a fresh ``Normal(0, sigma_size)`` draw (one per draw and size, shared
    by its runs, from ``rng``); ``"zero"``, 0 (the pooled mean of the zero-sum offsets); ``"nearest"``, the
    offset of the fitted size nearest in log N; ``"trend"``, per draw the least-squares line of the fitted
    offsets against log N, read at the size (with two fitted sizes the line through both).  ``size_log_N``: the
    fitted sizes' centred log N (same centring as ``inp.log_N``; needed by ``"nearest"`` and ``"trend"``).

    Why ``"trend"`` is the default: with few sizes the split of the size effect between the log N feature term
    and the zero-sum offsets is set by the priors, and a fresh draw of a prior-driven ``sigma_size`` (posterior
    mean 0.6 with three sizes) blurs P(unstable) at a new size; reading the offsets' own trend keeps the linear
    size effect whichever term holds it.  Chosen on splits of the grid's training sizes only (fit two of 25K /
    85K / 200K, score the third; log loss of P(unstable | not diverged) on its non-diverged runs, trend / nearest
    / zero / fresh): 200K 0.100 / 0.104 / 0.116 / 0.123, 85K 0.095 / 0.097 / 0.096 / 0.106, 25K 0.105 / 0.125 /
    0.136 / 0.138; Brier of P(diverge) on all its runs 0.0104 / 0.0113 / 0.0127 / 0.0132 at 200K."""
    check_choices({"new_size_offset": new_size})
    R = len(inp.size)
    if prefix + "sigma_size" not in post:
        S = next(np.shape(v)[0] for name, v in post.items() if name.startswith(prefix))
        return np.zeros((S, R))
    sigma = post[prefix + "sigma_size"][:, None]
    S = sigma.shape[0]
    raw = post[prefix + "size_offset_raw"]
    out = np.zeros((S, R))
    known = inp.size >= 0
    out[:, known] = raw[:, inp.size[known]]
    if (~known).any():
        if new_size in ("nearest", "trend"):
            if size_log_N is None or len(size_log_N) != raw.shape[1]:
                raise ValueError(f"new_size={new_size!r} needs the log N of the {raw.shape[1]} fitted sizes")
            x = np.asarray(size_log_N, float)
            if new_size == "trend":
                X = np.column_stack([np.ones_like(x), x])
                coef = np.linalg.lstsq(X, raw.T, rcond=None)[0]  # (intercept, slope) × draws
        rng = rng or np.random.default_rng(0)
        for log_n in np.unique(inp.log_N[~known]):
            cols = np.flatnonzero(~known & (inp.log_N == log_n))
            if new_size == "fresh":
                out[:, cols] = rng.standard_normal((S, 1))
            elif new_size == "nearest":
                out[:, cols] = raw[:, [int(np.argmin(np.abs(x - log_n)))]]
            elif new_size == "trend":
                out[:, cols] = (coef[0] + coef[1] * log_n)[:, None]
            # "zero": stays 0
    return sigma * out


def linear_predictor(post: dict[str, np.ndarray], inp: DivergenceInputs, log_lr_center: float, prefix: str = "",
                     offsets: np.ndarray | None = None, area_only: bool = False,
                     area: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Draws of ``eta`` (S × runs), the numpy twin of :func:`_tensor_predictor`; ``area``: the
    ``(score, log_rho, log_c)`` of the copy whose rho and kappa this one shares (:func:`area_terms`)."""
    def col(name):
        return np.asarray(post[prefix + name], float)[:, None] if prefix + name in post else np.zeros((1, 1))

    score, log_rho, log_c = area if area is not None else area_terms(post, inp, prefix)
    if area_only:
        return col("k") * score
    log_ratio = np.log(inp.eta_max)[None] - log_lr_center - (log_rho - log_c)
    eta = (col("k") * (score + 1.0) + col("beta_lr") * log_ratio + col("beta_batch") * inp.log_B[None]
           + col("beta_warmup") * inp.warmup_frac[None])
    if prefix + "beta_features" in post:
        eta = eta + col("beta_log_lr") * inp.z[None, :, 0] + post[prefix + "beta_features"] @ inp.z[:, 1:].T
    return eta + (offsets if offsets is not None else size_offsets(post, inp, prefix))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def predict_outcome(post: dict[str, np.ndarray], inp: DivergenceInputs, log_lr_center: float,
                    outcome: str = "ordered", rng: np.random.Generator | None = None, new_size: str = "fresh",
                    size_log_N: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Posterior draws of (P(diverge), P(unstable)), each samples × runs; P(unstable) is NaN for ``"binary"``.

    Unseen model sizes: offsets by ``new_size`` (:func:`size_offsets`; ``size_log_N``: the fitted sizes' centred
    log N); ``"fresh"`` offsets come from ``rng`` (the same for both copies of ``"two_logistic"``)."""
    rng = rng or np.random.default_rng(0)
    if outcome == "area_logistic":
        p_div = _sigmoid(linear_predictor(post, inp, log_lr_center, area_only=True))
        return p_div, np.full_like(p_div, np.nan)
    offsets = size_offsets(post, inp, "", rng, new_size, size_log_N)
    area = area_terms(post, inp)
    eta = linear_predictor(post, inp, log_lr_center, "", offsets, area=area)
    if outcome == "ordered" and "diverged_slopes" in post:  # sequential form (:func:`_sequential_ordered`)
        cut_u = post["cut_unstable"][:, None]
        p_div = _sigmoid(eta + post["diverged_slopes"] @ inp.z.T - (cut_u + post["cut_gap"][:, None]))
        return p_div, (1.0 - p_div) * _sigmoid(eta - cut_u)
    if outcome == "ordered":
        cut_u = post["cut_unstable"][:, None]
        p_div = _sigmoid(eta - (cut_u + post["cut_gap"][:, None]))
        return p_div, np.clip(_sigmoid(eta - cut_u) - p_div, 0.0, 1.0)
    p_div = _sigmoid(eta - post["cut_diverged"][:, None])
    if outcome == "binary":
        return p_div, np.full_like(p_div, np.nan)
    shared = area if "u_log_c" not in post else None  # the unstable copy shares rho and kappa
    u_offsets = size_offsets(post, inp, "u_", rng, new_size, size_log_N)
    eta_u = linear_predictor(post, inp, log_lr_center, "u_", u_offsets, area=shared)
    return p_div, (1.0 - p_div) * _sigmoid(eta_u - post["u_cut_unstable"][:, None])


def predict_p_diverge(post: dict[str, np.ndarray], inp: DivergenceInputs, log_lr_center: float = 0.0,
                      outcome: str | None = None) -> np.ndarray:
    """Posterior draws of P(diverge) (samples × runs)."""
    if outcome is None:
        outcome = ("ordered" if "cut_gap" in post else "two_logistic" if "u_cut_unstable" in post
                   else "binary" if "cut_diverged" in post else "area_logistic")
    return predict_outcome(post, inp, log_lr_center, outcome)[0]


# ============================================================================ fitting
@dataclass
class DivergenceFit:
    """A fitted divergence / instability model: settings, posterior and the training centres it needs to
    predict.  ``unstable_excess``: median excess loss (nats above the loss law's prediction, or above the block's
    best, by the config's ``unstable_excess_above``) of the unstable training runs — what a run that trains badly
    typically costs; ``unstable_excesses``: each of those runs' excess (their spread, for predictive draws of an
    unstable outcome; ``None`` for a model saved before it was recorded); ``unstable_level``: the regression of an
    unstable run's final loss (:class:`~bayes_optlaws.unstable_loss.UnstableLossFit`; ``None`` when the config's
    ``unstable_loss`` is ``"excess"`` or too few runs were unstable)."""

    config: dict
    lr_ref: float
    log_N_center: float
    log_D_center: float
    log_B_center: float
    log_c_center: float
    log_lr_center: float
    sizes: list[int]
    unstable_excess: float
    n_runs: int
    counts: dict
    diagnostics: dict | None = None
    prior_check: dict | None = None
    idata: xr.DataTree | None = field(default=None, repr=False)
    post: dict | None = field(default=None, repr=False)
    feature_stats: dict | None = None
    unstable_excesses: list[float] | None = None
    unstable_level: UnstableLossFit | None = None

    @property
    def warnings(self) -> list[str]:
        """The plain-language messages of its prior predictive check and sampler diagnostics."""
        return list((self.prior_check or {}).get("warnings", [])) + list((self.diagnostics or {}).get("warnings", []))

    def inputs(self, runs: RunSet) -> DivergenceInputs:
        """Schedule grids and (when the fit has feature statistics) standardised features of a run set's rows
        (``tokens_per_step``, ``model_params`` and their parsed schedules)."""
        table = runs.table
        inp = divergence_inputs(runs.schedules, table["tokens_per_step"], table["model_params"], self.lr_ref,
                                self.log_N_center, self.log_D_center, int(self.config["grid_points"]),
                                self.log_B_center, self.sizes)
        return standardise_features(inp, self.feature_stats) if self.feature_stats else inp

    def predict(self, runs: "RunSet | pd.DataFrame | DivergenceInputs",
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(P(diverge), P(unstable)) draws (samples × rows) for a run set (a runs table or candidate list with
        ``schedule``, ``model_params`` and ``tokens_per_step`` is validated into one) or for its :meth:`inputs`
        (numpy only from there on: the per-schedule Python work is all in :meth:`inputs`)."""
        inp = runs if isinstance(runs, DivergenceInputs) else self.inputs(
            runs if isinstance(runs, RunSet) else RunSet.of_candidates(runs))
        return predict_outcome(self.post, inp, self.log_lr_center, self.config["outcome"], rng,
                               self.config.get("new_size_offset", "fresh"), self.size_log_N)

    @property
    def size_log_N(self) -> np.ndarray:
        """Centred log N (N in billions) of the fitted model sizes, in the order of their offsets."""
        return np.log(np.asarray(self.sizes, float) / 1e9) - self.log_N_center

    def settings(self) -> dict:
        """JSON-ready state (everything but the posterior)."""
        return {"config": self.config, "lr_ref": self.lr_ref, "log_N_center": self.log_N_center,
                "log_D_center": self.log_D_center, "log_B_center": self.log_B_center,
                "log_c_center": self.log_c_center, "log_lr_center": self.log_lr_center, "sizes": [int(s) for s in self.sizes],
                "unstable_excess": None if not np.isfinite(self.unstable_excess) else self.unstable_excess,
                "n_runs": self.n_runs, "counts": self.counts, "diagnostics": self.diagnostics,
                "prior_check": self.prior_check, "feature_stats": self.feature_stats,
                "unstable_excesses": self.unstable_excesses,
                "unstable_level": None if self.unstable_level is None else self.unstable_level.to_dict()}

    @classmethod
    def from_settings(cls, s: dict, idata: xr.DataTree) -> "DivergenceFit":
        """Inverse of :meth:`settings`; a config saved before an entry of :data:`LATER_CONFIG_OFF` existed
        gets that entry's "off" value (the model it was fitted with)."""
        saved = s["config"]
        cfg = {**DEFAULT_DIVERGENCE_CONFIG, **LATER_CONFIG_OFF,
               **({} if "priors" in saved else LATER_PRIORS_OFF), **saved}
        excess = float("nan") if s.get("unstable_excess") is None else float(s["unstable_excess"])
        return cls(cfg, s["lr_ref"], s["log_N_center"], s["log_D_center"], s["log_B_center"], s["log_c_center"],
                   s["log_lr_center"],
                   [int(v) for v in s["sizes"]], excess, int(s["n_runs"]), s["counts"], s.get("diagnostics"),
                   s.get("prior_check"), idata, posterior_arrays(idata, model_params(cfg)),
                   s.get("feature_stats"), s.get("unstable_excesses"),
                   UnstableLossFit.from_dict(s.get("unstable_level")))


def legacy_fit(settings: dict, idata: xr.DataTree) -> DivergenceFit:
    """A model saved before the outcome model (five-parameter ``area_logistic`` boundary, no per-size
    offsets): its posterior with the law's stored centres."""
    cfg = {**DEFAULT_DIVERGENCE_CONFIG, **LATER_CONFIG_OFF, **LATER_PRIORS_OFF, "outcome": "area_logistic",
           "grid_points": GRID_POINTS}
    lr_ref = settings["feature_spec"]["lr_ref"]
    fit = DivergenceFit(cfg, lr_ref, settings["log_N_center"], settings["log_D_center"], 0.0,
                        settings["div_log_c_center"], 0.0, [], float("nan"), settings.get("n_train_runs", 0), {},
                        settings.get("divergence_diagnostics"), None, idata, posterior_arrays(idata, AREA_PARAMS))
    return fit


def _centre_log_c(eta_max: np.ndarray, diverged: np.ndarray) -> float:
    """Prior centre of log rho: between the largest safe and the smallest diverged normalised peak LR."""
    safe = eta_max[~diverged].max() if (~diverged).any() else 1.0
    bad = eta_max[diverged].min() if diverged.any() else 1.0
    return float(np.log(np.sqrt(safe * bad)))


def prior_predictive_check(model: pm.Model, codes: np.ndarray, kind: str, draws: int, random_seed: int) -> dict:
    """Do the priors allow the observed share of diverged (and unstable) runs without being absurd?

    Returns, per outcome, the observed share and the prior predictive 1–99 % range of that share, and the share
    of prior (draw, run) pairs with P(diverge) in [0.001, 0.999] (near 0: the prior is all-or-nothing)."""
    with model:
        prior = pm.sample_prior_predictive(draws=draws, var_names=["p_diverge"], random_seed=random_seed)
    p = prior.prior["p_diverge"].values.reshape(draws, -1)
    sim = np.random.default_rng(random_seed).random(p.shape) < p
    out = {"warnings": []}
    share = sim.mean(axis=1)
    lo, hi = np.quantile(share, [0.01, 0.99])
    obs = float(np.mean(codes == 2))
    out["diverged"] = {"observed": obs, "prior_q01": float(lo), "prior_q99": float(hi)}
    out["share_p_not_extreme"] = float(np.mean((p > 1e-3) & (p < 1 - 1e-3)))
    if not lo <= obs <= hi:
        out["warnings"].append(f"divergence prior predictive check: {obs:.0%} of the runs diverged, outside the "
                               f"prior's 98 % range {lo:.0%}-{hi:.0%}; widen the divergence priors.")
    return out


def fit_divergence(run_set: "RunSet | pd.DataFrame", lr_ref: float, config: dict | None = None,
                   sampler_config: dict | None = None, random_seed: int = 0, draws: int | None = None,
                   say=None, emit_warnings: bool = True, law_loss: np.ndarray | None = None) -> DivergenceFit:
    """Fit the divergence / instability model on a run set (single-stage runs with ``diverged`` and
    ``final_loss``; a DataFrame is validated into one).  Outcomes come from :func:`instability.label_outcomes`
    with the config's ``unstable_gap``.  ``law_loss``: the loss law's posterior mean loss (nats) per run, which
    the unstable excess is measured above when the config's ``unstable_excess_above`` is ``"law"`` (without it,
    above the block's best run, as ``"block_best"``).  With the config's ``unstable_loss`` ``"level"`` the
    unstable runs' own loss regression is fitted too (:class:`~bayes_optlaws.unstable_loss.UnstableLossFit`).
    Raises ``ValueError`` when no run, or every run, diverged (nothing to learn).
    ``emit_warnings=False`` leaves the prior-check and diagnostic messages in the fit (for a caller that runs this
    in a worker thread and warns from its own)."""

    cfg = recorded_divergence_config(config)  # every prior and choice checked, priors recorded as dicts, first
    run_set = RunSet.of_runs(run_set)
    runs = run_set.table
    scfg = {**lm.DEFAULT_SAMPLER_CONFIG, **(sampler_config or {})}
    labels = ins.label_outcomes(runs, cfg["unstable_gap"])
    codes = ins.outcome_codes(labels)
    diverged = codes == 2
    if diverged.all() or not diverged.any():
        raise ValueError("the divergence model needs both diverged and non-diverged runs")
    if not (codes == 1).any() and cfg["outcome"] != "binary":
        cfg = {**cfg, "outcome": "binary"}  # no unstable run to learn from: P(unstable) is unknown (NaN)
    fit = DivergenceFit(
        cfg, float(lr_ref), float(np.log(runs["model_params"].to_numpy(float) / 1e9).mean()),
        float(np.log(runs["tokens"].to_numpy(float) / 1e9).mean()),
        float(np.log(runs["tokens_per_step"].to_numpy(float)).mean()), 0.0, 0.0,
        sorted(int(s) for s in runs["model_params"].unique()), float("nan"), len(runs),
        {o: int(np.sum(labels == o)) for o in ins.OUTCOMES})
    excesses = ins.unstable_excesses(runs, cfg["unstable_gap"],
                                     law_loss if cfg["unstable_excess_above"] == "law" else None)
    if excesses.size:
        fit.unstable_excess = float(np.median(excesses))
        fit.unstable_excesses = [round(float(x), 6) for x in excesses]
    if cfg["unstable_loss"] == "level":
        fit.unstable_level = UnstableLossFit.fit(run_set, labels == "unstable")
    inp = fit.inputs(run_set)
    fit.feature_stats = feature_stats(inp)
    standardise_features(inp, fit.feature_stats)
    fit.log_c_center = _centre_log_c(inp.eta_max, diverged)
    fit.log_lr_center = float(np.mean(np.log(inp.eta_max)))
    if say:
        say(f"sampling the divergence model ({cfg['outcome']}): {len(runs)} runs, {fit.counts['diverged']} "
            f"diverged, {fit.counts['unstable']} unstable")
    model = build_divergence_model(inp, codes, fit.log_c_center, cfg, fit.sizes, fit.log_lr_center)
    fit.prior_check = prior_predictive_check(model, codes, cfg["outcome"], int(cfg["prior_draws"]), random_seed)
    fit.idata = sample_divergence_model(model, lm.with_target_accept(scfg, cfg["target_accept"]),
                                        random_seed=random_seed, draws=draws)
    names = list(model_params(cfg))
    fit.diagnostics = lm.diagnostics(fit.idata, names, emit=False)
    fit.post = posterior_arrays(fit.idata, names or None, exclude=("p_diverge", "p_unstable"))
    for msg in fit.warnings if emit_warnings else ():
        warn_user(msg, lm.ConvergenceWarning)
    return fit
