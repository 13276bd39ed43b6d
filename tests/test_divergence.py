"""The divergence / instability model: areas, the vectorised numpy predictor against PyMC, monotonicity, safe
schedules, unseen sizes, the law's use of it, save/load.  The fitted law is the SYNTHETIC-grid fixture."""

import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytest

from bayes_optlaws import divergence as div
from bayes_optlaws import instability as ins
from bayes_optlaws.optlaw import BayesOptLaw
from bayes_optlaws.priors import Prior, PriorError
from bayes_optlaws.runset import RunSet
from bayes_optlaws.schedules import Schedule


def test_grid_areas_match_the_closed_form_for_linear_warmup_and_cooldown():
    """opt-laws.md §5: A = T(η−ρ)²/(2η), W = ρ t1 (1 − ρ/(2η)) for linear warmup + linear cooldown."""
    eta, T, t1, rho = 1.0, 2000, 200, 0.4
    s = Schedule.from_spec({"family": "linear", "peak_lr": eta, "warmup": t1, "total": T})
    inp = div.divergence_inputs([s], [1e9], [1e9], lr_ref=1.0, log_N_center=0.0, log_D_center=0.0, k=4096)
    A = div._relu_area(inp.eta[0], inp.w[0], np.array([rho]))[0]
    W = div._min_area(inp.eta_wu[0], inp.w_wu[0], np.array([rho]))[0]
    # area above ρ: the warmup triangle tip plus the cooldown triangle tip = T(η−ρ)²/(2η) in steps (δ = 1)
    np.testing.assert_allclose(A, T * (eta - rho) ** 2 / (2 * eta), rtol=1e-4)
    np.testing.assert_allclose(W, rho * t1 * (1 - rho / (2 * eta)), rtol=1e-4)
    assert inp.warmup_frac[0] == pytest.approx(0.1, abs=1e-3)


def test_area_above_is_zero_below_the_peak():
    s = Schedule.from_spec({"family": "cosine", "peak_lr": 0.5, "warmup": 10, "total": 100})
    inp = div.divergence_inputs([s], [1e9], [1e9], 1.0, 0.0, 0.0)
    assert div._relu_area(inp.eta[0], inp.w[0], np.array([0.6]))[0] == 0.0


def test_vectorised_relu_area_equals_the_dense_sum():
    rng = np.random.default_rng(0)
    eta, w = rng.uniform(0, 2, (7, 16)), rng.uniform(0, 1, (7, 16))
    rho = np.exp(rng.normal(0, 1.5, (50, 7)))  # many thresholds below, inside and above every grid
    dense = (w[None] * np.maximum(eta[None] - rho[:, :, None], 0.0)).sum(axis=2)
    np.testing.assert_allclose(div.relu_area(eta, w, rho), dense, rtol=1e-12, atol=1e-12)


def test_unseen_sizes_get_one_fresh_offset_each():
    post = {"log_c": np.zeros(5), "sigma_size": np.ones(5), "size_offset_raw": np.zeros((5, 2))}
    inp = div.DivergenceInputs(*(np.zeros((4, 2)),) * 4, np.zeros(4), np.ones(4),
                               log_N=np.array([0.0, 1.0, 1.0, 2.0]), log_D=np.zeros(4),
                               size=np.array([0, -1, -1, -1]))
    off = div.size_offsets(post, inp, rng=np.random.default_rng(1))
    assert np.all(off[:, 0] == 0.0)                     # known size: its (here zero) fitted offset
    np.testing.assert_array_equal(off[:, 1], off[:, 2])  # same unseen size: one shared draw
    assert not np.allclose(off[:, 1], off[:, 3])         # another unseen size: another draw


