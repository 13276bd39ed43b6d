"""Parameter recovery where the true law extrapolates (SYNTHETIC data, tests/synthetic.py), and the optional
covariates / group column of the loss law."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws.features import FeatureSpec
from bayes_optlaws.optlaw import BayesOptLaw
from bayes_optlaws.runs import RunsError
from conftest import TEST_SAMPLER
from synthetic import synthetic_runs

SIZES = (25_000, 80_000, 200_000)
BIG = 800_000


def _fit(runs, **config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BayesOptLaw(FeatureSpec(lr_ref=0.3), sampler_config=TEST_SAMPLER, random_seed=1,
                           model_config=config or None, fit_divergence=False, fit_stages=False).fit(runs)


@pytest.fixture(scope="module")
def recovery():
    """SYNTHETIC: the made-up power law of tests/synthetic.py at 3 sizes (fit) and a 4x larger one (truth)."""
    table = synthetic_runs(seed=5, sizes=SIZES + (BIG,), noise=0.005)
    fit_rows = table[table["model_params"] < BIG]
    return _fit(fit_rows), table


def _candidates(rows):
    return rows.rename(columns={"run_id": "name"})[["name", "schedule", "model_params", "tokens_per_step"]]


def test_a_larger_size_is_predicted_close_to_the_true_law(recovery):
    law, table = recovery
    big = table[(table["model_params"] == BIG) & ~table["diverged"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = law.predict_draws(_candidates(big))
    y = big["final_loss"].to_numpy()
    mean = d.loss.mean(axis=0)
    assert np.mean(np.abs(mean - y) / y) < 0.05  # within 5 % of the true law one 4x step beyond the data
    lo, hi = np.quantile(d.loss_noisy, [0.05, 0.95], axis=0)
    assert np.mean((lo <= y) & (y <= hi)) >= 0.6
    # the ranking of schedules at the new size follows the truth
    from scipy.stats import spearmanr
    assert spearmanr(mean, y).statistic > 0.6


def test_intervals_widen_with_the_distance_from_the_fitted_sizes(recovery):
    law, table = recovery
    rows = table[(table["model_params"] == 200_000) & ~table["diverged"]].head(8)
    widths = []
    for size in (200_000, 800_000, 3_200_000):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = law.predict_draws(_candidates(rows).assign(model_params=size))
        lo, hi = np.quantile(np.log(d.loss), [0.05, 0.95], axis=0)
        widths.append(float(np.mean(hi - lo)))
    assert widths[0] < widths[1] < widths[2]


def _with_extras(table, seed=0):
    """SYNTHETIC: a tokens-per-step effect of +0.05 nats per doubling and an optimizer level (+0.1 for 'b')."""
    rng = np.random.default_rng(seed)
    rows = []
    for tps in (2048, 8192):
        for opt, shift in (("a", 0.0), ("b", 0.1)):
            part = table.copy()
            part["run_id"] = part["run_id"] + f"-b{tps}-{opt}"
            part["tokens_per_step"] = tps
            part["tokens"] = [json.loads(s)["total"] * tps for s in part["schedule"]]
            ok = ~part["diverged"]
            part.loc[ok, "final_loss"] = (part.loc[ok, "final_loss"] + 0.05 * np.log2(tps / 4096) + shift
                                          + rng.normal(0, 0.003, ok.sum()))
            part["x_optimizer"] = opt
            rows.append(part)
    return pd.concat(rows, ignore_index=True)


def test_covariates_and_a_group_column_recover_their_effects():
    base = synthetic_runs(seed=2, sizes=(25_000, 80_000), lrs=(3e-3, 1e-2, 3e-2), warmups=(0.02, 0.1))
    table = _with_extras(base[~base["diverged"]])
    law = _fit(table, covariates=["log_tokens_per_step"], group_column="x_optimizer")
    assert law.loss_feature_names_[-1] == "log_tokens_per_step" and law.levels_ == ["a", "b"]
    spec = json.dumps({"family": "linear", "peak_lr": 1e-2, "warmup": 100, "total": 1000})
    cand = pd.DataFrame({"name": ["small-a", "big-a", "small-b"], "schedule": [spec] * 3,
                         "model_params": [80_000] * 3, "tokens_per_step": [2048, 8192, 2048],
                         "x_optimizer": ["a", "a", "b"]})
    d = law.predict_draws(cand)
    mean = d.loss.mean(axis=0)
    assert mean[1] - mean[0] == pytest.approx(0.10, abs=0.03)  # two doublings of the batch
    assert mean[2] - mean[0] == pytest.approx(0.10, abs=0.03)  # optimizer b
    unseen = law.predict_draws(cand.assign(x_optimizer=["c"] * 3))  # a new optimizer: pooled, wider
    assert np.std(unseen.loss[:, 0]) > np.std(d.loss[:, 0])
    with pytest.raises(RunsError, match="x_optimizer"):
        law.predict_draws(cand.drop(columns="x_optimizer"))
    with pytest.raises(RunsError, match="unknown covariate"):
        _fit(table, covariates=["weight_decay"])
