"""Unit tests for bayes_optlaws.runset: one validation at the boundary, parsed schedules and integrals kept."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws import features, runset
from bayes_optlaws.features import integrals_table
from bayes_optlaws.runs import RunsError
from bayes_optlaws.runset import RunSet

TPS = 64
LR_REF = 0.1


def sched(total: int = 100, peak: float = 1e-3, warmup: int = 10) -> str:
    return json.dumps({"family": "linear", "peak_lr": peak, "warmup": warmup, "total": total})


def runs_table() -> pd.DataFrame:
    return pd.DataFrame({
        "run_id": ["a", "b", "c", "a2"],
        "model_params": [1_000_000, 2_000_000, 3_000_000, 1_000_000],
        "tokens": [100 * TPS, 200 * TPS, 100 * TPS, 50 * TPS],
        "tokens_per_step": [TPS] * 4,
        "schedule": [sched(100), sched(200, 2e-3), sched(100, 5e-2, 0), sched(50, 5e-4, 0)],
        "final_loss": [3.1, 2.9, np.nan, 3.0],
        "diverged": [False, False, True, False],
        "parent_run_id": [None, None, None, "a"],
        "x_beta2": [0.95, 0.99, 0.95, 0.95],
    })


def candidates() -> pd.DataFrame:
    return pd.DataFrame({"name": ["short", "long"], "schedule": [sched(100, 3e-3), sched(400, 1e-3, 40)],
                         "x_beta2": [0.95, 0.99]})


def test_of_runs_validates_once_and_keeps_the_parsed_schedules():
    runs = RunSet.of_runs(runs_table())
    assert len(runs) == 4 and runs.names == ["a", "b", "c", "a2"]
    np.testing.assert_allclose(runs.peak_lr, [1e-3, 2e-3, 5e-2, 5e-4])
    np.testing.assert_allclose(runs.warmup_fraction, [0.1, 0.05, 0.0, 0.0])
    assert [s.total for s in runs.schedules] == [100, 200, 100, 50]
    assert RunSet.of_runs(runs) is runs  # a run set is not validated again
    bad = runs_table()
    bad.loc[1, "schedule"] = '{"family": "linear"}'
    with pytest.raises(RunsError, match=r"runs.csv: row 3 \(run_id 'b'\), column 'schedule'"):
        RunSet.of_runs(bad, where="runs.csv")


def test_of_candidates_keys_rows_by_run_id_and_keeps_x_columns():
    cands = RunSet.of_candidates(candidates())
    assert cands.names == ["short", "long"] and "name" not in cands.table.columns
    assert list(cands.table["x_beta2"]) == [0.95, 0.99]
    from_runs = RunSet.of_candidates(runs_table())  # a runs table as candidates: its outcome columns left out
    assert from_runs.names == ["a", "b", "c", "a2"]
    assert not {"final_loss", "diverged"} & set(from_runs.table.columns)
    with pytest.raises(RunsError, match="'short' appears more than once"):
        RunSet.of_candidates(pd.concat([candidates(), candidates()]))


def test_with_target_fills_the_size_and_the_tokens_from_the_schedule_length():
    cands = RunSet.of_candidates(candidates()).with_target(model_params=2_000_000, tokens_per_step=TPS)
    assert list(cands.table["model_params"]) == [2_000_000] * 2
    assert list(cands.table["tokens"]) == [100 * TPS, 400 * TPS]
    with pytest.raises(RunsError, match="no 'model_params' for some candidates; give it as a column or argument"):
        RunSet.of_candidates(candidates()).with_target(tokens_per_step=TPS)


def test_integrals_are_computed_once_and_subsets_carry_them(monkeypatch):
    runs = RunSet.of_runs(runs_table())
    first = runs.integrals(LR_REF)
    pd.testing.assert_frame_equal(first, integrals_table(runs_table(), LR_REF))  # a DataFrame: parsed there
    calls = []
    monkeypatch.setattr(features, "integrals_table", lambda *a, **k: calls.append(a) or first)
    assert runs.integrals(LR_REF) is first and not calls
    sub = runs.rows(np.array([False, True, True, False]))
    assert sub.names == ["b", "c"] and [s.peak_lr for s in sub.schedules] == [2e-3, 5e-2]
    pd.testing.assert_frame_equal(sub.integrals(LR_REF), first.iloc[[1, 2]].reset_index(drop=True))
    assert not calls  # came along with the rows
    sub.integrals(LR_REF, history_escape="peak")
    assert len(calls) == 1  # other arguments: computed anew


def test_assign_keeps_the_schedules_and_recomputes_the_integrals():
    runs = RunSet.of_runs(runs_table())
    bigger = runs.assign(model_params=4_000_000)
    assert bigger.schedules is runs.schedules
    np.testing.assert_allclose(bigger.integrals(LR_REF)["N"], 4e-3)
    np.testing.assert_allclose(runs.integrals(LR_REF)["N"], [1e-3, 2e-3, 3e-3, 1e-3])
    with pytest.raises(ValueError, match="cannot replace schedules"):
        runs.assign(schedule=sched())


def test_a_continuation_takes_its_history_from_another_run_set():
    runs = RunSet.of_runs(runs_table())
    cont = RunSet.of_candidates(candidates()).with_target(1_000_000, TPS, parent_run_id="a")
    with_history = cont.integrals(LR_REF, history=runs)
    alone = RunSet.of_candidates(candidates()).with_target(1_000_000, TPS).integrals(LR_REF)
    parent_I = runs.integrals(LR_REF)["I"].iloc[0]
    np.testing.assert_allclose(with_history["I"], alone["I"] + parent_I)
    missing = RunSet.of_candidates(candidates()).with_target(1_000_000, TPS, parent_run_id="nope")
    with pytest.raises(RunsError, match="'nope' is not in the runs table that holds the history"):
        missing.integrals(LR_REF, history=runs)


def test_a_law_predicts_a_run_set_as_it_predicts_its_table(fitted_law, monkeypatch):
    table = pd.DataFrame({"name": ["x", "y"], "schedule": [sched(1000, 1e-2, 100), sched(1000, 3e-2, 0)]})
    from_table = fitted_law.predict_draws(table, model_params=80_000, tokens_per_step=4096)
    checked = []
    real = runset.checked_candidates
    monkeypatch.setattr(runset, "checked_candidates", lambda *a, **k: checked.append(1) or real(*a, **k))
    cands = RunSet.of_candidates(table)
    from_set = fitted_law.predict_draws(cands, model_params=80_000, tokens_per_step=4096)
    assert len(checked) == 1  # validated where the run set was made, not again by predict_draws
    np.testing.assert_array_equal(from_table.loss, from_set.loss)
    np.testing.assert_array_equal(from_table.p_diverge, from_set.p_diverge)
    assert from_set.names == ["x", "y"]


def test_the_api_validates_candidates_once(fitted_law, monkeypatch, tmp_path):
    from bayes_optlaws.api import predict

    path = tmp_path / "cands.csv"
    candidates().drop(columns=["x_beta2"]).to_csv(path, index=False)
    checked = []
    real = runset.checked_candidates
    monkeypatch.setattr(runset, "checked_candidates", lambda *a, **k: checked.append(1) or real(*a, **k))
    draws = predict(fitted_law, path, model_params=80_000, tokens_per_step=4096)
    assert draws.names == ["short", "long"] and len(checked) == 1


def test_a_candidate_column_with_a_typo_is_an_error_not_dropped():
    spec = json.dumps({"family": "linear", "peak_lr": 1e-3, "warmup": 10, "total": 100})
    cands = pd.DataFrame({"name": ["a"], "schedule": [spec], "tokens_per_stpe": [64]})
    with pytest.raises(RunsError, match="unknown column.*'tokens_per_stpe'"):
        RunSet.of_candidates(cands)


def test_a_candidate_tokens_column_must_match_its_schedule():
    spec = json.dumps({"family": "linear", "peak_lr": 1e-3, "warmup": 10, "total": 100})
    ok = RunSet.of_candidates(pd.DataFrame({"name": ["a"], "schedule": [spec], "tokens_per_step": [64],
                                            "tokens": [6400]}))
    assert "tokens" not in ok.table.columns  # recomputed at the target by with_target
    with pytest.raises(RunsError, match="tokens 123 does not match its schedule"):
        RunSet.of_candidates(pd.DataFrame({"name": ["a"], "schedule": [spec], "tokens_per_step": [64],
                                           "tokens": [123]}))


def test_a_runs_table_passed_as_candidates_keeps_working():
    spec = json.dumps({"family": "linear", "peak_lr": 1e-3, "warmup": 10, "total": 100})
    runs = pd.DataFrame({"run_id": ["r"], "model_params": [1000], "tokens": [6400], "tokens_per_step": [64],
                         "schedule": [spec], "final_loss": [3.0], "diverged": [False], "seed": [0]})
    assert RunSet.of_candidates(runs).names == ["r"]


@pytest.mark.parametrize("kwargs, message", [({"model_params": 0}, r"model_params \(--params\)"),
                                             ({"tokens_per_step": 0}, r"tokens_per_step \(--tokens-per-step\)"),
                                             ({"model_params": 150000.7}, "whole number")])
def test_with_target_checks_the_target(kwargs, message):
    spec = json.dumps({"family": "linear", "peak_lr": 1e-3, "warmup": 10, "total": 100})
    cands = RunSet.of_candidates(pd.DataFrame({"name": ["a"], "schedule": [spec]}))
    target = {"model_params": 1000, "tokens_per_step": 64, **kwargs}
    with pytest.raises(RunsError, match=message):
        cands.with_target(**target)


def test_candidate_tokens_take_the_runs_tables_one_step_tolerance():
    spec = json.dumps({"family": "linear", "peak_lr": 1e-3, "warmup": 10, "total": 100})
    rounded = pd.DataFrame({"name": ["a"], "schedule": [spec], "tokens_per_step": [64], "tokens": [6400 + 32]})
    assert RunSet.of_candidates(rounded).names == ["a"]  # a runs table that validates is a valid candidate list