def test_unseen_size_offsets_by_trend_nearest_zero_from_the_fitted_offsets():
    """``new_size_offset``: per draw the least-squares line of the fitted offsets in log N read at the new size
    ("trend"), the nearest fitted size's offset, or 0; none of them uses the random generator."""
    raw = np.array([[-1.0, 0.2, 0.8], [0.5, 0.0, -0.5]])  # 2 draws × 3 fitted sizes (zero-sum)
    post = {"log_c": np.zeros(2), "sigma_size": np.array([2.0, 1.0]), "size_offset_raw": raw}
    size_log_N = np.array([-1.0, 0.0, 1.0])
    inp = div.DivergenceInputs(*(np.zeros((4, 2)),) * 4, np.zeros(4), np.ones(4),
                               log_N=np.array([0.0, 2.0, 2.0, -3.0]), log_D=np.zeros(4),
                               size=np.array([1, -1, -1, -1]))
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    trend = div.size_offsets(post, inp, rng=rng, new_size="trend", size_log_N=size_log_N)
    assert rng.bit_generator.state == state
    slope = np.array([0.9, -0.5])  # least-squares slopes of the two draws' offsets on log N = -1, 0, 1
    np.testing.assert_allclose(trend[:, 0], [0.4, 0.0])  # a known size keeps its fitted offset (sigma · raw)
    np.testing.assert_allclose(trend[:, 1], [2.0, 1.0] * (0.0 + 2.0 * slope))  # intercept 0 for zero-sum offsets
    np.testing.assert_allclose(trend[:, 3], [2.0, 1.0] * (-3.0 * slope))
    np.testing.assert_array_equal(trend[:, 1], trend[:, 2])
    nearest = div.size_offsets(post, inp, new_size="nearest", size_log_N=size_log_N)
    np.testing.assert_allclose(nearest[:, 1], [1.6, -0.5])   # log N 2 -> the size at 1
    np.testing.assert_allclose(nearest[:, 3], [-2.0, 0.5])   # log N -3 -> the size at -1
    zero = div.size_offsets(post, inp, new_size="zero")
    np.testing.assert_allclose(zero[:, 1:], 0.0)
    with pytest.raises(ValueError, match="new_size_offset"):
        div.size_offsets(post, inp, new_size="middle")
    with pytest.raises(ValueError, match="fitted sizes"):
        div.size_offsets(post, inp, new_size="trend")


def test_unseen_size_offset_trend_on_synthetic_grid_is_deterministic_and_recorded(fitted_law):
    """The SYNTHETIC-grid fit records ``new_size_offset="trend"`` (the default) and predicts an unseen size
    without the random generator; ``"fresh"`` (the models saved before the option) still draws."""
    fit = fitted_law.div_fit_
    assert fit.config["new_size_offset"] == "trend" == div.DEFAULT_DIVERGENCE_CONFIG["new_size_offset"]
    cand = _candidates([1e-3, 3e-2, 3e-1], 0, size=1_000_000)
    inp = fit.inputs(RunSet.of_candidates(cand))
    assert np.all(inp.size == -1)
    a = fit.predict(inp, np.random.default_rng(1))
    b = fit.predict(inp, np.random.default_rng(2))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    fresh = div.DivergenceFit(**{**fit.__dict__, "config": {**fit.config, "new_size_offset": "fresh"}})
    c = fresh.predict(inp, np.random.default_rng(1))
    d = fresh.predict(inp, np.random.default_rng(2))
    assert not np.allclose(c[1], d[1])
    known = _candidates([1e-3, 3e-2, 3e-1], 0, size=int(fit.sizes[0]))  # a fitted size: the option plays no part
    np.testing.assert_array_equal(fit.predict(known)[1], fresh.predict(known)[1])


def test_a_config_saved_before_new_size_offset_loads_with_fresh_draws():
    import xarray as xr

    post = xr.Dataset({name: (("chain", "draw"), np.zeros((1, 2))) for name in
                       ("log_c", "a", "b", "log_kappa", "k", "cut_diverged")})
    idata = xr.DataTree.from_dict({"posterior": post})
    saved = {k: v for k, v in div.recorded_divergence_config({"outcome": "binary"}).items()
             if k != "new_size_offset"}
    settings = {"config": saved, "lr_ref": 0.3, "log_N_center": 0.0, "log_D_center": 0.0, "log_B_center": 0.0,
                "log_c_center": 0.0, "log_lr_center": 0.0, "sizes": [], "unstable_excess": None, "n_runs": 2,
                "counts": {}}
    fit = div.DivergenceFit.from_settings(settings, idata)
    assert fit.config["new_size_offset"] == "fresh"
    assert div.LATER_CONFIG_OFF["new_size_offset"] == "fresh"


def test_a_bad_new_size_offset_is_refused_before_sampling():
    inp = _toy_inputs(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="new_size_offset"):
        div.build_divergence_model(inp, np.array([0, 2]), 0.0, {"new_size_offset": "middle"})


