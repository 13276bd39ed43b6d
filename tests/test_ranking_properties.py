"""Properties of the exact ranking quantities, checked by hypothesis on SYNTHETIC PredictionDraws.

Every draw set here is made up (random losses and outcome probabilities, with exact 0 / 1 probabilities and tied
losses on purpose); nothing comes from a fitted model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bayes_optlaws.draws import PredictionDraws
from bayes_optlaws.ranking import rank

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)
# a few repeated values so that exact ties and probabilities of exactly 0 and 1 occur often
LOSS = st.one_of(st.sampled_from([1.5, 2.0, 2.5]), st.floats(1.0, 4.0, allow_nan=False, width=64))
PROB = st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0.0, 1.0, allow_nan=False, width=64))


@st.composite
def synthetic_draws(draw, max_draws: int = 12, max_candidates: int = 5, unstable: bool | None = None):
    """Synthetic PredictionDraws: S × C losses, P(diverge) and (optionally) P(unstable) with p_div + p_unst ≤ 1."""
    S = draw(st.integers(1, max_draws))
    C = draw(st.integers(1, max_candidates))
    loss = draw(hnp.arrays(np.float64, (S, C), elements=LOSS))
    noise = draw(hnp.arrays(np.float64, (S, C), elements=st.floats(-0.2, 0.2, width=64)))
    p_div = draw(hnp.arrays(np.float64, (S, C), elements=PROB))
    with_unstable = draw(st.booleans()) if unstable is None else unstable
    p_unst, excess = None, 0.0
    if with_unstable:
        share = draw(hnp.arrays(np.float64, (S, C), elements=PROB))
        p_unst = (1.0 - p_div) * share
        excess = draw(st.sampled_from([0.0, 0.3, 1.0]))
    diverged_loss = draw(st.sampled_from([3.0, 5.0]))
    names = [f"cand{i}" for i in range(C)]
    return PredictionDraws(names, loss, loss + noise, p_div, diverged_loss, p_unst, excess)


def with_extra(d: PredictionDraws, loss: np.ndarray, p_div: np.ndarray, at: int) -> PredictionDraws:
    """``d`` with one more candidate ("extra", the given loss / P(diverge) columns) inserted at position ``at``."""
    ins = lambda a, col: np.insert(a, at, col, axis=1)  # noqa: E731
    p_unst = None if d.p_unstable is None else ins(d.p_unstable, np.zeros(d.n_samples))
    return PredictionDraws(d.names[:at] + ["extra"] + d.names[at:], ins(d.loss, loss), ins(d.loss_noisy, loss),
                           ins(d.p_diverge, p_div), d.diverged_loss, p_unst, d.unstable_excess)


def others(r, names) -> pd.DataFrame:
    t = r.table[r.table["name"].isin(names)].reset_index(drop=True)
    return t


# ---------------------------------------------------------------------------- invariance to absurd candidates
@PROPERTY_SETTINGS
@given(synthetic_draws(), st.data())
def test_candidate_that_always_diverges_changes_nothing_for_the_others(d, data):
    at = data.draw(st.integers(0, len(d.names)))
    loss = data.draw(hnp.arrays(np.float64, (d.n_samples,), elements=LOSS))
    base = rank(d)
    more = rank(with_extra(d, loss, np.ones(d.n_samples), at))
    t0, t1 = base.table, others(more, d.names)
    assert t1["name"].tolist() == t0["name"].tolist()  # same order
    for col in ("p_best", "p_best_noisy", "loss_q05", "loss_q95", "expected_loss", "p_diverge"):
        np.testing.assert_array_equal(t1[col].to_numpy(), t0[col].to_numpy(), err_msg=col)
    np.testing.assert_allclose(t1["expected_regret"], t0["expected_regret"], rtol=0, atol=1e-12)
    assert more.table.set_index("name").loc["extra", "p_best"] == 0.0


@PROPERTY_SETTINGS
@given(synthetic_draws(), st.data())
def test_dominated_candidate_keeps_the_others_order_intervals_and_p_best_ratios(d, data):
    at = data.draw(st.integers(0, len(d.names)))
    p_div = data.draw(hnp.arrays(np.float64, (d.n_samples,), elements=PROB))
    huge = np.full(d.n_samples, 1e6)  # above every outcome of every other candidate, in every draw
    base, more = rank(d), rank(with_extra(d, huge, p_div, at))
    t0, t1 = base.table, others(more, d.names)
    assert t1["name"].tolist() == t0["name"].tolist()
    for col in ("loss_q05", "loss_q50", "loss_q95", "expected_loss"):
        np.testing.assert_array_equal(t1[col].to_numpy(), t0[col].to_numpy(), err_msg=col)
    p0, p1 = t0["p_best"].to_numpy(), t1["p_best"].to_numpy()
    # it only wins draws in which every other candidate diverged, so the others keep their P(best) and its ratios
    np.testing.assert_allclose(p1, p0, rtol=1e-12, atol=0)
    if (p0 > 0).sum() >= 2:
        keep = p0 > 0
        np.testing.assert_allclose(p1[keep] / p1[keep].max(), p0[keep] / p0[keep].max(), rtol=1e-12)


# ---------------------------------------------------------------------------- sums, picks, determinism
@PROPERTY_SETTINGS
@given(synthetic_draws())
def test_p_best_sums_to_one_minus_p_every_candidate_diverges(d):
    r = rank(d)
    p_all = float(np.mean(np.prod(d.p_diverge, axis=1)))
    assert r.table["p_best"].sum() == pytest.approx(1.0 - p_all, abs=1e-12)
    assert r.table["p_best_noisy"].sum() == pytest.approx(1.0 - p_all, abs=1e-12)
    assert ((r.table["p_best"] >= 0) & (r.table["p_best"] <= 1 + 1e-12)).all()
    no_unstable = ["p_unstable", "unstable_excess"] if d.p_unstable is None else []
    assert np.isfinite(r.table.drop(columns=no_unstable).select_dtypes("number").to_numpy()).all()


@PROPERTY_SETTINGS
@given(synthetic_draws())
def test_picks_agree_with_the_columns_they_name(d):
    r = rank(d)
    t = r.table
    assert r.picks["by_expected_loss"] == t["name"].iloc[0]
    assert t["expected_loss"].iloc[0] == t["expected_loss"].min()
    assert (np.diff(t["expected_loss"].to_numpy()) >= 0).all()
    assert t.set_index("name").loc[r.picks["by_p_best"], "p_best"] == t["p_best"].max()
    if len(t) >= 2:
        assert (r.near_ties[0]["a"], r.near_ties[0]["b"]) == tuple(t["name"].iloc[:2])


@PROPERTY_SETTINGS
@given(synthetic_draws(), st.integers(0, 3))
def test_repeated_calls_with_one_seed_are_identical(d, seed):
    a, b = rank(d, random_seed=seed), rank(d, random_seed=seed)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.to_dict() == b.to_dict()


@PROPERTY_SETTINGS
@given(synthetic_draws(unstable=False))
def test_without_divergence_p_best_is_the_share_of_draws_with_the_lowest_loss(d):
    d.p_diverge[:] = 0.0
    r = rank(d)
    share = np.bincount(d.loss.argmin(axis=1), minlength=len(d.names)) / d.n_samples  # ties: first listed
    got = r.table.set_index("name").loc[d.names, "p_best"].to_numpy()
    np.testing.assert_allclose(got, share, rtol=0, atol=1e-12)
    # and the regret is the mean gap to the lowest loss of the draw
    regret = r.table.set_index("name").loc[d.names, "expected_regret"].to_numpy()
    np.testing.assert_allclose(regret, (d.loss - d.loss.min(axis=1, keepdims=True)).mean(axis=0), atol=1e-12)


# ---------------------------------------------------------------------------- brute force
def monte_carlo(d: PredictionDraws, n: int, rng: np.random.Generator):
    """Sample outcomes ``n`` times per draw: (P(best) per candidate, E[loss of the best run], E[loss] per cand)."""
    S, C = d.loss.shape
    p_unst = np.zeros((S, C)) if d.p_unstable is None else d.p_unstable
    u = rng.random((n, S, C))
    diverged = u < d.p_diverge
    unstable = ~diverged & (u < d.p_diverge + p_unst)
    value = np.where(diverged, np.inf, d.loss + unstable * d.unstable_excess)
    none = np.isinf(value).all(axis=2)
    winner = np.where(none, -1, value.argmin(axis=2))  # argmin: first listed on exact ties
    p_best = np.array([(winner == c).mean() for c in range(C)])
    best_loss = np.where(none, d.diverged_loss, value.min(axis=2))
    charged = np.where(diverged, d.diverged_loss, value)
    return p_best, float(best_loss.mean()), charged.mean(axis=(0, 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_p_best_matches_brute_force_monte_carlo(seed):
    rng = np.random.default_rng(seed)
    S, C, n = 4, 4, 40_000
    loss = 2.0 + 0.1 * rng.standard_normal((S, C))
    p_div = rng.uniform(0.0, 0.5, (S, C))
    p_unst = (1.0 - p_div) * rng.uniform(0.0, 0.5, (S, C))
    d = PredictionDraws([f"c{i}" for i in range(C)], loss, loss.copy(), p_div, 4.0, p_unst, 0.15)
    r = rank(d).table.set_index("name").loc[d.names]
    mc_p_best, mc_best_loss, mc_loss = monte_carlo(d, n, rng)
    se = np.sqrt(mc_p_best * (1 - mc_p_best) / (n * S)) + 1e-9
    assert np.all(np.abs(r["p_best"].to_numpy() - mc_p_best) < 5 * se)
    mc_regret = mc_loss - mc_best_loss
    # loss ranges over a few nats: the standard error of these means is below 0.01 at n·S = 160,000 samples
    np.testing.assert_allclose(r["expected_loss"].to_numpy(), mc_loss, atol=0.01)
    np.testing.assert_allclose(r["expected_regret"].to_numpy(), mc_regret, atol=0.01)
