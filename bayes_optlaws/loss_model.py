"""Hierarchical Bayesian regression of log final loss on the standardised Opt-Laws features (PyMC).

Model (all on the standardised scale: ``z = (log L - mean) / sd``, features standardised on the training rows):

    intercept            ~ Normal(0, 1)          (slopes sampled in SVD-rotated coordinates, see rotation())
    size offset  a_g     = sigma_size · B r,  r ~ Normal(0, 1)     sigma_size  ~ HalfNormal(0.5)
                           (B: zero-sum directions orthogonal to the pure-size features, see offset_basis)
    slopes       beta_f  ~ Normal(0, 1)   (the prior "slope", per SVD component times its scale)
    slope offset b_{f,g} ~ ZeroSumNormal over sizes (sigma_slope), sigma_slope ~ HalfNormal(0.1)
    mu_i = intercept + a_{g(i)} + Σ_f X_{i,f} beta_f + Σ_f (X_{i,f} - mean_{g(i),f}) b_{f,g(i)}
    z_i  ~ StudentT(nu, mu_i, sigma),                             sigma ~ HalfNormal(0.5)

(the offsets are written non-centred above; where every size has many runs they are sampled centred,
``a = B u, u ~ Normal(0, sigma_size)``, the same model in another geometry: :func:`offset_parameterisation`)

The priors are :class:`~bayes_optlaws.priors.Prior` objects (:data:`DEFAULT_PRIORS`); ``model_config["priors"]``
replaces any of them by name (``{"sigma_slope": Prior("HalfNormal", sigma=0.05)}``), and a fitted law records
all of them, as dicts, in its settings.

Partial pooling is across **model sizes** (groups = distinct ``model_params``).  Zero-sum offsets sample far better
than a free intercept with non-centred offsets (measured: ESS ~5,600 vs 84 with R-hat 1.09), and make
``intercept``/``beta`` the average over the observed sizes.  The size itself enters through the scale features
(N^-p_s, D^-p_s), so a model size absent from the data is predicted from the population part plus a *fresh* offset
drawn with scale ``sigma_size`` (and ``sigma_slope``): its intervals are honestly wider.

An unseen size (the expensive run) — what we measured (embedded grid, fit 25K–200K, score the 793K block's 22
normally trained runs; ``bayes-optlaws evaluate --extrapolate`` and ``benchmarks/bench_extrapolation.py``):

* fitted on every non-diverged run, the posterior mean was +0.21 nats biased (MAE 0.48 vs 0.22 for least squares).
  Two causes: the unstable runs (0.5–1.8 nats above their block's best) were in the fit — least squares averages
  them in, the Student-t treats them as outliers — and the fresh slope offsets of an unseen size acted on features
  centred at the *population* mean, which inflated the variance and, through exp, the mean.  Without slope offsets
  the bias fell to +0.04 (all runs) but the normal runs stayed +0.16;
* a wider slope prior (sd 10) made it worse (+0.42 on normal runs), a normal likelihood much worse (+0.85): neither
  the prior nor the Student-t was the cause;
* fitted on the normal runs only (now the default), the posterior mean matches least squares on the normal runs
  (MAE 0.074 vs 0.072, bias +0.03 vs +0.05) and both pick a configuration within 0.014 nats of the best;
* coverage: without per-size slope offsets 50 % / 90 % intervals covered 18 % / 59 % (too narrow; a random-walk
  level offset alone did not fix it); with fresh offsets relative to the nearest size's design and a random-walk
  level offset (``new_size_offset="random_walk"``, default) 82 % / 95 % on these 22 runs (a little wide).

Hence the defaults: ``size_slopes=True``, ``new_size_offset="random_walk"``, unstable runs left out of the fit
(``divergence_config["exclude_unstable"]``), ``covariates="auto"`` (see :mod:`bayes_optlaws.covariates`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from .posterior import interval_coverage
from .priors import Prior, configured_priors, recorded_config
from .user_warnings import warn_user

#: the loss law's priors (standardised scale); ``model_config["priors"]`` overrides any of them by name
DEFAULT_PRIORS = {
    "intercept": Prior("Normal", mu=0.0, sigma=1.0),
    "slope": Prior("Normal", mu=0.0, sigma=1.0),         # per SVD component, times the component's scale
    "sigma_size": Prior("HalfNormal", sigma=0.5),        # per-size level offsets
    "sigma_slope": Prior("HalfNormal", sigma=0.1),       # per-size slope offsets (per component, times its scale)
    "sigma": Prior("HalfNormal", sigma=0.5),             # Student-t scale of the observations
    "sigma_level": Prior("HalfNormal", sigma=0.5),       # offsets of the pooled group column (e.g. optimizer)
    "size_scaling": Prior("LogNormal", mu=0.0, sigma=0.5),  # factor on Chinchilla's size term (unseen sizes)
    "size_step_spread": Prior("HalfNormal", sigma=0.25),  # how much that factor varies between size steps (log)
    "size_step_token_slope": Prior("Normal", mu=0.0, sigma=0.25),  # d log(factor) / d log D (0: Chinchilla's)
}
#: the shorthand of earlier versions (and of saved models): ``prior_<name>[_sd]: number`` sets that prior's sigma
LEGACY_PRIOR_KEYS = {"prior_intercept_sd": ("intercept", "Normal"), "prior_slope_sd": ("slope", "Normal"),
                     "prior_sigma_size": ("sigma_size", "HalfNormal"),
                     "prior_sigma_slope": ("sigma_slope", "HalfNormal"), "prior_sigma": ("sigma", "HalfNormal"),
                     "prior_sigma_level": ("sigma_level", "HalfNormal")}
DEFAULT_MODEL_CONFIG = {
    "priors": {},                 # name -> Prior (or its dict); fit() records every prior it used here, as dicts
    "nu": 5.0,
    "size_slopes": True,
    "new_size_offset": "random_walk",
    "covariates": "auto",
    "group_column": "auto",
    "new_size": "nearest_size",   # how unseen sizes are predicted (bayes_optlaws.size_scaling); or "features"
    "size_scaling_reference": "auto",  # the studies that centre the size-step prior where "priors" does not set
                                       #   "size_scaling" with one of its own: "chinchilla", "lm_studies", "auto"
                                       #   (LM-scale studies for a law fitted on one size >= 10M parameters, else
                                       #   Chinchilla) or "custom" (the prior as given); fit() records the one used
    "size_step_lr_exponent": 0.0,  # the nearest-size rule's LR transfer: a number (0: none) or "learned" from
                                   #   the backtests (size_scaling.lr_exponent_search)
    "size_step_error_gap": True,   # the step error grows with the run's LR gap, at a rate learned from the
                                   #   backtests (size_scaling.gap_slope_search); False: one sd for every run
    "offset_parameterisation": "auto",  # how the pooled offsets are sampled (same model): "centred",
                                        #   "noncentred" or "auto" (by runs per group; offset_parameterisation())
}
DEFAULT_SAMPLER_CONFIG = {"draws": 1000, "tune": 1000, "chains": 4, "nuts_sampler": "nutpie", "target_accept": 0.95,
                          "cores": None, "adaptation": None}
"""NUTS settings of every model.  ``cores``: chains sampled at once; ``None`` means every CPU this process may use
(:func:`available_cores`).  PyMC's own default assumes half of the CPUs are hyper-threads and so sampled the four
chains one after another on a 2-core machine (measured: one core busy, the fit's sampling twice as long).  nutpie
seeds each chain from the seed and its index, so the draws do not depend on ``cores``.  ``adaptation``: nutpie's
mass-matrix adaptation (``"diag"`` or ``"low_rank"``); ``None`` lets each model choose
(:func:`mass_matrix_adaptation` for the loss law, ``"diag"`` for the divergence and stage models)."""


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where that is unavailable)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def nuts_kwargs(sampler_config: dict | None, random_seed: int, draws: int | None = None,
                progressbar: bool = False, adaptation: str = "diag") -> dict:
    """Keyword arguments of ``pm.sample`` for one model from a ``sampler_config`` (defaults filled in);
    ``adaptation``: the model's own choice of nutpie's mass-matrix adaptation, where the config leaves it open."""
    cfg = {**DEFAULT_SAMPLER_CONFIG, **(sampler_config or {})}
    chains = int(cfg["chains"])
    kwargs = dict(draws=int(draws or cfg["draws"]), tune=int(cfg["tune"]), chains=chains,
                  cores=max(1, min(chains, int(cfg["cores"] or available_cores()))), random_seed=random_seed,
                  progressbar=progressbar)
    if cfg.get("target_accept") is not None:
        kwargs["target_accept"] = float(cfg["target_accept"])  # nutpie and PyMC's NUTS both take it
    if cfg.get("nuts_sampler"):
        kwargs["nuts_sampler"] = cfg["nuts_sampler"]
    chosen = cfg.get("adaptation") or adaptation
    if chosen not in ("diag", "low_rank"):
        raise ValueError(f"sampler_config['adaptation'] is {chosen!r}; use 'diag', 'low_rank' or None")
    if kwargs.get("nuts_sampler") == "nutpie":
        kwargs["nuts"] = {"adaptation": chosen}  # nutpie.sample(adaptation=...)
    elif cfg.get("adaptation") not in (None, "diag"):
        raise ValueError(f"sampler_config['adaptation'] = {chosen!r} needs nuts_sampler='nutpie' (it is "
                         f"{kwargs.get('nuts_sampler')!r})")
    return kwargs


def loss_priors(config: dict | None) -> dict[str, Prior]:
    """The loss law's priors: :data:`DEFAULT_PRIORS`, then the ``prior_*`` shorthands of ``config``, then its
    ``priors`` entries (Prior objects or their dicts).  Raises :class:`~bayes_optlaws.priors.PriorError` for an
    unknown name, a scale prior that is not positive, or a slope prior without a scale parameter."""
    return configured_priors(config, DEFAULT_PRIORS, LEGACY_PRIOR_KEYS, scaled=("slope",),
                             positive=("sigma_size", "sigma_slope", "sigma", "sigma_level", "size_scaling",
                                       "size_step_spread"),
                             where="loss model priors")


def resolved_config(config: dict | None) -> dict:
    """``config`` with defaults filled in and its priors written out in full as dicts (no shorthands): what a
    fitted law records."""
    return recorded_config(config, DEFAULT_MODEL_CONFIG, LEGACY_PRIOR_KEYS, loss_priors(config))


def with_target_accept(sampler_config: dict | None, target_accept: float | None) -> dict | None:
    """``sampler_config`` with a model's own NUTS target acceptance (``None``: the law's setting unchanged)."""
    if target_accept is None:
        return sampler_config
    return {**(sampler_config or {}), "target_accept": float(target_accept)}


class ConvergenceWarning(UserWarning):
    """The sampler's diagnostics say the posterior may not be trustworthy (R-hat, ESS or divergences)."""


