"""Every evaluation metric against values computed by hand on tiny inputs."""

import math

import numpy as np
import pytest

from bayes_optlaws.evaluation import metrics as M


def test_r2_log_hand_computed():
    y = np.exp([1.0, 2.0, 3.0])
    pred = np.exp([1.0, 2.0, 4.0])
    # log y = 1, 2, 3 (mean 2, SS_tot = 2); SS_res = 1  ->  R² = 1 - 1/2
    assert M.r2_log(y, pred) == pytest.approx(0.5)
    assert M.r2_log(y, y) == pytest.approx(1.0)
    assert math.isnan(M.r2_log([2.0, 2.0], [2.0, 3.0]))


def test_rel_err_pct_hand_computed():
    # |2.2-2|/2 = 0.1, |3-4|/4 = 0.25 -> mean 0.175 -> 17.5 %
    assert M.rel_err_pct([2.0, 4.0], [2.2, 3.0]) == pytest.approx(17.5)


def _two_cells():
    # cell (a, fold 0): y 1..4, pred 1,3,2,4 -> d = 0,1,-1,0 -> rho = 1 - 6*2/(4*15) = 0.8; best pred = y 1 (hit)
    # cell (b, fold 0): y 1..3, pred reversed -> rho = -1; best pred has y 3 (miss, regret 2)
    # cell (b, fold 1): 2 runs only -> skipped by every ranking metric
    y = [1, 2, 3, 4, 1, 2, 3, 5, 6]
    p = [1, 3, 2, 4, 3, 2, 1, 6, 5]
    blocks = ["a"] * 4 + ["b"] * 5
    folds = [0, 0, 0, 0, 0, 0, 0, 1, 1]
    return y, p, blocks, folds


def test_spearman_within_blocks_hand_computed():
    y, p, b, f = _two_cells()
    assert M.spearman_within_blocks(y, p, b, f) == pytest.approx((0.8 - 1.0) / 2)
    assert len(M.ranking_cells(y, p, b, f)) == 2


def test_top2_and_regret_hand_computed():
    y, p, b, f = _two_cells()
    assert M.top2_hit_rate(y, p, b, f) == pytest.approx(0.5)
    assert M.regret(y, p, b, f) == pytest.approx((0.0 + 2.0) / 2)


def test_ranking_ties_and_constant_predictions():
    y = [1.0, 2.0, 3.0, 4.0]
    const = [5.0] * 4
    blocks = ["a"] * 4
    # random tie-break in expectation: 2 of the 4 tied configurations are among the 2 lowest actual
    assert M.top2_hit_rate(y, const, blocks) == pytest.approx(0.5)
    assert M.regret(y, const, blocks) == pytest.approx(np.mean(y) - 1.0)
    assert M.spearman_within_blocks(y, const, blocks) == 0.0


def test_ranking_averages_replicates_into_configurations():
    # configuration x has two seeds (1.0, 1.2 -> mean 1.1); predicted order x < y < z matches actual order
    y = [1.0, 1.2, 2.0, 3.0]
    p = [1.5, 1.5, 2.0, 2.5]
    configs = ["x", "x", "y", "z"]
    blocks = ["a"] * 4
    assert M.spearman_within_blocks(y, p, blocks, configs=configs) == pytest.approx(1.0)
    assert M.regret(y, p, blocks, configs=configs) == pytest.approx(0.0)
    # with only 3 configurations a min_size of 4 leaves no cell
    assert math.isnan(M.top2_hit_rate(y, p, blocks, configs=configs, min_size=4))


def test_coverage_and_central_interval():
    # inside: 1 in [0,2] yes; 2 in [2.5,3] no; 3 in [3,3] yes (closed); 4 in [0,3] no
    assert M.coverage([1, 2, 3, 4], [0, 2.5, 3, 0], [2, 3, 3, 3]) == pytest.approx(0.5)
    draws = np.arange(101, dtype=float)[:, None] * np.array([[1.0, 2.0]])
    lo, hi = M.central_interval(draws, 0.5)
    np.testing.assert_allclose(lo, [25.0, 50.0])
    np.testing.assert_allclose(hi, [75.0, 150.0])


def test_interval_score_hand_computed_and_proper():
    # widths 2, 1, 0; y = 3 misses [0, 2] by 1 (penalty 2 / 0.1 · 1 = 20); y = 2.5 inside; y = 2 below [3, 3] by 1
    assert M.interval_score([3, 2.5, 2], [0, 2, 3], [2, 3, 3], 0.9) == pytest.approx((2 + 20 + 1 + 0 + 20) / 3)
    # proper: for normal data the true central 90 % interval scores better than a narrower or a wider one
    y = np.random.default_rng(0).standard_normal(200_000)
    true = M.interval_score(y, np.full(y.size, -1.645), np.full(y.size, 1.645), 0.9)
    for half in (1.2, 2.2):
        assert true < M.interval_score(y, np.full(y.size, -half), np.full(y.size, half), 0.9)
    with pytest.raises(ValueError, match="level"):
        M.interval_score([1.0], [0.0], [2.0], 1.5)


