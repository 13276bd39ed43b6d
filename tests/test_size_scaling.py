"""The size-scaling prior of one-size laws (bayes_optlaws.size_scaling) and how the law uses it.

The fitted-law tests use the SYNTHETIC grid of tests/synthetic.py restricted to one size (not real data)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws.extrapolation import ExtrapolationWarning
from bayes_optlaws.features import FeatureSpec
from bayes_optlaws.optlaw import BayesOptLaw
from bayes_optlaws.priors import Prior
from bayes_optlaws.runs import RunsError
from bayes_optlaws.size_scaling import chinchilla_log_shift, chinchilla_loss, check_mode, size_shift_draws

FIT_SIZE = 80_000
SAMPLER = {"draws": 100, "tune": 200, "chains": 2}


def test_chinchilla_loss_matches_the_papers_compute_optimal_point():
    # Chinchilla itself (70B parameters, 1.4T tokens): 1.69 + 406.4 / 70e9^0.34 + 410.7 / 1.4e12^0.28 = 1.937
    assert float(chinchilla_loss(70e9, 1.4e12)) == pytest.approx(1.937, abs=0.002)


def test_log_shift_is_negative_upwards_zero_at_the_same_size_and_antisymmetric():
    up = chinchilla_log_shift(1e8, 4e8, 1e10)
    assert up < 0
    assert float(chinchilla_log_shift(1e8, 1e8, 1e10)) == 0.0
    assert float(chinchilla_log_shift(4e8, 1e8, 1e10)) == pytest.approx(-float(up))
    # the size term matters more when data are plentiful (B / D^beta small): larger |shift| at larger D
    assert abs(chinchilla_log_shift(1e8, 4e8, 1e11)) > abs(chinchilla_log_shift(1e8, 4e8, 1e9))


def test_shift_draws_scale_the_chinchilla_shift_per_draw():
    factor = np.array([0.5, 1.0, 2.0])
    shift = size_shift_draws(factor, 1e8, [1e8, 4e8], [1e10, 1e10])
    assert shift.shape == (3, 2)
    assert np.all(shift[:, 0] == 0.0)
    assert shift[:, 1] == pytest.approx(factor * float(chinchilla_log_shift(1e8, 4e8, 1e10)))


def test_unknown_mode_is_a_clear_error():
    assert check_mode(None) == "none"
    with pytest.raises(RunsError, match="one_size_scaling must be one of chinchilla, none"):
        check_mode("kaplan")


def test_prior_sample_is_seeded_and_follows_the_distribution():
    prior = Prior("LogNormal", mu=0.0, sigma=0.5)
    a = prior.sample(4000, np.random.default_rng(1))
    b = prior.sample(4000, np.random.default_rng(1))
    assert np.array_equal(a, b)
    assert np.median(a) == pytest.approx(1.0, abs=0.05)
    assert np.std(np.log(a)) == pytest.approx(0.5, abs=0.03)


@pytest.fixture(scope="module")
def one_size_law(synthetic_table):
    runs = synthetic_table[synthetic_table["model_params"] == FIT_SIZE].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BayesOptLaw(FeatureSpec(lr_ref=0.3), sampler_config=SAMPLER, random_seed=2,
                           fit_divergence=False).fit(runs)


def _candidates(sizes):
    spec = json.dumps({"family": "cosine", "peak_lr": 0.01, "warmup": 20, "total": 1000})
    return pd.DataFrame({"name": [f"n{s}" for s in sizes], "schedule": [spec] * len(sizes),
                         "model_params": list(sizes), "tokens_per_step": 4096})


def test_one_size_law_takes_the_size_step_from_the_prior(one_size_law):
    sizes = [FIT_SIZE, 2 * FIT_SIZE, 4 * FIT_SIZE]  # small steps: no draw reaches the loss floor
    with pytest.warns(ExtrapolationWarning, match="Chinchilla"):
        draws = one_size_law.predict_draws(_candidates(sizes))
    log_mu = np.log(draws.loss)
    D = 1000 * 4096
    k2 = (log_mu[:, 1] - log_mu[:, 0]) / float(chinchilla_log_shift(FIT_SIZE, sizes[1], D))
    k4 = (log_mu[:, 2] - log_mu[:, 0]) / float(chinchilla_log_shift(FIT_SIZE, sizes[2], D))
    # the schedule's effect is the law's at the fitted size: the only difference is the prior's size step,
    # one factor per draw shared by every candidate
    assert k2 == pytest.approx(k4, rel=1e-9)
    assert np.median(k4) == pytest.approx(1.0, abs=0.15)
    assert np.std(np.log(k4)) == pytest.approx(0.5, abs=0.1)
    # the further from the fitted size, the lower the loss and the wider its interval
    width = np.diff(np.quantile(log_mu, [0.05, 0.95], axis=0), axis=0)[0]
    assert width[0] < width[1] < width[2]
    assert np.median(log_mu[:, 0]) > np.median(log_mu[:, 1]) > np.median(log_mu[:, 2])


def test_switching_the_prior_off_restores_the_feature_form_and_says_so(one_size_law):
    law = one_size_law
    original = dict(law.model_config)
    try:
        law.model_config = {**original, "one_size_scaling": "none"}
        with pytest.warns(ExtrapolationWarning, match="one_size_scaling='none'"):
            off = law.predict_draws(_candidates([FIT_SIZE, 4 * FIT_SIZE]))
    finally:
        law.model_config = original
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on = law.predict_draws(_candidates([FIT_SIZE, 4 * FIT_SIZE]))
    assert np.array_equal(off.loss[:, 0], on.loss[:, 0])  # the fitted size is predicted as before
    assert not np.allclose(off.loss[:, 1], on.loss[:, 1])


def test_a_law_with_several_sizes_does_not_use_the_prior(fitted_law):
    assert len(fitted_law.sizes_) > 1 and not fitted_law._one_size_scaling()


def test_a_bad_mode_is_refused_before_any_sampling(synthetic_table):
    with pytest.raises(RunsError, match="one_size_scaling"):
        BayesOptLaw(FeatureSpec(lr_ref=0.3), model_config={"one_size_scaling": "kaplan"}).fit(synthetic_table)
