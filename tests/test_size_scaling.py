"""The size step of unseen sizes (bayes_optlaws.size_scaling) and how the law uses it (new_size="nearest_size").

The fitted-law tests use the SYNTHETIC grid of tests/synthetic.py restricted to one size (not real data)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws.extrapolation import ExtrapolationWarning
from bayes_optlaws.features import FeatureSpec
from bayes_optlaws.loss_model import loss_priors
from bayes_optlaws.optlaw import BayesOptLaw
from bayes_optlaws.priors import Prior
from bayes_optlaws.runs import RunsError
from bayes_optlaws.size_scaling import (LM_SCALE_MIN_PARAMS, REFERENCE_PRIORS, SizeStep, anchor_token_messages,
                                        check_mode,
                                        chinchilla_log_shift, chinchilla_loss, nearest_fitted_size, size_scaling_prior,
                                        size_shift_draws)

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
    shift = size_shift_draws(factor, [1e8, 1e8], [1e8, 4e8], [1e10, 1e10])
    assert shift.shape == (3, 2)
    assert np.all(shift[:, 0] == 0.0)
    assert shift[:, 1] == pytest.approx(factor * float(chinchilla_log_shift(1e8, 4e8, 1e10)))


def test_unknown_mode_is_a_clear_error():
    assert check_mode(None) == "features"  # what models saved before the option did
    with pytest.raises(RunsError, match=r"new_size'\] must be one of nearest_size, features, got 'kaplan'"):
        check_mode("kaplan")


def test_nearest_fitted_size_is_nearest_in_log_n():
    fitted = [1e6, 4e6, 16e6]
    # 2.1e6 is nearer 4e6 than 1e6 in log N (ratios 1.9 vs 2.1); fitted sizes map to themselves
    assert nearest_fitted_size(fitted, [5e5, 2.1e6, 1.9e6, 4e6, 1e9]).tolist() == [1e6, 4e6, 1e6, 4e6, 16e6]


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


def test_a_tiny_model_law_records_the_chinchilla_centred_prior(one_size_law):
    """The synthetic sizes (25K-200K) are below LM scale: "auto" resolves to Chinchilla's prior, the default's."""
    assert one_size_law.model_config_["size_scaling_reference"] == "chinchilla"
    assert one_size_law.model_config_["priors"]["size_scaling"] == REFERENCE_PRIORS["chinchilla"]
    assert loss_priors({})["size_scaling"].to_dict() == REFERENCE_PRIORS["chinchilla"]


def test_a_one_size_laws_summary_names_its_prior(one_size_law):
    from bayes_optlaws.report import size_step_text

    assert ('one fitted size: the factor is the prior\'s (Prior("LogNormal", mu=0, sigma=0.5), centred on '
            'Chinchilla\'s own size term)') in size_step_text(one_size_law)


def test_auto_takes_the_lm_studies_prior_only_for_one_fitted_size_at_lm_scale():
    lm = LM_SCALE_MIN_PARAMS
    chin = REFERENCE_PRIORS["chinchilla"]
    assert size_scaling_prior("auto", [lm, lm]) == ("lm_studies", REFERENCE_PRIORS["lm_studies"])  # one size
    assert size_scaling_prior(None, [4 * lm]) == ("lm_studies", REFERENCE_PRIORS["lm_studies"])  # None: auto
    # the resolved default config holds Chinchilla's prior: that is the reference's, not the user's own
    assert size_scaling_prior("auto", [4 * lm], dict(chin)) == ("lm_studies", REFERENCE_PRIORS["lm_studies"])
    assert size_scaling_prior("auto", [lm - 1]) == ("chinchilla", chin)
    # two sizes: the law's own backtest learns the factor under Chinchilla's wide prior
    assert size_scaling_prior("auto", [lm, 4 * lm]) == ("chinchilla", chin)
    assert size_scaling_prior("chinchilla", [4 * lm])[0] == "chinchilla"
    assert size_scaling_prior("lm_studies", [25_000])[0] == "lm_studies"
    # a prior of the user's own wins with "auto" or "custom"; "custom" alone keeps the prior as it stands
    mine = {"dist": "LogNormal", "kwargs": {"mu": -0.5, "sigma": 0.2}}
    assert size_scaling_prior("auto", [4 * lm], mine) == ("custom", mine)
    assert size_scaling_prior("custom", [4 * lm], mine) == ("custom", mine)
    assert size_scaling_prior("custom", [4 * lm], dict(chin)) == ("custom", chin)
    # a saved model's config (its reference and the prior it recorded) refits to the same choice
    assert size_scaling_prior("lm_studies", [lm, 4 * lm], dict(REFERENCE_PRIORS["lm_studies"]))[0] == "lm_studies"
    # the returned prior is a copy: changing it leaves the reference alone
    size_scaling_prior("auto", [lm])[1]["kwargs"]["mu"] = 9.0
    assert REFERENCE_PRIORS["lm_studies"]["kwargs"]["mu"] == -0.23


@pytest.mark.parametrize("setting, prior, match", [
    ("kaplan", None, r"size_scaling_reference'\] must be one of auto, chinchilla, lm_studies, custom, got 'kaplan'"),
    (["auto"], None, r"must be one of .* got \['auto'\]"),
    ("lm_studies", {"dist": "LogNormal", "kwargs": {"mu": -0.1, "sigma": 0.3}},
     r"is 'lm_studies' but model_config\['priors'\] sets 'size_scaling' to .*'mu': -0.1.* drop one of the two"),
    ("auto", {"dist": "HalfNormal", "kwargs": {"sigma": 1.0}}, "must be a LogNormal"),
    ("custom", {"dist": "LogNormal", "kwargs": {"mu": 0.0, "sigma": -1.0}}, "needs sigma > 0"),
])
def test_a_bad_size_scaling_setting_is_refused_before_any_sampling(synthetic_table, monkeypatch, setting, prior,
                                                                    match):
    from bayes_optlaws.loss_law import LossLawFit

    monkeypatch.setattr(LossLawFit, "fit", lambda *a, **k: pytest.fail("sampled before checking the config"))
    config = {"size_scaling_reference": setting, **({"priors": {"size_scaling": prior}} if prior else {})}
    with pytest.raises(RunsError, match=match):
        BayesOptLaw(FeatureSpec(lr_ref=0.3), model_config=config).fit(synthetic_table)


def test_the_fit_records_the_reference_and_prior_it_used():
    """What ``fit`` writes into ``model_config_`` (checked on the recording step alone, without sampling)."""
    law = BayesOptLaw(model_config={"priors": {"sigma": {"dist": "HalfNormal", "kwargs": {"sigma": 0.3}}}})
    law._resolve_configs()
    law._record_size_scaling_prior([20_000_000])
    assert law.model_config_["size_scaling_reference"] == "lm_studies"
    assert loss_priors(law.model_config_)["size_scaling"] == Prior("LogNormal", mu=-0.23, sigma=0.16)
    assert law.model_config_["priors"]["sigma"]["kwargs"]["sigma"] == 0.3  # the other priors untouched
    mine = Prior("LogNormal", mu=0.1, sigma=0.3)
    law = BayesOptLaw(model_config={"priors": {"size_scaling": mine}})
    law._resolve_configs()
    law._record_size_scaling_prior([20_000_000])
    assert law.model_config_["size_scaling_reference"] == "custom"
    assert loss_priors(law.model_config_)["size_scaling"] == mine


def test_a_model_saved_before_the_reference_refits_by_auto():
    """The shipped model's config (saved before the option: no reference, Chinchilla's prior recorded), cloned and
    refitted on one LM-scale size, takes the studies' prior: a recorded reference prior is not the user's own."""
    import bayes_optlaws as bol

    twin = bol.load().clone()
    twin._resolve_configs()
    twin._record_size_scaling_prior([130_000_000])
    assert twin.model_config_["size_scaling_reference"] == "lm_studies"


def test_the_lm_studies_prior_centres_a_one_size_laws_step_below_chinchillas(one_size_law):
    """The same one-size law with the LM-scale studies' prior: the factor's median near exp(-0.23) = 0.79, its
    log spread the prior's sd and the step spread's together (sqrt(0.16² + E tau²) = 0.30)."""
    law = one_size_law
    original = law.model_config_
    try:
        law.model_config_ = {**original, "size_scaling_reference": "lm_studies",
                             "priors": {**original["priors"], "size_scaling": REFERENCE_PRIORS["lm_studies"]}}
        with pytest.warns(ExtrapolationWarning, match=r"LogNormal\", mu=-0.23, sigma=0.16\), centred on four public"):
            draws = law.predict_draws(_candidates([FIT_SIZE, 4 * FIT_SIZE]))
    finally:
        law.model_config_ = original
    log_mu = np.log(draws.loss)
    k = (log_mu[:, 1] - log_mu[:, 0]) / float(chinchilla_log_shift(FIT_SIZE, 4 * FIT_SIZE, 1000 * 4096))
    assert np.median(k) == pytest.approx(np.exp(-0.23), abs=0.06)
    assert np.std(np.log(k)) == pytest.approx(0.30, abs=0.06)


def test_switching_the_prior_off_restores_the_feature_form_and_says_so(one_size_law):
    law = one_size_law
    original = dict(law.model_config_)
    try:
        law.model_config_ = {**original, "new_size": "features"}
        with pytest.warns(ExtrapolationWarning, match="new_size='features'"):
            off = law.predict_draws(_candidates([FIT_SIZE, 4 * FIT_SIZE]))
    finally:
        law.model_config_ = original
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on = law.predict_draws(_candidates([FIT_SIZE, 4 * FIT_SIZE]))
    assert off.loss[:, 0] == pytest.approx(on.loss[:, 0], rel=1e-12)  # the fitted size is predicted as before
    assert not np.allclose(off.loss[:, 1], on.loss[:, 1])


def test_several_sizes_predict_an_unseen_size_from_the_nearest_fitted_one(fitted_law):
    """The session law (25K, 80K, 200K): 800K is the 200K law plus the size step, one factor per draw; a fitted
    size is predicted as before."""
    sizes = fitted_law.sizes_
    cand = _candidates([sizes[-1], 4 * sizes[-1], sizes[0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        draws = fitted_law.predict_draws(cand)
        law_alone = fitted_law.predict_draws(cand.iloc[[0, 2]])
    log_mu = np.log(draws.loss)
    k = (log_mu[:, 1] - log_mu[:, 0]) / float(chinchilla_log_shift(sizes[-1], 4 * sizes[-1], 1000 * 4096))
    priors = loss_priors(fitted_law.model_config_)
    summary = fitted_law.size_step_.summary(priors["size_scaling"], priors["size_step_spread"])
    assert summary["pairs"] == 2  # 25K -> 80K and 80K -> 200K
    assert np.median(k) == pytest.approx(summary["k_median"], rel=0.1)
    assert np.log(law_alone.loss[:, 0]) == pytest.approx(log_mu[:, 0], rel=1e-12)


def test_a_bad_mode_is_refused_before_any_sampling(synthetic_table):
    with pytest.raises(RunsError, match="new_size"):
        BayesOptLaw(FeatureSpec(lr_ref=0.3), model_config={"new_size": "kaplan"}).fit(synthetic_table)


def test_size_step_posterior_is_the_prior_without_pairs_and_follows_the_pairs_with_them():
    prior, spread = Prior("LogNormal", mu=0.0, sigma=0.5), Prior("HalfNormal", sigma=0.25)
    alone = SizeStep().summary(prior, spread)
    assert alone["k_median"] == pytest.approx(1.0, abs=0.03) and alone["pairs"] == 0
    three = SizeStep([{"from": 1, "to": 2, "k": 0.45, "se_log_k": 0.02, "runs": 50}] * 3).summary(prior, spread)
    assert three["k_median"] == pytest.approx(0.45, rel=0.15)
    assert three["k_90"][1] - three["k_90"][0] < alone["k_90"][1] - alone["k_90"][0]
    with pytest.raises(RunsError, match="must be a LogNormal"):
        SizeStep().summary(Prior("Normal", mu=1.0, sigma=0.5), spread)


def _size_stepped_runs(k_true: float, sizes=(25_000, 80_000, 200_000, 640_000), seed: int = 0) -> pd.DataFrame:
    """SYNTHETIC runs whose loss changes with size exactly as k_true times Chinchilla's size term (the schedule
    and token effects of tests/synthetic.py at 80K, the same at every size), with 1 % noise."""
    from synthetic import synthetic_runs

    base = synthetic_runs(seed=seed, sizes=(80_000,), noise=0.0)
    base = base[~base["diverged"]]
    rng = np.random.default_rng(seed + 1)
    tables = []
    for n in sizes:
        t = base.copy()
        t["model_params"] = n
        t["run_id"] = [f"n{n}-{r}" for r in base["run_id"]]
        step = k_true * chinchilla_log_shift(80_000, n, t["tokens"].to_numpy(float))
        t["final_loss"] = base["final_loss"].to_numpy() * np.exp(step + rng.normal(0, 0.01, len(t)))
        tables.append(t)
    return pd.concat(tables, ignore_index=True)


def test_parameter_recovery_the_size_step_is_learned_and_extrapolates():
    """SYNTHETIC parameter recovery: the true law's size step is 0.5 × Chinchilla's; fitted on 25K-200K, the
    backtest recovers it and the 640K runs are predicted within their intervals."""
    runs = _size_stepped_runs(0.5)
    train, test = runs[runs["model_params"] < 640_000], runs[runs["model_params"] == 640_000]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law = BayesOptLaw(FeatureSpec(lr_ref=0.3), sampler_config=SAMPLER, random_seed=1,
                          fit_divergence=False).fit(train)
        draws = law.predict_draws(test.rename(columns={"run_id": "name"}))
    assert [p["k"] for p in law.size_step_.pairs] == pytest.approx([0.5, 0.5], abs=0.1)
    y = np.log(test["final_loss"].to_numpy())
    log_pred = np.log(draws.loss_noisy)
    lo, hi = np.quantile(log_pred, [0.05, 0.95], axis=0)
    assert np.mean((y >= lo) & (y <= hi)) >= 0.8
    assert abs(float(np.mean(np.log(draws.loss).mean(axis=0) - y))) < 0.02  # |bias| in nats of log loss


def test_the_step_error_grows_with_the_steps_length(monkeypatch):
    """Per-configuration step error per unit of |Δ log N| ** power, pooled over the pairs by run count: with
    power 1, two pairs with the same rate give that rate times any length; with power 0, one pooled error for any
    length; a row that does not move gets none, and so does every row without pairs."""
    import bayes_optlaws.size_scaling as ss

    e = np.e
    step = SizeStep([{"from": 1e6, "to": 1e6 * e, "k": 1.0, "se_log_k": 0.1, "excess_sd": 0.02, "runs": 10},
                     {"from": 1e6 * e, "to": 1e6 * e ** 3, "k": 1.0, "se_log_k": 0.1, "excess_sd": 0.04, "runs": 30}])
    rows = ([1e6 * e ** 3, 1e6 * e ** 3, 1e6], [1e6 * e ** 6, 1e6 * e ** 3, 1e6 * e ** 0.5])
    monkeypatch.setattr(ss, "EXCESS_DISTANCE_POWER", 1.0)
    np.testing.assert_allclose(step.excess_sd_at(*rows), [0.06, 0.0, 0.01], rtol=1e-9)
    monkeypatch.setattr(ss, "EXCESS_DISTANCE_POWER", 0.0)
    pooled = np.sqrt((10 * 0.02 ** 2 + 30 * 0.04 ** 2) / 40)
    np.testing.assert_allclose(step.excess_sd_at(*rows), [pooled, 0.0, pooled], rtol=1e-9)
    assert SizeStep().excess_sd_at([1e6], [4e6]).tolist() == [0.0]


def _backtest(k0, gamma, ref, n_per_budget=20, seed=0, budgets=(1e9, 4e9, 1.6e10, 6.4e10), lower=1e8, upper=2e8):
    """SYNTHETIC backtest of one size pair whose factor is k0 * (D / e^ref) ** gamma, with a little noise."""
    rng = np.random.default_rng(seed)
    D = np.repeat(np.array(budgets), n_per_budget)
    chin = chinchilla_log_shift(lower, upper, D)
    observed = k0 * np.exp(gamma * (np.log(D) - ref)) * chin + rng.normal(0, 1e-4, D.size)
    return {"from": lower, "to": upper, "observed": observed, "chinchilla": chin, "log_tokens": np.log(D),
            "in_sample": rng.normal(0, 1e-4, D.size)}


def test_the_factor_of_a_step_follows_the_token_count_it_was_learned_at():
    """SYNTHETIC parameter recovery: two pairs whose factor rises as D^0.2 give gamma 0.2 (tight), the factor at
    the backtests' mean log D, and new-step draws that rise with D the same way."""
    ref = float(np.mean(np.log([1e9, 4e9, 1.6e10, 6.4e10])))
    backtests = [_backtest(0.8, 0.2, ref, seed=1), _backtest(0.8, 0.2, ref, seed=2, lower=2e8, upper=4e8)]
    slope_prior = Prior("Normal", mu=0.0, sigma=0.25)
    step = SizeStep.from_backtests(backtests, slope_prior)
    assert step.token_slope == pytest.approx(0.2, abs=0.01) and step.token_slope_se < 0.01
    assert step.log_tokens_ref == pytest.approx(ref)
    assert [p["k"] for p in step.pairs] == pytest.approx([0.8, 0.8], rel=0.02)
    prior, spread = Prior("LogNormal", mu=0.0, sigma=0.5), Prior("HalfNormal", sigma=0.25)
    draws = step.factor_draws_at(prior, spread, slope_prior, [ref - 1.0, ref, ref + 1.0], 4000,
                                 np.random.default_rng(0))
    medians = np.median(draws, axis=0)
    assert medians[2] / medians[1] == pytest.approx(np.exp(0.2), rel=0.02)
    assert medians[1] / medians[0] == pytest.approx(np.exp(0.2), rel=0.02)
    again = SizeStep.from_dict(json.loads(json.dumps(step.to_dict())))
    assert again == step


