"""The notebook API (bayes_optlaws.api): what it accepts as tables and how it refuses the rest."""

from __future__ import annotations

import pytest

import bayes_optlaws as bol
from bayes_optlaws.runs import RunsError

SPEC = {"family": "linear", "peak_lr": 1e-2, "warmup": 100, "total": 1000}


def test_candidates_may_be_a_list_of_row_dicts(fitted_law):
    rows = [{"name": "a", "schedule": SPEC}, {"name": "b", "schedule": {**SPEC, "peak_lr": 3e-2}}]
    result = bol.rank_candidates(fitted_law, rows, model_params=80_000, tokens_per_step=4096)
    assert sorted(result.table["name"]) == ["a", "b"]


@pytest.mark.parametrize("candidates", [None, 5, [1, 2]])
def test_candidates_of_another_type_are_named(fitted_law, candidates):
    with pytest.raises(RunsError, match="candidates must be a CSV/Parquet path, a pandas DataFrame or a list"):
        bol.rank_candidates(fitted_law, candidates, model_params=80_000, tokens_per_step=4096)


def test_a_runs_table_of_another_type_is_named():
    with pytest.raises(RunsError, match="the runs table must be"):
        bol.fit(3.5)


def test_history_must_be_schedules(fitted_law):
    rows = [{"name": "a", "schedule": SPEC}]
    with pytest.raises(RunsError, match="must be a list of schedules, oldest first, got int"):
        bol.predict(fitted_law, rows, model_params=80_000, tokens_per_step=4096, history_schedules=5)


def test_load_of_none_is_the_shipped_model_and_other_types_are_named():
    assert bol.load(None).data_hash_ == bol.load().data_hash_
    with pytest.raises(RunsError, match="model directory's path"):
        bol.load(42)


def test_a_schedule_that_cannot_take_the_budget_names_the_candidate_and_tokens(fitted_law):
    rows = [{"name": "wsd", "schedule": {"family": "wsd", "peak_lr": 1e-2, "warmup": 100, "total": 1000,
                                          "cooldown": 200}}]
    with pytest.raises(RunsError, match=r"candidate 'wsd' rescaled to --tokens 4,096 \(1 steps\): 'cooldown'"):
        bol.predict(fitted_law, rows, model_params=80_000, tokens_per_step=4096, tokens=4096)
    trace = [{"name": "trace", "schedule": {"steps": [0, 10, 100], "lr": [0, 1e-2, 1e-3]}}]
    with pytest.raises(RunsError, match="candidate 'trace' rescaled to --tokens.*logged LR trace"):
        bol.predict(fitted_law, trace, model_params=80_000, tokens_per_step=4096, tokens=409_600)
