"""Continual-training stages (rows with ``parent_run_id``): a hierarchical model fitted on the stages themselves.

Why a second model.  Opt-Laws §6 predicts a continual stage with the *pre-training* coefficients and
history-aware features (earlier stages add to ∫η, escape from the current stage).  On the embedded grid that
transfer ranked the weak-shift stages poorly (Spearman 0.22 and 0.41, the constant re-warm — actually the worst —
placed 1st/2nd) and could not tell a weak shift from a strong one: the same ten schedules got identical
predictions on the same parent whatever the new data.  Measured on the same stages with leave-one-stage-out
(``bayes-optlaws evaluate --beyond``), this model ranks them with Spearman 0.70–0.99 (see the README).

Model (standardised on the stage rows: ``z = (log L - mean) / sd``; features = the same 15 history-aware
features as the pre-training law, with its exponents, standardised on the stage rows):

    scenario s   = the row's ``group`` label (e.g. weak_shift / strong_shift: what kind of continuation it is)
    context  c   = (parent_run_id, scenario): one checkpoint continued on one kind of data
    mu_i = a0 + sigma_s r_{s(i)} + sigma_c q_{c(i)} + X_i beta + X_i b_{s(i)}
    (the priors below are the defaults, :data:`DEFAULT_STAGE_PRIORS`: :class:`~bayes_optlaws.priors.Prior` objects,
    replaced by name through ``stage_config["priors"]``)
    a0 ~ Normal(0, 1)        r ~ ZeroSumNormal(1)   sigma_s ~ HalfNormal(1)
    q ~ Normal(0, 1), centred within each scenario       sigma_c ~ HalfNormal(0.5)
    beta ~ Normal(0, 0.5)    b_s = sigma_b · Normal(0, 0.5)   sigma_b ~ HalfNormal(0.5)   (slopes SVD-rotated)
    z_i ~ StudentT(5, mu_i, sigma),  sigma ~ HalfNormal(0.5)

Partial pooling is across scenarios (slopes and levels) and contexts (levels).  A candidate continuation from a
checkpoint not seen in this scenario gets a *fresh* context offset, shared by all candidates of that context in a
draw: it widens the loss intervals but cancels in the differences, so rankings and near-tie probabilities come
from the slopes.  A scenario the model has not seen gets fresh level and slope offsets (honestly wider).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from .features import Standardiser
from .loss_model import rotation
from .posterior import interval_coverage, posterior_arrays
from .priors import Prior, configured_priors, recorded_config

#: the stage model's priors (standardised scale); ``stage_config["priors"]`` overrides any of them by name
DEFAULT_STAGE_PRIORS = {
    "intercept": Prior("Normal", mu=0.0, sigma=1.0),
    "slope": Prior("Normal", mu=0.0, sigma=0.5),          # per SVD component, times the component's scale
    "sigma_scenario": Prior("HalfNormal", sigma=1.0),
    "sigma_context": Prior("HalfNormal", sigma=0.5),
    "sigma_scenario_slope": Prior("HalfNormal", sigma=0.5),  # times the slope prior's scale, per component
    "sigma": Prior("HalfNormal", sigma=0.5),
}
#: number shorthands of earlier versions (and of saved models), see :func:`priors.shorthand_priors`
LEGACY_PRIOR_KEYS = {"prior_intercept_sd": ("intercept", "Normal"), "prior_slope_sd": ("slope", "Normal"),
                     "prior_sigma_scenario": ("sigma_scenario", "HalfNormal"),
                     "prior_sigma_context": ("sigma_context", "HalfNormal"),
                     "prior_sigma_scenario_slope": ("sigma_scenario_slope", "HalfNormal"),
                     "prior_sigma": ("sigma", "HalfNormal")}
DEFAULT_STAGE_CONFIG = {
    "priors": {},            # name -> Prior (or its dict); a fit records every prior it used, as dicts
    "nu": 5.0,
    "target_accept": 0.85,   # NUTS target acceptance of this model (None: the law's sampler_config); on the grid's
                             # 40 stages 0.85 takes 286 leapfrog steps per draw vs 459 at 0.95 (17 s vs 30 s),
                             # R-hat 1.007, bulk ESS 573, 0 divergences
}
DEFAULT_SCENARIO = "continual"
MIN_STAGE_RUNS = 6
POSTERIOR_VARS = ("intercept", "beta", "sigma_scenario", "scenario_offset", "sigma_context", "context_offset",
                  "sigma_scenario_slope", "scenario_slope", "sigma")


def stage_priors(config: dict | None) -> dict[str, Prior]:
    """The stage model's priors: :data:`DEFAULT_STAGE_PRIORS`, the ``prior_*`` shorthands of ``config``, then its
    ``priors`` entries (Prior objects or dicts); checked as :func:`priors.resolve_priors` does."""
    return configured_priors(config, DEFAULT_STAGE_PRIORS, LEGACY_PRIOR_KEYS, scaled=("slope",),
                             positive=("sigma_scenario", "sigma_context", "sigma_scenario_slope", "sigma"),
                             where="stage model priors")


def resolved_stage_config(config: dict | None) -> dict:
    """``config`` with defaults filled in and every prior written out as a dict (what a fit records)."""
    return recorded_config(config, DEFAULT_STAGE_CONFIG, LEGACY_PRIOR_KEYS, stage_priors(config))


def is_stage(runs: pd.DataFrame) -> pd.Series:
    """Boolean mask of continual-training rows (``parent_run_id`` set)."""
    if "parent_run_id" not in runs.columns:
        return pd.Series(False, index=runs.index)
    pid = runs["parent_run_id"]
    return pid.notna() & (pid.astype(str) != "")


def check_parents(candidates: pd.DataFrame, history: pd.DataFrame) -> list[str]:
    """The continuations among ``candidates`` against their parents in ``history`` (runs tables): a candidate
    must keep its parent's model size (a checkpoint cannot change size; :class:`~bayes_optlaws.runs.RunsError`
    otherwise), and one whose parent or an earlier stage diverged gets a warning message (returned): the
    stage model learned from continuations of runs that trained."""
    from .runs import RunsError, history_of, shown_names

    staged = is_stage(candidates).to_numpy()
    if not staged.any() or "run_id" not in history.columns:
        return []
    by_id = history.drop_duplicates("run_id").set_index("run_id")
    messages, broken = [], {}
    for _, row in candidates.loc[staged].iterrows():
        parent = str(row["parent_run_id"])
        if parent not in by_id.index:
            continue  # the history lookup reports unknown parents with its own message
        size = by_id.at[parent, "model_params"] if "model_params" in by_id.columns else None
        if size is not None and pd.notna(size) and int(size) != int(row["model_params"]):
            raise RunsError(f"candidate {row['run_id']!r} continues {parent!r}, a run of {int(size):,} parameters, "
                            f"at {int(row['model_params']):,}: a continuation keeps its parent's size; drop --params "
                            "(or the candidate's model_params) or choose a parent of that size")
        chain = [parent] + [str(r["run_id"]) for r in history_of(history, parent)]
        diverged = [r for r in chain if "diverged" in by_id.columns and bool(by_id.at[r, "diverged"])]
        if diverged:
            broken.setdefault((parent, diverged[0]), []).append(str(row["run_id"]))
    for (parent, bad), names in broken.items():
        messages.append(f"{len(names)} candidate(s) ({shown_names([repr(n) for n in names])}) continue from {parent!r}, whose history has a "
                        f"diverged run ({bad!r}): the prediction assumes a checkpoint that trained, which that one "
                        "is not")
    return messages


def scenario_labels(runs: pd.DataFrame) -> np.ndarray:
    """The scenario of each row: its ``group`` label, or ``"continual"`` where there is none."""
    if "group" not in runs.columns:
        return np.full(len(runs), DEFAULT_SCENARIO, dtype=object)
    return runs["group"].fillna(DEFAULT_SCENARIO).astype(str).replace("", DEFAULT_SCENARIO).to_numpy(object)


def context_key(parent_run_id: str, scenario: str) -> str:
    """Identity of one checkpoint continued in one scenario."""
    return f"{parent_run_id}|{scenario}"


@dataclass
class StageData:
    """Standardised inputs of the stage model: ``X`` (stages × features), ``z``, scenario and context indices."""

    X: np.ndarray
    z: np.ndarray
    scenario: np.ndarray
    context: np.ndarray
    scenarios: list[str]
    contexts: list[str]
    feature_names: list[str]

    @property
    def context_scenario(self) -> np.ndarray:
        """Scenario index of each context."""
        out = np.zeros(len(self.contexts), int)
        out[self.context] = self.scenario
        return out


def within_scenario_centring(context_scenario: np.ndarray) -> np.ndarray:
    """Matrix (contexts × contexts) that subtracts, from each context's value, the mean over its scenario."""
    same = context_scenario[:, None] == context_scenario[None, :]
    return np.eye(len(context_scenario)) - same / same.sum(axis=1, keepdims=True)


