import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws.fitted import ModelFormatError, load_model
from bayes_optlaws.optlaw import BayesOptLaw

CANDS = pd.DataFrame({"name": ["a", "b", "c"], "schedule": [
    json.dumps({"family": "linear", "peak_lr": 1e-2, "warmup": 100, "total": 1000}),
    json.dumps({"family": "wsd", "peak_lr": 3e-2, "warmup": 100, "total": 1000, "cooldown": 200}),
    json.dumps({"family": "cosine", "peak_lr": 1e-1, "warmup": 0, "total": 1000}),
]})


def test_loaded_model_reproduces_predictions_exactly(fitted_law, saved_model):
    law2 = load_model(saved_model)
    for params in (80_000, 123_456):  # a known and an unseen size
        a = fitted_law.predict_draws(CANDS, model_params=params, tokens_per_step=4096)
        b = law2.predict_draws(CANDS, model_params=params, tokens_per_step=4096)
        np.testing.assert_array_equal(a.loss, b.loss)
        np.testing.assert_array_equal(a.loss_noisy, b.loss_noisy)
        np.testing.assert_array_equal(a.p_diverge, b.p_diverge)
        np.testing.assert_array_equal(a.unstable_excess, b.unstable_excess)
    assert law2.spec_ == fitted_law.spec_
    assert law2.settings_["package_version"]


def test_settings_record_features_normalisation_and_provenance(saved_model):
    s = json.loads((saved_model / "settings.json").read_text())
    assert s["feature_spec"]["lr_ref"] == 0.3
    assert len(s["feature_names"]) == 15 and len(s["standardiser"]["mean"]) == 15
    assert len(s["data_hash"]) == 16 and len(s["id"]) == 16
    assert s["loss_diagnostics"]["draws"] == 800


def _copy(saved_model, tmp_path):
    dst = tmp_path / "m"
    shutil.copytree(saved_model, dst)
    return dst


def test_refuses_other_version(saved_model, tmp_path):
    dst = _copy(saved_model, tmp_path)
    s = json.loads((dst / "settings.json").read_text())
    s["package_version"] = "9.9.0"
    (dst / "settings.json").write_text(json.dumps(s))
    with pytest.raises(ModelFormatError, match="incompatible"):
        load_model(dst)


def test_refuses_edited_settings(saved_model, tmp_path):
    dst = _copy(saved_model, tmp_path)
    s = json.loads((dst / "settings.json").read_text())
    s["y_mean"] += 0.1
    (dst / "settings.json").write_text(json.dumps(s))
    with pytest.raises(ModelFormatError, match="model id"):
        load_model(dst)


def test_refuses_changed_training_data(saved_model, tmp_path):
    dst = _copy(saved_model, tmp_path)
    runs = pd.read_csv(dst / "train_runs.csv")
    runs.loc[0, "final_loss"] += 0.5
    runs.to_csv(dst / "train_runs.csv", index=False)
    with pytest.raises(ModelFormatError, match="data hash"):
        load_model(dst)


def test_not_a_model_dir(tmp_path):
    with pytest.raises(ModelFormatError, match="not a bayes_optlaws model directory"):
        load_model(tmp_path)


def test_save_never_overwrites_without_force(fitted_law, saved_model, tmp_path):
    from bayes_optlaws.runs import RunsError

    with pytest.raises(RunsError, match="--force"):
        fitted_law.save(saved_model)
    user_dir = tmp_path / "precious"
    user_dir.mkdir()
    (user_dir / "notes.txt").write_text("mine")
    with pytest.raises(RunsError, match="not a bayes_optlaws model directory"):
        fitted_law.save(user_dir, force=True)
    assert (user_dir / "notes.txt").read_text() == "mine"


def test_unfitted_model_says_so():
    with pytest.raises(RuntimeError, match="not fitted"):
        BayesOptLaw().predict_draws(CANDS, model_params=1, tokens_per_step=1)


def test_a_fitted_and_a_loaded_model_have_the_same_fitted_state(fitted_law, saved_model):
    """The completeness guard: fit() and load_model() set exactly the fitted attributes save_model() writes."""
    from bayes_optlaws.fitted import FITTED_ATTRIBUTES, missing_fitted_attributes

    loaded = load_model(saved_model)
    fitted_names = {k for k in vars(fitted_law) if k.endswith("_")}
    assert fitted_names == {k for k in vars(loaded) if k.endswith("_")}
    assert set(FITTED_ATTRIBUTES) <= fitted_names and not missing_fitted_attributes(loaded)
    assert loaded.settings_["id"] == fitted_law.settings_["id"]
    assert loaded.fit_seconds_ == pytest.approx(fitted_law.fit_seconds_)
    assert loaded.exponent_search_ is None and fitted_law.exponent_search_ is None  # a fixed FeatureSpec
    assert loaded.model_config_ == fitted_law.model_config_ and loaded.sampler_config_ == fitted_law.sampler_config_


