"""Where a run that trains unstably ends: a Bayesian regression of its final loss on its LR, size and warmup.

A run that neither trains normally nor diverges (:mod:`bayes_optlaws.instability`: it ends at least
``unstable_gap`` nats above its block's best) has a final loss the loss law knows nothing about: the law is
fitted on the normal runs.  Such runs stall on a plateau whose height is set by how hard the LR hits the model,
not by the schedule's shape.  On the embedded grid (fit 25K–200K) an unstable run's final loss depends on its
peak LR (about ``+0.16`` in log loss per unit of log LR) and hardly on the model size (``+0.014`` per unit of
log N), while a normal run's loss falls with size.  So an *excess above the law*, measured at the fitted sizes
and added at a larger one, under-states an unstable run there: at the grid's 793K block the unstable runs ended
0.8–1.2 nats above the law against a median excess of 0.66 at the fitted sizes.

The model (``divergence_config["unstable_loss"] = "level"``, the default)::

    log L_unstable = b0 + b1 · log(peak LR) + b2 · log N + b3 · warmup fraction + sigma · eps,   eps ~ Normal(0, 1)

fitted on the unstable training runs with the reference prior ``p(b, sigma²) ∝ 1 / sigma²`` (Gelman et al.,
*Bayesian Data Analysis*, 3rd ed., §14.2): ``sigma² ~ Inv-χ²(n − p, s²)`` and ``b | sigma² ~ Normal(b̂,
sigma² (XᵀX)⁻¹)``, drawn exactly (no sampler).  A feature constant over the unstable runs (one model size, one
warmup) is left out: the level then does not move with it.  With fewer than ``p +`` :data:`MIN_EXTRA_RUNS`
unstable runs the model is not fitted and the law falls back to the fixed excess of
:attr:`~bayes_optlaws.divergence.DivergenceFit.unstable_excess`.

A candidate's unstable outcome, per posterior draw ``s``, ends at ``max(level[s], L[s])`` (``L``: its normal
loss; an unstable run never ends below it), i.e. ``L[s]`` plus the per-draw excess ``max(level[s] − L[s], 0)``
that :class:`~bayes_optlaws.draws.PredictionDraws` carries.  ``level[s]`` is a new unstable run's loss (the
regression's noise included), so intervals and P(best) carry the plateau's run-to-run spread.

Chosen on the grid's inner split (fit 25K + 85K, score the 200K block's 70 non-diverged runs, 22 of them
unstable; one fitted law, the unstable outcome predicted each way; ``benchmarks/bench_unstable_loss.py``,
2026-12-07): final-loss MAE 0.140 with the fixed excess above the law -> 0.067 (log LR alone), 0.067 (+ log N),
**0.066 (+ log N + warmup, the default)**; on the unstable runs 0.337 -> 0.116.  The three regressions are within
0.001 of each other: the peak LR carries the plateau; log N is kept because the target of a prediction is a size
the fit has not seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .runs import RunsError

#: the regression's inputs, in order after the intercept
FEATURES = ("log_peak_lr", "log_N", "warmup_frac")
#: runs needed beyond the number of coefficients (n − p ≥ 3: a posterior predictive with a finite variance)
MIN_EXTRA_RUNS = 3
#: a feature whose spread over the unstable runs is below this is constant there, and left out
CONSTANT_SPREAD = 1e-9


def feature_table(run_set) -> dict[str, np.ndarray]:
    """The regression's inputs for every row of a :class:`~bayes_optlaws.runset.RunSet`: log peak LR, log N
    (parameters) and warmup fraction (of the schedule's steps)."""
    return {"log_peak_lr": np.log(np.asarray(run_set.peak_lr, float)),
            "log_N": np.log(run_set.table["model_params"].to_numpy(float)),
            "warmup_frac": np.asarray(run_set.warmup_fraction, float)}


@dataclass
class UnstableLossFit:
    """The fitted regression: ``features`` used (a subset of :data:`FEATURES`, constant ones left out),
    ``coef`` (intercept first; log loss per unit of each feature), ``cov_unscaled`` ``(XᵀX)⁻¹``, ``s2`` the
    residual variance (log loss²), ``dof`` ``n − p`` and ``n_runs``."""

    features: list[str]
    coef: list[float]
    cov_unscaled: list[list[float]]
    s2: float
    dof: int
    n_runs: int

    @classmethod
    def fit(cls, run_set, unstable: np.ndarray, features=FEATURES) -> "UnstableLossFit | None":
        """Fit on the rows of ``run_set`` where ``unstable`` is True (their ``final_loss``, nats), on ``features``
        (a subset of :data:`FEATURES`; the default is all of them); ``None`` when they are too few for the
        features that vary among them (see :data:`MIN_EXTRA_RUNS`)."""
        unknown = [f for f in features if f not in FEATURES]
        if unknown:
            raise RunsError(f"unstable-loss features must be among {list(FEATURES)}, got {unknown}")
        rows = np.flatnonzero(np.asarray(unstable, bool))
        if rows.size == 0:
            return None
        table = feature_table(run_set.rows(rows))
        used = [f for f in FEATURES if f in features and np.std(table[f]) > CONSTANT_SPREAD]
        X = np.column_stack([np.ones(rows.size)] + [table[f] for f in used])
        y = np.log(run_set.table["final_loss"].to_numpy(float)[rows])
        n, p = X.shape
        if n < p + MIN_EXTRA_RUNS or np.linalg.matrix_rank(X) < p:
            return None
        cov = np.linalg.inv(X.T @ X)
        coef = cov @ X.T @ y
        resid = y - X @ coef
        return cls(used, [float(v) for v in coef], cov.tolist(), float(resid @ resid / (n - p)), int(n - p), int(n))

    def design(self, run_set) -> np.ndarray:
        """Design matrix (rows × 1 + features) of a run set's rows."""
        table = feature_table(run_set)
        return np.column_stack([np.ones(len(run_set))] + [table[f] for f in self.features])

    def log_loss_draws(self, run_set, size: int, rng: np.random.Generator) -> np.ndarray:
        """Draws (size × rows) of a new unstable run's log final loss: per draw ``sigma² ~ Inv-χ²(dof, s2)``,
        ``b ~ Normal(coef, sigma² cov_unscaled)``, then ``x b + sigma · eps``."""
        X = self.design(run_set)
        sigma2 = self.dof * self.s2 / rng.chisquare(self.dof, int(size))
        chol = np.linalg.cholesky(np.asarray(self.cov_unscaled, float))
        coef = np.asarray(self.coef, float) + np.sqrt(sigma2)[:, None] * (
            rng.standard_normal((int(size), len(self.coef))) @ chol.T)
        return coef @ X.T + np.sqrt(sigma2)[:, None] * rng.standard_normal((int(size), X.shape[0]))

    def excess_draws(self, run_set, normal_loss: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Per draw and row (the shape of ``normal_loss``, samples × rows, nats), how far above its normal loss
        a run that trains unstably ends: ``max(level − normal_loss, 0)``."""
        normal_loss = np.asarray(normal_loss, float)
        level = np.exp(self.log_loss_draws(run_set, normal_loss.shape[0], rng))
        return np.maximum(level - normal_loss, 0.0)

    def describe(self) -> str:
        """One line for the fit summary and the report: the fitted equation, run count and residual sd."""
        terms = " ".join(f"{v:+.3f} {k}" for k, v in zip(self.features, self.coef[1:]))
        return (f"log final loss = {self.coef[0]:.3f} {terms} ({self.n_runs} unstable runs, residual sd "
                f"{np.sqrt(self.s2):.3f})")

    def to_dict(self) -> dict:
        return {"features": list(self.features), "coef": list(self.coef), "cov_unscaled": self.cov_unscaled,
                "s2": self.s2, "dof": self.dof, "n_runs": self.n_runs}

    @classmethod
    def from_dict(cls, data: dict | None) -> "UnstableLossFit | None":
        """Inverse of :meth:`to_dict` (``None`` stays ``None``: a model without one); a RunsError names a field
        that is missing or an unknown feature."""
        if data is None:
            return None
        try:
            fit = cls(list(data["features"]), [float(v) for v in data["coef"]],
                      [[float(v) for v in row] for row in data["cov_unscaled"]], float(data["s2"]),
                      int(data["dof"]), int(data["n_runs"]))
        except (KeyError, TypeError, ValueError) as err:
            raise RunsError(f"the saved unstable-loss model is incomplete or malformed ({err!r}); refit the law")
        unknown = [f for f in fit.features if f not in FEATURES]
        if unknown or len(fit.coef) != 1 + len(fit.features):
            raise RunsError(f"the saved unstable-loss model has features {fit.features} and {len(fit.coef)} "
                            f"coefficients; expected a subset of {list(FEATURES)} plus an intercept")
        return fit