def build_stage_model(data: StageData, config: dict | None = None) -> tuple[pm.Model, np.ndarray, np.ndarray]:
    """The PyMC graph of the stage model; returns ``(model, T, scale)`` (the SVD rotation of the slopes, which
    prediction for an unseen scenario needs)."""
    cfg = {**DEFAULT_STAGE_CONFIG, **(config or {})}
    priors = stage_priors(cfg)
    T, scale = rotation(data.X)
    prior = priors["slope"].scale * scale
    coords = {"feature": list(data.feature_names), "component": np.arange(T.shape[1]),
              "scenario": list(data.scenarios), "context": list(data.contexts), "obs": np.arange(len(data.z))}
    with pm.Model(coords=coords) as model:
        Z = pm.Data("Z", data.X @ T, dims=("obs", "component"))
        s = data.scenario.astype("int64")
        c = data.context.astype("int64")
        intercept = priors["intercept"].create_variable("intercept")
        theta = priors["slope"].create_variable("theta", scale=scale, dims="component")
        pm.Deterministic("beta", pm.math.dot(T, theta), dims="feature")
        # zero-sum offsets (as in the pre-training model): scenario levels sum to 0, so ``intercept`` is their
        # average (measured on synthetic stages: a free offset per scenario gave R-hat 1.07 and ESS 55 for the
        # intercept); context levels sum to 0 within each scenario, so they cannot compete with its offset.
        # Non-centred (on the grid's stages a centred scenario offset gave 7 divergent transitions, this 0)
        sigma_s = priors["sigma_scenario"].create_variable("sigma_scenario")
        if len(data.scenarios) > 1:
            r = pm.ZeroSumNormal("scenario_raw", sigma=1.0, dims="scenario")
        else:
            r = pt.zeros(1)
        scen_off = pm.Deterministic("scenario_offset", sigma_s * r, dims="scenario")
        sigma_c = priors["sigma_context"].create_variable("sigma_context")
        q = pm.Normal("context_raw", 0.0, 1.0, dims="context")
        centre = within_scenario_centring(data.context_scenario)
        ctx_off = pm.Deterministic("context_offset", sigma_c * pm.math.dot(centre, q), dims="context")
        sigma_b = priors["sigma_scenario_slope"].create_variable("sigma_scenario_slope")
        b_raw = pm.Normal("scenario_slope_raw", 0.0, 1.0, dims=("component", "scenario"))
        rot_b = sigma_b * prior[:, None] * b_raw
        pm.Deterministic("scenario_slope", pm.math.dot(T, rot_b), dims=("feature", "scenario"))
        mu = intercept + scen_off[s] + ctx_off[c] + pm.math.dot(Z, theta) + (Z * rot_b[:, s].T).sum(axis=1)
        sigma = priors["sigma"].create_variable("sigma")
        pm.StudentT("z", nu=cfg["nu"], mu=mu, sigma=sigma, observed=data.z, dims="obs")
    return model, T, scale