def test_a_step_without_a_token_slope_keeps_one_factor_for_every_token_count():
    """A one-size law (no backtests) and a step saved before the token slope: gamma fixed at 0; a pair with one
    token budget cannot estimate it, so the prior sets it."""
    slope_prior = Prior("Normal", mu=0.0, sigma=0.25)
    old = SizeStep.from_dict({"pairs": [{"from": 1, "to": 2, "k": 0.5, "se_log_k": 0.1, "runs": 10}]})
    for step in (SizeStep.from_backtests([], slope_prior), old):
        assert step.token_slope_posterior(slope_prior) == (0.0, 0.0)
    one_budget = SizeStep.from_backtests([_backtest(0.8, 0.0, 0.0, budgets=(1e9,))], slope_prior)
    assert one_budget.token_slope_se == float("inf")
    assert one_budget.token_slope_posterior(slope_prior) == (0.0, 0.25)


def test_step_error_is_student_t_at_the_recorded_sd_and_steps_saved_before_draw_it_normal():
    """A new step draws each configuration's own error Student-t (STEP_ERROR_NU) scaled to excess_sd_at; a step
    saved before the shape was recorded draws it normal, bit for bit as before; the shape survives to_dict."""
    import bayes_optlaws.size_scaling as ss

    pair = {"from": 1e8, "to": 1e8 * np.e, "k": 1.0, "se_log_k": 0.1, "excess_sd": 0.01, "runs": 100}
    step = SizeStep([dict(pair)])
    assert step.error_nu == ss.STEP_ERROR_NU == 5.0
    draws = step.error_draws([1e8, 1e8], [1e8 * np.e, 1e8], 200_000, np.random.default_rng(0))
    assert draws.shape == (200_000, 2) and np.all(draws[:, 1] == 0.0)  # a row that does not move
    assert np.std(draws[:, 0]) == pytest.approx(0.01, rel=0.03)
    # same sd, heavier tails: the central 50 % interval of a unit-sd t5 is +-0.563 sd (normal: +-0.674)
    half50 = np.diff(np.quantile(draws[:, 0], [0.25, 0.75]))[0] / 2
    assert half50 == pytest.approx(0.01 * 0.727 * np.sqrt(3 / 5), rel=0.03)

    old = SizeStep.from_dict({"pairs": [dict(pair)], "token_slope": 0.0, "token_slope_se": None,
                              "log_tokens_ref": 20.0})
    older = SizeStep.from_dict({"pairs": [dict(pair)]})
    for saved in (old, older):
        assert saved.error_nu == float("inf")
        got = saved.error_draws([1e8], [1e8 * np.e], 50, np.random.default_rng(3))
        np.testing.assert_array_equal(got, 0.01 * np.random.default_rng(3).standard_normal((50, 1)))
    assert json.loads(json.dumps(old.to_dict()))["error_nu"] is None
    assert SizeStep.from_dict(json.loads(json.dumps(step.to_dict()))) == step
    with pytest.raises(RunsError, match="error_nu must be above 2"):
        SizeStep([dict(pair)], error_nu=2.0).error_draws([1e8], [2e8], 5, np.random.default_rng(0))


