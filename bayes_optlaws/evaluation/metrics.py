"""Evaluation metrics (opt-laws.md §7), pure numpy/scipy.

Losses are final training/validation losses in nats; predictions are in the same unit.  Ranking metrics are
computed per **cell** (one block × one fold: the held-out configurations of one ``(model_params, tokens)`` block in
one fold) and averaged over cells.  When ``configs`` labels are given, replicate rows of one configuration are first
averaged (actual and predicted loss), so a cell ranks configurations, not seeds.

Conventions where the paper is silent (ours):

* cells with fewer than ``min_size`` configurations (default 3) are skipped by every ranking metric, so Spearman,
  Top-2 and regret are averaged over the same cells;
* ties in the predicted loss (e.g. the block-mean baseline predicts one value for the whole block) are resolved by
  expectation over a random tie-break: Top-2 counts the fraction of the tied predicted-best configurations that
  are among the two lowest actual, regret uses their mean actual loss; a cell whose predictions are all equal has
  Spearman 0 (no ranking information) instead of NaN; a cell whose actual losses are all equal is skipped;
* classification metrics use ``p >= threshold`` (0.5) as the hard prediction; a ratio with a zero denominator is
  ``zero_division`` (0.0), balanced accuracy averages the recalls of the classes present.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "r2_log", "rel_err_pct", "ranking_cells", "spearman_within_blocks", "top2_hit_rate", "regret",
    "coverage", "interval_score", "central_interval", "crps_from_samples", "crps_per_obs", "log_score", "log_score_per_obs", "precision", "recall", "f1",
    "balanced_accuracy", "brier", "divergence_metrics", "pbest_from_draws", "pbest_reliability",
    "expected_calibration_error", "RARE_EVENT_BINS", "event_reliability",
]


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=float)


def _check_same(*arrays: np.ndarray) -> None:
    n = len(arrays[0])
    for a in arrays[1:]:
        if len(a) != n:
            raise ValueError(f"inputs must have the same length, got {[len(a) for a in arrays]}")


# ---------------------------------------------------------------------------- point accuracy
def r2_log(y, pred) -> float:
    """Coefficient of determination on log loss (dimensionless).

    ``R² = 1 − Σ (log y − log ŷ)² / Σ (log y − mean(log y))²``.  NaN when fewer than 2 values or all ``y`` equal.
    """
    y, p = _arr(y), _arr(pred)
    _check_same(y, p)
    ly, lp = np.log(y), np.log(p)
    ss_tot = float(np.sum((ly - ly.mean()) ** 2))
    if len(y) < 2 or ss_tot == 0:
        return float("nan")
    return 1.0 - float(np.sum((ly - lp) ** 2)) / ss_tot


def rel_err_pct(y, pred) -> float:
    """Mean absolute relative error in percent: ``100 · mean(|ŷ − y| / y)``."""
    y, p = _arr(y), _arr(pred)
    _check_same(y, p)
    if len(y) == 0:
        return float("nan")
    return float(np.mean(np.abs(p - y) / y) * 100.0)


# ---------------------------------------------------------------------------- ranking within block × fold cells
def ranking_cells(y, pred, blocks, folds=None, configs=None, min_size: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split rows into block × fold cells and return ``(actual, predicted)`` per configuration for each cell.

    Replicate rows of one configuration (same ``configs`` label) are averaged.  Cells with fewer than ``min_size``
    configurations are dropped.  Rows with a non-finite actual or predicted loss are ignored.
    """
    y, p = _arr(y), _arr(pred)
    blocks = np.asarray(blocks, dtype=object)
    folds = np.zeros(len(y), dtype=int) if folds is None else np.asarray(folds)
    configs = np.arange(len(y)).astype(object) if configs is None else np.asarray(configs, dtype=object)
    _check_same(y, p, blocks, folds, configs)
    ok = np.isfinite(y) & np.isfinite(p)
    frame = pd.DataFrame({"b": blocks[ok], "f": folds[ok], "c": configs[ok], "y": y[ok], "p": p[ok]})
    cells = []
    for _, cell in frame.groupby(["b", "f"], sort=True):
        agg = cell.groupby("c", sort=True)[["y", "p"]].mean()
        if len(agg) >= min_size:
            cells.append((agg["y"].to_numpy(), agg["p"].to_numpy()))
    return cells


