"""Unit tests for bayes_optlaws.ranking on hand-built (synthetic) PredictionDraws (no model, no sampling)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws.draws import PredictionDraws
from bayes_optlaws.ranking import (SUMMARY_COLUMNS, Ranking, best_run, expected_loss, format_table, near_ties,
                                   outcomes, rank, ranking_legend)
from bayes_optlaws.runs import RunsError

S = 2000


def draws(losses, p_div=None, noisy=None, diverged_loss=10.0, names=None, p_unst=None,
          excess=0.0) -> PredictionDraws:
    """Synthetic draws from per-candidate loss arrays (S,) or constants; p_div / p_unst per candidate (constant
    over draws)."""
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
    pu = None if p_unst is None else np.tile(np.asarray(p_unst, float), (loss.shape[0], 1))
    return PredictionDraws(names, loss, loss.copy() if noisy is None else noisy, p, diverged_loss, pu, excess)


def row(r: Ranking, name: str) -> pd.Series:
    return r.table.set_index("name").loc[name]


# ---------------------------------------------------------------------------- p_best
def test_exact_ties_go_to_the_candidate_listed_first():
    loss = np.array([[1.0, 1.0, 2.0],
                     [3.0, 1.0, 2.0],
                     [0.5, 0.5, 0.5],
                     [2.0, 3.0, 1.0]])
    d = PredictionDraws(list("ABC"), loss, loss.copy(), np.zeros_like(loss), 10.0)
    best = best_run(loss, outcomes(d))
    np.testing.assert_allclose(best.p_best, [2 / 4, 1 / 4, 1 / 4])
    assert best.expected_min == pytest.approx((1.0 + 1.0 + 0.5 + 1.0) / 4)
    assert best.p_all_diverge == 0.0


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


def test_identical_candidates_tie_to_the_first_listed_and_are_a_near_tie():
    rng = np.random.default_rng(2)
    base = 2.0 + 0.1 * rng.standard_normal(S)
    r = rank(draws([base, base.copy(), base + 1.0]))
    assert row(r, "A")["p_best"] == 1.0 and row(r, "B")["p_best"] == 0.0
    assert row(r, "A")["expected_regret"] == 0.0 and row(r, "B")["expected_regret"] == 0.0
    assert r.near_ties[0]["near_tie"] and {r.near_ties[0]["a"], r.near_ties[0]["b"]} == {"A", "B"}


# ---------------------------------------------------------------------------- divergence
def test_certain_divergence_is_never_best():
    r = rank(draws([2.0, 3.0], p_div=[1.0, 0.0], diverged_loss=10.0))
    assert row(r, "A")["p_best"] == 0.0
    assert row(r, "B")["p_best"] == 1.0
    assert row(r, "A")["p_diverge"] == 1.0
    assert row(r, "A")["expected_regret"] == pytest.approx(7.0)
    assert r.picks["by_p_best"] == "B"


def test_certain_divergence_is_never_best_even_when_diverged_loss_is_low():
    # diverged_loss below the other candidate's loss: A is charged 2.5 (a fixed number, not the largest loss
    # drawn), so it has the lower expected loss and the first row, yet it is never best; its regret is negative,
    # as documented (E[loss] minus the loss of the best run that trained)
    r = rank(draws([2.0, 3.0], p_div=[1.0, 0.0], diverged_loss=2.5))
    assert row(r, "A")["p_best"] == 0.0
    assert row(r, "B")["p_best"] == 1.0
    assert row(r, "A")["expected_loss"] == 2.5
    assert r.picks["by_expected_loss"] == "A" and r.picks["by_p_best"] == "B"
    assert row(r, "B")["expected_regret"] == 0.0
    assert row(r, "A")["expected_regret"] == pytest.approx(-0.5)
    assert "pick by P(best): B" in format_table(r) and "differs" in format_table(r)


def test_partial_divergence_probability_is_exact():
    r = rank(draws([2.0, 2.5], p_div=[0.3, 0.0], diverged_loss=6.0), random_seed=3)
    a = row(r, "A")
    # A is best exactly when it does not diverge
    assert a["p_best"] == pytest.approx(0.7, abs=1e-12)
    assert row(r, "B")["p_best"] == pytest.approx(0.3, abs=1e-12)
    assert a["p_diverge"] == pytest.approx(0.3)
    # loss_mean and quantiles describe a normal run; expected_loss folds in the risk
    assert a["loss_mean"] == 2.0 and a["loss_q95"] == 2.0
    assert a["expected_loss"] == pytest.approx(0.7 * 2.0 + 0.3 * 6.0, abs=1e-12)
    # E[best run] = 0.7 * 2.0 + 0.3 * 2.5
    assert a["expected_regret"] == pytest.approx(0.7 * 2.0 + 0.3 * 6.0 - (0.7 * 2.0 + 0.3 * 2.5), abs=1e-12)
    assert row(r, "B")["expected_regret"] == pytest.approx(2.5 - (0.7 * 2.0 + 0.3 * 2.5), abs=1e-12)


def test_expected_loss_does_not_depend_on_other_candidates():
    # the old convention charged a diverged draw the largest loss drawn for any candidate
    base = draws([2.0, 2.5], p_div=[0.1, 0.0], diverged_loss=4.0)
    more = draws([2.0, 2.5, 30.0], p_div=[0.1, 0.0, 0.5], diverged_loss=4.0)
    e_base, e_more = row(rank(base), "A")["expected_loss"], row(rank(more), "A")["expected_loss"]
    assert e_base == e_more == pytest.approx(0.9 * 2.0 + 0.1 * 4.0)


def test_pick_by_expected_loss_accounts_for_divergence():
    r = rank(draws([2.0, 2.5], p_div=[0.5, 0.0], diverged_loss=6.0))
    assert r.picks["by_expected_loss"] == "B"
    assert r.table["name"].iloc[0] == "B"
    # A is best whenever it trains (half the draws), B otherwise: equal P(best), the first row wins the tie
    assert row(r, "A")["p_best"] == pytest.approx(0.5) and row(r, "B")["p_best"] == pytest.approx(0.5)
    assert r.picks["by_p_best"] == "B"


def test_pick_by_p_best_can_differ_from_first_row_and_output_says_so():
    # A: a little better than B in 80 % of the draws, much worse in the rest: higher P(best), higher expected loss
    rng = np.random.default_rng(7)
    b = 2.0 + 0.001 * rng.standard_normal(S)
    a = np.where(rng.random(S) < 0.8, b - 0.01, b + 0.5)
    r = rank(draws([a, b]))
    assert r.table["name"].iloc[0] == "B" == r.picks["by_expected_loss"]
    assert r.picks["by_p_best"] == "A"
    assert row(r, "A")["p_best"] == pytest.approx(np.mean(a < b))
    text = format_table(r)
    assert "pick by expected loss: B (the first row)" in text
    assert "pick by P(best): A" in text and "differs from the pick by expected loss" in text


def test_unstable_outcome_exact_quantities():
    # A: 2.0 normally, 3.0 when unstable (p 0.5); B always 2.5: each best in half the draws
    r = rank(draws([2.0, 2.5], p_unst=[0.5, 0.0], excess=1.0))
    a, b = row(r, "A"), row(r, "B")
    assert a["p_best"] == pytest.approx(0.5) and b["p_best"] == pytest.approx(0.5)
    assert a["p_unstable"] == 0.5 and b["p_unstable"] == 0.0
    assert a["expected_loss"] == pytest.approx(2.5)
    assert a["expected_regret"] == pytest.approx(2.5 - (0.5 * 2.0 + 0.5 * 2.5))
    assert r.unstable_excess == 1.0 and "P(unst)" in format_table(r)


def test_unstable_outcome_does_not_compete_with_its_own_normal_outcome():
    # excess 0: A's two outcomes have the same value; A still wins the exact tie with B (listed first)
    r = rank(draws([2.0, 2.0], p_unst=[0.5, 0.5], excess=0.0))
    assert row(r, "A")["p_best"] == 1.0 and row(r, "B")["p_best"] == 0.0


def test_unstable_and_divergence_together_match_hand_computation():
    # A: 1.0 (p .5), 1.0 + 2 = 3.0 unstable (p .3), diverged (p .2); B: 2.0 (p .9), diverged (p .1); D = 5
    r = rank(draws([1.0, 2.0], p_div=[0.2, 0.1], p_unst=[0.3, 0.0], excess=2.0, diverged_loss=5.0))
    pa = 0.5 + 0.3 * 0.1   # normal, or unstable while B diverges
    pb = 0.9 * 0.5          # B trains and A is unstable or diverged
    assert row(r, "A")["p_best"] == pytest.approx(pa)
    assert row(r, "B")["p_best"] == pytest.approx(pb)
    assert r.table["p_best"].sum() == pytest.approx(1 - 0.2 * 0.1)
    e_min = 0.5 * 1.0 + 0.3 * 0.1 * 3.0 + 0.9 * 0.5 * 2.0 + 0.2 * 0.1 * 5.0
    assert row(r, "A")["expected_loss"] == pytest.approx(0.5 * 1.0 + 0.3 * 3.0 + 0.2 * 5.0)
    assert row(r, "A")["expected_regret"] == pytest.approx(0.5 + 0.9 + 1.0 - e_min)


def test_a_per_draw_excess_equal_everywhere_ranks_as_the_fixed_one():
    fixed = draws([1.0, 2.0], p_div=[0.2, 0.1], p_unst=[0.3, 0.2], excess=2.0, diverged_loss=5.0)
    per_draw = draws([1.0, 2.0], p_div=[0.2, 0.1], p_unst=[0.3, 0.2], excess=np.full((S, 2), 2.0),
                     diverged_loss=5.0)
    a, b = rank(fixed), rank(per_draw)
    cols = ["name", "expected_loss", "p_best", "p_best_noisy", "expected_regret", "unstable_excess"]
    pd.testing.assert_frame_equal(a.table[cols], b.table[cols])
    assert a.unstable_excess == 2.0 and np.isnan(b.unstable_excess)  # per candidate: in the table's column
    assert "an unstable run +2 to +2 nats (by candidate)" in ranking_legend(b)


def test_per_draw_excess_matches_hand_computation():
    # A: 1.0 normally (p .5), unstable (p .5) at 1.0 + 0.5 in half the draws and 1.0 + 3.0 in the others;
    # B always 2.0: A's unstable outcome beats B only in the first half
    excess = np.column_stack([np.where(np.arange(S) < S // 2, 0.5, 3.0), np.zeros(S)])
    r = rank(draws([1.0, 2.0], p_unst=[0.5, 0.0], excess=excess))
    assert row(r, "A")["p_best"] == pytest.approx(0.5 + 0.5 * 0.5)
    assert row(r, "A")["expected_loss"] == pytest.approx(1.0 + 0.5 * (0.5 * 0.5 + 0.5 * 3.0))
    assert row(r, "A")["unstable_excess"] == pytest.approx(1.75)
    assert r.to_dict()["unstable_excess"] is None
    sub = draws([1.0, 2.0], p_unst=[0.5, 0.0], excess=excess).subset([0])
    np.testing.assert_array_equal(sub.unstable_excess, excess[:, :1])


def test_bad_draws_give_one_clear_error_naming_the_candidate():
    with pytest.raises(RunsError, match="'B'.*p_diverge \\+ p_unstable > 1"):
        rank(draws([2.0, 2.5], p_div=[0.1, 0.6], p_unst=[0.0, 0.5]))
    with pytest.raises(RunsError, match="p_diverge of candidate 'A' is not a probability"):
        rank(draws([2.0, 2.5], p_div=[1.5, 0.0]))
    bad = draws([2.0, 2.5])
    bad.loss[3, 1] = np.inf
    with pytest.raises(RunsError, match="candidate 'B' has a non-finite loss in 1 draws"):
        rank(bad)
    with pytest.raises(RunsError, match="unstable_excess"):
        rank(draws([2.0, 2.5], p_unst=[0.1, 0.0], excess=-1.0))
    negative = np.zeros((S, 2))
    negative[5, 1] = -0.1
    with pytest.raises(RunsError, match="'B' has a negative unstable_excess in 1 draws"):
        rank(draws([2.0, 2.5], p_unst=[0.1, 0.0], excess=negative))
    with pytest.raises(RunsError, match="unstable_excess has shape"):
        rank(draws([2.0, 2.5], p_unst=[0.1, 0.0], excess=np.zeros((S, 3))))


def test_expected_loss_formula():
    d = draws([2.0, 3.0], p_div=[0.25, 0.0], p_unst=[0.5, 0.1], excess=0.4, diverged_loss=7.0)
    np.testing.assert_allclose(expected_loss(d.loss, outcomes(d)),
                               [0.75 * 2.0 + 0.5 * 0.4 + 0.25 * 7.0, 3.0 + 0.1 * 0.4])
    # unknown P(diverge) and no unstable outcome count as probability zero
    d = draws([2.0, 3.0], p_div=np.nan)
    np.testing.assert_array_equal(expected_loss(d.loss, outcomes(d)), [2.0, 3.0])


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
    assert "top two (rows 1 and 2) differ" in format_table(r)


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
        assert all(isinstance(c[k], float) for k in required - {"name", "p_unstable", "unstable_excess"})
    b = next(c for c in d["candidates"] if c["name"] == "B")
    assert b["p_diverge"] == pytest.approx(0.1) and b["loss_mean"] == pytest.approx(2.1)
    assert d["picks"]["by_p_best"] == r.table["name"].iloc[int(r.table["p_best"].to_numpy().argmax())]
    assert d["picks"]["by_expected_loss"] == r.table["name"].iloc[0]
    assert d["delta"] == 0.005 and d["diverged_loss"] == 4.0
    assert all(c["p_unstable"] is None for c in d["candidates"])  # the draws have no unstable outcome
    assert all(c["unstable_excess"] is None for c in d["candidates"])
    assert all({"a", "b", "p_within_delta", "near_tie"} <= set(t) for t in d["near_ties"])


def test_format_table_contains_every_name_and_pick():
    names = ["linear-3e-3", "cosine-1e-3", "wsd-1-sqrt", "polygon"]
    r = rank(draws([2.3, 2.1, 2.2, 2.4], names=names))
    text = format_table(r)
    for n in names:
        assert n in text
    lines = text.splitlines()
    assert lines[1].split()[:2] == ["1", "cosine-1e-3"]
    assert "pick by expected loss: cosine-1e-3 (the first row)" in text
    assert "risk-aware pick" in text


def test_rank_is_reproducible_and_sampling_free():
    d = draws([2.0, 2.05], p_div=[0.4, 0.3], diverged_loss=3.0)
    pd.testing.assert_frame_equal(rank(d, random_seed=1).table, rank(d, random_seed=1).table)
    pd.testing.assert_frame_equal(rank(d, random_seed=1).table, rank(d, random_seed=2).table)


# ---------------------------------------------------------------------------- optimize uses the same quantities
def test_optimize_short_list_agrees_with_rank_on_the_same_candidates(fitted_law):
    """The search's short list (fitted on the SYNTHETIC grid of conftest) is ranked as ``rank`` ranks it."""
    from bayes_optlaws.api import rank_candidates
    from bayes_optlaws.optimize import optimize

    target = {"model_params": 80_000, "tokens_per_step": 4096}
    scored, ranking = optimize(fitted_law, tokens=400 * 4096, top_k=3, random_seed=0, **target)
    short = ranking.table["name"].tolist()
    assert (np.diff(scored["expected_loss"].to_numpy()) >= 0).all()  # scored by the ranking's expected loss
    assert set(scored["name"].head(3)) <= set(short)
    # the per-candidate figures of the search are those of the ranking
    s, t = scored.set_index("name").loc[short], ranking.table.set_index("name").loc[short]
    for col in ("expected_loss", "loss_mean", "loss_q90", "p_diverge"):
        np.testing.assert_allclose(s[col].to_numpy(), t[col].to_numpy(), rtol=1e-12, err_msg=col)
    # ranking the short list's schedules with rank gives the same order, expected loss and P(best)
    cands = scored.loc[scored["name"].isin(short), ["name", "schedule"]]
    again = rank_candidates(fitted_law, cands, random_seed=0, **target)
    assert again.table["name"].tolist() == short
    a = again.table.set_index("name").loc[short]
    for col in ("expected_loss", "p_best", "expected_regret", "p_diverge"):
        np.testing.assert_allclose(a[col].to_numpy(), t[col].to_numpy(), rtol=1e-9, atol=1e-12, err_msg=col)
    assert again.picks["by_expected_loss"] == ranking.picks["by_expected_loss"]
    assert again.picks["by_p_best"] == ranking.picks["by_p_best"]