@dataclass
class LossData:
    """Standardised inputs of the loss model: ``X`` (runs × features), ``z`` (standardised log loss),
    ``group`` (size-group index per run), ``sizes`` (model_params of each group, sorted)."""

    X: np.ndarray
    z: np.ndarray
    group: np.ndarray
    sizes: list[int]
    feature_names: list[str]
    size_covariates: np.ndarray | None = None
    level: np.ndarray | None = None
    levels: list[str] | None = None

    @property
    def group_means(self) -> np.ndarray:
        """Mean standardised feature vector of each size group (sizes × features)."""
        return np.array([self.X[self.group == g].mean(axis=0) for g in range(len(self.sizes))])


def offset_basis(n_sizes: int, size_covariates: np.ndarray | None = None) -> np.ndarray:
    """Orthonormal basis (sizes × r) of size offsets that are zero-sum and orthogonal to the size covariates.

    The pure-size features (e.g. ``N^-ps``, constant within a size) already give each size its own level; an
    unconstrained size intercept would compete with them (measured: ESS 52 for ``sigma_size`` with 3 sizes).  The
    offsets therefore only capture what the size features cannot: with ``k`` covariates, ``r = n_sizes - 1 - k``
    directions (none for 2 sizes and one covariate).
    """
    G = np.ones((n_sizes, 1))
    if size_covariates is not None and np.size(size_covariates):
        G = np.column_stack([G, size_covariates])
    _, S, Vt = np.linalg.svd(G.T, full_matrices=True)
    rank = int(np.sum(S > 1e-9 * max(S.max(), 1e-300)))
    return Vt[rank:].T


