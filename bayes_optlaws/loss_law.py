"""The pre-training loss law as a fitted component: its fitted state, ``fit``, ``predict`` and settings.

:class:`LossLawFit` is to the loss law what :class:`~bayes_optlaws.divergence.DivergenceFit` is to the divergence
model and :class:`~bayes_optlaws.continual.StageFit` to the stage model: it holds what fitting the hierarchical
regression of :mod:`bayes_optlaws.loss_model` produced (the standardisation of the design and of log loss, the
fitted model sizes and pooled levels, the posterior, its checks) and predicts from it in numpy.  The features
themselves (which runs, which exponents, which covariates) are the estimator's
(:class:`~bayes_optlaws.optlaw.BayesOptLaw`): this component sees a design matrix, size and level indices, and
standardised log losses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from . import loss_model as lm
from .features import Standardiser
from .posterior import posterior_arrays

#: the posterior variables whose R-hat / ESS / divergences the fit reports
DIAGNOSED_VARS = ("intercept", "theta", "sigma", "sigma_size", "size_offset_raw", "sigma_slope", "slope_offset_raw",
                  "sigma_level", "level_offset_raw")


@dataclass
class LossLawFit:
    """A fitted loss law.

    ``standardiser``: the design's column standardisation; ``y_mean`` / ``y_sd``: of the training log losses
    (log nats); ``sizes``: the fitted model sizes (parameters, ascending); ``levels``: the pooled group column's
    levels; ``group_means``: the per-size mean of the standardised design (sizes × terms); ``post``: the posterior
    as arrays (:data:`loss_model.POSTERIOR_VARS`); ``diagnostics`` / ``prior_check`` / ``ppc`` / ``loo``: the
    Bayesian workflow's checks (plain dicts, their ``warnings`` lists in words)."""

    standardiser: Standardiser
    y_mean: float
    y_sd: float
    sizes: list[int]
    levels: list
    group_means: np.ndarray
    idata: xr.DataTree | None = field(default=None, repr=False)
    post: dict | None = field(default=None, repr=False)
    diagnostics: dict | None = None
    prior_check: dict | None = None
    ppc: dict | None = None
    loo: dict | None = None

    @classmethod
    def fit(cls, data: lm.LossData, standardiser: Standardiser, y_mean: float, y_sd: float, config: dict,
            sampler_config: dict, random_seed: int) -> "LossLawFit":
        """Prior predictive check, NUTS, diagnostics, posterior predictive check and LOO on ``data`` (its ``y``
        standardised with ``y_mean`` / ``y_sd``, its design with ``standardiser``)."""
        prior_check = lm.prior_check(data, config, random_seed=random_seed)
        idata = lm.sample_loss_model(lm.build_loss_model(data, config), sampler_config, random_seed=random_seed,
                                     adaptation=lm.mass_matrix_adaptation(data, config))
        post = posterior_arrays(idata, lm.POSTERIOR_VARS)
        return cls(standardiser, float(y_mean), float(y_sd), list(data.sizes), list(data.levels or []),
                   data.group_means, idata, post, lm.diagnostics(idata, list(DIAGNOSED_VARS)), prior_check,
                   lm.posterior_check(post, data, config["nu"], random_seed), lm.loo_check(idata))

    @property
    def warnings(self) -> list[str]:
        """The plain-language messages of its prior predictive check, posterior predictive check and LOO (the
        sampler diagnostics warn when they are computed)."""
        return [msg for check in (self.prior_check, self.ppc, self.loo) for msg in (check or {}).get("warnings", [])]

    @property
    def n_draws(self) -> int:
        return int(self.post["intercept"].shape[0])

    def predict_log_loss(self, X: np.ndarray, model_params, level: np.ndarray, config: dict,
                         rng: np.random.Generator, noise: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Draws (samples × rows) of the mean and the new-run log loss for the raw design rows ``X`` (features
        and covariates, unstandardised) of runs of ``model_params`` parameters with pooled-level indices
        ``level``.  A size the law was not fitted on gets a fresh size offset, one per draw shared by its rows
        (a random walk from the nearest fitted size with ``config["new_size_offset"] == "random_walk"``).
        ``noise=False`` skips the new-run draws (``None`` in their place; the mean draws are the same)."""
        Xs = self.standardiser.transform(X)
        sizes = np.asarray(model_params)
        group = np.array([self.sizes.index(int(s)) if int(s) in self.sizes else -1 for s in sizes])
        mu = np.empty((self.n_draws, len(sizes)))
        walk = config.get("new_size_offset", "exchangeable") == "random_walk"
        for size in np.unique(sizes):
            cols = np.flatnonzero(sizes == size)
            where = lm.new_size_position(self.sizes, size) if walk and int(size) not in self.sizes else None
            mu[:, cols] = lm.predict_mu(self.post, Xs[cols], group[cols], rng, self.group_means, where)
        mu += lm.level_offsets(self.post, level, rng)
        if not noise:
            return mu * self.y_sd + self.y_mean, None
        z_noisy = lm.add_noise(self.post, mu, config["nu"], rng)
        return mu * self.y_sd + self.y_mean, z_noisy * self.y_sd + self.y_mean

    def settings(self) -> dict:
        """JSON-ready state (everything but the posterior), under the keys of a saved model's settings."""
        return {"standardiser": self.standardiser.to_dict(), "y_mean": self.y_mean, "y_sd": self.y_sd,
                "sizes": [int(s) for s in self.sizes], "levels": list(self.levels),
                "group_means": np.asarray(self.group_means).tolist(), "loss_diagnostics": self.diagnostics,
                "prior_check": self.prior_check, "posterior_check": self.ppc, "loo": self.loo}

    @classmethod
    def from_settings(cls, s: dict, idata: xr.DataTree) -> "LossLawFit":
        """Inverse of :meth:`settings` (``s`` may hold other keys too), with the posterior ``idata``."""
        return cls(Standardiser.from_dict(s["standardiser"]), s["y_mean"], s["y_sd"], [int(x) for x in s["sizes"]],
                   list(s.get("levels") or []), np.asarray(s["group_means"], float), idata,
                   posterior_arrays(idata, lm.POSTERIOR_VARS), s["loss_diagnostics"], s.get("prior_check"),
                   s.get("posterior_check"), s.get("loo"))