def test_extrapolation_factors_reach_the_table_the_json_and_the_printout():
    """SYNTHETIC draws with extrapolation factors attached (as BayesOptLaw.predict_draws does)."""
    from bayes_optlaws.draws import PredictionDraws
    from bayes_optlaws.ranking import format_table, rank

    rng = np.random.default_rng(0)
    loss = 2.0 + rng.normal(0, 0.01, (200, 2)) + np.array([0.0, 0.1])
    extrap = {"extrap_N": np.array([1.0, 8.0]), "extrap_D": np.ones(2), "extrap_lr": np.ones(2),
              "extrap_tps": np.ones(2), "extrap_max": np.array([1.0, 8.0])}
    r = rank(PredictionDraws(["near", "far"], loss, loss, np.zeros((200, 2)), 3.0, extrapolation=extrap))
    assert r.table.set_index("name").loc["far", "extrap_N"] == 8.0
    assert {c["name"]: c["extrap_max"] for c in r.to_dict()["candidates"]} == {"near": 1.0, "far": 8.0}
    assert "model size up to 8x" in format_table(r)


# ---------------------------------------------------------------------------- the partial sort of the sweep
def _full_sort_best_run(loss, out, monkeypatch):
    """best_run with the partial sort switched off (every draw swept over all its outcomes)."""
    import bayes_optlaws.ranking as ranking_module

    with monkeypatch.context() as m:
        m.setattr(ranking_module, "PARTIAL_SORT", ())
        return best_run(loss, out)


