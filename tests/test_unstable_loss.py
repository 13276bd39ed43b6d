"""The unstable-loss regression (bayes_optlaws.unstable_loss) on SYNTHETIC unstable runs with a known level."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws.runs import RunsError
from bayes_optlaws.runset import RunSet
from bayes_optlaws.unstable_loss import FEATURES, UnstableLossFit

#: the SYNTHETIC truth: log L = 1.2 + 0.15 log lr + 0.02 log N - 0.3 warmup + 0.04 eps
TRUE = {"intercept": 1.2, "log_peak_lr": 0.15, "log_N": 0.02, "warmup_frac": -0.3}
SIGMA = 0.04


def synthetic_unstable_runs(seed=0, sizes=(25_000, 85_000, 200_000), lrs=(0.016, 0.032, 0.064, 0.128),
                            warmups=(0.0, 0.01, 0.05), repeats=2) -> pd.DataFrame:
    """SYNTHETIC runs whose final loss follows :data:`TRUE` exactly (plus noise of sd :data:`SIGMA`)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for lr in lrs:
            for wf in warmups:
                for r in range(repeats):
                    log_loss = (TRUE["intercept"] + TRUE["log_peak_lr"] * np.log(lr) + TRUE["log_N"] * np.log(n)
                                + TRUE["warmup_frac"] * wf + SIGMA * rng.standard_normal())
                    spec = {"family": "cosine", "peak_lr": lr, "warmup": int(wf * 1000), "total": 1000}
                    rows.append({"run_id": f"n{n}-lr{lr}-w{wf}-{r}", "model_params": n, "tokens": 4_096_000,
                                 "tokens_per_step": 4096, "schedule": json.dumps(spec),
                                 "final_loss": float(np.exp(log_loss)), "diverged": False})
    return pd.DataFrame(rows)


def fitted(runs):
    return UnstableLossFit.fit(RunSet.of_runs(runs), np.ones(len(runs), bool))


def test_recovers_the_synthetic_coefficients_and_noise():
    fit = fitted(synthetic_unstable_runs())
    assert fit.features == list(FEATURES) and fit.n_runs == 72 and fit.dof == 72 - 4
    se = np.sqrt(np.diag(np.asarray(fit.cov_unscaled)) * fit.s2)
    truth = [TRUE["intercept"], TRUE["log_peak_lr"], TRUE["log_N"], TRUE["warmup_frac"]]
    assert np.all(np.abs(np.asarray(fit.coef) - truth) < 3.5 * se)
    assert np.sqrt(fit.s2) == pytest.approx(SIGMA, rel=0.25)
    text = fit.describe()
    assert text.startswith(f"log final loss = {fit.coef[0]:.3f} {fit.coef[1]:+.3f} log_peak_lr") and "72 unstable" in text


def test_draws_cover_new_synthetic_runs_at_their_nominal_rate_one_size_up():
    fit = fitted(synthetic_unstable_runs(seed=1))
    new = RunSet.of_runs(synthetic_unstable_runs(seed=2, sizes=(793_000,), repeats=20))
    log_draws = fit.log_loss_draws(new, 4000, np.random.default_rng(0))
    lo, hi = np.quantile(log_draws, [0.05, 0.95], axis=0)
    actual = np.log(new.table["final_loss"].to_numpy(float))
    assert 0.85 <= np.mean((actual >= lo) & (actual <= hi)) <= 0.95


def test_excess_is_the_level_above_the_normal_loss_never_below_zero():
    fit = fitted(synthetic_unstable_runs())
    cand = RunSet.of_runs(synthetic_unstable_runs(sizes=(200_000,), repeats=1))
    normal = np.column_stack([np.full(500, 1.0)] * 6 + [np.full(500, 50.0)] * (len(cand) - 6))
    excess = fit.excess_draws(cand, normal, np.random.default_rng(0))
    assert excess.shape == normal.shape and excess.min() == 0.0
    assert (excess[:, 6:] == 0).all()  # a normal loss above the plateau: the unstable run ends there too
    level = np.exp(fit.log_loss_draws(cand, 500, np.random.default_rng(0)))
    np.testing.assert_allclose(excess[:, :6], np.maximum(level[:, :6] - 1.0, 0.0))


def test_a_constant_feature_is_left_out_and_too_few_runs_fit_nothing():
    one_size = fitted(synthetic_unstable_runs(sizes=(85_000,)))
    assert one_size.features == ["log_peak_lr", "warmup_frac"] and len(one_size.coef) == 3
    few = synthetic_unstable_runs(sizes=(85_000,), lrs=(0.032, 0.064), warmups=(0.0,), repeats=2)
    assert fitted(few) is None  # 4 runs, 2 coefficients: n - p < 3
    runs = synthetic_unstable_runs()
    assert UnstableLossFit.fit(RunSet.of_runs(runs), np.zeros(len(runs), bool)) is None


def test_round_trips_through_its_dict_and_names_a_malformed_one():
    fit = fitted(synthetic_unstable_runs())
    again = UnstableLossFit.from_dict(json.loads(json.dumps(fit.to_dict())))
    cand = RunSet.of_runs(synthetic_unstable_runs(sizes=(400_000,), repeats=1))
    np.testing.assert_array_equal(fit.log_loss_draws(cand, 50, np.random.default_rng(3)),
                                  again.log_loss_draws(cand, 50, np.random.default_rng(3)))
    assert UnstableLossFit.from_dict(None) is None
    with pytest.raises(RunsError, match="incomplete or malformed"):
        UnstableLossFit.from_dict({k: v for k, v in fit.to_dict().items() if k != "s2"})
    with pytest.raises(RunsError, match="expected a subset of"):
        UnstableLossFit.from_dict({**fit.to_dict(), "features": ["log_D", "log_N", "warmup_frac"]})


def test_a_chosen_subset_of_features_is_fitted_and_an_unknown_one_refused():
    runs = synthetic_unstable_runs()
    lr_only = UnstableLossFit.fit(RunSet.of_runs(runs), np.ones(len(runs), bool), ("log_peak_lr",))
    assert lr_only.features == ["log_peak_lr"] and lr_only.coef[1] == pytest.approx(TRUE["log_peak_lr"], abs=0.02)
    with pytest.raises(RunsError, match=r"features must be among .*got \['log_D'\]"):
        UnstableLossFit.fit(RunSet.of_runs(runs), np.ones(len(runs), bool), ("log_peak_lr", "log_D"))
