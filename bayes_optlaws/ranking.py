"""From joint posterior draws to decisions: intervals, P(diverge), P(best), expected regret, near-ties, picks.

Conventions (all losses in nats; ``s`` a posterior draw, ``c`` a candidate; see :class:`PredictionDraws`):

* **Outcomes.**  Given draw ``s``, candidate ``c`` trains normally with probability ``1 - p_div - p_unst`` and
  ends at ``L[s, c]`` (the ``loss`` draws: epistemic uncertainty), trains unstably with probability ``p_unst``
  and ends at ``L[s, c] + unstable_excess`` (``unstable_excess[s, c]`` when the model gives it per draw and
  candidate, :mod:`bayes_optlaws.unstable_loss`), or diverges with probability ``p_div`` and is charged
  ``diverged_loss`` — one fixed number stored with the model (the mean final loss of the diverged training runs),
  never a function of the other candidates.  Candidates are independent given the draw.  Unknown ``p_div`` (a
  model without a divergence boundary) and absent ``p_unst`` count as probability zero.  Every quantity below is
  computed **exactly** from these outcome distributions (no sampling of outcomes), then averaged over draws.
* ``expected_loss`` = mean over draws of ``(1 - p_div) L + p_unst unstable_excess + p_div diverged_loss``.
  The table is sorted by it (ties: lower ``loss_mean``, then input order); its first row is the pick
  ``by_expected_loss``.
* ``p_best``: mean over draws of P(c's realised loss is the strict minimum among the runs that did not diverge);
  a diverged run is never best, so ``p_best`` sums to ``1 - mean_s prod_c p_div``.  Exactly equal realised
  losses (only in hand-made draws) go to the candidate listed first, and a normal outcome counts before the same
  candidate's unstable one.  ``p_best`` uses the ``loss`` draws ("which schedule has the lower expected loss");
  ``p_best_noisy`` the same computation on the new-run draws (run-to-run noise included).  The pick
  ``by_p_best`` is the argmax of ``p_best`` (first in table order among equals); it can differ from the pick by
  expected loss (a low mean with a wide interval), and the printed output then says so.
* ``expected_regret`` = ``expected_loss - E_s E[realised loss of the best run]``, the best run being the one
  ``p_best`` counts (``diverged_loss`` in the draws where every candidate diverges).  It is ≥ 0 whenever
  ``diverged_loss`` is above the trained losses (as on all grids so far); a candidate that diverges more often
  than it trains can have a negative regret only if the model predicts its trained loss above
  ``diverged_loss``.  It changes with the candidate set only through that best run.
* ``loss_mean`` and the quantiles ``loss_q05 … loss_q95`` describe the loss **if the run trains normally**
  (quantiles on the new-run draws).  ``p_diverge`` / ``p_unstable`` are means over draws (NaN in the table,
  "n/a" in the terminal and null in JSON when the model has no such outcome).
* Near-ties: for the first ``top_k`` rows of the table, ``P(|Δloss| < δ)`` pairwise on the ``loss`` draws, δ
  defaulting to the measured seed noise floor (``near_tie`` when ≥ 0.5), and ``order_uncertain`` when
  P(a better than b) is between 0.2 and 0.8; when none is flagged the summary compares the first two rows.
* Risk-aware pick: lowest 90th-percentile loss among candidates with mean P(diverge) ≤ ε.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .draws import PredictionDraws
from .jsonsafe import json_safe as _py  # the package's one JSON sanitiser
from .runs import RunsError

#: how far each candidate's target lies outside the fitted range (factors >= 1; see extrapolation.py)
EXTRAPOLATION_COLUMNS = ("extrap_N", "extrap_D", "extrap_lr", "extrap_tps", "extrap_max")
SUMMARY_COLUMNS = ["name", "expected_loss", "loss_mean", "loss_q05", "loss_q50", "loss_q95", "p_diverge",
                   "p_unstable", "unstable_excess", "p_best", "expected_regret"]
SWEEP_CHUNK_DRAWS = 256  # draws per block of the exact sweep (fixed, so results do not depend on the set size)


@dataclass
class Ranking:
    """Result of :func:`rank`: a per-candidate table, near-ties and picks (``to_dict`` gives the JSON form).

    ``diverged_loss`` / ``unstable_excess``: the fixed losses (nats) the table charged a diverged run and added
    to an unstable one (``unstable_excess`` NaN when it differs per candidate: the table's ``unstable_excess``
    column holds each candidate's mean over draws).
    """

    table: pd.DataFrame
    near_ties: list[dict] = field(default_factory=list)
    picks: dict = field(default_factory=dict)
    delta: float = float("nan")
    diverged_loss: float = float("nan")
    unstable_excess: float = 0.0

    def to_dict(self) -> dict:
        extrap = [c for c in EXTRAPOLATION_COLUMNS if c in self.table.columns]
        cands = [{k: _py(v) for k, v in row.items()} for row in self.table[SUMMARY_COLUMNS + [
            "p_best_noisy", "loss_q90"] + extrap].to_dict("records")]
        return {"candidates": cands, "near_ties": self.near_ties, "picks": self.picks, "delta": _py(self.delta),
                "diverged_loss": _py(self.diverged_loss), "unstable_excess": _py(self.unstable_excess)}


# ---------------------------------------------------------------------------- outcome probabilities
@dataclass
class Outcomes:
    """Checked, NaN-free outcome probabilities per draw and candidate (S × C) and the fixed losses (nats)."""

    p_diverge: np.ndarray
    p_unstable: np.ndarray
    diverged_loss: float
    unstable_excess: float | np.ndarray  # one number, or per draw and candidate (S × C), nats ≥ 0
    has_divergence: bool  # False: the model has no divergence boundary (p_diverge counted as 0)
    has_unstable: bool    # False: the model has no unstable outcome (p_unstable counted as 0)

    @property
    def p_normal(self) -> np.ndarray:
        return np.clip(1.0 - self.p_diverge - self.p_unstable, 0.0, 1.0)


def _first_bad_column(bad_rows_cols: np.ndarray) -> tuple[int, int]:
    """(first candidate column with a True, number of draws where it is True)."""
    c = int(np.flatnonzero(bad_rows_cols.any(axis=0))[0])
    return c, int(bad_rows_cols[:, c].sum())


def _check_probabilities(p: np.ndarray, what: str, names: list[str], shape: tuple) -> None:
    if p.shape != shape:
        raise RunsError(f"draws: {what} has shape {p.shape}, expected {shape} (draws × candidates)")
    if p.size and p.min() >= 0.0 and p.max() <= 1.0:  # fast path (NaN fails both comparisons)
        return
    c, n = _first_bad_column(~((p >= 0.0) & (p <= 1.0)))
    raise RunsError(f"draws: {what} of candidate {names[c]!r} is not a probability in [0, 1] in {n} draws; "
                    "fix the model's predictions")


def _check_finite(arr: np.ndarray, what: str, names: list[str], shape: tuple) -> None:
    if np.shape(arr) != shape:
        raise RunsError(f"draws: {what} has shape {np.shape(arr)}, expected {shape} (draws × candidates)")
    if np.isfinite(arr.sum()) or np.isfinite(arr).all():
        return
    c, n = _first_bad_column(~np.isfinite(arr))
    raise RunsError(f"draws: candidate {names[c]!r} has a non-finite {what} in {n} draws (the model extrapolates "
                    "far outside its training runs); remove it or move it towards the training range")


def outcomes(draws: PredictionDraws) -> Outcomes:
    """Check the draws and return NaN-free outcome probabilities (RunsError naming the candidate otherwise)."""
    names, shape = list(draws.names), np.shape(draws.loss)
    if len(shape) != 2 or shape[1] != len(names) or shape[0] == 0:
        raise RunsError(f"draws: loss has shape {shape}, expected (draws ≥ 1, {len(names)} candidates)")
    _check_finite(draws.loss, "loss", names, shape)
    _check_finite(draws.loss_noisy, "loss_noisy", names, shape)
    if not np.isfinite(draws.diverged_loss):
        raise RunsError(f"draws: diverged_loss = {draws.diverged_loss!r} nats; it must be a finite number")
    excess = _checked_excess(draws.unstable_excess, names, shape)
    p_div = np.asarray(draws.p_diverge, float)
    has_div = not np.isnan(p_div).all()
    if not has_div:
        p_div = np.zeros(shape)
    _check_probabilities(p_div, "p_diverge", names, shape)
    has_unst = draws.p_unstable is not None
    p_unst = np.zeros(shape) if not has_unst else np.asarray(draws.p_unstable, float)
    if has_unst:
        _check_probabilities(p_unst, "p_unstable", names, shape)
        over = p_div + p_unst > 1.0 + 1e-9
        if over.any():
            c, n = _first_bad_column(over)
            raise RunsError(f"draws: candidate {names[c]!r} has p_diverge + p_unstable > 1 in {n} draws; the "
                            "outcome probabilities of a run must sum to at most 1")
    return Outcomes(p_div, p_unst, float(draws.diverged_loss), excess, has_div, has_unst)


def _checked_excess(excess, names: list[str], shape: tuple) -> float | np.ndarray:
    """The unstable excess as a float, or as a draws × candidates array when it is one (RunsError when it is
    not finite, negative, or of another shape)."""
    if np.ndim(excess) == 0:
        v = float(excess)
        if not np.isfinite(v) or v < 0:
            raise RunsError(f"draws: unstable_excess = {v!r} nats; it must be a finite number >= 0 (an unstable "
                            "run ends above a normal one)")
        return v
    arr = np.asarray(excess, float)
    _check_finite(arr, "unstable_excess", names, shape)
    if arr.min() < 0:
        c, n = _first_bad_column(arr < 0)
        raise RunsError(f"draws: candidate {names[c]!r} has a negative unstable_excess in {n} draws; an unstable "
                        "run ends above a normal one")
    return arr


def _draw_rows(excess: float | np.ndarray, rows: slice) -> float | np.ndarray:
    """The excess of the draws ``rows`` (a fixed excess is the same for all)."""
    return excess[rows] if np.ndim(excess) == 2 else excess


def column_means(x: np.ndarray) -> np.ndarray:
    """Mean of each column over draws, summed the same way whatever the number of columns (numpy's axis-0 mean
    rounds differently for one column than for many), so a candidate's figures do not depend on the others."""
    return np.ascontiguousarray(x.T).mean(axis=1)


def outcome_weighted_loss(loss: np.ndarray, out: Outcomes) -> np.ndarray:
    """Per draw and candidate (S × C), the loss averaged over the three outcomes (nats):
    ``(1 - p_div) L + p_unst unstable_excess + p_div diverged_loss``."""
    per_draw = out.p_diverge * (out.diverged_loss - loss)
    per_draw += loss
    if out.has_unstable:
        per_draw += out.p_unstable * out.unstable_excess
    return per_draw


def expected_loss(loss: np.ndarray, out: Outcomes) -> np.ndarray:
    """Mean over draws of the outcome-weighted loss per candidate (nats)."""
    return column_means(outcome_weighted_loss(loss, out))


# ---------------------------------------------------------------------------- the exact sweep
@dataclass
class BestRun:
    """Exact P(best) per candidate and the expected loss of the best run (both averaged over draws)."""

    p_best: np.ndarray        # (C,)
    min_per_draw: np.ndarray  # (S,) E[loss of the best run] per draw, nats (diverged_loss if all diverge)
    p_all_diverge: float      # mean over draws of prod_c p_div

    @property
    def expected_min(self) -> float:
        """E_s E[loss of the best run] (nats)."""
        return float(self.min_per_draw.mean())


def _unstable_outcomes(loss: np.ndarray, p_div: np.ndarray, p_unst: np.ndarray, excess: float | np.ndarray):
    """The two non-diverged outcomes per candidate as S × 2C arrays (column 2c: normal, 2c + 1: unstable, so a
    stable sort puts a candidate's normal outcome first on a tie; it is never above the unstable one, excess ≥ 0):
    value, probability, the candidate's survival P(no outcome realised yet) just before the outcome, and the
    factor by which passing the outcome multiplies that survival."""
    S = loss.shape[0]
    mid = p_div + p_unst  # survival after the normal outcome = before the unstable one
    after_unstable = np.divide(p_div, mid, out=np.ones_like(mid), where=mid > 0)
    value = np.stack([loss, loss + excess], axis=2).reshape(S, -1)
    prob = np.stack([np.clip(1.0 - mid, 0.0, 1.0), p_unst], axis=2).reshape(S, -1)
    before = np.stack([np.ones_like(mid), mid], axis=2).reshape(S, -1)
    factor = np.stack([mid, after_unstable], axis=2).reshape(S, -1)
    return value, prob, before, factor


def _gather(a: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``a[i, order[i, j]]`` for every row ``i`` (a flat ``take``: faster than ``take_along_axis``)."""
    a = np.ascontiguousarray(a)
    return np.take(a.ravel(), order + (np.arange(a.shape[0]) * a.shape[1])[:, None])


def _sort_outcomes(value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(column indices that sort each row, the sorted values); exactly equal values stay in column order
    (candidate listed first, a candidate's normal outcome before its unstable one)."""
    order = np.argsort(value, axis=1)
    v = _gather(value, order)
    tied = (v[:, 1:] == v[:, :-1]).any(axis=1)
    if tied.any():  # quicksort is faster, but only a stable sort orders ties by column
        rows = np.flatnonzero(tied)
        order[rows] = np.argsort(value[rows], axis=1, kind="stable")
        v[rows] = _gather(value[rows], order[rows])
    return order, v


def _sort_lowest(value: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` lowest values of each row, sorted as :func:`_sort_outcomes` would put them first: (column
    indices, values, rows where that is certain).  A row is uncertain when its ``k``-th and ``k + 1``-th lowest
    values are equal (a partial sort does not order ties by column)."""
    part = np.argpartition(value, (k - 1, k), axis=1)
    first = np.sort(part[:, :k], axis=1)  # column order, so a stable sort keeps ties in it
    vals = _gather(value, first)
    srt = np.argsort(vals, axis=1, kind="stable")
    order = _gather(first, srt)
    v = _gather(vals, srt)
    boundary = _gather(value, part[:, k:k + 1])[:, 0]
    return order, v, boundary > v[:, -1]


def _exclusive_cumsum(x: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    np.cumsum(x[:, :-1], axis=1, out=out[:, 1:])
    return out


LOG_UNDERFLOW = -700.0  # exp below this is < 1e-304: set to exactly 0 (avoids slow subnormal arithmetic)
PARTIAL_SORT = (256, 768)  # outcome counts tried before a full sort (see :func:`_sweep_block`)


def _outcome_columns(loss, p_div, p_unst, excess, with_unstable):
    """Per outcome column (S × C, or S × 2C with unstable outcomes; see :func:`_unstable_outcomes`): value,
    probability, the candidate's own survival before it (``None``: 1) and the survival factor of passing it."""
    if with_unstable:
        return _unstable_outcomes(loss, p_div, p_unst, excess)
    return loss, 1.0 - p_div, None, p_div  # one non-diverged outcome: survival 1 before it, p_div after it


def _sweep_sorted(order, v, prob, before, factor, diverged_loss):
    """The sweep over outcomes sorted per row (``order``: column indices, ``v``: values; possibly only each
    row's lowest ones): (P(best) of each sorted outcome, E[min] per row, P(all diverge) per row, and per row an
    upper bound on the log weight of any outcome sorted after the last one of ``order`` (−inf once a factor is
    0): the log survival of every candidate so far, less the largest share of it a later outcome of the same
    candidate divides out)."""
    f = _gather(factor, order)
    p = _gather(prob, order)
    # running product of every candidate's survival, kept as a sum of logs of the non-zero factors plus, when a
    # factor is exactly 0 (a candidate that never diverges has been passed), a count of zero factors
    is_zero = f == 0.0
    any_zero = bool(is_zero.any())
    log_f = np.log(np.where(is_zero, 1.0, f) if any_zero else f)
    log_before = _exclusive_cumsum(log_f)
    if before is not None:  # divide out the candidate's own survival: the product over the *other* candidates
        b = _gather(before, order)
        log_before -= np.log(np.where(b > 0.0, b, 1.0))  # b = 0 only where p = 0
    log_before[log_before < LOG_UNDERFLOW] = -np.inf
    # P(this outcome is realised and every other candidate realises later or diverges)
    w = np.exp(log_before)
    w *= p
    log_all = log_f.sum(axis=1)
    if any_zero:
        w *= _exclusive_cumsum(is_zero.astype(np.int32)) == 0
        log_all[is_zero.any(axis=1)] = -np.inf
    rest = log_all - (log_f.min(axis=1) if before is not None else 0.0)
    all_div = np.where(log_all < LOG_UNDERFLOW, 0.0, np.exp(log_all))
    e_min = np.einsum("ij,ij->i", w, v) + all_div * diverged_loss
    return w, e_min, all_div, rest


def _column_sums(order: np.ndarray, w: np.ndarray, cols: int) -> np.ndarray:
    """Σ over rows of ``w`` per outcome column; bincount adds each column's rows in row order, whatever the
    number of columns."""
    return np.bincount(order.ravel(), weights=w.ravel(), minlength=cols)


def _take_rows(rows: np.ndarray, n_rows: int, *arrays):
    """The rows ``rows`` of each array (the arrays themselves when that is all ``n_rows``; ``None`` stays)."""
    if rows.size == n_rows:
        return arrays
    return tuple(None if a is None else a[rows] for a in arrays)


def _sweep_block(loss, p_div, p_unst, excess, diverged_loss, with_unstable):
    """Exact sweep for a block of draws: (Σ over draws of P(best) per outcome column, E[min] per draw,
    Σ P(all diverge)).

    Most draws are decided by their lowest few outcomes: once the survival product of the candidates passed is
    below ``exp(LOG_UNDERFLOW)`` every later outcome has weight exactly 0 (the rule the full sweep applies), so
    the rows are first swept over their ``PARTIAL_SORT`` lowest outcomes (a partial sort) and only the rows where
    that is not yet decided are swept again with more, finally with all outcomes."""
    value, prob, before, factor = _outcome_columns(loss, p_div, p_unst, excess, with_unstable)
    S, cols = value.shape
    w_cols, e_min, all_div = np.zeros(cols), np.empty(S), np.zeros(S)
    rows = np.arange(S)
    for k in PARTIAL_SORT:
        if k + 1 >= cols or rows.size == 0:
            break
        val, pr, bef, fac = _take_rows(rows, S, value, prob, before, factor)
        order, v, certain = _sort_lowest(val, k)
        w, em, ad, rest = _sweep_sorted(order, v, pr, bef, fac, diverged_loss)
        done = certain & (rest < LOG_UNDERFLOW)
        w_cols += _column_sums(order[done], w[done], cols)
        e_min[rows[done]], all_div[rows[done]] = em[done], ad[done]
        rows = rows[~done]
    if rows.size:
        val, pr, bef, fac = _take_rows(rows, S, value, prob, before, factor)
        order, v = _sort_outcomes(val)
        w, e_min[rows], all_div[rows], _ = _sweep_sorted(order, v, pr, bef, fac, diverged_loss)
        w_cols += _column_sums(order, w, cols)
    return w_cols, e_min, float(all_div.sum())


def best_run(loss: np.ndarray, out: Outcomes) -> BestRun:
    """Exact P(best) and E[loss of the best run], swept over the sorted outcome values of each draw.

    Per draw, sorting all non-diverged outcomes by value, an outcome is the best run iff it is realised and every
    other candidate's realised outcome sorts after it or diverged; with candidates independent that is its
    probability times the product of the others' survival probabilities, a cumulative product along the sort
    (kept as a zero count plus a sum of logs, so p = 0 and p = 1 are exact).
    """
    S, C = loss.shape
    with_unstable = out.has_unstable and bool(np.any(out.p_unstable > 0))
    K = 2 if with_unstable else 1
    w_sum, e_min, all_div = np.zeros(C * K), np.empty(S), 0.0
    for lo in range(0, S, SWEEP_CHUNK_DRAWS):
        sl = slice(lo, lo + SWEEP_CHUNK_DRAWS)
        w, e_min[sl], a = _sweep_block(loss[sl], out.p_diverge[sl], out.p_unstable[sl],
                                       _draw_rows(out.unstable_excess, sl), out.diverged_loss, with_unstable)
        w_sum += w
        all_div += a
    return BestRun(w_sum.reshape(C, K).sum(axis=1) / S, e_min, all_div / S)


# ---------------------------------------------------------------------------- per-candidate summary
def column_quantiles(x: np.ndarray, qs) -> np.ndarray:
    """Quantiles of each column (numpy's default "linear" rule), one sort for all of them (len(qs) × columns)."""
    srt = np.sort(x, axis=0)
    pos = (x.shape[0] - 1) * np.asarray(qs, float)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, x.shape[0] - 1)
    frac = (pos - lo)[:, None]
    return srt[lo] + (srt[hi] - srt[lo]) * frac


def candidate_summary(draws: PredictionDraws, out: Outcomes | None = None) -> pd.DataFrame:
    """Per-candidate columns that depend on that candidate's draws only (not on the rest of the set), in input
    order: name, loss_mean, expected_loss, loss_q05/q50/q90/q95, p_diverge, p_unstable, unstable_excess (mean
    over draws, nats; NaN without an unstable outcome)."""
    out = outcomes(draws) if out is None else out
    C = len(draws.names)
    q = column_quantiles(draws.loss_noisy, (0.05, 0.5, 0.9, 0.95))
    nan = np.full(C, np.nan)
    return pd.DataFrame({
        "name": list(draws.names),
        "loss_mean": column_means(draws.loss),
        "expected_loss": expected_loss(draws.loss, out),
        "loss_q05": q[0], "loss_q50": q[1], "loss_q90": q[2], "loss_q95": q[3],
        "p_diverge": column_means(out.p_diverge) if out.has_divergence else nan,
        "p_unstable": column_means(out.p_unstable) if out.has_unstable else nan,
        "unstable_excess": (nan if not out.has_unstable else np.full(C, out.unstable_excess)
                            if np.ndim(out.unstable_excess) == 0 else column_means(out.unstable_excess)),
        **{col: np.asarray(draws.extrapolation[col], float) for col in EXTRAPOLATION_COLUMNS
           if draws.extrapolation is not None and col in draws.extrapolation},
    })


def table_order(table: pd.DataFrame) -> np.ndarray:
    """Row order of the ranking: by expected loss, then lower loss_mean, then input order."""
    return np.lexsort((np.arange(len(table)), table["loss_mean"].to_numpy(), table["expected_loss"].to_numpy()))


def near_ties(loss: np.ndarray, names: list[str], order: np.ndarray, delta: float, top_k: int = 3,
              tie_threshold: float = 0.5) -> list[dict]:
    """Pairwise P(|Δloss| < δ) and P(a better than b) among the ``top_k`` candidates of ``order``."""
    out = []
    top = list(order[:top_k])
    for i, a in enumerate(top):
        for b in top[i + 1:]:
            diff = loss[:, a] - loss[:, b]
            p_close = float(np.mean(np.abs(diff) < delta))
            p_better = float(np.mean(diff < 0))
            out.append({"a": names[a], "b": names[b], "delta": float(delta), "p_within_delta": p_close,
                        "p_a_better": p_better, "mean_diff": float(diff.mean()),
                        "near_tie": bool(p_close >= tie_threshold),
                        "order_uncertain": bool(0.2 <= p_better <= 0.8)})
    return out


def _picks(table: pd.DataFrame, max_p_diverge: float) -> dict:
    """The pick by expected loss (first row), by P(best) (argmax, first row among equals) and the risk-aware one."""
    picks = {"by_expected_loss": str(table["name"].iloc[0]),
             "by_p_best": str(table["name"].iloc[int(np.argmax(table["p_best"].to_numpy()))])}
    safe = table[(table["p_diverge"].fillna(0.0) <= max_p_diverge)]
    if len(safe):
        picks["risk_aware"] = str(safe.sort_values("loss_q90", kind="stable").iloc[0]["name"])
        picks["risk_aware_rule"] = f"lowest 90th-percentile loss with P(diverge) <= {max_p_diverge:g}"
    else:
        picks["risk_aware"] = None
        picks["risk_aware_rule"] = f"no candidate has P(diverge) <= {max_p_diverge:g}"
    return picks


def check_rank_settings(delta: float | None = None, max_p_diverge: float = 0.05, top_k: int = 3) -> None:
    """Raise :class:`~bayes_optlaws.runs.RunsError` for a ranking setting that cannot mean anything: a near-tie
    ``delta`` that is not a positive number of nats (``None`` is the default), a ``max_p_diverge`` outside [0, 1],
    a ``top_k`` below 1.  Cheap: the CLI calls it before any prediction."""
    if delta is not None and not (isinstance(delta, (int, float, np.floating)) and np.isfinite(delta) and delta > 0):
        raise RunsError(f"the near-tie threshold delta (--delta) must be a positive number of nats, got {delta!r}; "
                        "leave it out to use the seed noise measured in the training runs")
    if not (isinstance(max_p_diverge, (int, float, np.floating)) and 0.0 <= max_p_diverge <= 1.0):
        raise RunsError(f"max_p_diverge (--max-p-diverge) is a probability between 0 and 1, got {max_p_diverge!r}")
    if not (isinstance(top_k, (int, np.integer)) and not isinstance(top_k, bool) and top_k >= 1):
        raise RunsError(f"top_k (--top-k) must be a whole number of at least 1, got {top_k!r}")


def rank(draws: PredictionDraws, *, delta: float | None = None, max_p_diverge: float = 0.05, top_k: int = 3,
         random_seed: int = 0) -> Ranking:
    """Summarise joint draws into the ranking table (sorted by expected loss), near-ties and picks.

    Everything is exact given the draws (``random_seed`` is kept for API compatibility; nothing is sampled).
    ``delta``: the near-tie threshold (nats, > 0; ``None``: 0.005); ``max_p_diverge``: the risk-aware pick's
    limit, a probability in [0, 1].
    """
    check_rank_settings(delta, max_p_diverge, top_k)
    out = outcomes(draws)
    table = candidate_summary(draws, out)
    with ThreadPoolExecutor(max_workers=1) as pool:  # the two sweeps are independent (numpy releases the GIL)
        noisy = pool.submit(best_run, draws.loss_noisy, out)
        best = best_run(draws.loss, out)
        table["p_best"] = best.p_best
        table["p_best_noisy"] = noisy.result().p_best
    # regret per draw, then averaged: a candidate that is the best run in every draw has exactly zero
    table["expected_regret"] = column_means(outcome_weighted_loss(draws.loss, out) - best.min_per_draw[:, None])
    order = table_order(table)
    if delta is None:
        delta = 0.005
    ties = near_ties(draws.loss, list(draws.names), order, delta, top_k)
    table = table.iloc[order].reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    fixed_excess = float(out.unstable_excess) if np.ndim(out.unstable_excess) == 0 else float("nan")
    return Ranking(table, ties, _picks(table, max_p_diverge), float(delta), out.diverged_loss, fixed_excess)


# ---------------------------------------------------------------------------- terminal output
def _prob(v: float, width: int = 7) -> str:
    return f"{'n/a':>{width}}" if not np.isfinite(v) else f"{v:{width}.3f}"


def ranking_legend(r: Ranking) -> str:
    """Two lines saying what the table's columns are (printed above it by the CLI)."""
    per_candidate = r.table["unstable_excess"] if "unstable_excess" in r.table.columns else None
    if not np.isfinite(r.unstable_excess) and per_candidate is not None and per_candidate.notna().any():
        unstable = (f", an unstable run +{per_candidate.min():.3g} to +{per_candidate.max():.3g} nats (by "
                    "candidate)")
    elif r.unstable_excess > 0 or r.table["p_unstable"].notna().any():
        unstable = f", an unstable run +{r.unstable_excess:.3g} nats"
    else:
        unstable = ""
    return (f"sorted by E[loss]: expected final loss (nats) over the outcomes, a diverged run charged "
            f"{r.diverged_loss:.3f} nats{unstable}; mean and 90% interval: the loss if the run trains normally\n"
            "P(best): chance of the lowest loss among the runs that do not diverge (a diverged run is never "
            "best); regret: E[loss] minus the expected loss of the best run")


def format_table(r: Ranking) -> str:
    """Plain-text ranking table for the terminal (rows in the order of ``r.table``: by expected loss)."""
    t = r.table
    w = min(max([24] + [len(str(n)) for n in t["name"]]), 48)  # names up to 48 characters, never cut below that
    lines = [f"{'rank':>4}  {'candidate':<{w}} {'E[loss]':>7} {'mean':>7} {'90% interval':>17} {'P(div)':>7} "
             f"{'P(unst)':>7} {'P(best)':>8} {'regret':>8}"]
    for row in t.itertuples(index=False):  # itertuples: iterrows builds a Series per row (slow for 1,000)
        lines.append(f"{row.rank:>4}  {str(row.name)[:w]:<{w}} {row.expected_loss:7.4f} {row.loss_mean:7.4f} "
                     f"[{row.loss_q05:7.4f}, {row.loss_q95:7.4f}] {_prob(row.p_diverge)} {_prob(row.p_unstable)} "
                     f"{row.p_best:8.3f} {row.expected_regret:8.4f}")
    lines.append("")
    lines += extrapolation_lines(t)
    lines += outside_interval_lines(t)
    lines += _pick_lines(r)
    lines += _tie_lines(r)
    return "\n".join(lines)


def extrapolation_lines(t: pd.DataFrame, pointer: bool = True) -> list[str]:
    """One line saying how far the candidates lie outside the fitted range (nothing when all are inside);
    ``pointer``: end it with where the per-candidate factors are in the JSON output."""
    if "extrap_max" not in t.columns or not (t["extrap_max"] > 1.0 + 1e-9).any():
        return []
    what = {"extrap_N": "model size", "extrap_D": "tokens", "extrap_lr": "peak LR", "extrap_tps": "tokens/step"}
    parts = [f"{label} up to {t[col].max():.3g}x" for col, label in what.items()
             if col in t.columns and t[col].max() > 1.0 + 1e-9]
    return [f"extrapolation beyond the fitted runs: {', '.join(parts)}"
            + (" (per candidate: extrap_* in --json)" if pointer else "")]


def outside_interval_lines(t: pd.DataFrame) -> list[str]:
    """A line for each row whose mean lies outside its own 90 % interval, saying how that can be: 95 % of its draws
    lie on one side of the mean and a few far on the other (e.g. draws held at the law's loss ceiling,
    :mod:`bayes_optlaws.extrapolation`, with a few below it)."""
    lines = []
    for row in t.itertuples(index=False):
        below = row.loss_mean < row.loss_q05
        if not (below or row.loss_mean > row.loss_q95):
            continue
        side, other = ("below", "above") if below else ("above", "below")
        bound = "ceiling" if below else "floor"  # most draws high and a few low: held at the ceiling
        lines.append(f"row {row.rank} ({row.name}): mean {row.loss_mean:.4f} is {side} its 90% interval "
                     f"[{row.loss_q05:.4f}, {row.loss_q95:.4f}]: 95% of its draws lie {other} the mean and a few far "
                     f"{side} it (draws held at the loss {bound} look like this); read the interval")
    return lines


def _pick_lines(r: Ranking) -> list[str]:
    t, picks = r.table.set_index("name"), r.picks
    first, by_pb = picks["by_expected_loss"], picks["by_p_best"]
    lines = [f"pick by expected loss: {first} (the first row)"]
    if by_pb == first:
        lines.append(f"pick by P(best): {by_pb} (the same; P(best) = {t.loc[by_pb, 'p_best']:.3f})")
    else:
        lines.append(f"pick by P(best): {by_pb} (P(best) = {t.loc[by_pb, 'p_best']:.3f}, expected loss "
                     f"{t.loc[by_pb, 'expected_loss']:.4f}) differs from the pick by expected loss "
                     f"(P(best) = {t.loc[first, 'p_best']:.3f}, expected loss {t.loc[first, 'expected_loss']:.4f})")
    lines.append(f"risk-aware pick ({picks['risk_aware_rule']}): {picks['risk_aware']}")
    return lines


def _tie_lines(r: Ranking) -> list[str]:
    flagged = [t for t in r.near_ties if t["near_tie"] or t["order_uncertain"]]
    lines = []
    for t_ in flagged:
        kind = "near-tie" if t_["near_tie"] else "uncertain order"
        lines.append(f"{kind}: {t_['a']} vs {t_['b']}: P(|Δloss| < {t_['delta']:.4f}) = "
                     f"{t_['p_within_delta']:.2f}, P({t_['a']} better) = {t_['p_a_better']:.2f}")
    if not flagged and r.near_ties:
        t0 = r.near_ties[0]  # rows 1 and 2 of the table
        lines.append(f"top two (rows 1 and 2) differ: P(|Δloss| < {t0['delta']:.4f}) = {t0['p_within_delta']:.2f}, "
                     f"P({t0['a']} better than {t0['b']}) = {t0['p_a_better']:.2f}")
    return lines