@pytest.mark.parametrize("case", ["binary", "unstable", "never_diverges", "ties_at_the_cut"])
def test_partial_sort_sweep_equals_the_full_sweep(case, monkeypatch):
    """Synthetic draws with enough candidates (600) that the partial sort decides most draws: P(best), E[min]
    and P(all diverge) equal the full sweep's, including a candidate that never diverges (a zero factor) and
    rows whose 256th and 257th lowest losses tie (sent to the full sort)."""
    rng = np.random.default_rng(3)
    n_draws, n_cands = 300, 600
    loss = rng.normal(2.0, 0.2, (n_draws, n_cands))
    p_div = rng.uniform(0.0, 1.0, (n_draws, n_cands)) ** 3  # most factors small: draws decided early
    p_unst = None
    if case == "unstable":
        p_unst = rng.uniform(0.0, 1.0, (n_draws, n_cands)) * (1.0 - p_div) * 0.5
    if case == "never_diverges":
        p_div[:, 17] = 0.0
    if case == "ties_at_the_cut":
        loss = np.round(loss, 2)  # many equal values, some at the cut
    d = PredictionDraws([f"c{i}" for i in range(n_cands)], loss, loss.copy(), p_div, 3.2, p_unst,
                        0.4 if p_unst is not None else 0.0)
    out = outcomes(d)
    fast, full = best_run(loss, out), _full_sort_best_run(loss, out, monkeypatch)
    np.testing.assert_allclose(fast.p_best, full.p_best, rtol=0, atol=1e-14)
    np.testing.assert_allclose(fast.min_per_draw, full.min_per_draw, rtol=0, atol=1e-13)
    assert fast.p_all_diverge == pytest.approx(full.p_all_diverge, abs=1e-15)
    assert fast.p_best.sum() == pytest.approx(1.0 - full.p_all_diverge)