#: ``offset_parameterisation="auto"`` samples a hierarchy's offsets centred when each of its groups (model sizes,
#: or levels of the group column) has at least this many training runs (4 per term of the 15-feature law)
CENTRED_MIN_RUNS = 64


def offset_parameterisation(data: LossData, config: dict | None = None) -> dict[str, str]:
    """How the partially pooled offsets are sampled: ``{"size": ..., "level": ...}``, each ``"centred"`` or
    ``"noncentred"`` (``size``: the size level and slope offsets; ``level``: the group column's offsets).

    The same model either way (``offset = sigma · r, r ~ Normal(0, 1)`` is ``offset ~ Normal(0, sigma)``); what
    differs is the geometry NUTS sees.  Non-centred is right where the offsets are set mostly by their prior (few
    runs per group: the tiny-LM grid, nanochat's 27-run sizes), centred where each group's runs pin its offsets
    down and the offsets, not their scale, are what the sampler must explore (Papaspiliopoulos, Roberts & Sköld
    2007).  ``model_config["offset_parameterisation"]``: ``"centred"``, ``"noncentred"`` or ``"auto"`` (the
    default): centred for a hierarchy whose every group has :data:`CENTRED_MIN_RUNS` runs or more, and only where
    the size offsets have at least two free directions (:func:`offset_basis`; with one, their scale is a prior
    guess and a centred offset is a funnel).  Measured (loss law alone, 4 × 1,000 draws; probes in the README): on
    the 1,843 StepLaw runs centred offsets with nutpie's low-rank mass matrix sampled in 15 s with 0 divergent
    transitions and min ESS 1,700, against 107 s, 2 divergences and ESS 740 non-centred with a diagonal one;
    the grid's 25K–200K fit gave 47–87 divergences with centred size offsets, nanochat an ESS of 10–17 for
    ``sigma_slope`` with centred slopes (its sizes have 27 runs).
    """
    cfg = {**DEFAULT_MODEL_CONFIG, **(config or {})}
    choice = cfg.get("offset_parameterisation", "auto")
    if choice not in ("auto", "centred", "noncentred"):
        raise ValueError(f"model_config['offset_parameterisation'] is {choice!r}; use 'auto', 'centred' or "
                         "'noncentred'")
    if choice != "auto":
        return {"size": choice, "level": choice}

    def pinned(index: np.ndarray | None, n_groups: int) -> bool:
        if index is None or n_groups < 1:
            return False
        return int(np.bincount(np.asarray(index, int), minlength=n_groups).min()) >= CENTRED_MIN_RUNS

    n_sizes = len(data.sizes)
    free_directions = offset_basis(n_sizes, data.size_covariates).shape[1] if n_sizes > 1 else 0
    size = n_sizes > 1 and free_directions != 1 and pinned(data.group, n_sizes)
    level = bool(data.levels) and pinned(data.level, len(data.levels or []))
    return {"size": "centred" if size else "noncentred", "level": "centred" if level else "noncentred"}


