import json

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws.optlaw import BayesOptLaw, replicate_noise
from bayes_optlaws.runs import RunsError


def test_fit_records_diagnostics_and_noise(fitted_law):
    d = fitted_law.loss_diagnostics_
    assert set(d) >= {"max_rhat", "min_ess_bulk", "min_ess_tail", "divergences", "warnings"}
    assert fitted_law.div_post_ is not None
    assert fitted_law.diverged_loss_ > 5.0  # synthetic diverged runs end near 5.5


def test_fit_recovers_the_synthetic_ordering(fitted_law, synthetic_table):
    ok = synthetic_table[~synthetic_table["diverged"]]
    pred = fitted_law.predict(ok)
    assert np.corrcoef(pred, ok["final_loss"])[0, 1] > 0.95
    rel = np.abs(pred - ok["final_loss"]) / ok["final_loss"]
    assert rel.mean() < 0.03


def test_history_aware_prediction_uses_the_parent(fitted_law):
    runs = fitted_law.train_runs_
    parent = runs[~runs["diverged"]].iloc[0]
    cand = pd.DataFrame({"name": ["rewarm"], "schedule": [json.dumps(
        {"family": "linear", "peak_lr": 1e-2, "warmup": 20, "total": 500})]})
    cold = fitted_law.predict_draws(cand, model_params=int(parent.model_params), tokens_per_step=4096)
    warm = fitted_law.predict_draws(cand, model_params=int(parent.model_params), tokens_per_step=4096,
                                    parent_run_id=parent.run_id)
    assert not np.allclose(cold.loss, warm.loss)
    with pytest.raises(RunsError, match="not in the runs table"):
        fitted_law.predict_draws(cand, model_params=1000, tokens_per_step=4096, parent_run_id="nope")


def test_missing_target_size_is_a_clear_error(fitted_law):
    cand = pd.DataFrame({"name": ["x"], "schedule": [json.dumps(
        {"family": "linear", "peak_lr": 1e-2, "warmup": 20, "total": 500})]})
    with pytest.raises(RunsError, match="model_params"):
        fitted_law.predict_draws(cand, tokens_per_step=4096)


def test_too_few_runs():
    from synthetic import synthetic_runs

    tiny = synthetic_runs(sizes=(25_000,), steps=(1000,), lrs=(1e-2,), warmups=(0.0, 0.1))
    with pytest.raises(RunsError, match="at least 5"):
        BayesOptLaw().fit(tiny)


def test_replicate_noise_is_the_median_seed_sd():
    df = pd.DataFrame({"model_params": [1, 1, 1, 2, 2, 3, 3], "tokens": [5] * 7,
                       "schedule": ["a", "a", "a", "b", "b", "c", "c"],
                       "final_loss": [1.0, 1.2, 1.4, 2.0, 2.2, 3.0, 4.0], "diverged": [False] * 7})
    # per-configuration sds: 0.2, 0.1414, 0.7071 -> median 0.2
    assert replicate_noise(df) == pytest.approx(0.2)
    assert np.isnan(replicate_noise(df.drop_duplicates("schedule")))