def test_partial_sort_falls_back_when_survival_stays_high(monkeypatch):
    """Synthetic draws where every candidate almost surely diverges (survival factor 0.999): no draw is decided
    by its lowest outcomes, so the result is the full sweep's exactly."""
    rng = np.random.default_rng(4)
    loss = rng.normal(2.0, 0.2, (50, 700))
    d = PredictionDraws([f"c{i}" for i in range(700)], loss, loss.copy(), np.full_like(loss, 0.999), 3.2)
    out = outcomes(d)
    fast, full = best_run(loss, out), _full_sort_best_run(loss, out, monkeypatch)
    np.testing.assert_array_equal(fast.p_best, full.p_best)
    np.testing.assert_array_equal(fast.min_per_draw, full.min_per_draw)


def test_table_explains_a_mean_outside_its_own_interval():
    """97 % of A's draws held at a ceiling, 3 % far below: its mean lies below its 5 % quantile, which the table
    says in words; a row with an ordinary spread gets no such line."""
    S = 4000
    rng = np.random.default_rng(3)
    a = np.where(np.arange(S) < int(0.97 * S), 3.2873, 2.9)
    b = 2.0 + 0.01 * rng.standard_normal(S)
    r = rank(draws([a, b]))
    assert row(r, "A")["loss_mean"] < row(r, "A")["loss_q05"]
    text = format_table(r)
    assert "row 2 (A): mean 3.2757 is below its 90% interval [3.2873, 3.2873]" in text
    assert "95% of its draws lie above the mean" in text
    assert "(B):" not in text


@pytest.mark.parametrize("kwargs, message", [({"delta": float("nan")}, "delta"), ({"delta": -1.0}, "delta"),
                                             ({"max_p_diverge": float("nan")}, "max_p_diverge"),
                                             ({"max_p_diverge": 1.5}, "max_p_diverge"), ({"top_k": 0}, "top_k")])
def test_rank_settings_that_cannot_mean_anything_are_errors(kwargs, message):
    from bayes_optlaws.ranking import check_rank_settings

    with pytest.raises(RunsError, match=message):
        check_rank_settings(**kwargs)
    check_rank_settings(None, 0.05, 3)  # the defaults pass
    check_rank_settings(0.01, 0.0, 1)
