"""The continual-training stage model (bayes_optlaws.continual) on SYNTHETIC stages (tests/synthetic.py)."""

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from synthetic import synthetic_stages

from bayes_optlaws import continual as ct
from bayes_optlaws.evaluation.beyond import beyond_grid, held_out_stage_law, transfer_law
from bayes_optlaws.optlaw import BayesOptLaw
from bayes_optlaws.runs import RunsError


@pytest.fixture(scope="module")
def stage_table(synthetic_table):
    return pd.concat([synthetic_table, synthetic_stages(synthetic_table, seed=1)], ignore_index=True)


@pytest.fixture(scope="module")
def stage_law(fitted_law, stage_table):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return copy.copy(fitted_law).fit_continual(stage_table)


def _cands(g):
    return g.rename(columns={"run_id": "name"})[["name", "schedule", "model_params", "tokens_per_step"]]


def test_scenarios_and_contexts_come_from_group_and_parent(stage_table):
    stages = stage_table[ct.is_stage(stage_table)]
    assert len(stages) == 48 and not ct.is_stage(stage_table[stage_table["group"] == "main"]).any()
    assert set(ct.scenario_labels(stages)) == {"weak_shift", "strong_shift"}
    no_group = stages.drop(columns="group")
    assert set(ct.scenario_labels(no_group)) == {ct.DEFAULT_SCENARIO}


def test_stage_model_fits_its_rows_and_converges(stage_law):
    sf = stage_law.stage_fit_
    assert sf.scenarios == ["strong_shift", "weak_shift"] and len(sf.contexts) == 6 and sf.n_runs == 48
    # the test sampler is short (4 x 200 draws): loose bounds; the shipped model's fit is checked at 1.01
    assert sf.diagnostics["max_rhat"] < 1.1 and sf.diagnostics["divergences"] < 20
    assert 0.8 <= sf.posterior_check["coverage_90"] <= 1.0
    rows = stage_law.stage_runs_
    for (parent, scen), g in rows.groupby(["parent_run_id", "group"]):
        d = stage_law.predict_draws(_cands(g), parent_run_id=parent, scenario=scen)
        rel = np.abs(d.loss.mean(axis=0) - g["final_loss"].to_numpy()) / g["final_loss"].to_numpy()
        assert rel.mean() < 0.02, (parent, scen, rel.mean())