def predict_stage_mu(post: dict[str, np.ndarray], X: np.ndarray, scenario: np.ndarray, context: np.ndarray,
                     rng: np.random.Generator, T: np.ndarray, scale: np.ndarray,
                     config: dict | None = None) -> np.ndarray:
    """Posterior draws of the standardised mean (samples × rows).

    ``scenario[i] = -1``: a scenario absent from the fit (fresh level and slope offsets per draw, shared by every
    row of that call); ``context[i] = -1``: a checkpoint not seen in its scenario (a fresh offset per draw and per
    distinct ``(scenario, -1)`` pair, i.e. shared by the candidates of one continuation).
    """
    cfg = {**DEFAULT_STAGE_CONFIG, **(config or {})}
    S = post["intercept"].shape[0]
    X = np.asarray(X, float)
    scenario = np.asarray(scenario, int)
    context = np.asarray(context, int)
    mu = post["intercept"][:, None] + post["beta"] @ X.T
    for s in np.unique(scenario):
        cols = np.flatnonzero(scenario == s)
        if s >= 0:
            mu[:, cols] += post["scenario_offset"][:, s][:, None] + post["scenario_slope"][:, :, s] @ X[cols].T
        else:
            level = rng.normal(size=S) * post["sigma_scenario"]
            rot = rng.normal(size=(S, T.shape[1])) * (post["sigma_scenario_slope"][:, None]
                                                       * stage_priors(cfg)["slope"].scale * scale[None, :])
            mu[:, cols] += level[:, None] + (rot @ T.T) @ X[cols].T
        known = cols[context[cols] >= 0]
        if known.size:
            mu[:, known] += post["context_offset"][:, context[known]]
        new = cols[context[cols] < 0]
        if new.size:
            mu[:, new] += (rng.normal(size=S) * post["sigma_context"])[:, None]
    return mu


