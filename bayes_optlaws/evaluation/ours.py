"""Our methods in the evaluation protocol's ``fit(df)`` / ``predict(df)`` interface.

* ``optlaw_ls`` (:class:`OptLawLS`): the same 15 features, exponents searched on the training folds only
  (inner CV), coefficients by least squares on log loss — the point-estimate Opt-Law.
* ``bayes_optlaw`` (:class:`BayesOptLawMethod`): the hierarchical Bayesian model; ``predict_draws`` gives
  new-run predictive draws for coverage, CRPS and P(best) calibration.
* ``bayes_boundary`` (:class:`BayesBoundary`): the probabilistic critical-LR area boundary.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .. import divergence as div
from ..features import (BLOCKS, FeatureSpec, design_matrix, integrals_table, reference_lr, ridge_fit,
                        ridge_predict, select_exponents)
from ..optlaw import BayesOptLaw, block_key
from ..runset import RunSet
from .contract import require_fitted

FAST_SAMPLER = {"draws": 500, "tune": 500, "chains": 4}


class OptLawLS:
    """Least-squares Opt-Law with nested exponent selection (point predictions, nats)."""

    name = "optlaw_ls"

    def __init__(self, blocks=BLOCKS, seed: int = 0, alpha: float = 1e-3, fixed: dict | None = None):
        self.blocks = tuple(blocks)
        self.seed = seed
        self.alpha = alpha
        self.fixed = dict(fixed or {})  # e.g. {"p_s": 0.5}: that group held fixed, the others searched

    def fit(self, df: pd.DataFrame) -> "OptLawLS":
        runs = RunSet.of_runs(df)
        df = runs.table
        base = FeatureSpec(lr_ref=reference_lr(runs), blocks=self.blocks)
        integ = runs.integrals(base.lr_ref)
        y = np.log(df["final_loss"].to_numpy(float))
        self.spec_, table = select_exponents(integ, y, block_key(df), base, seed=self.seed, alpha=self.alpha)
        if self.fixed:
            rows = table
            for key, value in self.fixed.items():
                rows = rows[np.isclose(rows[key], value)]
            best = rows.iloc[0]
            self.spec_ = base.with_exponents(best.p_s, best.p_cc, best.p_e, best.p_m)
        self.coef_, self.st_, self.b0_ = ridge_fit(design_matrix(integ, self.spec_), y, self.alpha)
        return self

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        require_fitted(self, "coef_")
        X = design_matrix(integrals_table(df, self.spec_.lr_ref), self.spec_)  # rows to predict: no outcome needed
        return np.exp(ridge_predict(X, self.coef_, self.st_, self.b0_))


class BayesOptLawMethod:
    """The hierarchical Bayesian Opt-Law in the protocol's ``fit`` / ``predict`` / ``predict_draws`` contract.

    ``outcomes=False`` (the ablation's steps): the loss law alone, fitted on the rows it is given.
    ``outcomes=True`` (``bayes_optlaw`` in the cross-validation and the transfer modes: the product as a user
    runs it): fitted on every training run (``uses_all_runs``: diverged ones included) with the outcome model,
    and a test run that did not diverge is
    predicted as what it is — a mixture of training normally and training unstably: per draw, with
    ``q = P(unstable) / (1 − P(diverge))`` the run ends ``unstable_excess`` nats higher.  ``predict`` is the
    posterior mean of that mixture, ``predict_draws`` new-run draws from it.
    """

    name = "bayes_optlaw"

    def __init__(self, blocks=BLOCKS, seed: int = 0, sampler_config: dict | None = None,
                 model_config: dict | None = None, outcomes: bool = False):
        self.blocks = tuple(blocks)
        self.seed = seed
        self.sampler_config = sampler_config or FAST_SAMPLER
        self.model_config = model_config
        self.outcomes = outcomes
        self.uses_all_runs = outcomes

    def fit(self, df: pd.DataFrame) -> "BayesOptLawMethod":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.law_ = BayesOptLaw(blocks=self.blocks, sampler_config=self.sampler_config, random_seed=self.seed,
                                    model_config=self.model_config, fit_divergence=self.outcomes).fit(df)
        self.warnings_ = [str(w.message) for w in caught]
        return self

    def _draws(self, df: pd.DataFrame):
        require_fitted(self, "law_")
        cand = df.drop(columns=[c for c in ("parent_run_id",) if c in df.columns])  # each run predicted on its own
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # extrapolation warnings: the evaluation reports the distance itself
            return self.law_.predict_draws(cand)

    def _unstable_share(self, draws) -> np.ndarray:
        """P(unstable | not diverged) per draw and row (zeros without an unstable outcome)."""
        if not self.outcomes or draws.p_unstable is None:
            return np.zeros_like(draws.loss)
        p_div = np.nan_to_num(draws.p_diverge, nan=0.0)
        return np.clip(draws.p_unstable / np.maximum(1.0 - p_div, 1e-12), 0.0, 1.0)

    def _excesses(self, d) -> np.ndarray:
        """The unstable training runs' excess losses (nats) the mixture draws from: their spread when the fitted
        divergence model recorded them, else its one typical excess.  Never below 0: an unstable outcome does
        not end below the run's normal loss (a negative excess above the law is the law over-predicting a
        high-LR run, not a gain)."""
        recorded = None if self.law_.div_fit_ is None else self.law_.div_fit_.unstable_excesses
        return np.maximum(np.asarray(recorded if recorded else [d.unstable_excess], float), 0.0)

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Posterior predictive mean of the final loss (nats): the normal/unstable mixture's mean.  An unstable
        run ends where the law's unstable-loss regression puts it (per draw; :mod:`bayes_optlaws.unstable_loss`)
        or, for a law without one, the median of the recorded excesses higher (their mean is pulled down by runs
        the law over-predicts)."""
        d = self._draws(df)
        excess = d.unstable_excess if np.ndim(d.unstable_excess) == 2 else float(np.median(self._excesses(d)))
        return (d.loss + self._unstable_share(d) * excess).mean(axis=0)

    def predict_draws(self, df: pd.DataFrame) -> np.ndarray:
        """New-run draws: an unstable outcome (probability q per draw) adds the draw's excess from the law's
        unstable-loss regression or, for a law without one, an excess drawn from the unstable training runs' own
        excesses (a bootstrap of them, so the intervals carry their spread)."""
        d = self._draws(df)
        q = self._unstable_share(d)
        if not q.any():
            return d.loss_noisy
        rng = np.random.default_rng(self.seed + 11)
        unstable = rng.random(q.shape) < q
        excess = (d.unstable_excess if np.ndim(d.unstable_excess) == 2
                  else rng.choice(self._excesses(d), size=q.shape))
        return d.loss_noisy + excess * unstable