def _spearman(a: np.ndarray, p: np.ndarray) -> float:
    if np.all(a == a[0]):
        return float("nan")
    if np.all(p == p[0]):
        return 0.0
    return float(stats.spearmanr(a, p).statistic)


def spearman_within_blocks(y, pred, blocks, folds=None, configs=None, min_size: int = 3) -> float:
    """Spearman rank correlation between predicted and actual loss within each block × fold cell, averaged.

    ``mean over cells of ρ_s(actual, predicted)`` (average ranks for ties).  Dimensionless, in [−1, 1].
    Cells with fewer than ``min_size`` configurations or constant actual loss are skipped; constant predictions
    give ρ = 0.  NaN when no cell qualifies.
    """
    vals = [_spearman(a, p) for a, p in ranking_cells(y, pred, blocks, folds, configs, min_size)]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def _predicted_best(p: np.ndarray) -> np.ndarray:
    return np.flatnonzero(p == p.min())


def top2_hit_rate(y, pred, blocks, folds=None, configs=None, min_size: int = 3) -> float:
    """Fraction of block × fold cells where the configuration with the lowest predicted loss is among the two
    configurations with the lowest actual loss (``actual[best_pred] <= second-lowest actual``).

    Ties in the prediction count fractionally (expected hit under a random tie-break).  In [0, 1]; NaN when no cell.
    """
    hits = []
    for a, p in ranking_cells(y, pred, blocks, folds, configs, min_size):
        second = np.sort(a)[1]
        best = _predicted_best(p)
        hits.append(float(np.mean(a[best] <= second)))
    return float(np.mean(hits)) if hits else float("nan")


def regret(y, pred, blocks, folds=None, configs=None, min_size: int = 3) -> float:
    """Mean over block × fold cells of ``actual[predicted-best] − min(actual)`` (nats, ≥ 0).

    Ties in the prediction use the mean actual loss of the tied predicted-best configurations.  NaN when no cell.
    """
    vals = []
    for a, p in ranking_cells(y, pred, blocks, folds, configs, min_size):
        vals.append(float(np.mean(a[_predicted_best(p)]) - a.min()))
    return float(np.mean(vals)) if vals else float("nan")


# ---------------------------------------------------------------------------- predictive distributions
def coverage(y, lo, hi) -> float:
    """Fraction of observations inside their interval: ``mean(lo <= y <= hi)``.  In [0, 1]."""
    y, lo, hi = _arr(y), _arr(lo), _arr(hi)
    _check_same(y, lo, hi)
    if len(y) == 0:
        return float("nan")
    return float(np.mean((lo <= y) & (y <= hi)))


def interval_score(y, lo, hi, level: float) -> float:
    """Mean interval score of central ``level`` intervals (Gneiting & Raftery 2007, "Strictly Proper Scoring
    Rules, Prediction, and Estimation", JASA, eq. 43): ``(hi − lo) + (2 / a)·(lo − y)⁺ + (2 / a)·(y − hi)⁺`` with
    ``a = 1 − level``.  Units of the loss (nats); lower is better; proper for the interval's two quantiles, so it
    rewards narrow intervals only when they still hold the observations (coverage alone does not)."""
    y, lo, hi = _arr(y), _arr(lo), _arr(hi)
    _check_same(y, lo, hi)
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if len(y) == 0:
        return float("nan")
    a = 1.0 - level
    return float(np.mean((hi - lo) + 2 / a * np.maximum(lo - y, 0) + 2 / a * np.maximum(y - hi, 0)))