def coverage_check(post: dict[str, np.ndarray], data: StageData, T: np.ndarray, scale: np.ndarray, nu: float,
                   random_seed: int = 0) -> dict:
    """Posterior predictive coverage of the 50 % and 90 % intervals on the stage rows the model was fitted on."""
    rng = np.random.default_rng(random_seed)
    mu = predict_stage_mu(post, data.X, data.scenario, data.context, rng, T, scale)
    z_rep = mu + post["sigma"][:, None] * rng.standard_t(nu, size=mu.shape)
    out = interval_coverage(z_rep, data.z)
    out["warnings"] = ([f"stage model: 90 % intervals cover {out['coverage_90']:.0%} of the stage runs it was "
                        "fitted on; the noise model may be mis-specified."]
                       if abs(out["coverage_90"] - 0.9) > 0.1 else [])
    return out


@dataclass
class StageFit:
    """A fitted stage model and everything prediction needs (stored with the model directory)."""

    standardiser: Standardiser
    y_mean: float
    y_sd: float
    scenarios: list[str]
    contexts: list[str]
    T: np.ndarray
    scale: np.ndarray
    config: dict
    idata: object
    post: dict
    diagnostics: dict
    posterior_check: dict
    n_runs: int
    x_range: np.ndarray  # (2, features): min and max of the standardised features of the stage runs

    @property
    def warnings(self) -> list[str]:
        """The plain-language messages of its posterior predictive check."""
        return list(self.posterior_check["warnings"])

    def outside_range(self, X_raw: np.ndarray, tolerance: float = 0.25) -> np.ndarray:
        """Rows whose features lie outside the stage runs' range (widened by ``tolerance`` × that range) in any
        feature: there the stage model extrapolates."""
        return self.outside_by_feature(X_raw, tolerance).any(axis=1)

    def outside_by_feature(self, X_raw: np.ndarray, tolerance: float = 0.25) -> np.ndarray:
        """(rows × features) where a row's feature lies outside the stage runs' range, widened by ``tolerance``
        × that range (the features of :meth:`outside_range`, one by one, to say which)."""
        X = self.standardiser.transform(np.asarray(X_raw, float))
        lo, hi = self.x_range
        pad = tolerance * (hi - lo)
        return (X < lo - pad - 1e-9) | (X > hi + pad + 1e-9)

    def indices(self, parent_ids, scenarios) -> tuple[np.ndarray, np.ndarray]:
        """Scenario and context index per row (-1 where unseen)."""
        s_idx = np.array([self.scenarios.index(s) if s in self.scenarios else -1 for s in scenarios], int)
        keys = [context_key(p, s) for p, s in zip(parent_ids, scenarios)]
        c_idx = np.array([self.contexts.index(k) if k in self.contexts else -1 for k in keys], int)
        return s_idx, c_idx

    def predict_log_loss(self, X_raw: np.ndarray, parent_ids, scenarios, rng) -> tuple[np.ndarray, np.ndarray]:
        """Draws of (mean log loss, new-run log loss), samples × rows, for raw (unstandardised) features."""
        X = self.standardiser.transform(X_raw)
        s_idx, c_idx = self.indices(parent_ids, scenarios)
        mu = predict_stage_mu(self.post, X, s_idx, c_idx, rng, self.T, self.scale, self.config)
        z_noisy = mu + self.post["sigma"][:, None] * rng.standard_t(self.config["nu"], size=mu.shape)
        return mu * self.y_sd + self.y_mean, z_noisy * self.y_sd + self.y_mean

    def settings(self) -> dict:
        return {"standardiser": self.standardiser.to_dict(), "y_mean": self.y_mean, "y_sd": self.y_sd,
                "scenarios": self.scenarios, "contexts": self.contexts, "rotation": self.T.tolist(),
                "rotation_scale": self.scale.tolist(), "config": self.config, "diagnostics": self.diagnostics,
                "posterior_check": self.posterior_check, "n_runs": self.n_runs,
                "x_range": self.x_range.tolist()}

    @classmethod
    def from_settings(cls, s: dict, idata) -> "StageFit":
        return cls(Standardiser.from_dict(s["standardiser"]), s["y_mean"], s["y_sd"], list(s["scenarios"]),
                   list(s["contexts"]), np.asarray(s["rotation"], float), np.asarray(s["rotation_scale"], float),
                   s["config"], idata, posterior_arrays(idata, POSTERIOR_VARS), s["diagnostics"], s["posterior_check"],
                   int(s["n_runs"]), np.asarray(s["x_range"], float))