def mass_matrix_adaptation(data: LossData, config: dict | None = None) -> str:
    """nutpie's mass-matrix adaptation for the loss law: ``"low_rank"`` where any offsets are sampled centred (the
    offsets then relate to the intercept and slopes linearly, which a low-rank mass matrix learns), else
    ``"diag"`` (on the grid, with non-centred offsets, low rank lowered the ESS and saved nothing).
    ``sampler_config["adaptation"]`` overrides it."""
    return "low_rank" if "centred" in offset_parameterisation(data, config).values() else "diag"


def sampling_summary(data: LossData, config: dict | None = None, sampler_config: dict | None = None) -> str:
    """How the loss law will be sampled, in words: ``"4 chains, nutpie; offsets by size centred, by level
    noncentred; low_rank mass matrix"`` (for progress messages)."""
    kwargs = nuts_kwargs(sampler_config, 0, adaptation=mass_matrix_adaptation(data, config))
    offsets = offset_parameterisation(data, config)
    parts = [f"by size {offsets['size']}" if len(data.sizes) > 1 else "",
             f"by level {offsets['level']}" if data.levels else ""]
    words = f"{kwargs['chains']} chains, {kwargs.get('nuts_sampler', 'pymc')}"
    if any(parts):
        words += "; offsets " + ", ".join(p for p in parts if p)
    if "nuts" in kwargs:
        words += f"; {kwargs['nuts']['adaptation']} mass matrix"
    return words