def _training_inputs(law):
    runs = law.train_runs_
    return runs, law.div_fit_.inputs(runs)


def test_numpy_predictor_matches_pymc(fitted_law):
    law = fitted_law
    runs = law.train_runs_
    p_div, p_uns = law.div_fit_.predict(runs)
    post = law.div_idata_.posterior
    np.testing.assert_allclose(p_div, post["p_diverge"].values.reshape(-1, len(runs)), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(p_uns, post["p_unstable"].values.reshape(-1, len(runs)), rtol=1e-6, atol=1e-9)


def test_default_model_is_two_logistics_sharing_rho_with_diagnostics_and_a_prior_check(fitted_law):
    fit = fitted_law.div_fit_
    assert fit.config["outcome"] == "two_logistic" and fit.config["unstable_boundary"] == "shared"
    assert "u_log_c" not in fit.post and {"log_c", "u_k", "u_cut_unstable", "beta_log_lr"} <= set(fit.post)
    assert set(fit.diagnostics) >= {"max_rhat", "min_ess_bulk", "divergences"}
    lo, obs, hi = (fit.prior_check["diverged"][k] for k in ("prior_q01", "observed", "prior_q99"))
    assert lo <= obs <= hi
    labels = ins.label_outcomes(fitted_law.train_runs_)
    assert fit.counts == {o: int(np.sum(labels == o)) for o in ins.OUTCOMES}
    assert fit.counts["unstable"] > 0


def test_model_separates_the_synthetic_divergent_runs(fitted_law):
    runs = fitted_law.train_runs_
    p = fitted_law.div_fit_.predict(runs)[0].mean(axis=0)
    y = runs["diverged"].to_numpy()
    assert p[y].mean() > 0.7 and p[~y].mean() < 0.2
    assert ((p > 0.5) == y).mean() > 0.9


def _candidates(lrs, warmup, size=80_000):
    specs = [f'{{"family": "linear", "peak_lr": {lr}, "warmup": {warmup}, "total": 1000}}' for lr in lrs]
    return pd.DataFrame({"name": [f"lr{lr}" for lr in lrs], "schedule": specs, "model_params": size,
                         "tokens_per_step": 4096})


@pytest.mark.parametrize("warmup", [0, 50])
def test_p_diverge_rises_with_peak_lr(fitted_law, warmup):
    p = fitted_law.div_fit_.predict(_candidates([1e-3, 1e-2, 1e-1, 1.0], warmup))[0].mean(axis=0)
    assert np.all(np.diff(p) >= -1e-9)
    assert p[-1] > 0.5 > p[0]


def test_a_clearly_safe_schedule_is_confidently_safe(fitted_law):
    """The old logistic(k · score) could not go below logistic(−k) ≈ 2 %; a tiny LR with warmup now can."""
    p_div, p_uns = fitted_law.div_fit_.predict(_candidates([1e-3], 50))
    assert p_div.mean() < 0.01 and p_uns.mean() < 0.05


def test_predict_draws_carries_p_unstable_and_the_excess(fitted_law):
    d = fitted_law.predict_draws(_candidates([1e-3, 3e-2, 3e-1], 50))
    assert d.p_unstable.shape == d.p_diverge.shape == d.loss.shape
    assert np.all(d.p_unstable >= 0) and np.all(d.p_unstable + d.p_diverge <= 1 + 1e-12)
    assert d.unstable_excess > 0
    assert d.unstable_excess == pytest.approx(fitted_law.div_fit_.unstable_excess)  # measured above the law


def test_the_loss_law_is_fitted_on_normal_runs_only(fitted_law, synthetic_table):
    runs = fitted_law.train_runs_
    unstable = runs.loc[ins.label_outcomes(runs) == "unstable", "run_id"].tolist()
    assert unstable and fitted_law.excluded_unstable_ == unstable
    law = BayesOptLaw(divergence_config={"exclude_unstable": False})
    law._resolve_configs()  # what fit() does first
    keep_all = law._loss_rows(runs)
    assert keep_all.sum() == (~runs["diverged"]).sum()


def test_a_loaded_model_gives_identical_probabilities(fitted_law, saved_model):
    loaded = BayesOptLaw.load(saved_model)
    cand = _candidates([1e-3, 3e-2, 3e-1], 0, size=1_000_000)  # an unseen size: fresh offsets, same seed
    a, b = fitted_law.predict_draws(cand), loaded.predict_draws(cand)
    np.testing.assert_array_equal(a.p_diverge, b.p_diverge)
    np.testing.assert_array_equal(a.p_unstable, b.p_unstable)
    assert a.unstable_excess == b.unstable_excess
    assert loaded.excluded_unstable_ == fitted_law.excluded_unstable_


def test_bayes_boundary_uses_the_same_fit(synthetic_table):
    from bayes_optlaws.evaluation.ours import BayesBoundary

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = BayesBoundary(seed=0, draws=100, tune=200, config={"outcome": "binary"}).fit(synthetic_table)
    assert isinstance(m.fit_, div.DivergenceFit) and m.fit_.config["outcome"] == "binary"
    p = m.predict_proba(synthetic_table)
    y = synthetic_table["diverged"].to_numpy()
    assert p.shape == (len(y),) and ((p > 0.5) == y).mean() > 0.9
    assert np.isnan(m.predict_unstable_proba(synthetic_table)).all()


def test_features_are_standardised_with_the_training_statistics():
    schedules = [Schedule.from_spec({"family": "linear", "peak_lr": lr, "warmup": wu, "total": 1000})
                 for lr, wu in [(1e-3, 0), (1e-2, 100), (1e-1, 300)]]
    train = div.divergence_inputs(schedules, [4096] * 3, [1e6, 2e6, 4e6], 0.3, 0.0, 0.0)
    stats = div.feature_stats(train)
    z = div.standardise_features(train, stats).z
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), [1, 1, 1, 0])  # D is the same for all three: sd stored as 1
    assert stats["log_D"][1] == 1.0
    new = div.divergence_inputs(schedules[:1], [4096], [1e6], 0.3, 0.0, 0.0)
    np.testing.assert_allclose(div.standardise_features(new, stats).z, z[:1])  # training stats, not its own


