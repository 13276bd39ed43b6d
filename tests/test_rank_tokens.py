"""``rank --tokens D`` without ``--tokens-per-step``: tokens per step come from the model's training runs.

Uses the session's model fitted on the SYNTHETIC grid (tests/synthetic.py; every run at 4,096 tokens per step).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

import bayes_optlaws.api as api
from bayes_optlaws.cli import main
from bayes_optlaws.runs import RunsError

TOKENS = 2000 * 4096


@pytest.fixture
def candidates() -> pd.DataFrame:
    """Two schedules of 1,000 steps at the synthetic grid's middle size, no tokens_per_step column."""
    return pd.DataFrame({"name": ["lin", "wsd"], "model_params": 80_000, "schedule": [
        json.dumps({"family": "linear", "peak_lr": 1e-2, "warmup": 100, "total": 1000}),
        json.dumps({"family": "wsd", "peak_lr": 3e-2, "warmup": 100, "total": 1000, "cooldown": 200})]})


@pytest.fixture
def mixed_law(fitted_law):
    """A shallow copy of the synthetic law whose training runs used two tokens-per-step values."""
    law = copy.copy(fitted_law)
    runs = fitted_law.train_runs_.copy()
    runs.loc[runs.index[::2], "tokens_per_step"] = 2048
    law.train_set_ = fitted_law.train_set_.assign(tokens_per_step=runs["tokens_per_step"])
    return law


def _spy_on_candidates(law, monkeypatch) -> list[pd.DataFrame]:
    """Record the candidate tables ``predict`` hands to ``law.predict_draws`` (a run set's table, after
    rescaling to --tokens)."""
    seen, real = [], law.predict_draws

    def spy(cand, **kwargs):
        seen.append(cand.table.copy())
        return real(cand, **kwargs)

    monkeypatch.setattr(law, "predict_draws", spy)
    return seen


def _total_steps(cand: pd.DataFrame) -> list[int]:
    return [json.loads(s)["total"] for s in cand["schedule"]]


def test_training_runs_give_tokens_per_step(fitted_law, candidates, monkeypatch):
    assert set(fitted_law.train_runs_["tokens_per_step"]) == {4096}
    seen = _spy_on_candidates(fitted_law, monkeypatch)
    notes = []
    implicit = api.predict(fitted_law, candidates, tokens=TOKENS, random_seed=1, note=notes.append)
    explicit = api.predict(fitted_law, candidates, tokens=TOKENS, tokens_per_step=4096, random_seed=1)
    assert list(seen[0]["tokens_per_step"]) == [4096, 4096]
    assert _total_steps(seen[0]) == [2000, 2000]            # 2,000 × 4,096 tokens rescaled at 4,096 per step
    np.testing.assert_array_equal(implicit.loss, explicit.loss)
    assert notes == ["tokens per step 4096 from the model's training runs"]


def test_blank_tokens_per_step_cells_are_filled_from_training_runs(fitted_law, candidates, monkeypatch):
    seen = _spy_on_candidates(fitted_law, monkeypatch)
    notes = []
    api.predict(fitted_law, candidates.assign(tokens_per_step=[8192, np.nan]), tokens=TOKENS, note=notes.append)
    assert list(seen[0]["tokens_per_step"]) == [8192, 4096]   # the given cell kept, the blank one filled
    assert _total_steps(seen[0]) == [1000, 2000]
    assert len(notes) == 1


def test_no_note_when_tokens_per_step_is_given(fitted_law, candidates):
    notes = []
    api.predict(fitted_law, candidates.assign(tokens_per_step=4096), tokens=TOKENS, note=notes.append)
    api.predict(fitted_law, candidates, tokens=TOKENS, tokens_per_step=4096, note=notes.append)
    assert notes == []


def test_several_training_values_keep_the_error_listing_them(mixed_law, candidates):
    with pytest.raises(RunsError, match=r"several values \(2048, 4096\).*--tokens-per-step"):
        api.predict(mixed_law, candidates, tokens=TOKENS)
    # an explicit value still works with that model
    api.predict(mixed_law, candidates, tokens=TOKENS, tokens_per_step=4096)


def test_cli_says_where_tokens_per_step_came_from(saved_model, candidates, tmp_path, capsys):
    path = tmp_path / "cands.csv"
    candidates.to_csv(path, index=False)
    assert main(["rank", str(path), "--model", str(saved_model), "--tokens", str(TOKENS)]) == 0
    captured = capsys.readouterr()
    assert "note: tokens per step 4096 from the model's training runs" in captured.err.splitlines()
    assert "lin" in captured.out and "wsd" in captured.out


def test_cli_error_when_training_runs_disagree(mixed_law, candidates, tmp_path, capsys, monkeypatch):
    path = tmp_path / "cands.csv"
    candidates.to_csv(path, index=False)
    monkeypatch.setattr(api, "load", lambda _path: mixed_law)
    assert main(["rank", str(path), "--model", "any", "--tokens", str(TOKENS)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "2048, 4096" in err[0], err
