import json

import numpy as np
import pytest

from bayes_optlaws import loss_model as lm


def _toy_data(n_sizes=3, n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    group = np.arange(n) % n_sizes
    z = X @ np.array([0.5, -0.3, 0.0, 0.2]) + 0.1 * rng.normal(size=n)
    return lm.LossData(X, z, group, list(range(1000, 1000 + n_sizes)), ["f0", "f1", "f2", "f3"])


def test_model_graph_has_partial_pooling_over_sizes():
    model = lm.build_loss_model(_toy_data())
    names = {v.name for v in model.free_RVs}
    assert {"intercept", "theta", "sigma_size", "sigma_slope", "slope_offset_raw",
            "sigma"} <= names
    assert model["z"].owner is not None
    assert model.coords["size"] == ("1000", "1001", "1002")


def test_single_size_has_no_group_terms():
    model = lm.build_loss_model(_toy_data(n_sizes=1))
    names = {v.name for v in model.free_RVs}
    assert "size_offset_raw" not in names and "theta" in names


def test_prior_predictive_is_on_a_plausible_scale():
    z = lm.prior_predictive_z(_toy_data(), draws=300, random_seed=1)
    assert z.shape == (300, 60)
    # standardised log-loss: the prior should put most mass within a few units, not at 1e3
    assert 0.5 < np.median(np.abs(z)) < 5.0
    assert np.quantile(np.abs(z), 0.99) < 50


def test_numpy_scorer_matches_pymc_posterior_predictive(fitted_law):
    """The fast numpy path reproduces PyMC's mu for known sizes, draw for draw."""
    law = fitted_law
    ok = law.train_runs_[law._loss_rows(law.train_runs_)]  # the rows the loss law was fitted on
    from bayes_optlaws.features import design_matrix, integrals_table

    X = law.standardiser_.transform(design_matrix(integrals_table(ok, law.spec_.lr_ref), law.spec_))
    group = np.array([law.sizes_.index(int(s)) for s in ok["model_params"]])
    mu_np = lm.predict_mu(law.loss_post_, X[:5], group[:5], np.random.default_rng(0), law.group_means_)
    mu_pm = law.loss_idata_.posterior["mu"].values.reshape(-1, len(ok))[:, :5]
    np.testing.assert_allclose(mu_np, mu_pm, rtol=1e-8, atol=1e-8)


def test_unseen_size_gets_wider_intervals(fitted_law):
    law = fitted_law
    X = np.zeros((1, len(law.spec_.feature_names)))
    rng = np.random.default_rng(0)
    known = lm.predict_mu(law.loss_post_, X, np.array([1]), rng)
    unseen = lm.predict_mu(law.loss_post_, X, np.array([-1]), rng)
    assert unseen.std() > known.std()


def test_diagnostics_warn_in_plain_words(fitted_law):
    with pytest.warns(lm.ConvergenceWarning, match="effective sample size"):
        d = lm.diagnostics(fitted_law.loss_idata_, ["intercept", "beta"], ess_min=1e9)
    assert d["min_ess_bulk"] > 0 and d["draws"] == 800
    d = lm.diagnostics(fitted_law.loss_idata_, ["intercept"], rhat_max=10.0, ess_min=1.0, emit=False)
    assert not any("R-hat" in m or "effective sample size" in m for m in d["warnings"])
    assert any("divergent transitions" in m for m in d["warnings"]) == (d["divergences"] > 0)


def test_workflow_checks_are_stored_and_sensible(fitted_law, saved_model):
    pc, ppc, loo = fitted_law.prior_check_, fitted_law.ppc_, fitted_law.loo_
    assert 0.95 <= pc["share_inside_98"] <= 1.0
    assert 0.3 <= ppc["coverage_50"] <= 1.0 and 0.7 <= ppc["coverage_90"] <= 1.0
    assert np.isfinite(loo["elpd_loo"]) and loo["n_pareto_k_gt_0.7"] >= 0
    settings = json.loads((saved_model / "settings.json").read_text())
    assert settings["prior_check"]["share_inside_98"] == pc["share_inside_98"]
    assert settings["loo"]["elpd_loo"] == loo["elpd_loo"]


def test_prior_check_flags_a_prior_that_misses_the_data():
    data = _toy_data()
    shifted = lm.LossData(data.X, data.z + 50.0, data.group, data.sizes, data.feature_names)
    res = lm.prior_check(shifted, draws=200)
    assert res["share_inside_98"] < 0.5 and res["warnings"]


def test_numpy_scorer_matches_pymc_on_new_candidates(fitted_law):
    """On schedules the model never saw (set via ``pm.set_data``), PyMC's own posterior predictive ``mu``
    equals the numpy scorer's, draw for draw."""
    import json as _json

    import pandas as pd
    import pymc as pm

    from bayes_optlaws.features import design_matrix, integrals_table
    from bayes_optlaws.optlaw import size_covariates

    law = fitted_law
    ok = law.train_runs_[law._loss_rows(law.train_runs_)]  # the rows the loss law was fitted on
    X = law.standardiser_.transform(design_matrix(integrals_table(ok, law.spec_.lr_ref), law.spec_))
    group = np.array([law.sizes_.index(int(s)) for s in ok["model_params"]])
    y = (np.log(ok["final_loss"].to_numpy(float)) - law.y_mean_) / law.y_sd_
    data = lm.LossData(X, y, group, law.sizes_, law.spec_.feature_names,
                       size_covariates(X, group, len(law.sizes_), law.spec_.feature_names))
    new = pd.DataFrame({"run_id": [f"new{i}" for i in range(4)], "model_params": law.sizes_[1],
                        "tokens_per_step": 4096,
                        "schedule": [_json.dumps(s) for s in (
                            {"family": "cosine", "peak_lr": 0.02, "warmup": 30, "total": 1500},
                            {"family": "wsd", "peak_lr": 0.01, "warmup": 10, "total": 1500, "cooldown": 300},
                            {"family": "linear", "peak_lr": 0.004, "warmup": 0, "total": 1500},
                            {"family": "constant", "peak_lr": 0.006, "warmup": 50, "total": 1500})]})
    X_new = law.standardiser_.transform(design_matrix(integrals_table(new, law.spec_.lr_ref), law.spec_))
    g_new = np.full(len(new), 1)
    model = lm.build_loss_model(data, law.model_config_)
    with model:
        T, _ = lm.rotation(data.X)
        pm.set_data(lm.rotated_design(X_new, g_new, T, data.group_means), coords={"obs": np.arange(len(new))})
        # the trace without the training rows' mu, so PyMC recomputes it from the parameters and the new data
        trace = law.loss_idata_.posterior.to_dataset().drop_vars(["mu"], errors="ignore")
        # (raw arrays: the observed training z keeps its own length, which an InferenceData would reject)
        pp = pm.sample_posterior_predictive(trace, var_names=["mu"], progressbar=False, random_seed=0,
                                            return_inferencedata=False)
    mu_pm = np.asarray(pp["mu"]).reshape(-1, len(new))
    mu_np = lm.predict_mu(law.loss_post_, X_new, g_new, np.random.default_rng(0), law.group_means_)
    np.testing.assert_allclose(mu_np, mu_pm, rtol=1e-7, atol=1e-7)


def test_numpyro_sampler_extra_gives_the_same_posterior_as_nutpie():
    """The optional ``[numpyro]`` extra (sampler_config nuts_sampler="numpyro") samples the same model."""
    pytest.importorskip("numpyro", reason="the numpyro extra is not installed (pip install -e '.[numpyro]')")
    data = _toy_data()
    cfg = {"draws": 300, "tune": 300, "chains": 2}
    a = lm.sample_loss_model(lm.build_loss_model(data), {**cfg, "nuts_sampler": "numpyro"}, random_seed=1)
    b = lm.sample_loss_model(lm.build_loss_model(data), {**cfg, "nuts_sampler": "nutpie"}, random_seed=1)
    beta_a = a.posterior["beta"].values.reshape(-1, 4)
    beta_b = b.posterior["beta"].values.reshape(-1, 4)
    np.testing.assert_allclose(beta_a.mean(axis=0), beta_b.mean(axis=0), atol=0.05)
    np.testing.assert_allclose(beta_a.mean(axis=0), [0.5, -0.3, 0.0, 0.2], atol=0.1)
    assert "log_likelihood" in a.children


def test_nuts_kwargs_samples_chains_on_every_available_core(monkeypatch):
    """PyMC's own default halves the CPU count (hyper-threads), which ran 4 chains on one core of a 2-core CI
    machine; the law asks for every CPU it may use, never more than one per chain, and a config can pin it."""
    monkeypatch.setattr(lm, "available_cores", lambda: 2)
    kwargs = lm.nuts_kwargs(None, random_seed=3)
    assert kwargs["cores"] == 2 and kwargs["chains"] == 4 and kwargs["random_seed"] == 3
    assert kwargs["target_accept"] == lm.DEFAULT_SAMPLER_CONFIG["target_accept"]
    monkeypatch.setattr(lm, "available_cores", lambda: 16)
    assert lm.nuts_kwargs({"chains": 4}, 0)["cores"] == 4
    assert lm.nuts_kwargs({"cores": 1}, 0)["cores"] == 1
    assert lm.nuts_kwargs({"draws": 1000}, 0, draws=50)["draws"] == 50


def _pooled_toy_data(n_sizes=4, per_size=70, seed=0, levels=None):
    """SYNTHETIC: ``per_size`` runs per size whose slopes differ by size (so the slope offsets are not ~0)."""
    rng = np.random.default_rng(seed)
    n = n_sizes * per_size
    X = rng.normal(size=(n, 3))
    group = np.arange(n) % n_sizes
    slopes = np.array([0.5, -0.3, 0.2]) + 0.1 * rng.normal(size=(n_sizes, 3))
    z = np.einsum("nf,nf->n", X, slopes[group]) + 0.2 * group + 0.05 * rng.normal(size=n)
    data = lm.LossData(X, z, group, list(range(1000, 1000 + n_sizes)), ["f0", "f1", "f2"])
    if levels:
        data.level = np.arange(n) % levels
        data.levels = [f"opt{i}" for i in range(levels)]
    return data


def test_offsets_are_centred_only_where_every_group_has_many_runs():
    """``auto``: centred where each group has CENTRED_MIN_RUNS runs or more, and the size offsets have 0 or >= 2
    free directions (one direction: sigma_size is a prior guess, a centred offset a funnel)."""
    many, few = lm.CENTRED_MIN_RUNS, lm.CENTRED_MIN_RUNS - 1
    assert lm.offset_parameterisation(_pooled_toy_data(per_size=many)) == {"size": "centred", "level": "noncentred"}
    assert lm.offset_parameterisation(_pooled_toy_data(per_size=few))["size"] == "noncentred"
    one_direction = _pooled_toy_data(n_sizes=3, per_size=many)
    one_direction.size_covariates = np.array([[0.0], [1.0], [3.0]])
    assert lm.offset_parameterisation(one_direction)["size"] == "noncentred"
    with_levels = _pooled_toy_data(per_size=many, levels=2)
    assert lm.offset_parameterisation(with_levels)["level"] == "centred"
    assert lm.offset_parameterisation(_pooled_toy_data(per_size=few, levels=8))["level"] == "noncentred"
    assert lm.offset_parameterisation(_pooled_toy_data(n_sizes=1, per_size=500))["size"] == "noncentred"
    forced = lm.offset_parameterisation(_pooled_toy_data(per_size=few), {"offset_parameterisation": "centred"})
    assert forced == {"size": "centred", "level": "centred"}
    assert lm.mass_matrix_adaptation(_pooled_toy_data(per_size=many)) == "low_rank"
    assert lm.mass_matrix_adaptation(_pooled_toy_data(per_size=few)) == "diag"
    with pytest.raises(ValueError, match="offset_parameterisation.*'auto', 'centred' or 'noncentred'"):
        lm.offset_parameterisation(_pooled_toy_data(), {"offset_parameterisation": "center"})


def test_centred_graph_draws_offsets_on_their_own_scale():
    """Centred, the offsets' raw variables carry the scale (their prior sd is sigma_size / sigma_level); non-centred
    they are standard normal and scaled afterwards."""
    data = _pooled_toy_data(per_size=70, levels=2)
    for choice in ("centred", "noncentred"):
        model = lm.build_loss_model(data, {"offset_parameterisation": choice})
        point = model.initial_point()
        point["sigma_size_log__"] = np.log(0.01)
        point["sigma_level_log__"] = np.log(0.01)
        logp = model.compile_logp(vars=[model["size_offset_raw"], model["level_offset_raw"]])
        density = logp({**point, "size_offset_raw": np.full(3, 0.5), "level_offset_raw": np.full(2, 0.5)})
        # 0.5 is 50 sd out on a centred scale of 0.01 (-1250 each), half an sd of a standard normal (-1.04 each)
        assert (density < -1000) if choice == "centred" else (density > -10)


def test_centred_and_noncentred_offsets_give_the_same_posterior():
    """The parameterisation changes the sampler's geometry, not the model: posterior means agree."""
    data = _pooled_toy_data(per_size=80)
    sampler = {"draws": 400, "tune": 400, "chains": 2}
    means = {}
    for choice in ("centred", "noncentred"):
        config = {"offset_parameterisation": choice}
        idata = lm.sample_loss_model(lm.build_loss_model(data, config), sampler, random_seed=2,
                                     adaptation=lm.mass_matrix_adaptation(data, config))
        post = idata.posterior
        means[choice] = np.concatenate([post[v].mean(("chain", "draw")).values.ravel()
                                        for v in ("beta", "size_offset", "slope_offset")])
    np.testing.assert_allclose(means["centred"], means["noncentred"], atol=0.02)


def test_nuts_kwargs_passes_the_mass_matrix_adaptation_to_nutpie():
    """Each model names its own adaptation; sampler_config["adaptation"] overrides it; a wrong name, or low rank
    asked of a sampler that is not nutpie, is a clear error."""
    assert lm.nuts_kwargs(None, 0)["nuts"] == {"adaptation": "diag"}
    assert lm.nuts_kwargs(None, 0, adaptation="low_rank")["nuts"] == {"adaptation": "low_rank"}
    pinned = lm.nuts_kwargs({"adaptation": "diag"}, 0, adaptation="low_rank")
    assert pinned["nuts"] == {"adaptation": "diag"}
    assert "nuts" not in lm.nuts_kwargs({"nuts_sampler": "pymc"}, 0, adaptation="low_rank")
    with pytest.raises(ValueError, match="'diag', 'low_rank' or None"):
        lm.nuts_kwargs({"adaptation": "dense"}, 0)
    with pytest.raises(ValueError, match="needs nuts_sampler='nutpie'"):
        lm.nuts_kwargs({"adaptation": "low_rank", "nuts_sampler": "pymc"}, 0)


def test_sampling_summary_says_how_the_loss_law_is_sampled():
    many = _pooled_toy_data(per_size=lm.CENTRED_MIN_RUNS, levels=2)
    assert lm.sampling_summary(many) == ("4 chains, nutpie; offsets by size centred, by level centred; "
                                         "low_rank mass matrix")
    few = _pooled_toy_data(per_size=10)
    assert lm.sampling_summary(few, None, {"chains": 2}) == "2 chains, nutpie; offsets by size noncentred; " \
                                                            "diag mass matrix"
    assert lm.sampling_summary(_pooled_toy_data(n_sizes=1, per_size=10), None, {"nuts_sampler": "pymc"}) \
        == "4 chains, pymc"