def _toy_inputs(z):
    R = len(z)
    """Runs whose area score is −1 (nothing above rho = 1, a half-step warmup floor): eta is the linear terms."""
    return div.DivergenceInputs(*(np.zeros((R, 2)),) * 4, np.ones(R), np.ones(R), log_N=np.zeros(R),
                                log_D=np.zeros(R), z=np.asarray(z, float))


def test_diverged_slopes_give_the_sequential_ordered_probabilities():
    """P(diverged) = σ(eta + gamma·z − cut_d), P(unstable) = (1 − P(diverged)) σ(eta − cut_u); valid even
    where the diverged slopes would make the cumulative form's probabilities cross."""
    z = np.array([[-2.0, 0, 0, 0], [0.0, 0, 0, 0], [3.0, 1, 0, 0]])
    post = {"log_c": np.zeros(1), "a": np.zeros(1), "b": np.zeros(1), "log_kappa": np.zeros(1),
            "k": np.zeros(1), "beta_log_lr": np.array([2.0]), "beta_features": np.zeros((1, 3)),
            "cut_unstable": np.array([1.0]), "cut_gap": np.array([2.0]),
            "diverged_slopes": np.array([[3.0, -1.0, 0.0, 0.0]])}
    p_div, p_uns = div.predict_outcome(post, _toy_inputs(z), 0.0, "ordered")
    eta = 2.0 * z[:, 0]
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected_div = sig(eta + z @ post["diverged_slopes"][0] - 3.0)
    np.testing.assert_allclose(p_div[0], expected_div)
    np.testing.assert_allclose(p_uns[0], (1 - expected_div) * sig(eta - 1.0))
    assert np.all(p_div + p_uns <= 1) and np.all(p_uns >= 0)


def test_a_posterior_without_diverged_slopes_keeps_the_proportional_odds_form():
    """A model saved before the feature terms (no beta_features / diverged_slopes) predicts as it did."""
    z = np.zeros((2, 4))
    post = {"log_c": np.zeros(1), "a": np.zeros(1), "b": np.zeros(1), "log_kappa": np.zeros(1),
            "k": np.zeros(1), "beta_lr": np.array([1.0]), "cut_unstable": np.array([-1.0]),
            "cut_gap": np.array([2.0])}
    inp = _toy_inputs(z)
    inp.eta_max = np.array([1.0, np.e])  # log(peak / rho) = 0 and 1 (centres 0, rho = 1)
    p_div, p_uns = div.predict_outcome(post, inp, 0.0, "ordered")
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    eta = np.array([0.0, 1.0])
    np.testing.assert_allclose(p_div[0], sig(eta - 1.0))
    np.testing.assert_allclose(p_uns[0], sig(eta + 1.0) - sig(eta - 1.0))