def rotation(X: np.ndarray, rtol: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """SVD rotation that decorrelates the design: ``Z = X @ T`` has orthogonal unit-variance columns.

    Returns ``(T, prior_scale)``: ``T`` (features × k) and, per rotated coefficient, the prior sd that makes an
    isotropic ``Normal(0, 1)`` prior on the original slopes (``beta = T @ theta``) exactly equivalent.  Directions
    the data cannot see at all (singular values below ``rtol`` × largest) are dropped: there the slopes stay at
    their prior mean.  Same model, far better geometry for NUTS when the 15 features are strongly correlated.
    """
    n = X.shape[0]
    _, S, Vt = np.linalg.svd(X, full_matrices=False)
    keep = S > rtol * S.max()
    root = np.sqrt(max(n - 1, 1))
    T = Vt[keep].T * (root / S[keep])
    return T, S[keep] / root


def build_loss_model(data: LossData, config: dict | None = None) -> pm.Model:
    """The PyMC graph of the hierarchical loss model (``pm.Data`` containers ``X`` and ``group``).

    Sampled in the SVD-rotated coordinates of :func:`rotation`; ``beta`` and ``slope_offset`` are recorded in the
    original (standardised-feature) coordinates.
    """
    cfg = {**DEFAULT_MODEL_CONFIG, **(config or {})}
    priors = loss_priors(cfg)
    n_sizes = len(data.sizes)
    T, scale = rotation(data.X)
    coords = {"size": [str(s) for s in data.sizes], "feature": list(data.feature_names),
              "obs": np.arange(len(data.z)), "component": np.arange(T.shape[1])}
    design = rotated_design(data.X, data.group, T, data.group_means)
    centred = {part: choice == "centred" for part, choice in offset_parameterisation(data, cfg).items()}
    with pm.Model(coords=coords) as model:
        # the rotated design is data, computed once here: built inside the graph from X, its two
        # (rows × 16 × 16) products were most of every gradient's cost on the 1,843 StepLaw runs
        Z = pm.Data("Z", design["Z"], dims=("obs", "component"))
        g = pm.Data("group", design["group"], dims="obs")
        intercept = priors["intercept"].create_variable("intercept")
        theta = priors["slope"].create_variable("theta", scale=scale, dims="component")
        pm.Deterministic("beta", pm.math.dot(T, theta), dims="feature")
        if n_sizes > 1:
            # non-centred offsets in the zero-sum subspace orthogonal to the size covariates (see offset_basis)
            B = offset_basis(n_sizes, data.size_covariates)
            if B.shape[1] > 0:
                sigma_size = priors["sigma_size"].create_variable("sigma_size")
                if centred["size"]:
                    size_raw = pm.Normal("size_offset_raw", 0.0, sigma_size, shape=B.shape[1])
                    size_offset = pm.Deterministic("size_offset", pm.math.dot(B, size_raw), dims="size")
                else:
                    size_raw = pm.Normal("size_offset_raw", 0.0, 1.0, shape=B.shape[1])
                    size_offset = pm.Deterministic("size_offset", sigma_size * pm.math.dot(B, size_raw),
                                                   dims="size")
            else:
                sigma_size = priors["sigma_size"].create_variable("sigma_size")  # prior only: for unseen sizes
                size_offset = pm.Deterministic("size_offset", pt.zeros(n_sizes), dims="size")
            if not cfg.get("size_slopes", True):
                _likelihood(model, intercept + size_offset[g] + pm.math.dot(Z, theta), data, cfg, priors,
                            centred["level"])
                return model
            sigma_slope = priors["sigma_slope"].create_variable("sigma_slope")
            if centred["size"]:
                rot_offset = pm.ZeroSumNormal("slope_offset_raw", sigma=sigma_slope * scale[:, None],
                                              dims=("component", "size"))
            else:
                slope_raw = pm.ZeroSumNormal("slope_offset_raw", sigma=1.0, dims=("component", "size"))
                rot_offset = sigma_slope * scale[:, None] * slope_raw  # (component, size)
            pm.Deterministic("slope_offset", pm.math.dot(T, rot_offset), dims=("feature", "size"))
            # the per-size slope offsets act on features centred within their size, so they cannot shift a
            # size's level (that is the size offset's job): this removes their correlation with the intercepts
            Zc = pm.Data("Zc", design["Zc"], dims=("obs", "component"))
            onehot = pm.Data("onehot", design["onehot"], dims=("obs", "size"))
            # one-hot products instead of gathers by size: the gradient of a gather is a scatter-add, slow here
            per_size = pm.math.dot(Zc, rot_offset) + size_offset[None, :]  # (obs, size)
            mu = intercept + pm.math.dot(Z, theta) + (per_size * onehot).sum(axis=1)
        else:
            mu = intercept + pm.math.dot(Z, theta)
        _likelihood(model, mu, data, cfg, priors, centred["level"])
    return model


def rotated_design(X: np.ndarray, group: np.ndarray, T: np.ndarray, group_means: np.ndarray) -> dict:
    """The loss model's data containers for standardised features ``X`` (rows × features) of sizes ``group``:
    ``Z = X T`` (rotated features), ``Zc = (X − mean of the row's size) T`` (what the per-size slope offsets act
    on) and ``group``; pass them to ``pm.set_data`` to evaluate the graph on other rows."""
    X = np.asarray(X, dtype=float)
    group = np.asarray(group, dtype="int64")
    means = np.asarray(group_means, dtype=float)
    onehot = (group[:, None] == np.arange(len(means))[None, :]).astype(float)
    return {"Z": X @ T, "Zc": (X - means[group]) @ T, "group": group, "onehot": onehot}


def _level_term(model: pm.Model, data: LossData, priors: dict[str, Prior], centred: bool = False):
    """Partially pooled level offsets of the group column (e.g. the optimizer; :mod:`bayes_optlaws.covariates`):
    ``level_offset[l] ~ Normal(0, sigma_level)``, ``sigma_level ~ HalfNormal``, sampled as ``sigma_level · r_l``
    with ``r_l ~ Normal(0, 1)`` unless ``centred``; 0 without a group column."""
    if not data.levels:
        return 0.0
    model.add_coord("level", list(data.levels))
    sigma_level = priors["sigma_level"].create_variable("sigma_level")
    if centred:
        offset = pm.Deterministic("level_offset", pm.Normal("level_offset_raw", 0.0, sigma_level, dims="level"),
                                  dims="level")
    else:
        raw = pm.Normal("level_offset_raw", 0.0, 1.0, dims="level")
        offset = pm.Deterministic("level_offset", sigma_level * raw, dims="level")
    return offset[pt.as_tensor(np.asarray(data.level, dtype="int64"))]


def _likelihood(model: pm.Model, mu, data: LossData, cfg: dict, priors: dict[str, Prior],
                centred_levels: bool) -> None:
    """``z ~ StudentT(nu, mu + level offset, sigma)`` (the observation model shared by every structure);
    ``centred_levels``: how the level offsets are sampled (:func:`offset_parameterisation`)."""
    mu = pm.Deterministic("mu", mu + _level_term(model, data, priors, centred_levels), dims="obs")
    sigma = priors["sigma"].create_variable("sigma")
    pm.StudentT("z", nu=cfg["nu"], mu=mu, sigma=sigma, observed=data.z, dims="obs")


def sample_loss_model(model: pm.Model, sampler_config: dict | None = None, random_seed: int = 0,
                      progressbar: bool = False, adaptation: str = "diag") -> xr.DataTree:
    """NUTS (nutpie by default; 4 chains always) + log-likelihood for LOO; ``adaptation``: nutpie's mass-matrix
    adaptation unless ``sampler_config["adaptation"]`` names one."""
    with model:
        idata = pm.sample(**nuts_kwargs(sampler_config, random_seed, progressbar=progressbar,
                                        adaptation=adaptation))
        pm.compute_log_likelihood(idata, model=model, progressbar=False)
    return idata


def diagnostics(idata: xr.DataTree, var_names: list[str], rhat_max: float = 1.01, ess_min: float = 400,
                emit: bool = True) -> dict:
    """R-hat, bulk/tail ESS and divergent transitions; plain-language warnings when thresholds are missed."""
    import arviz as az

    present = [v for v in var_names if v in idata.posterior.data_vars]
    rhat = az.rhat(idata, var_names=present)
    ess_bulk = az.ess(idata, var_names=present, method="bulk")
    ess_tail = az.ess(idata, var_names=present, method="tail")
    max_rhat = float(max(float(rhat[v].max()) for v in present))
    min_bulk = float(min(float(ess_bulk[v].min()) for v in present))
    min_tail = float(min(float(ess_tail[v].min()) for v in present))
    div = idata["sample_stats"]["diverging"] if "diverging" in idata["sample_stats"].data_vars else None
    n_div = int(div.sum()) if div is not None else 0
    n_draws = int(idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"])
    messages = []
    if max_rhat > rhat_max:
        messages.append(f"R-hat is {max_rhat:.3f} (> {rhat_max}): chains disagree; sample longer or simplify.")
    if min_bulk < ess_min or min_tail < ess_min:
        messages.append(f"effective sample size is low (bulk {min_bulk:.0f}, tail {min_tail:.0f}, want >= "
                        f"{ess_min:.0f}): intervals are imprecise; draw more samples.")
    if n_div > 0:
        messages.append(f"{n_div} divergent transitions out of {n_draws} draws: the posterior geometry is hard; "
                        "treat intervals with caution (raise target_accept or reparameterise).")
    if emit:
        for m in messages:
            warn_user(m, ConvergenceWarning)
    return {"max_rhat": max_rhat, "min_ess_bulk": min_bulk, "min_ess_tail": min_tail, "divergences": n_div,
            "draws": n_draws, "warnings": messages}


def new_size_position(sizes: list[int], size: float) -> tuple[int, float] | None:
    """``(nearest fitted size's index, distance in log N / mean log spacing of the fitted sizes)`` of an unseen
    model size, for the random-walk level offset of :func:`predict_mu`; ``None`` with fewer than two sizes."""
    if len(sizes) < 2:
        return None
    logs = np.log(np.asarray(sizes, float))
    spacing = float(np.mean(np.diff(np.sort(logs))))
    g = int(np.argmin(np.abs(logs - np.log(float(size)))))
    return g, float(abs(np.log(float(size)) - logs[g]) / spacing)


#: the loss law's variables the numpy predictor needs (:func:`bayes_optlaws.posterior.posterior_arrays`)
POSTERIOR_VARS = ("intercept", "beta", "sigma", "sigma_size", "size_offset", "sigma_slope", "slope_offset",
                  "sigma_level", "level_offset")


def predict_mu(post: dict[str, np.ndarray], X: np.ndarray, group: np.ndarray,
               rng: np.random.Generator, group_means: np.ndarray | None = None,
               new_size: tuple[int, float] | None = None) -> np.ndarray:
    """Posterior draws of the standardised mean ``mu`` (samples × rows).

    ``group[i] = -1`` marks a model size absent from the training data (all such rows of one call are one size):
    each draw gets a fresh level offset, shared by all rows of that size, and (when the model has per-size slope
    offsets) fresh slope offsets ``~ Normal(0, sigma_slope)``.  The level offset is

    * with ``new_size = (g, d)``: a **random walk in log N** from the nearest fitted size ``g``:
      ``size_offset[g] + sigma_size · sqrt(d) · ε``, with ``d`` the distance in log N from that size in units of
      the mean spacing of the fitted sizes — so the interval widens with the distance from the fitted sizes (one
      spacing adds the variance of one exchangeable offset);
    * without it: exchangeable, ``Normal(0, sigma_size)`` whatever the distance.

    Vectorised over draws; ~1 s for 4,000 draws × 10,000 rows.
    """
    S = post["intercept"].shape[0]
    X = np.asarray(X, float)
    group = np.asarray(group, int)
    mu = post["intercept"][:, None] + post["beta"] @ X.T  # (S, C)
    if "size_offset" not in post:
        return mu
    known = group >= 0
    if known.any():
        gk = group[known]
        cols = np.flatnonzero(known)
        every = cols.size == len(group)  # all rows of fitted sizes: write whole columns, not masked ones
        mu[:, slice(None) if every else cols] += post["size_offset"][:, gk]
        if "slope_offset" in post:
            slope_off = post["slope_offset"]  # (S, feature, size)
            centred = X[known] - (group_means[gk] if group_means is not None else 0.0)
            for g in np.unique(gk):  # one (S × F) @ (F × C_g) product per size: no (S, F, C) temporary
                sel = gk == g
                whole = every and bool(sel.all())
                mu[:, slice(None) if whole else cols[sel]] += slope_off[:, :, g] @ (centred if whole
                                                                                   else centred[sel]).T
    if (~known).any():
        if new_size is not None:
            g_near, dist = new_size
            new_off = post["size_offset"][:, g_near] + rng.normal(0.0, 1.0, size=S) * post["sigma_size"] * np.sqrt(
                max(float(dist), 0.0))
        else:
            new_off = rng.normal(0.0, 1.0, size=S) * post["sigma_size"]
        mu[:, ~known] += new_off[:, None]
        if "sigma_slope" in post:
            new_slopes = rng.normal(0.0, 1.0, size=(S, X.shape[1])) * post["sigma_slope"][:, None]
            # fresh slope offsets act on the features relative to the nearest fitted size's mean design (as the
            # fitted sizes' offsets act on their own centred features): the further the new size's features are
            # from it, the wider the interval
            centre = group_means[new_size[0]] if (new_size is not None and group_means is not None) else 0.0
            mu[:, ~known] += new_slopes @ (X[~known] - centre).T
    return mu


def level_offsets(post: dict[str, np.ndarray], level: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draws of the group-column level offset per row (samples × rows); ``level = -1`` (a value not seen in
    training) gets one fresh ``Normal(0, sigma_level)`` per draw, shared by the rows of that call.  Zero when
    the law has no group column."""
    S = post["intercept"].shape[0]
    level = np.asarray(level, int)
    if "level_offset" not in post:
        return np.zeros((S, len(level)))
    out = post["level_offset"][:, np.clip(level, 0, None)]
    if (level < 0).any():
        fresh = rng.normal(0.0, 1.0, size=S) * post["sigma_level"]
        out[:, level < 0] = fresh[:, None]
    return out


def add_noise(post: dict[str, np.ndarray], mu: np.ndarray, nu: float, rng: np.random.Generator) -> np.ndarray:
    """Posterior predictive draws ``z ~ StudentT(nu, mu, sigma)`` (run-to-run noise included)."""
    return mu + post["sigma"][:, None] * rng.standard_t(nu, size=mu.shape)


def prior_predictive_z(data: LossData, config: dict | None = None, draws: int = 500,
                       random_seed: int = 0) -> np.ndarray:
    """Prior predictive draws of the standardised log loss (draws × runs) for a prior predictive check."""
    model = build_loss_model(data, config)
    with model:
        prior = pm.sample_prior_predictive(draws=draws, random_seed=random_seed, var_names=["z"])
    return prior.prior_predictive["z"].values.reshape(draws, -1)


def prior_check(data: LossData, config: dict | None = None, draws: int = 500, random_seed: int = 0) -> dict:
    """Prior predictive check: does the prior cover the observed (standardised) log losses without being absurd?

    Returns the share of observed values inside the prior predictive 1–99 % range and that range's width relative
    to the observed spread; a warning message when the prior misses the data or is > 100× too wide.
    """
    z = prior_predictive_z(data, config, draws, random_seed)
    lo, hi = np.quantile(z, [0.01, 0.99], axis=0)
    inside = float(np.mean((data.z >= lo) & (data.z <= hi)))
    width = float(np.median(hi - lo))
    spread = float(np.ptp(data.z)) or 1.0
    msg = []
    if inside < 0.95:
        msg.append(f"prior predictive check: only {inside:.0%} of observed losses lie in the prior's 98 % range; "
                   "the priors may be too narrow for these data.")
    if width / spread > 100:
        msg.append(f"prior predictive check: the prior's 98 % range is {width / spread:.0f}× the observed spread; "
                   "the priors are very vague.")
    return {"share_inside_98": inside, "width_over_spread": width / spread, "warnings": msg}


def posterior_check(post: dict[str, np.ndarray], data: LossData, nu: float, random_seed: int = 0) -> dict:
    """Posterior predictive check on the training runs: coverage of the central 50 % and 90 % intervals and the
    standardised residual spread; a warning when coverage is far from nominal."""
    rng = np.random.default_rng(random_seed)
    mu = predict_mu(post, data.X, data.group, rng, data.group_means)
    if data.level is not None:
        mu = mu + level_offsets(post, data.level, rng)
    out = interval_coverage(add_noise(post, mu, nu, rng), data.z)
    msg = []
    if abs(out["coverage_90"] - 0.9) > 0.1:
        msg.append(f"posterior predictive check: 90 % intervals cover {out['coverage_90']:.0%} of the training "
                   "runs; the noise model may be mis-specified.")
    out["warnings"] = msg
    return out


def loo_check(idata: xr.DataTree) -> dict:
    """PSIS-LOO of the loss model (elpd, p_loo, count of Pareto k > 0.7) with a warning on influential runs."""
    import arviz as az

    try:
        res = az.loo(idata)
    except Exception as exc:  # pragma: no cover - LOO is advisory
        return {"warnings": [f"LOO could not be computed ({exc})"]}
    k = np.asarray(res.pareto_k).ravel()
    bad = int(np.sum(k > 0.7))
    msg = [f"LOO: {bad} training runs have Pareto k > 0.7 (highly influential); treat LOO with caution."] if bad \
        else []
    return {"elpd_loo": float(res.elpd), "p_loo": float(getattr(res, "p", np.nan)), "n_pareto_k_gt_0.7": bad,
            "warnings": msg}