def test_held_out_stage_block_is_ranked_and_its_near_ties_flagged(stage_law, stage_table):
    stages = stage_table[ct.is_stage(stage_table)]
    parent = stages["parent_run_id"].iloc[0]
    held = stages[(stages["parent_run_id"] == parent) & (stages["group"] == "strong_shift")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law = held_out_stage_law(stage_law, stage_table, held.index)
    assert f"{parent}|strong_shift" not in law.stage_fit_.contexts
    assert f"{parent}|strong_shift" in stage_law.stage_fit_.contexts  # the original is untouched
    d = law.predict_draws(_cands(held), parent_run_id=parent, scenario="strong_shift")
    rho = spearmanr(d.loss.mean(axis=0), held["final_loss"]).statistic
    assert rho > 0.8
    # the weak scenario's differences are 5x smaller: the same two schedules are closer there
    weak = stages[(stages["parent_run_id"] == parent) & (stages["group"] == "weak_shift")]
    dw = stage_law.predict_draws(_cands(weak), parent_run_id=parent, scenario="weak_shift")
    assert np.ptp(dw.loss.mean(axis=0)) < 0.5 * np.ptp(d.loss.mean(axis=0))


def test_unknown_scenario_warns_and_is_wider(stage_law):
    rows = stage_law.stage_runs_
    parent, g = next(iter(rows[rows["group"] == "weak_shift"].groupby("parent_run_id")))
    known = stage_law.predict_draws(_cands(g), parent_run_id=parent, scenario="weak_shift")
    with pytest.warns(UserWarning, match="not one the stage model was fitted on"):
        new = stage_law.predict_draws(_cands(g), parent_run_id=parent, scenario="fine_tune")
    assert np.all(new.loss.std(axis=0) > known.loss.std(axis=0))
    with pytest.warns(UserWarning, match="pass scenario="):
        stage_law.predict_draws(_cands(g), parent_run_id=parent)


def test_stage_model_survives_save_and_load(stage_law, tmp_path):
    rows = stage_law.stage_runs_
    (parent, scen), g = next(iter(rows.groupby(["parent_run_id", "group"])))
    stage_law.save(tmp_path / "m")
    back = BayesOptLaw.load(tmp_path / "m")
    a = stage_law.predict_draws(_cands(g), parent_run_id=parent, scenario=scen, random_seed=5)
    b = back.predict_draws(_cands(g), parent_run_id=parent, scenario=scen, random_seed=5)
    assert np.array_equal(a.loss, b.loss) and np.array_equal(a.loss_noisy, b.loss_noisy)
    assert back.stage_fit_.contexts == stage_law.stage_fit_.contexts
    assert len(back.stage_runs_) == 48


def test_without_stage_model_the_transfer_route_is_used(stage_law):
    rows = stage_law.stage_runs_
    (parent, scen), g = next(iter(rows.groupby(["parent_run_id", "group"])))
    a = stage_law.predict_draws(_cands(g), parent_run_id=parent, scenario=scen).loss
    b = transfer_law(stage_law).predict_draws(_cands(g), parent_run_id=parent).loss
    assert not np.allclose(a, b) and stage_law.stage_fit_ is not None


def test_too_few_stages_and_stage_only_tables_are_clear_errors(fitted_law, stage_table):
    stages = stage_table[ct.is_stage(stage_table)]
    few = pd.concat([stage_table[~ct.is_stage(stage_table)], stages.iloc[:3]], ignore_index=True)
    with pytest.raises(RunsError, match="stage model needs at least"):
        copy.copy(fitted_law).fit_continual(few)
    with pytest.raises(RunsError, match="no single-stage runs"):
        BayesOptLaw().fit(stage_table, groups=("weak_shift",))


def test_main_fit_leaves_stage_rows_to_the_stage_model(fitted_law):
    assert not ct.is_stage(fitted_law.train_runs_).any()


def test_beyond_grid_reports_both_continual_routes(stage_law, stage_table):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = beyond_grid(stage_law, stage_table[stage_table["group"] != "main"].pipe(
            lambda s: pd.concat([stage_law.history_runs_, s], ignore_index=True)), stage_model=False)
    assert res["continual_transfer"] and not res["continual"]
    r = next(iter(res["continual_transfer"].values()))
    assert r["group"] in ("weak_shift", "strong_shift") and r["n"] == 8


def test_candidates_outside_the_stage_runs_are_flagged(stage_law):
    rows = stage_law.stage_runs_
    (parent, scen), g = next(iter(rows.groupby(["parent_run_id", "group"])))
    far = pd.DataFrame({"name": ["huge-lr"], "schedule": [
        '{"family": "linear", "peak_lr": 0.3, "warmup": 25, "total": 500}'],
        "model_params": g["model_params"].iloc[0], "tokens_per_step": 4096})
    with pytest.warns(UserWarning, match=r"outside the range of the 48 stage runs .*, in the feature\(s\) \S"):
        stage_law.predict_draws(far, parent_run_id=parent, scenario=scen)
    inside = stage_law.stage_fit_.outside_range(
        stage_law.stage_fit_.standardiser.mean[None, :] + 0 * stage_law.stage_fit_.standardiser.mean)
    assert not inside.any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the stage runs themselves are inside: no warning
        stage_law.predict_draws(_cands(g), parent_run_id=parent, scenario=scen)


def test_explicit_history_equals_the_parent_from_the_table(stage_law):
    from bayes_optlaws.api import predict

    rows = stage_law.stage_runs_
    (parent, scen), g = next(iter(rows.groupby(["parent_run_id", "group"])))
    parent_schedule = stage_law.history_runs_.set_index("run_id").loc[parent, "schedule"]
    law = transfer_law(stage_law)  # no contexts: the features alone decide
    a = predict(law, _cands(g), parent_run_id=parent, random_seed=3).loss
    b = predict(law, _cands(g), history_schedules=[parent_schedule], random_seed=3).loss
    np.testing.assert_array_equal(a, b)
    with pytest.raises(RunsError, match="not both"):
        predict(law, _cands(g), parent_run_id=parent, history_schedules=[parent_schedule])
    with pytest.raises(RunsError, match="history stage 1"):
        predict(law, _cands(g), history_schedules=['{"family": "linear"}'])


def test_a_continuation_keeps_its_parents_size_and_a_diverged_parent_is_named():
    import pandas as pd

    from bayes_optlaws.continual import check_parents
    from bayes_optlaws.runs import RunsError

    history = pd.DataFrame({"run_id": ["p", "q", "bad"], "model_params": [100, 100, 100],
                            "parent_run_id": [None, "bad", None], "diverged": [False, False, True]})
    ok = pd.DataFrame({"run_id": ["c1", "c2"], "parent_run_id": ["p", "p"], "model_params": [100, 100]})
    assert check_parents(ok, history) == []
    after_divergence = pd.DataFrame({"run_id": ["c1", "c2"], "parent_run_id": ["q", "q"], "model_params": [100, 100]})
    [message] = check_parents(after_divergence, history)
    assert "2 candidate(s) ('c1', 'c2') continue from 'q'" in message and "diverged run ('bad')" in message
    other_size = pd.DataFrame({"run_id": ["c"], "parent_run_id": ["p"], "model_params": [200]})
    with pytest.raises(RunsError, match="continuation keeps its parent's size"):
        check_parents(other_size, history)