def test_synthetic_heavy_tailed_step_errors_are_recovered_and_covered():
    """SYNTHETIC parameter recovery: backtests whose per-configuration step errors are t5 with sd 0.01 (on top of
    the law's in-sample noise) give excess_sd 0.01, and the step's error draws cover fresh errors of the same kind
    at their nominal 50 / 90 %; a normal error of the same sd would cover more than 50 % inside the 50 % interval."""
    rng = np.random.default_rng(7)
    sd_true, noise_sd, n = 0.01, 0.004, 4000

    def t5(size):
        return sd_true * np.sqrt(3 / 5) * rng.standard_t(5, size)

    def backtest(lower, upper):
        D = np.repeat([1e9, 4e9, 1.6e10, 6.4e10], n // 4)
        chin = chinchilla_log_shift(lower, upper, D)
        noise = rng.normal(0, noise_sd, D.size)
        return {"from": lower, "to": upper, "observed": 0.9 * chin + t5(D.size) * np.log(upper / lower) ** 0.5 + noise,
                "chinchilla": chin, "log_tokens": np.log(D), "in_sample": noise}

    step = SizeStep.from_backtests([backtest(1e8, 1e8 * np.e), backtest(1e8 * np.e, 1e8 * np.e ** 2)],
                                   Prior("Normal", mu=0.0, sigma=0.25))
    assert step.error_rate == pytest.approx(sd_true, rel=0.08)
    fresh = t5(20_000)  # a new step of length 1 in log N
    draws = step.error_draws([1e8], [1e8 * np.e], 40_000, np.random.default_rng(1))[:, 0]
    lo90, lo50, hi50, hi90 = np.quantile(draws, [0.05, 0.25, 0.75, 0.95])
    assert np.mean((fresh >= lo50) & (fresh <= hi50)) == pytest.approx(0.50, abs=0.03)
    assert np.mean((fresh >= lo90) & (fresh <= hi90)) == pytest.approx(0.90, abs=0.02)
    normal = step.error_rate * np.random.default_rng(2).standard_normal(40_000)
    lo50n, hi50n = np.quantile(normal, [0.25, 0.75])
    assert np.mean((fresh >= lo50n) & (fresh <= hi50n)) > 0.55


def test_scaling_the_lrs_of_the_integrals_is_exact():
    """with_lr_scaled gives the segment integrals of the schedules with every LR multiplied (floors included)."""
    from bayes_optlaws.features import integrals_table, with_lr_scaled
    from bayes_optlaws.runset import RunSet

    specs = [{"family": "cosine", "peak_lr": 0.01, "warmup": 20, "total": 1000},
             {"family": "wsd", "peak_lr": 0.003, "warmup": 0, "total": 1000, "cooldown": 200},
             {"family": "linear", "peak_lr": 0.02, "warmup": 100, "total": 500}]
    factor = np.array([1.7, 0.6, 1.0])

    def table(scale):
        rows = [{**s, "peak_lr": s["peak_lr"] * c} for s, c in zip(specs, scale)]
        return RunSet.of_candidates(pd.DataFrame({"name": ["a", "b", "c"], "schedule": [json.dumps(r) for r in rows],
                                                  "model_params": 80_000, "tokens_per_step": 4096}))

    base = integrals_table(table(np.ones(3)), lr_ref=0.3)
    scaled = integrals_table(table(factor), lr_ref=0.3)
    cols = ["N", "D", "lr_max", "I_w", "I_c", "I", "E_w", "E_c"]
    np.testing.assert_allclose(with_lr_scaled(base, factor)[cols].to_numpy(float), scaled[cols].to_numpy(float),
                               rtol=1e-9)
    kept = with_lr_scaled(base, factor, escape_invariant=[True, False, False])
    assert kept["E_w"].iloc[0] == base["E_w"].iloc[0] and kept["I"].iloc[0] == pytest.approx(1.7 * base["I"].iloc[0])


def test_the_lr_exponent_search_recovers_a_synthetic_shift():
    """SYNTHETIC backtests: the larger size of each pair trains at LR eta like the smaller at eta·r^0.6 (its
    loss-vs-log-LR bowl moved 0.6·log r to the left), plus a free step per budget and a little noise."""
    from bayes_optlaws.size_scaling import lr_exponent_search

    rng = np.random.default_rng(0)
    log_lr = np.tile(np.linspace(np.log(1e-3), np.log(0.1), 12), 2)
    budgets = np.repeat([1, 2], 12)
    ratios = [3.0, 2.0]

    def bowl(x):  # the smaller size's log loss against log LR: steep above its best LR, shallow below
        return 0.02 * (x - np.log(0.01)) ** 2 + 0.03 * np.maximum(x - np.log(0.01), 0) ** 3

    observed = [bowl(log_lr + 0.6 * np.log(r)) - 0.05 * budgets + 0.002 * rng.standard_normal(log_lr.size)
                for r in ratios]
    alpha, profile = lr_exponent_search(lambda a: [bowl(log_lr + a * np.log(r)) for r in ratios], observed,
                                        [budgets, budgets])
    assert alpha == pytest.approx(0.6, abs=0.05)
    assert min(profile, key=profile.get) == 0.5 and len(profile) == 9


def test_a_step_keeps_its_lr_exponent_and_steps_saved_before_have_none():
    step = SizeStep([{"from": 1, "to": 2, "k": 0.5, "se_log_k": 0.1, "excess_sd": 0.01, "runs": 10}], 0.1, 0.02,
                    1.0, 5.0, 0.4, {0.25: 2.0, 0.5: 1.0})
    again = SizeStep.from_dict(json.loads(json.dumps(step.to_dict())))
    assert again.lr_exponent == 0.4 and again.lr_exponent_profile == {0.25: 2.0, 0.5: 1.0}
    np.testing.assert_allclose(again.lr_factor([100, 100, 100], [400, 100, 25]), [4 ** 0.4, 1.0, 0.25 ** 0.4])
    old = {k: v for k, v in step.to_dict().items() if not k.startswith("lr_exponent")}
    assert SizeStep.from_dict(old).lr_exponent == 0.0 and SizeStep.from_dict(old).lr_exponent_profile is None


def test_a_candidate_of_an_unseen_size_is_evaluated_at_its_transferred_lr(fitted_law):
    """With an LR exponent, the law evaluates an 800K candidate at 200K with its LRs times 4^alpha: exactly the
    design of that scaled schedule at 200K."""
    import copy

    from bayes_optlaws.features import design_matrix
    from bayes_optlaws.runset import RunSet

    law = copy.copy(fitted_law)
    law.size_step_ = copy.copy(fitted_law.size_step_)
    law.size_step_.lr_exponent = 0.5
    big = fitted_law.sizes_[-1]
    cand = RunSet.of_candidates(_candidates([4 * big]))
    _, X = law._size_anchored(cand, law.history_set_, None)
    spec = json.dumps({"family": "cosine", "peak_lr": 0.01 * 4 ** 0.5, "warmup": 20, "total": 1000})
    moved = RunSet.of_candidates(pd.DataFrame({"name": ["m"], "schedule": [spec], "model_params": [big],
                                               "tokens_per_step": 4096}))
    np.testing.assert_allclose(X, design_matrix(moved.integrals(law.spec_.lr_ref), law.spec_), rtol=1e-9)
    _, X0 = fitted_law._size_anchored(cand, law.history_set_, None)
    assert not np.allclose(X, X0)  # the default law (no LR transfer) evaluates the candidate's own LR


def test_a_bad_lr_exponent_setting_is_refused_before_any_sampling(synthetic_table, monkeypatch):
    from bayes_optlaws.loss_law import LossLawFit

    monkeypatch.setattr(LossLawFit, "fit", lambda *a, **k: pytest.fail("sampled before checking the config"))
    for bad in ("yes", float("nan"), None):
        with pytest.raises(RunsError, match="size_step_lr_exponent.*'learned', got"):
            BayesOptLaw(FeatureSpec(lr_ref=0.3), sampler_config=SAMPLER, fit_divergence=False, fit_stages=False,
                        model_config={"size_step_lr_exponent": bad}).fit(synthetic_table)


def test_synthetic_step_errors_that_grow_with_the_lr_gap_are_recovered():
    """SYNTHETIC parameter recovery: per-configuration step errors with sd 0.004 · (1 + 50 · gap) (t5) give a
    gap slope near 50 and per-run sds that follow it; errors of one sd for every run give a slope of 0."""
    from bayes_optlaws.size_scaling import gap_slope_search

    rng = np.random.default_rng(3)
    gaps = [rng.exponential(0.015, 1500) for _ in range(3)]
    errors = [0.004 * (1 + 50 * g) * np.sqrt(3 / 5) * rng.standard_t(5, g.size) for g in gaps]
    slope, profile = gap_slope_search(errors, gaps)
    assert slope == pytest.approx(50, rel=0.3)
    assert profile[slope] > profile[0.0] + 50  # far likelier than one sd for every run
    flat = [0.004 * np.sqrt(3 / 5) * rng.standard_t(5, g.size) for g in gaps]
    assert gap_slope_search(flat, gaps)[0] < 5


def test_a_step_scales_each_runs_error_by_its_lr_gap_and_saved_steps_keep_it():
    def backtest(lower, upper, rng):
        D = np.repeat([1e9, 4e9], 400)
        gap = rng.exponential(0.02, D.size)
        chin = chinchilla_log_shift(lower, upper, D)
        error = 0.003 * (1 + 80 * gap) * rng.standard_normal(D.size)
        return {"from": lower, "to": upper, "observed": 0.9 * chin + error, "chinchilla": chin,
                "log_tokens": np.log(D), "in_sample": np.zeros(D.size), "gap": gap}

    rng = np.random.default_rng(5)
    step = SizeStep.from_backtests([backtest(1e8, 2e8, rng), backtest(2e8, 4e8, rng)],
                                   Prior("Normal", mu=0.0, sigma=0.25))
    assert step.gap_slope == pytest.approx(80, rel=0.35) and step.gap_rms > 1.5
    near, far = step.excess_sd_at([4e8, 4e8], [8e8, 8e8], gap=[0.0, 0.1])
    assert far / near == pytest.approx(1 + 0.1 * step.gap_slope)
    # without gaps (a caller that has none) every run gets the backtests' average sd
    assert step.excess_sd_at([4e8], [8e8])[0] == pytest.approx(near * step.gap_rms)
    draws = step.error_draws([4e8, 4e8], [8e8, 8e8], 20_000, np.random.default_rng(0), gap=[0.0, 0.1])
    assert draws[:, 1].std() / draws[:, 0].std() == pytest.approx(far / near, rel=0.1)
    again = SizeStep.from_dict(json.loads(json.dumps(step.to_dict())))
    assert (again.gap_slope, again.gap_rms) == (step.gap_slope, step.gap_rms)
    old = {k: v for k, v in step.to_dict().items() if not k.startswith("gap_")}
    assert SizeStep.from_dict(old).gap_slope == 0.0  # a step saved before: one sd for every run, as it drew
    np.testing.assert_allclose(SizeStep.from_dict(old).excess_sd_at([4e8, 4e8], [8e8, 8e8], gap=[0.0, 0.1]),
                               step.error_rate * np.log(2) ** 0.5)


def test_the_lr_gap_is_zero_at_the_laws_best_lr_and_grows_away_from_it(fitted_law):
    """The LR gap of a schedule at a fitted size: 0 at the peak LR where the law's loss of that schedule is
    lowest (within the fitted LR range), positive and rising as the LR moves away from it."""
    from bayes_optlaws.runset import RunSet

    big = fitted_law.sizes_[-1]
    lrs = np.geomspace(fitted_law.fitted_range_.low["lr"], fitted_law.fitted_range_.high["lr"], 9)
    specs = [json.dumps({"family": "cosine", "peak_lr": float(lr), "warmup": 20, "total": 1000}) for lr in lrs]
    runs = RunSet.of_candidates(pd.DataFrame({"name": [f"c{i}" for i in range(9)], "schedule": specs,
                                              "model_params": big, "tokens_per_step": 4096}))
    gap = fitted_law._lr_gap(runs)
    law = fitted_law._law_log_loss(runs)
    assert np.all(gap >= 0) and gap.max() > 0.01
    best = int(np.argmin(law))
    assert gap[best] < 0.25 * np.sort(gap)[1:].min() + 1e-6  # the best scanned LR is (close to) the law's best
    assert np.all(np.diff(gap[best:]) >= -1e-9) and np.all(np.diff(gap[:best + 1]) <= 1e-9)


def test_the_fit_learns_the_gap_slope_and_the_config_can_switch_it_off():
    """SYNTHETIC runs of three sizes: by default the law's size step records a gap slope (and its predictions at
    an unseen size scale each run's step error by it); with size_step_error_gap=False every run gets one sd."""
    runs = _size_stepped_runs(0.5)
    train = runs[runs["model_params"] < 640_000]
    fits = {}
    for on in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[on] = BayesOptLaw(FeatureSpec(lr_ref=0.3), sampler_config=SAMPLER, random_seed=1,
                                   fit_divergence=False, model_config={"size_step_error_gap": on}).fit(train)
    assert fits[True].model_config_["size_step_error_gap"] is True
    assert fits[True].size_step_.gap_rms >= 1.0
    assert fits[False].size_step_.gap_slope == 0.0 and fits[False].size_step_.gap_rms == 1.0
    law = fits[True]
    law.size_step_.gap_slope = 100.0  # make the growth visible whatever the synthetic backtests learned
    cand = runs[runs["model_params"] == 640_000].rename(columns={"run_id": "name"})
    from bayes_optlaws.runset import RunSet

    cand_set = RunSet.of_candidates(cand)
    law_set, _ = law._size_anchored(cand_set, law.history_set_, None)
    gaps = law._candidate_gaps(law_set, cand_set, law.history_set_)
    assert gaps is not None and gaps.shape == (len(cand),) and np.all(gaps >= 0)
    sd = law.size_step_.excess_sd_at(law_set.table["model_params"], cand["model_params"], gaps)
    np.testing.assert_allclose(sd / sd.min(), (1 + 100 * gaps) / (1 + 100 * gaps.min()))


def test_a_candidate_far_outside_its_anchor_sizes_token_range_is_named():
    """Fitted size 200 trained at 1e9-2e9 tokens, 100 at 1e9-4e9: a candidate of 4e9 tokens evaluated at 200 is 2x
    outside (> 1.5x: named), one of 2.9e9 1.45x (not); a candidate at its own fitted size, or anchored at 100 inside
    its range, never; one message per anchor size, with the worst factor."""
    ranges = {200: (1e9, 2e9), 100: (1e9, 4e9)}
    messages = anchor_token_messages([200, 200, 200, 100], [300, 300, 200, 50], [4e9, 2.9e9, 8e9, 4e9],
                                     ["far", "near", "own", "covered"], ranges)
    assert len(messages) == 1
    assert messages[0].startswith("1 candidate(s) (far) are predicted from the fitted size 200 (the nearest to "
                                  "theirs) with up to 2x more or fewer tokens than its runs were trained with "
                                  "(1e+09-2e+09 tokens)")
    assert anchor_token_messages([200], [200], [8e9], ["own"], ranges) == []
    below = anchor_token_messages([100], [300], [1e8], ["short"], ranges)
    assert "with up to 10x more or fewer tokens" in below[0]


def test_the_default_model_warns_when_a_larger_target_is_anchored_at_a_size_trained_at_other_budgets():
    """The shipped grid's 793K block was trained at 8.2M tokens only; a 3M-parameter candidate of 4.1M tokens is
    predicted from it (2x outside): warned.  At 793K itself (a fitted size) it is not."""
    import bayes_optlaws as bol

    law = bol.load()
    cand = _candidates([3_000_000, 793_344]).assign(tokens_per_step=4096)
    with pytest.warns(ExtrapolationWarning, match=r"1 candidate\(s\) \(n3000000\) are predicted from the fitted "
                                                  r"size 793,344 .* with up to 2x more or fewer tokens than its "
                                                  r"runs were trained with \(8.192e\+06 tokens\)"):
        law.predict_draws(cand)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        law.predict_draws(cand.iloc[[1]])
    assert not [w for w in seen if "are predicted from the fitted size" in str(w.message)]


def test_a_continuation_is_not_checked_against_single_stage_token_ranges(capsys):
    """A continuation's tokens include its history, which the fitted runs' token ranges do not: the anchor check
    leaves it out (the shipped continual-training example at 3M parameters after a 2,000-step history)."""
    from bayes_optlaws.cli import main
    from bayes_optlaws.paths import SHIPPED_ROOT

    history = '{"family": "linear", "peak_lr": 0.008, "warmup": 100, "total": 2000}'
    code = main(["rank", str(SHIPPED_ROOT / "data" / "examples" / "continual_candidates.csv"), "--history", history,
                 "--params", "3000000"])
    err = capsys.readouterr().err
    assert code == 0 and "warning:" in err
    assert "are predicted from the fitted size" not in err
