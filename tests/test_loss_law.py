"""The loss law as a fitted component (loss_law.LossLawFit), on the SYNTHETIC-grid fixture law."""

import json

import numpy as np
import pytest

from bayes_optlaws.features import design_matrix, integrals_table
from bayes_optlaws.loss_law import LossLawFit


def _design(law, runs):
    return law._with_covariates(design_matrix(integrals_table(runs, law.spec_.lr_ref, law.spec_.history_escape),
                                              law.spec_), runs, "runs")


def test_the_law_holds_its_loss_state_in_one_component(fitted_law):
    """The estimator's loss-law attributes are the component's (one place, read-only)."""
    fit = fitted_law.loss_fit_
    assert isinstance(fit, LossLawFit)
    assert fitted_law.loss_post_ is fit.post and fitted_law.standardiser_ is fit.standardiser
    assert fitted_law.sizes_ == fit.sizes == sorted(fitted_law.train_runs_["model_params"].unique().tolist())
    assert fit.diagnostics["max_rhat"] < 1.1 and "warnings" in fit.prior_check and "warnings" in fit.ppc
    with pytest.raises(AttributeError):
        fitted_law.loss_post_ = {}


def test_settings_round_trip_predicts_identically(fitted_law):
    """``from_settings(settings())`` with the same posterior gives the same draws for the same seed; the
    settings are JSON."""
    fit = fitted_law.loss_fit_
    settings = json.loads(json.dumps(fit.settings()))
    again = LossLawFit.from_settings(settings, fit.idata)
    runs = fitted_law.train_runs_[~fitted_law.train_runs_["diverged"]].head(6).reset_index(drop=True)
    X = _design(fitted_law, runs)
    level = np.zeros(len(runs), dtype=int)
    first = fit.predict_log_loss(X, runs["model_params"].to_numpy(), level, fitted_law.model_config_,
                                 np.random.default_rng(5))
    second = again.predict_log_loss(X, runs["model_params"].to_numpy(), level, fitted_law.model_config_,
                                    np.random.default_rng(5))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert first[0].shape == (fit.n_draws, len(runs))
    # the mean draws alone (noise=False: what the backtests and the LR gap use) are the same draws, without the
    # new-run ones
    mean_only, none = fit.predict_log_loss(X, runs["model_params"].to_numpy(), level, fitted_law.model_config_,
                                           np.random.default_rng(5), noise=False)
    np.testing.assert_array_equal(mean_only, first[0])
    assert none is None


def test_prediction_is_close_to_the_fitted_runs_and_noisier_for_a_new_run(fitted_law):
    """At fitted sizes the posterior mean follows the training log losses; new-run draws spread wider than the
    mean's draws."""
    runs = fitted_law.train_runs_[~fitted_law.train_runs_["diverged"]].reset_index(drop=True)
    runs = runs[fitted_law._loss_rows(runs)].reset_index(drop=True)
    mu, noisy = fitted_law.loss_fit_.predict_log_loss(_design(fitted_law, runs), runs["model_params"].to_numpy(),
                                                      np.zeros(len(runs), dtype=int), fitted_law.model_config_,
                                                      np.random.default_rng(0))
    y = np.log(runs["final_loss"].to_numpy())
    assert np.corrcoef(mu.mean(axis=0), y)[0, 1] > 0.95
    assert (noisy.std(axis=0) > mu.std(axis=0)).mean() > 0.9