def test_crps_hand_computed():
    # draws {-1, 1}, y = 0: E|X-y| = 1, E|X-X'| = (0+2+2+0)/4 = 1 -> 1 - 1/2
    assert M.crps_from_samples([0.0], np.array([[-1.0], [1.0]])) == pytest.approx(0.5)
    # draws {1, 2, 3}, y = 3: E|X-y| = 1, sum |xi-xj| = 8 -> 1 - 8/(2*9) = 5/9
    assert M.crps_from_samples([3.0], np.array([[1.0], [2.0], [3.0]])) == pytest.approx(5 / 9)
    # a point prediction: CRPS = absolute error; two observations are averaged
    draws = np.array([[2.0, 5.0]] * 4)
    assert M.crps_from_samples([1.0, 5.5], draws) == pytest.approx((1.0 + 0.5) / 2)


def test_crps_matches_gaussian_closed_form():
    rng = np.random.default_rng(0)
    draws = rng.normal(0.0, 1.0, size=(20000, 1))
    # CRPS(N(0,1), 0) = 2 phi(0) - 1/sqrt(pi) = (2 - sqrt 2) / sqrt(2 pi)
    exact = (2 - math.sqrt(2)) / math.sqrt(2 * math.pi)
    assert M.crps_from_samples([0.0], draws) == pytest.approx(exact, abs=0.01)


def test_log_score_hand_computed():
    # draws {0, 2}: mean 1, sd (ddof 1) sqrt 2; y = 1 -> 0.5 log(2 pi * 2)
    assert M.log_score([1.0], np.array([[0.0], [2.0]])) == pytest.approx(0.5 * math.log(4 * math.pi))


def test_divergence_metrics_hand_computed():
    labels = [1, 1, 0, 0, 1]
    p = [0.9, 0.4, 0.6, 0.1, 0.5]  # hard: 1, 0, 1, 0, 1 -> TP 2, FN 1, FP 1, TN 1
    assert M.precision(labels, p) == pytest.approx(2 / 3)
    assert M.recall(labels, p) == pytest.approx(2 / 3)
    assert M.f1(labels, p) == pytest.approx(2 / 3)
    assert M.balanced_accuracy(labels, p) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert M.brier(labels, p) == pytest.approx((0.01 + 0.36 + 0.36 + 0.01 + 0.25) / 5)
    out = M.divergence_metrics(labels, p)
    assert out["n"] == 5 and out["n_diverged"] == 3
    # nothing predicted positive: precision and F1 fall back to zero_division
    assert M.precision([1, 0], [0.1, 0.2]) == 0.0
    assert M.f1([1, 0], [0.1, 0.2]) == 0.0
    assert M.balanced_accuracy([0, 0], [0.1, 0.7]) == pytest.approx(0.5)


def test_pbest_reliability_hand_computed():
    p = [0.05, 0.15, 0.8, 0.9, 1.0]
    best = [False, False, True, False, True]
    table = M.pbest_reliability(p, best, bins=2)
    assert list(table.columns) == ["bin", "lo", "hi", "mean_p", "freq", "count"]
    assert table["count"].tolist() == [2, 3]
    np.testing.assert_allclose(table["mean_p"], [0.1, 0.9])
    np.testing.assert_allclose(table["freq"], [0.0, 2 / 3])
    assert M.expected_calibration_error(table) == pytest.approx((2 * 0.1 + 3 * (0.9 - 2 / 3)) / 5)
    empty = M.pbest_reliability([0.2], [True], bins=4)
    assert empty["count"].tolist() == [1, 0, 0, 0] and np.isnan(empty["mean_p"].iloc[1])


def test_pbest_from_draws_hand_computed():
    draws = np.array([[1.0, 2.0, 3.0],
                      [2.0, 1.0, 3.0],
                      [1.0, 1.0, 3.0]])  # third draw: a tie between configurations 0 and 1
    out = M.pbest_from_draws(draws, ["a"] * 3, [0] * 3, ["c0", "c1", "c2"], y=[2.0, 1.0, 3.0])
    np.testing.assert_allclose(out["p_best"], [0.5, 0.5, 0.0])
    assert out["is_best"].tolist() == [False, True, False]
    # replicate rows are averaged draw by draw before the argmin: draw 1 has x = (1+3)/2 = 2 tied with y = 2
    # (half each), draw 2 has x = 1 < y = 2  ->  P(x) = 0.75, P(y) = 0.25
    draws2 = np.array([[1.0, 3.0, 2.0, 5.0], [1.0, 1.0, 2.0, 5.0]])
    out2 = M.pbest_from_draws(draws2, ["a"] * 4, None, ["x", "x", "y", "z"])
    np.testing.assert_allclose(out2["p_best"], [0.75, 0.25, 0.0])
