"""Unit tests for bayes_optlaws.ranking on hand-built PredictionDraws (no model, no sampling)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws.optlaw import PredictionDraws
from bayes_optlaws.ranking import SUMMARY_COLUMNS, Ranking, format_table, near_ties, p_best, rank, realised_losses

S = 2000


def draws(losses, p_div=None, noisy=None, diverged_loss=10.0, names=None) -> PredictionDraws:
    """Draws from per-candidate loss arrays (S,) or constants; p_div per candidate (constant over draws)."""
    cols = [np.full(S, float(v)) if np.ndim(v) == 0 else np.asarray(v, float) for v in losses]
    loss = np.column_stack(cols)
    c = loss.shape[1]
    names = names or [chr(ord("A") + i) for i in range(c)]
    if p_div is None:
        p = np.zeros_like(loss)
    elif np.isscalar(p_div) and np.isnan(p_div):
        p = np.full_like(loss, np.nan)
    else:
        p = np.tile(np.asarray(p_div, float), (loss.shape[0], 1))
    return PredictionDraws(names, loss, loss.copy() if noisy is None else noisy, p, diverged_loss)


def row(r: Ranking, name: str) -> pd.Series:
    return r.table.set_index("name").loc[name]


# ---------------------------------------------------------------------------- p_best
def test_p_best_splits_ties_and_sums_to_one():
    realised = np.array([[1.0, 1.0, 2.0],
                         [3.0, 1.0, 2.0],
                         [0.5, 0.5, 0.5],
                         [2.0, 3.0, 1.0]])
    pb = p_best(realised)
    np.testing.assert_allclose(pb, [(0.5 + 0 + 1 / 3 + 0) / 4, (0.5 + 1 + 1 / 3 + 0) / 4, (0 + 0 + 1 / 3 + 1) / 4])
    assert pb.sum() == pytest.approx(1.0)


def test_rank_deterministic_order_regret_and_p_best():
    r = rank(draws([2.2, 2.0, 2.1]))
    assert r.table["name"].tolist() == ["B", "C", "A"]
    assert r.table["rank"].tolist() == [1, 2, 3]
    assert r.table["p_best"].tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(r.table["expected_regret"], [0.0, 0.1, 0.2], atol=1e-12)
    np.testing.assert_allclose(r.table["loss_mean"], [2.0, 2.1, 2.2])
    assert r.picks["by_p_best"] == "B" and r.picks["by_expected_loss"] == "B"


def test_rank_random_draws_p_best_sums_to_one_and_matches_counts():
    rng = np.random.default_rng(0)
    loss = [2.0 + 0.05 * rng.standard_normal(S), 2.02 + 0.05 * rng.standard_normal(S),
            2.5 + 0.01 * rng.standard_normal(S)]
    d = draws(loss, noisy=np.column_stack(loss) + 0.03 * rng.standard_normal((S, 3)))
    r = rank(d)
    assert r.table["p_best"].sum() == pytest.approx(1.0)
    assert r.table["p_best_noisy"].sum() == pytest.approx(1.0)
    L = d.loss
    expected = np.bincount(L.argmin(axis=1), minlength=3) / S
    assert row(r, "A")["p_best"] == pytest.approx(expected[0])
    assert row(r, "B")["p_best"] == pytest.approx(expected[1])
    assert row(r, "C")["p_best"] == 0.0
    assert row(r, "A")["p_best"] > row(r, "B")["p_best"] > 0.2
    # regret is E[loss - min loss] over draws
    assert row(r, "C")["expected_regret"] == pytest.approx(float(np.mean(L[:, 2] - L.min(axis=1))))
    assert d.n_samples == S


def test_dominant_candidate_has_zero_regret_and_p_best_one():
    rng = np.random.default_rng(1)
    base = 2.0 + 0.1 * rng.standard_normal(S)
    r = rank(draws([base, base + 0.01, base + 0.3]))  # A is lower than every other in every draw
    a = row(r, "A")
    assert a["expected_regret"] == 0.0
    assert a["p_best"] == 1.0
    assert row(r, "B")["expected_regret"] == pytest.approx(0.01)
    assert r.table["name"].iloc[0] == "A"


def test_identical_candidates_split_p_best_evenly():
    rng = np.random.default_rng(2)
    base = 2.0 + 0.1 * rng.standard_normal(S)
    r = rank(draws([base, base.copy(), base + 1.0]))
    assert row(r, "A")["p_best"] == pytest.approx(0.5)
    assert row(r, "B")["p_best"] == pytest.approx(0.5)
    assert row(r, "A")["expected_regret"] == 0.0


# ---------------------------------------------------------------------------- divergence
def test_certain_divergence_is_never_best():
    r = rank(draws([2.0, 3.0], p_div=[1.0, 0.0], diverged_loss=10.0))
    assert row(r, "A")["p_best"] == 0.0
    assert row(r, "B")["p_best"] == 1.0
    assert row(r, "A")["p_diverge"] == 1.0
    assert row(r, "A")["expected_regret"] == pytest.approx(7.0)
    assert r.picks["by_p_best"] == "B"


def test_certain_divergence_is_never_best_even_when_diverged_loss_is_low():
    # diverged_loss below the other candidate's loss: a diverged draw counts at the largest loss seen,
    # which must still be worse than (not tied with) a run that trained
    r = rank(draws([2.0, 3.0], p_div=[1.0, 0.0], diverged_loss=2.5))
    assert row(r, "A")["p_best"] == 0.0
    assert row(r, "B")["p_best"] == 1.0
    assert r.picks["by_p_best"] == "B"
    assert row(r, "B")["expected_regret"] == 0.0


def test_partial_divergence_probability():
    r = rank(draws([2.0, 2.5], p_div=[0.3, 0.0], diverged_loss=6.0), random_seed=3)
    a = row(r, "A")
    # A is best exactly in the draws where it does not diverge
    assert a["p_best"] == pytest.approx(0.7, abs=0.04)
    assert a["p_best"] + row(r, "B")["p_best"] == pytest.approx(1.0)
    assert a["p_diverge"] == pytest.approx(0.3)
    # loss_mean and quantiles describe a normal run; expected_loss folds in the risk
    assert a["loss_mean"] == 2.0 and a["loss_q95"] == 2.0
    assert a["expected_loss"] == pytest.approx(0.7 * 2.0 + 0.3 * 6.0, abs=0.15)
    assert a["expected_regret"] == pytest.approx(0.3 * (6.0 - 2.5), abs=0.15)


def test_pick_by_expected_loss_accounts_for_divergence():
    r = rank(draws([2.0, 2.5], p_div=[0.5, 0.0], diverged_loss=6.0))
    assert r.picks["by_expected_loss"] == "B"
    assert r.picks["by_p_best"] == "B"


def test_realised_losses_conventions():
    d = draws([2.0, 3.0], p_div=[1.0, 0.0], diverged_loss=7.0)
    out = realised_losses(d, np.random.default_rng(0))
    np.testing.assert_allclose(out[:, 0], 7.0, rtol=1e-15)
    assert np.all(out[:, 0] >= 7.0) and np.all(out[:, 1] == 3.0)
    # a diverged draw is strictly worse than the worst trained run, even when diverged_loss is lower
    d = draws([2.0, 3.0], p_div=[1.0, 0.0], diverged_loss=1.0)
    out = realised_losses(d, np.random.default_rng(0))
    assert np.all(out[:, 0] > 3.0) and out[0, 0] == pytest.approx(3.0)
    # unknown P(diverge) (NaN everywhere): losses pass through unchanged
    d = draws([2.0, 3.0], p_div=np.nan)
    np.testing.assert_array_equal(realised_losses(d, np.random.default_rng(0)), d.loss)
    # noisy draws are used when asked
    d = draws([2.0, 3.0], noisy=np.column_stack([np.full(S, 2.5), np.full(S, 2.6)]))
    np.testing.assert_array_equal(realised_losses(d, np.random.default_rng(0), noisy=True)[0], [2.5, 2.6])


def test_unknown_p_diverge_is_reported_as_nan():
    r = rank(draws([2.0, 2.1], p_div=np.nan))
    assert r.table["p_diverge"].isna().all()
    assert r.picks["risk_aware"] == "A"  # unknown risk does not exclude a candidate
    assert row(r, "A")["p_best"] == 1.0
    assert "n/a" in format_table(r)
    assert json.loads(json.dumps(r.to_dict()))["candidates"][0]["p_diverge"] is None


# ---------------------------------------------------------------------------- quantiles
def test_quantile_columns_use_noisy_draws():
    grid = np.linspace(0.0, 1.0, S)
    noisy = np.column_stack([2.0 + grid, 3.0 + 2 * grid])
    r = rank(draws([2.5, 4.0], noisy=noisy))
    for name, col in (("A", 0), ("B", 1)):
        for q, key in ((0.05, "loss_q05"), (0.5, "loss_q50"), (0.9, "loss_q90"), (0.95, "loss_q95")):
            assert row(r, name)[key] == pytest.approx(np.quantile(noisy[:, col], q))
    assert row(r, "A")["loss_q05"] == pytest.approx(2.05)
    assert row(r, "B")["loss_q95"] == pytest.approx(4.9)
    assert row(r, "A")["loss_mean"] == 2.5  # the mean uses the expected-loss draws


# ---------------------------------------------------------------------------- near-ties
def test_identical_candidates_are_a_near_tie():
    rng = np.random.default_rng(4)
    base = 2.0 + 0.1 * rng.standard_normal(S)
    r = rank(draws([base, base.copy(), base + 1.0]), delta=0.001)
    pair = next(t for t in r.near_ties if {t["a"], t["b"]} == {"A", "B"})
    assert pair["p_within_delta"] == 1.0
    assert pair["near_tie"] is True
    assert pair["p_a_better"] == 0.0 and pair["mean_diff"] == 0.0
    assert pair["delta"] == 0.001
    far = [t for t in r.near_ties if "C" in (t["a"], t["b"])]
    assert len(far) == 2
    assert all(t["p_within_delta"] == 0.0 and t["near_tie"] is False for t in far)
    assert r.delta == 0.001
    assert "near-tie: " in format_table(r)


def test_far_apart_candidates_are_not_a_near_tie():
    r = rank(draws([2.0, 2.1]))
    assert r.delta == 0.005  # default
    assert len(r.near_ties) == 1
    t = r.near_ties[0]
    assert (t["a"], t["b"]) == ("A", "B")
    assert t["p_within_delta"] == 0.0 and t["near_tie"] is False
    assert t["p_a_better"] == 1.0 and t["mean_diff"] == pytest.approx(-0.1)
    assert "top two differ" in format_table(r)


def test_near_tie_threshold_and_partial_overlap():
    rng = np.random.default_rng(5)
    a = 2.0 + 0.01 * rng.standard_normal(S)
    b = a + rng.uniform(-0.02, 0.02, S)  # |Δ| < 0.005 in about a quarter of the draws
    ties = near_ties(np.column_stack([a, b]), ["a", "b"], np.array([0, 1]), delta=0.005)
    assert ties[0]["p_within_delta"] == pytest.approx(0.25, abs=0.04)
    assert ties[0]["near_tie"] is False
    ties = near_ties(np.column_stack([a, b]), ["a", "b"], np.array([0, 1]), delta=0.015)
    assert ties[0]["p_within_delta"] == pytest.approx(0.75, abs=0.04)
    assert ties[0]["near_tie"] is True


def test_near_ties_only_among_top_k():
    r = rank(draws([2.0, 2.1, 2.2, 2.3, 2.4]), top_k=3)
    assert len(r.near_ties) == 3
    assert {n for t in r.near_ties for n in (t["a"], t["b"])} == {"A", "B", "C"}
    r = rank(draws([2.0, 2.1, 2.2, 2.3, 2.4]), top_k=2)
    assert len(r.near_ties) == 1


# ---------------------------------------------------------------------------- risk-aware pick
def test_risk_aware_pick_excludes_risky_candidates():
    r = rank(draws([2.0, 2.1, 2.2], p_div=[0.2, 0.04, 0.0], diverged_loss=5.0), max_p_diverge=0.05)
    assert r.picks["risk_aware"] == "B"
    assert "P(diverge) <= 0.05" in r.picks["risk_aware_rule"]
    r = rank(draws([2.0, 2.1, 2.2], p_div=[0.2, 0.04, 0.0], diverged_loss=5.0), max_p_diverge=0.01)
    assert r.picks["risk_aware"] == "C"
    r = rank(draws([2.0, 2.1, 2.2], p_div=[0.2, 0.04, 0.0], diverged_loss=5.0), max_p_diverge=0.5)
    assert r.picks["risk_aware"] == "A"


def test_risk_aware_pick_uses_90th_percentile():
    # A has the lower mean but a long upper tail; B is safer at the 90th percentile
    grid = np.linspace(0, 1, S)
    noisy = np.column_stack([2.0 + 0.5 * grid**4, np.full(S, 2.1)])
    r = rank(draws([2.0, 2.1], noisy=noisy))
    assert row(r, "A")["loss_q90"] > 2.1
    assert r.picks["risk_aware"] == "B"
    assert r.picks["by_expected_loss"] == "A"


def test_risk_aware_pick_none_when_all_risky():
    r = rank(draws([2.0, 2.1], p_div=[0.5, 0.9]), max_p_diverge=0.05)
    assert r.picks["risk_aware"] is None
    assert "no candidate" in r.picks["risk_aware_rule"]
    assert "None" in format_table(r)


# ---------------------------------------------------------------------------- output
def test_to_dict_is_json_serialisable_with_expected_keys():
    r = rank(draws([2.0, 2.1, 2.0 + 0.001 * np.arange(S) / S], p_div=[0.0, 0.1, 0.0], diverged_loss=4.0))
    d = json.loads(json.dumps(r.to_dict()))
    assert set(d) >= {"candidates", "near_ties", "picks"}
    assert [c["name"] for c in d["candidates"]] == r.table["name"].tolist()
    required = set(SUMMARY_COLUMNS) | {"name", "loss_mean", "loss_q05", "loss_q50", "loss_q95", "p_diverge",
                                       "p_best", "expected_regret"}
    for c in d["candidates"]:
        assert required <= set(c)
        assert all(isinstance(c[k], float) for k in required - {"name"})
    b = next(c for c in d["candidates"] if c["name"] == "B")
    assert b["p_diverge"] == pytest.approx(0.1) and b["loss_mean"] == pytest.approx(2.1)
    assert d["picks"]["by_p_best"] == r.table["name"].iloc[0]
    assert d["delta"] == 0.005
    assert all({"a", "b", "p_within_delta", "near_tie"} <= set(t) for t in d["near_ties"])


def test_format_table_contains_every_name_and_pick():
    names = ["linear-3e-3", "cosine-1e-3", "wsd-1-sqrt", "polygon"]
    r = rank(draws([2.3, 2.1, 2.2, 2.4], names=names))
    text = format_table(r)
    for n in names:
        assert n in text
    lines = text.splitlines()
    assert lines[1].split()[:2] == ["1", "cosine-1e-3"]
    assert "pick by expected loss: cosine-1e-3" in text
    assert "risk-aware pick" in text


def test_rank_is_reproducible_given_seed():
    d = draws([2.0, 2.05], p_div=[0.4, 0.3], diverged_loss=3.0)
    pd.testing.assert_frame_equal(rank(d, random_seed=1).table, rank(d, random_seed=1).table)