class BayesBoundary:
    """The Bayesian critical-LR boundary inside the outcome model of :mod:`bayes_optlaws.divergence` (the same
    :func:`~bayes_optlaws.divergence.fit_divergence` the law uses): ``predict_proba`` = posterior mean
    P(diverge), ``predict_unstable_proba`` = posterior mean P(unstable).  ``config`` overrides entries of
    ``DEFAULT_DIVERGENCE_CONFIG`` (e.g. ``{"outcome": "binary"}``)."""

    name = "bayes_boundary"

    def __init__(self, seed: int = 0, draws: int = 500, tune: int = 500, chains: int = 4,
                 config: dict | None = None):
        self.seed = seed
        self.sampler_config = {**FAST_SAMPLER, "draws": draws, "tune": tune, "chains": chains}
        self.config = dict(config or {})

    def fit(self, df: pd.DataFrame) -> "BayesBoundary":
        y = df["diverged"].astype(bool).to_numpy()
        self.constant_ = None
        if y.all() or not y.any():
            self.constant_ = float(y.mean())
            return self
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs = RunSet.of_runs(df)
            self.fit_ = div.fit_divergence(runs, reference_lr(runs), self.config, self.sampler_config,
                                           random_seed=self.seed)
        return self

    def predict_outcome_proba(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means of (P(diverge), P(unstable)) per row."""
        require_fitted(self, "constant_", "predict_proba")
        if self.constant_ is not None:
            return np.full(len(df), self.constant_), np.full(len(df), np.nan)
        p_div, p_uns = self.fit_.predict(df, np.random.default_rng(self.seed))
        return p_div.mean(axis=0), p_uns.mean(axis=0)

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        return self.predict_outcome_proba(df)[0]

    def predict_unstable_proba(self, df: pd.DataFrame) -> np.ndarray:
        return self.predict_outcome_proba(df)[1]


ABLATION_STEPS = {
    "scale": ("scale",),
    "+convergence": ("scale", "convergence"),
    "+escape": ("scale", "convergence", "escape"),
    "+mixed": ("scale", "convergence", "escape", "mixed"),
}


EXPONENT_GROUPS = ("p_s", "p_cc", "p_e", "p_m")


def sensitivity_methods(seed: int = 0, candidates=(0.1, 0.2, 0.5)) -> dict:
    """Exponent-group sensitivity (the paper's Table 11): one group held at each value, the others searched."""
    from functools import partial

    return {f"optlaw_ls[{g}={v:g}]": partial(OptLawLS, seed=seed, fixed={g: v})
            for g in EXPONENT_GROUPS for v in candidates}