def test_saving_and_loading_loop_over_every_component(fitted_law, saved_model):
    """Each component of :data:`fitted.COMPONENTS` the law has is written to its own posterior file and comes
    back with the same settings; one it lacks (no stage model in the synthetic table) has no file."""
    import json as _json

    from bayes_optlaws.fitted import COMPONENTS

    loaded = load_model(saved_model)
    present = [c for c in COMPONENTS if getattr(fitted_law, c.attribute) is not None]
    assert {c.attribute for c in present} == {"loss_fit_", "div_fit_"}
    for comp in COMPONENTS:
        original, back = getattr(fitted_law, comp.attribute), getattr(loaded, comp.attribute)
        assert (saved_model / comp.posterior_file).exists() == (original is not None) == (back is not None)
        if original is not None:
            assert _json.dumps(back.settings(), sort_keys=True, default=str) == \
                _json.dumps(original.settings(), sort_keys=True, default=str)


def test_saving_refuses_an_incomplete_fitted_state(fitted_law, tmp_path):
    import copy

    law = copy.copy(fitted_law)
    del law.exponent_search_
    with pytest.raises(RuntimeError, match="lacks exponent_search_"):
        law.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_the_exponent_search_table_survives_save_and_load(fitted_law, tmp_path):
    import copy

    law = copy.copy(fitted_law)
    law.exponent_search_ = pd.DataFrame({"p_s": [0.1, 0.2], "p_cc": [0.1, 0.1], "p_e": [0.3, 0.3],
                                         "p_m": [0.1, 0.1], "mse": [0.01, 0.02]})
    loaded = load_model(law.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(loaded.exponent_search_, law.exponent_search_)


def test_a_missing_posterior_file_is_an_error_not_a_model_without_it(saved_model, tmp_path):
    """settings.json says the divergence model was saved: without its file, loading refuses (never a law that
    silently predicts P(diverge) as unknown)."""
    dst = _copy(saved_model, tmp_path)
    (dst / "divergence_posterior.nc").unlink()
    with pytest.raises(ModelFormatError, match="divergence_posterior.nc: missing from the model directory"):
        load_model(dst)


def test_a_law_with_an_unstable_loss_regression_draws_its_excess_and_saves_it(fitted_law, tmp_path):
    import copy

    from test_unstable_loss import fitted, synthetic_unstable_runs

    # the session's synthetic grid has 4 unstable runs: too few for the regression, so the fixed excess is used
    assert fitted_law.div_fit_.unstable_level is None
    assert np.ndim(fitted_law.predict_draws(CANDS, model_params=80_000, tokens_per_step=4096).unstable_excess) == 0
    law = copy.deepcopy(fitted_law)
    level = fitted(synthetic_unstable_runs())  # SYNTHETIC regression, its plateau moved above this grid's losses
    level.coef[0] += 1.0
    law.div_fit_.unstable_level = level
    d = law.predict_draws(CANDS, model_params=123_456, tokens_per_step=4096)
    assert d.unstable_excess.shape == d.loss.shape and d.unstable_excess.min() >= 0
    assert d.unstable_excess.max() > 0
    law.save(tmp_path / "with-level")
    again = load_model(tmp_path / "with-level")
    assert again.div_fit_.unstable_level == law.div_fit_.unstable_level
    np.testing.assert_array_equal(
        again.predict_draws(CANDS, model_params=123_456, tokens_per_step=4096).unstable_excess, d.unstable_excess)


def test_save_with_force_replaces_only_a_models_own_files(fitted_law, saved_model, tmp_path):
    from bayes_optlaws.runs import RunsError

    target = tmp_path / "model"
    shutil.copytree(saved_model, target)
    (target / "notes.txt").write_text("mine")
    with pytest.raises(RunsError, match=r"notes\.txt.*--force replaces a model's own files only"):
        fitted_law.save(target, force=True)
    assert (target / "notes.txt").read_text() == "mine"
    (target / "notes.txt").unlink()
    fitted_law.save(target, force=True)  # a model directory alone is replaced
    assert load_model(target).data_hash_ == fitted_law.data_hash_


def test_save_refuses_a_file_path(fitted_law, tmp_path):
    from bayes_optlaws.runs import RunsError

    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(RunsError, match="it is a file"):
        fitted_law.save(tmp_path / "model.json", force=True)
    with pytest.raises(RunsError, match="model.json is a file, not a directory"):
        fitted_law.save(tmp_path / "model.json" / "inner", force=True)


def test_settings_that_are_not_an_object_are_a_format_error(tmp_path):
    (tmp_path / "settings.json").write_text("[1]")
    with pytest.raises(ModelFormatError, match="not a model's settings object"):
        load_model(tmp_path)