def fit_stage_model(X_raw: np.ndarray, log_loss: np.ndarray, parent_ids, scenarios, feature_names: list[str],
                    config: dict | None = None, sampler_config: dict | None = None,
                    random_seed: int = 0) -> StageFit:
    """Fit the stage model on stage rows (raw features from the pre-training law's design, log final loss)."""
    from . import loss_model as lm

    cfg = resolved_stage_config(config)
    st = Standardiser.fit(X_raw)
    X = st.transform(X_raw)
    y_mean, y_sd = float(log_loss.mean()), float(log_loss.std()) or 1.0
    scen_list = sorted(set(map(str, scenarios)))
    keys = [context_key(p, s) for p, s in zip(parent_ids, scenarios)]
    ctx_list = sorted(set(keys))
    data = StageData(X, (log_loss - y_mean) / y_sd, np.array([scen_list.index(s) for s in scenarios]),
                     np.array([ctx_list.index(k) for k in keys]), scen_list, ctx_list, list(feature_names))
    model, T, scale = build_stage_model(data, cfg)
    idata = lm.sample_loss_model(model, lm.with_target_accept(sampler_config, cfg["target_accept"]),
                                 random_seed=random_seed)
    diag = lm.diagnostics(idata, ["intercept", "theta", "sigma_scenario", "scenario_raw", "sigma_context",
                                  "context_raw", "sigma_scenario_slope", "scenario_slope_raw", "sigma"])
    post = posterior_arrays(idata, POSTERIOR_VARS)
    ppc = coverage_check(post, data, T, scale, cfg["nu"], random_seed)
    return StageFit(st, y_mean, y_sd, scen_list, ctx_list, T, scale, cfg, idata, post, diag, ppc, len(log_loss),
                    np.array([X.min(axis=0), X.max(axis=0)]))


__all__ = ["fit_stage_model", "StageFit", "predict_stage_mu", "is_stage", "scenario_labels", "context_key",
           "DEFAULT_SCENARIO", "MIN_STAGE_RUNS"]