def test_a_config_saved_before_the_feature_terms_loads_with_them_off():
    import xarray as xr

    post = xr.Dataset({name: (("chain", "draw"), np.zeros((1, 2))) for name in
                       ("log_c", "a", "b", "log_kappa", "k", "beta_lr", "cut_unstable", "cut_gap")})
    idata = xr.DataTree.from_dict({"posterior": post})
    old_config = {k: v for k, v in div.DEFAULT_DIVERGENCE_CONFIG.items()
                  if k not in div.LATER_CONFIG_OFF and k != "priors"}
    old_priors = {"log_c_sd": 0.5, "a_sd": 0.3, "b_sd": 0.3, "log_kappa_sd": 1.0, "k_median": 6.0, "k_log_sd": 0.5,
                  "beta_batch_sd": 1.0, "beta_warmup_sd": 0.0, "cut_sd": 5.0, "cut_gap_median": 3.0,
                  "sigma_size_sd": 1.0}  # how models saved then spelled their priors
    settings = {"config": {**old_config, **old_priors, "outcome": "ordered", "beta_lr_sd": 3.0}, "lr_ref": 0.3,
                "log_N_center": 0.0, "log_D_center": 0.0, "log_B_center": 0.0, "log_c_center": 0.0,
                "log_lr_center": 0.0, "sizes": [], "unstable_excess": None, "n_runs": 2, "counts": {}}
    fit = div.DivergenceFit.from_settings(settings, idata)
    assert fit.config["beta_features_sd"] == 0.0 and fit.config["diverged_slopes_sd"] == 0.0
    priors = div.divergence_priors(fit.config)
    assert div.is_off(priors["beta_features"]) and div.is_off(priors["diverged_slopes"])
    assert priors["beta_lr"] == Prior("HalfNormal", sigma=3.0)
    assert priors["k"] == Prior("LogNormal", mu=float(np.log(6.0)), sigma=0.5)
    assert fit.feature_stats is None and "diverged_slopes" not in fit.post


def test_a_shared_unstable_boundary_uses_the_diverged_copys_rho_and_kappa():
    """``unstable_boundary="shared"``: the unstable copy has no rho / kappa of its own (model_params) and predicts
    exactly as an ``"own"`` copy whose rho / kappa equal the diverged copy's — and differently when they do not."""
    rng = np.random.default_rng(0)
    schedules = [Schedule.from_spec({"family": "wsd", "peak_lr": lr, "warmup": wu, "cooldown": 200, "total": 1000})
                 for lr, wu in [(0.01, 0), (0.1, 20), (0.3, 100), (1.0, 0)]]
    inp = div.divergence_inputs(schedules, [4096] * 4, [1e6] * 4, 0.3, 0.0, 0.0)
    S = 6
    shared = {"log_c": rng.normal(-1, 0.3, S), "a": rng.normal(0, 0.1, S), "b": rng.normal(0, 0.1, S),
              "log_kappa": rng.normal(0, 0.5, S), "k": rng.uniform(0.5, 3, S), "beta_lr": rng.uniform(0, 2, S),
              "cut_diverged": rng.normal(2, 1, S), "u_k": rng.uniform(0.5, 3, S),
              "u_beta_lr": rng.uniform(0, 2, S), "u_cut_unstable": rng.normal(0, 1, S)}
    own = {**shared, **{"u_" + p: shared[p] for p in div.RHO_PARAMS}}
    p_div, p_uns = div.predict_outcome(shared, inp, 0.0, "two_logistic")
    q_div, q_uns = div.predict_outcome(own, inp, 0.0, "two_logistic")
    np.testing.assert_array_equal(p_div, q_div)
    np.testing.assert_allclose(p_uns, q_uns, rtol=1e-12)
    other = {**own, "u_log_c": own["u_log_c"] - 1.0}
    assert not np.allclose(div.predict_outcome(other, inp, 0.0, "two_logistic")[1], p_uns)
    names = div.model_params({"outcome": "two_logistic", "unstable_boundary": "shared"})
    assert "u_log_c" not in names and "u_k" in names and "log_c" in names
    with pytest.raises(ValueError, match="unstable_boundary"):
        div.build_divergence_model(inp, np.zeros(4, int), 0.0, {"unstable_boundary": "both"})