def test_a_refit_with_the_same_seed_is_identical_draw_for_draw(fitted_law, synthetic_table):
    """Each of the three models has its own seed, so a fit of the fixture's runs plus continual stages gives the
    fixture's loss and divergence posteriors draw for draw, and a stage model equal to the one ``fit_continual``
    fits afterwards."""
    import copy
    import warnings

    from conftest import TEST_SAMPLER
    from synthetic import synthetic_stages
    from bayes_optlaws.features import FeatureSpec

    table = pd.concat([synthetic_table, synthetic_stages(synthetic_table, seed=1)], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = BayesOptLaw(FeatureSpec(lr_ref=0.3), sampler_config=TEST_SAMPLER, random_seed=3).fit(table)
        one_at_a_time = copy.copy(fitted_law).fit_continual(table)
    assert again.stage_fit_ is not None and fitted_law.div_post_ is not None
    for first, second in ((fitted_law.loss_post_, again.loss_post_), (fitted_law.div_post_, again.div_post_),
                          (one_at_a_time.stage_fit_.post, again.stage_fit_.post)):
        assert first.keys() == second.keys()
        for name in first:
            np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_the_constructor_stores_its_arguments_and_fit_resolves_them(fitted_law):
    """scikit-learn's convention: get_params() gives back what the constructor got; fit() writes the resolved
    configs (defaults filled in, priors resolved, covariates chosen) into *_config_ and leaves the arguments."""
    from bayes_optlaws import loss_model as lm
    from conftest import TEST_SAMPLER

    params = fitted_law.get_params()
    assert params["model_config"] is None and params["sampler_config"] == TEST_SAMPLER
    assert params["random_seed"] == 3 and set(params) >= {"feature_spec", "divergence_config", "stage_config"}
    assert set(lm.DEFAULT_MODEL_CONFIG) <= set(fitted_law.model_config_)
    assert isinstance(fitted_law.model_config_["covariates"], list)  # "auto" resolved on the data
    assert fitted_law.sampler_config_ == {**lm.DEFAULT_SAMPLER_CONFIG, **TEST_SAMPLER}


def test_clone_is_unfitted_with_equal_but_independent_parameters(fitted_law):
    twin = fitted_law.clone()
    assert type(twin) is BayesOptLaw and twin.get_params() == fitted_law.get_params()
    assert not any(k.endswith("_") and not k.startswith("_") for k in vars(twin))  # no fitted state
    twin.sampler_config["draws"] = 1
    assert fitted_law.sampler_config["draws"] != 1  # deep copies: changing the clone leaves the original
    with pytest.raises(RuntimeError, match="not fitted"):
        twin.predict(fitted_law.train_runs_.head(2))


def test_set_params_changes_arguments_and_refuses_unknown_names():
    law = BayesOptLaw().set_params(random_seed=5, model_config={"nu": 4.0})
    assert law.get_params()["random_seed"] == 5 and law.model_config == {"nu": 4.0}
    with pytest.raises(ValueError, match="no parameter n_draws; its parameters are feature_spec"):
        BayesOptLaw().set_params(n_draws=3)


def test_an_unstable_run_is_never_charged_more_than_a_diverged_one(monkeypatch):
    """The shipped default model, its unstable-loss regression made to extrapolate a plateau 10 nats up (as it can
    far beyond the fitted sizes): the excess is capped at the diverged charge, so in every draw normal <= unstable
    <= max(normal, diverged); at the default model's own sizes (the regression's real excess) nothing changes."""
    import warnings

    import bayes_optlaws as bol

    law = bol.load()
    runs = law.train_runs_.iloc[:6]
    cands = pd.DataFrame({"name": [f"c{i}" for i in range(len(runs))], "schedule": runs["schedule"].to_numpy(),
                          "model_params": runs["model_params"].to_numpy(),
                          "tokens_per_step": runs["tokens_per_step"].to_numpy()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real = law.predict_draws(cands)
        level = law.div_fit_.unstable_level
        uncapped = level.excess_draws
        monkeypatch.setattr(level, "excess_draws", lambda run_set, loss, rng: uncapped(run_set, loss, rng) + 10.0)
        far = law.predict_draws(cands)
    assert np.all(real.loss + real.unstable_excess < law.diverged_loss_)  # the cap does not bind here
    charged = far.loss + far.unstable_excess
    assert np.all(far.unstable_excess >= 0)
    assert np.allclose(charged, np.maximum(far.loss, law.diverged_loss_))


def test_a_diverged_run_is_charged_at_most_an_untrained_models_loss(synthetic_table):
    """SYNTHETIC runs with a vocabulary of 256 tokens (ceiling ln 256 = 5.55 nats) and one diverged run logged at
    55 nats (an importer can keep such a curve): the charge of a diverged run is the ceiling, not the mean 55-ish;
    without the vocabulary the ceiling is the worst logged loss, so the mean is kept."""
    from bayes_optlaws.runset import RunSet

    runs = synthetic_table.copy()
    diverged = runs.index[runs["diverged"]]
    assert len(diverged)
    runs.loc[diverged[0], "final_loss"] = 55.0
    law = BayesOptLaw()
    for table, expected in ((runs.assign(x_vocab_size=256), np.log(256)), (runs, None)):
        law.train_set_, law._fitted_range = RunSet.of_runs(table), None
        ok = table[~table["diverged"]]
        charge = law._diverged_charge(table, ok)
        logged = table.loc[table["diverged"], "final_loss"].astype(float)
        mean = float(logged[np.isfinite(logged)].mean())
        assert charge == pytest.approx(expected if expected is not None else mean)
        assert mean > np.log(256)