def central_interval(draws, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Central ``level`` interval per observation from ``draws`` of shape ``(n_draws, n_obs)``: the
    ``(1 − level)/2`` and ``(1 + level)/2`` sample quantiles (linear interpolation)."""
    d = _arr(draws)
    if d.ndim != 2:
        raise ValueError(f"draws must have shape (n_draws, n_obs), got {d.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    lo, hi = np.quantile(d, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def _draws_matrix(y: np.ndarray, draws) -> np.ndarray:
    d = _arr(draws)
    if d.ndim == 1 and len(y) == 1:
        d = d[:, None]
    if d.ndim != 2 or d.shape[1] != len(y):
        raise ValueError(f"draws must have shape (n_draws, n_obs={len(y)}), got {d.shape}")
    if d.shape[0] < 1:
        raise ValueError("draws must contain at least one draw")
    return d


def crps_from_samples(y, draws) -> float:
    """Continuous ranked probability score from predictive samples, energy form, averaged over observations.

    Per observation with samples ``x_1..x_m``: ``CRPS = (1/m) Σ_i |x_i − y| − (1/(2 m²)) Σ_i Σ_j |x_i − x_j|``
    (the plain "NRG" estimator; the pair sum is computed in O(m log m) from the sorted samples:
    ``Σ_i Σ_j |x_i − x_j| = 2 Σ_i (2i − m + 1) x_(i)`` with 0-based ranks ``i``).  Units of the loss (nats);
    lower is better; equals the mean absolute error for a point prediction.  ``draws``: ``(n_draws, n_obs)``.
    """
    y = _arr(y)
    return float(np.mean(crps_per_obs(y, draws))) if len(y) else float("nan")


def crps_per_obs(y, draws) -> np.ndarray:
    """CRPS of each observation (energy form, see :func:`crps_from_samples`), shape ``(n_obs,)``."""
    y = _arr(y)
    d = _draws_matrix(y, draws)
    m = d.shape[0]
    term1 = np.mean(np.abs(d - y[None, :]), axis=0)
    s = np.sort(d, axis=0)
    w = 2.0 * np.arange(m) - m + 1.0
    pair_sum = 2.0 * np.sum(w[:, None] * s, axis=0)
    return term1 - pair_sum / (2.0 * m * m)


def log_score(y, draws, min_sd: float = 1e-9) -> float:
    """Mean negative log predictive density (nats; lower is better), with a Gaussian fitted to each observation's
    draws: ``−log N(y | mean(x), sd(x))`` averaged over observations (``sd`` with ``ddof=1``, floored at
    ``min_sd``).  The Gaussian moment match keeps the score stable with a few hundred draws."""
    y = _arr(y)
    return float(np.mean(log_score_per_obs(y, draws, min_sd))) if len(y) else float("nan")


def log_score_per_obs(y, draws, min_sd: float = 1e-9) -> np.ndarray:
    """Negative log predictive density of each observation (see :func:`log_score`), shape ``(n_obs,)``."""
    y = _arr(y)
    d = _draws_matrix(y, draws)
    mu = d.mean(axis=0)
    sd = np.maximum(d.std(axis=0, ddof=1) if d.shape[0] > 1 else np.zeros_like(mu), min_sd)
    return 0.5 * np.log(2 * np.pi * sd**2) + 0.5 * ((y - mu) / sd) ** 2


# ---------------------------------------------------------------------------- divergence (binary) metrics
def _confusion(labels, p, threshold: float) -> tuple[int, int, int, int]:
    t = np.asarray(labels).astype(bool)
    q = _arr(p)
    _check_same(t, q)
    hat = q >= threshold
    tp = int(np.sum(hat & t))
    fp = int(np.sum(hat & ~t))
    fn = int(np.sum(~hat & t))
    tn = int(np.sum(~hat & ~t))
    return tp, fp, fn, tn


def _ratio(num: float, den: float, zero_division: float) -> float:
    return float(num / den) if den > 0 else float(zero_division)


def precision(labels, p, threshold: float = 0.5, zero_division: float = 0.0) -> float:
    """``TP / (TP + FP)`` with the hard prediction ``p >= threshold``; ``zero_division`` when nothing is predicted
    positive."""
    tp, fp, _, _ = _confusion(labels, p, threshold)
    return _ratio(tp, tp + fp, zero_division)


def recall(labels, p, threshold: float = 0.5, zero_division: float = 0.0) -> float:
    """``TP / (TP + FN)`` (true-positive rate); ``zero_division`` when there is no positive label."""
    tp, _, fn, _ = _confusion(labels, p, threshold)
    return _ratio(tp, tp + fn, zero_division)


def f1(labels, p, threshold: float = 0.5, zero_division: float = 0.0) -> float:
    """``2 TP / (2 TP + FP + FN)`` (harmonic mean of precision and recall); ``zero_division`` when TP+FP+FN = 0."""
    tp, fp, fn, _ = _confusion(labels, p, threshold)
    return _ratio(2 * tp, 2 * tp + fp + fn, zero_division)


def balanced_accuracy(labels, p, threshold: float = 0.5) -> float:
    """``(TPR + TNR) / 2``, the mean recall of the two classes; with one class present, that class's recall."""
    tp, fp, fn, tn = _confusion(labels, p, threshold)
    rates = []
    if tp + fn > 0:
        rates.append(tp / (tp + fn))
    if tn + fp > 0:
        rates.append(tn / (tn + fp))
    return float(np.mean(rates)) if rates else float("nan")


def brier(labels, p) -> float:
    """Brier score ``mean((p − label)²)`` with label 1 for diverged; in [0, 1], lower is better."""
    t = np.asarray(labels).astype(float)
    q = _arr(p)
    _check_same(t, q)
    return float(np.mean((q - t) ** 2)) if len(t) else float("nan")


def divergence_metrics(labels, p, threshold: float = 0.5) -> dict[str, float]:
    """All divergence metrics at once: precision, recall, f1, balanced_accuracy, brier, n, n_diverged."""
    t = np.asarray(labels).astype(bool)
    return {
        "precision": precision(t, p, threshold),
        "recall": recall(t, p, threshold),
        "f1": f1(t, p, threshold),
        "balanced_accuracy": balanced_accuracy(t, p, threshold),
        "brier": brier(t, p),
        "n": int(len(t)),
        "n_diverged": int(t.sum()),
    }


#: bin edges of the reliability table of a rare event's probability (P(diverge), P(unstable)): fine near 0,
#: where most runs of a grid are
RARE_EVENT_BINS = (0.0, 0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)


def event_reliability(p, happened, bins: int | Iterable[float] = RARE_EVENT_BINS) -> pd.DataFrame:
    """Reliability table of a predicted event probability, e.g. P(diverge) against ``diverged`` or P(unstable)
    against the unstable label: per bin of predicted p, the mean prediction ``mean_p``, the observed frequency
    ``freq`` and the ``count`` (columns as :func:`pbest_reliability`; calibrated when ``mean_p ≈ freq``)."""
    return pbest_reliability(p, happened, bins)


# ---------------------------------------------------------------------------- P(best) calibration
def pbest_from_draws(draws, blocks, folds=None, configs=None, y=None, min_size: int = 3):
    """P(best) of each held-out configuration within its block × fold cell, from joint predictive draws.

    ``draws``: ``(n_draws, n_rows)``.  Replicate rows of one configuration are averaged draw by draw; then for each
    draw the configuration with the lowest loss is "best" (ties split equally), and ``P(best)`` is the fraction of
    draws.  Returns a DataFrame with one row per configuration: ``block, fold, config, p_best`` and, when ``y`` is
    given, ``actual`` (mean actual loss) and ``is_best`` (lowest actual in its cell).  Cells with fewer than
    ``min_size`` configurations are skipped (as in the ranking metrics).
    """
    d = _arr(draws)
    n = d.shape[1] if d.ndim == 2 else -1
    if d.ndim != 2:
        raise ValueError(f"draws must have shape (n_draws, n_rows), got {d.shape}")
    blocks = np.asarray(blocks, dtype=object)
    folds = np.zeros(n, dtype=int) if folds is None else np.asarray(folds)
    configs = np.arange(n).astype(object) if configs is None else np.asarray(configs, dtype=object)
    _check_same(blocks, folds, configs)
    if len(blocks) != n:
        raise ValueError(f"draws have {n} columns but there are {len(blocks)} rows")
    yv = None if y is None else _arr(y)
    records = []
    frame = pd.DataFrame({"b": blocks, "f": folds, "c": configs})
    for (b, f), cell in frame.groupby(["b", "f"], sort=True):
        cfgs = list(dict.fromkeys(cell["c"]))
        if len(cfgs) < min_size:
            continue
        cols = [cell.index[cell["c"] == c].to_numpy() for c in cfgs]
        mat = np.column_stack([d[:, c].mean(axis=1) for c in cols])  # (n_draws, n_cfg)
        is_min = mat == mat.min(axis=1, keepdims=True)
        pb = (is_min / is_min.sum(axis=1, keepdims=True)).mean(axis=0)
        actual = None
        if yv is not None:
            actual = np.array([np.mean(yv[c]) for c in cols])
        for j, c in enumerate(cfgs):
            rec = {"block": b, "fold": f, "config": c, "p_best": float(pb[j])}
            if actual is not None:
                rec["actual"] = float(actual[j])
                rec["is_best"] = bool(actual[j] == actual.min())
            records.append(rec)
    return pd.DataFrame.from_records(records, columns=["block", "fold", "config", "p_best"]
                                     + (["actual", "is_best"] if yv is not None else []))


def _bin_edges(bins) -> np.ndarray:
    if np.isscalar(bins):
        k = int(bins)
        if k < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        return np.linspace(0.0, 1.0, k + 1)
    edges = _arr(bins)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("bins must be an int or increasing bin edges")
    return edges


def pbest_reliability(p_best, is_best, bins: int | Iterable[float] = 10) -> pd.DataFrame:
    """Reliability table for P(best): among configurations given P(best) ≈ p, how often were they the best?

    Bins are ``[e_0, e_1), [e_1, e_2), …, [e_{k−1}, e_k]`` (``bins`` equal-width bins on [0, 1] or explicit edges).
    Columns: ``bin`` (index), ``lo``, ``hi``, ``mean_p`` (mean predicted P(best) in the bin), ``freq`` (observed
    fraction that were best), ``count``.  Empty bins are kept with NaN ``mean_p``/``freq`` and count 0.
    """
    p = _arr(p_best)
    b = np.asarray(is_best).astype(float)
    _check_same(p, b)
    edges = _bin_edges(bins)
    k = len(edges) - 1
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, k - 1)
    rows = []
    for j in range(k):
        sel = which == j
        cnt = int(sel.sum())
        rows.append({"bin": j, "lo": float(edges[j]), "hi": float(edges[j + 1]),
                     "mean_p": float(p[sel].mean()) if cnt else float("nan"),
                     "freq": float(b[sel].mean()) if cnt else float("nan"), "count": cnt})
    return pd.DataFrame(rows, columns=["bin", "lo", "hi", "mean_p", "freq", "count"])


def expected_calibration_error(table: pd.DataFrame) -> float:
    """Expected calibration error of a reliability table: ``Σ_bins (count / total) · |mean_p − freq|``."""
    cnt = table["count"].to_numpy(dtype=float)
    if cnt.sum() == 0:
        return float("nan")
    gap = np.abs(table["mean_p"].to_numpy(dtype=float) - table["freq"].to_numpy(dtype=float))
    return float(np.sum(np.where(cnt > 0, cnt * np.nan_to_num(gap), 0.0)) / cnt.sum())