# ---------------------------------------------------------------------------- priors as objects
def test_default_priors_shorthands_and_overrides():
    """No config: the default Prior objects.  The number shorthands of earlier versions map onto them; a
    ``priors`` entry (object or dict) wins over a shorthand; bad names and supports are plain errors."""
    assert div.divergence_priors(None) == div.DEFAULT_DIVERGENCE_PRIORS
    short = div.divergence_priors({"k_median": 6.0, "cut_sd": 2.0, "beta_features_sd": 0.0})
    assert short["k"] == Prior("LogNormal", mu=float(np.log(6.0)), sigma=1.0)
    assert short["cut"] == Prior("Normal", mu=0.0, sigma=2.0)
    assert div.is_off(short["beta_log_lr"]) and div.is_off(short["beta_features"])
    both = div.divergence_priors({"cut_sd": 2.0, "priors": {"cut": {"dist": "StudentT",
                                                                     "kwargs": {"nu": 4, "mu": 0, "sigma": 3}}}})
    assert both["cut"] == Prior("StudentT", nu=4, mu=0, sigma=3)
    with pytest.raises(PriorError, match="unknown prior.*kappa"):
        div.divergence_priors({"priors": {"kappa": Prior("Normal", sigma=1)}})
    with pytest.raises(PriorError, match="k is a scale.*positive"):
        div.divergence_priors({"priors": {"k": Prior("Normal", mu=0, sigma=1)}})
    with pytest.raises(PriorError, match="together"):
        div.divergence_priors({"priors": {"beta_log_lr": Prior("HalfNormal", sigma=0.0)}})


def _logp_at_initial_point(config):
    rng = np.random.default_rng(0)
    inp = div.divergence_inputs([Schedule.from_spec(s) for s in SCHEDULES], np.full(len(SCHEDULES), 4096.0),
                                np.full(len(SCHEDULES), 1e6), 0.3, 0.0, 0.0, 32)
    inp = div.standardise_features(inp, div.feature_stats(inp))
    codes = rng.integers(0, 3, len(SCHEDULES))
    model = div.build_divergence_model(inp, codes, 0.0, config)
    point = model.initial_point(random_seed=1)
    return float(model.compile_logp()(point)), model


SCHEDULES = [{"family": "cosine", "peak_lr": lr, "warmup": 10, "total": 100} for lr in (0.05, 0.1, 0.2, 0.4, 0.8)]


def test_a_prior_object_builds_the_same_model_as_its_shorthand_and_changes_it():
    """``priors={"k": LogNormal(log 6, 1)}`` and the old ``k_median=6`` give the same log density; another k prior
    gives another; the default's k draws have the default's median."""
    six = Prior("LogNormal", mu=float(np.log(6.0)), sigma=1.0)
    by_object, _ = _logp_at_initial_point({"outcome": "binary", "priors": {"k": six}})
    by_shorthand, _ = _logp_at_initial_point({"outcome": "binary", "k_median": 6.0})
    default, model = _logp_at_initial_point({"outcome": "binary"})
    assert by_object == pytest.approx(by_shorthand, abs=1e-9) and by_object != pytest.approx(default, abs=1e-3)
    draws = pm.draw(model["k"], draws=4000, random_seed=0)
    assert np.median(draws) == pytest.approx(0.5, rel=0.1)


def test_a_fit_records_every_prior_as_a_dict(fitted_law):
    """The fitted divergence model's config lists every prior it used (dicts, no number shorthands), and they
    read back to the priors of the law's own config."""
    config = fitted_law.div_fit_.config
    assert set(config["priors"]) == set(div.DEFAULT_DIVERGENCE_PRIORS)
    assert not set(div.SHORTHAND_KEYS) & set(config)
    assert {k: Prior.from_dict(v) for k, v in config["priors"].items()} == \
        div.divergence_priors(fitted_law.divergence_config_)


def test_the_unstable_excess_is_measured_above_the_loss_law(fitted_law):
    """The law's fit passes its own prediction of every training run, so an unstable run's excess is what it
    ends above the loss the law predicts for it (the loss a prediction adds the excess to); the fit records each
    unstable training run's excess, and their median is the typical excess."""
    fit = fitted_law.div_fit_
    assert fit.config["unstable_excess_above"] == "law"
    runs = fitted_law.train_runs_
    unstable = np.asarray(ins.label_outcomes(runs, fit.config["unstable_gap"]) == "unstable")
    law = np.exp(fitted_law._law_log_loss_draws(fitted_law.train_set_)).mean(axis=0)
    expected = runs["final_loss"].to_numpy()[unstable] - law[unstable]
    np.testing.assert_allclose(fit.unstable_excesses, expected, atol=1e-6)
    assert fit.unstable_excess == pytest.approx(np.median(expected), abs=1e-6)
    assert fit.unstable_excess != pytest.approx(ins.unstable_excess(runs, fit.config["unstable_gap"]), abs=1e-3)


def test_a_model_saved_before_the_excess_spread_loads_without_it(fitted_law):
    settings = fitted_law.div_fit_.settings()
    old = {k: v for k, v in settings.items() if k != "unstable_excesses"}
    old["config"] = {k: v for k, v in settings["config"].items() if k != "unstable_excess_above"}
    back = div.DivergenceFit.from_settings(old, fitted_law.div_idata_)
    assert back.unstable_excesses is None and back.config["unstable_excess_above"] == "block_best"
    again = div.DivergenceFit.from_settings(settings, fitted_law.div_idata_)
    assert again.unstable_excesses == fitted_law.div_fit_.unstable_excesses


def test_a_model_saved_before_the_unstable_loss_regression_keeps_the_fixed_excess(fitted_law):
    settings = fitted_law.div_fit_.settings()
    assert settings["config"]["unstable_loss"] == "level" and "unstable_level" in settings
    old = {k: v for k, v in settings.items() if k != "unstable_level"}
    old["config"] = {k: v for k, v in settings["config"].items() if k != "unstable_loss"}
    back = div.DivergenceFit.from_settings(old, fitted_law.div_idata_)
    assert back.unstable_level is None and back.config["unstable_loss"] == "excess"


def test_an_unknown_unstable_loss_mode_is_refused_before_sampling(fitted_law, synthetic_table, monkeypatch):
    from bayes_optlaws.loss_law import LossLawFit
    from bayes_optlaws.optlaw import BayesOptLaw

    with pytest.raises(ValueError, match="'unstable_loss' must be one of level, excess, got 'plateau'"):
        div.fit_divergence(fitted_law.train_set_, 0.3, {"unstable_loss": "plateau"})
    monkeypatch.setattr(LossLawFit, "fit", lambda *a, **k: pytest.fail("sampled before checking the config"))
    with pytest.raises(ValueError, match="'unstable_loss' must be one of level, excess, got 'plateau'"):
        BayesOptLaw(divergence_config={"unstable_loss": "plateau"}).fit(synthetic_table)
    # every entry that names a choice is checked in the same place, before the loss law samples
    for key, bad in (("unstable_excess_above", "Law"), ("new_size_offset", "linear"), ("outcome", "probit"),
                     ("unstable_boundary", "both")):
        with pytest.raises(ValueError, match=f"'{key}' must be one of .*, got '{bad}'"):
            BayesOptLaw(divergence_config={key: bad}).fit(synthetic_table)


def test_the_fit_regresses_the_unstable_runs_loss_when_there_are_enough(fitted_law, monkeypatch):
    """The divergence fit hands its unstable rows to the regression (the SYNTHETIC grid's 4 are too few for it,
    so the fit keeps None; the rows it passes are exactly the unstable ones)."""
    seen = {}

    def spy(run_set, unstable):
        seen["ids"] = sorted(run_set.table["run_id"][np.asarray(unstable)])
        return "fitted"

    monkeypatch.setattr(div.UnstableLossFit, "fit", staticmethod(spy))
    monkeypatch.setattr(div, "build_divergence_model", lambda *a, **k: (_ for _ in ()).throw(StopIteration))
    with pytest.raises(StopIteration):
        div.fit_divergence(fitted_law.train_set_, 0.3, fitted_law.divergence_config_)
    runs = fitted_law.train_runs_
    expected = sorted(runs["run_id"][ins.label_outcomes(runs) == "unstable"])
    assert seen["ids"] == expected and len(expected) == 4
