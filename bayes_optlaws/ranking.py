"""From joint posterior draws to decisions: intervals, P(diverge), P(best), expected regret, near-ties, picks.

Conventions (all losses in nats):

* A draw in which a candidate diverges never makes it best: per draw we sample ``diverged ~ Bernoulli(p)`` and
  such a candidate's loss in that draw is the typical loss of a diverged run (``PredictionDraws.diverged_loss``).
* ``p_best`` uses the **expected-loss** draws (epistemic: "which schedule has the lower expected loss");
  ``p_best_noisy`` uses the new-run draws (run-to-run noise included).  Both are reported.
* ``expected_regret`` = E[loss_c − min_c' loss_c'] over draws (same realised-loss convention).
* Near-ties: for the top candidates, ``P(|Δloss| < δ)`` pairwise, δ defaulting to the measured seed noise floor
  (``near_tie`` when ≥ 0.5), and ``order_uncertain`` when P(a better than b) is between 0.2 and 0.8.
* ``loss_mean`` and the quantiles describe the loss **if the run trains normally**; ``expected_loss`` folds in
  the divergence risk (diverged draws count at the diverged-run loss), and the pick by expected loss uses it.
* Risk-aware pick: lowest 90th-percentile loss among candidates with mean P(diverge) ≤ ε.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .optlaw import PredictionDraws

SUMMARY_COLUMNS = ["name", "loss_mean", "loss_q05", "loss_q50", "loss_q95", "p_diverge", "p_best",
                   "expected_regret"]


@dataclass
class Ranking:
    """Result of :func:`rank`: a per-candidate table, near-ties and picks (``to_dict`` gives the JSON form)."""

    table: pd.DataFrame
    near_ties: list[dict] = field(default_factory=list)
    picks: dict = field(default_factory=dict)
    delta: float = float("nan")

    def to_dict(self) -> dict:
        cands = [{k: _py(v) for k, v in row.items()} for row in self.table[SUMMARY_COLUMNS + [
            "p_best_noisy", "loss_q90", "expected_loss"]].to_dict("records")]
        return {"candidates": cands, "near_ties": self.near_ties, "picks": self.picks, "delta": _py(self.delta)}


def _py(v):
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def realised_losses(draws: PredictionDraws, rng: np.random.Generator, noisy: bool = False) -> np.ndarray:
    """Loss per draw and candidate with sampled divergence replaced by the diverged-run loss."""
    loss = draws.loss_noisy if noisy else draws.loss
    p = draws.p_diverge
    if np.all(np.isnan(p)):
        return loss.copy()
    diverges = rng.random(p.shape) < np.nan_to_num(p, nan=0.0)
    return np.where(diverges, np.nextafter(max(draws.diverged_loss, float(np.nanmax(loss))), np.inf), loss)


def p_best(realised: np.ndarray) -> np.ndarray:
    """Share of draws in which each candidate has the lowest loss (ties split evenly)."""
    S, C = realised.shape
    best = realised.min(axis=1, keepdims=True)
    is_best = realised == best
    return (is_best / is_best.sum(axis=1, keepdims=True)).sum(axis=0) / S


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


def rank(draws: PredictionDraws, *, delta: float | None = None, max_p_diverge: float = 0.05, top_k: int = 3,
         random_seed: int = 0) -> Ranking:
    """Summarise joint draws into the ranking table, near-ties and picks."""
    rng = np.random.default_rng(random_seed)
    names = list(draws.names)
    realised = realised_losses(draws, rng)
    realised_noisy = realised_losses(draws, rng, noisy=True)
    q = np.quantile(draws.loss_noisy, [0.05, 0.5, 0.9, 0.95], axis=0)
    p_div = np.nanmean(draws.p_diverge, axis=0) if not np.all(np.isnan(draws.p_diverge)) else \
        np.full(len(names), np.nan)
    table = pd.DataFrame({
        "name": names,
        "loss_mean": draws.loss.mean(axis=0),
        "expected_loss": realised.mean(axis=0),
        "loss_q05": q[0], "loss_q50": q[1], "loss_q90": q[2], "loss_q95": q[3],
        "p_diverge": p_div,
        "p_best": p_best(realised),
        "p_best_noisy": p_best(realised_noisy),
        "expected_regret": (realised - realised.min(axis=1, keepdims=True)).mean(axis=0),
    })
    order = np.lexsort((table["loss_mean"].to_numpy(), table["expected_regret"].to_numpy()))
    if delta is None or not np.isfinite(delta):
        delta = 0.005
    ties = near_ties(draws.loss, names, order, delta, top_k)
    table = table.iloc[order].reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    picks = {"by_expected_loss": str(table.sort_values("expected_loss").iloc[0]["name"]),
             "by_p_best": str(table.iloc[0]["name"])}
    safe = table[(table["p_diverge"].fillna(0.0) <= max_p_diverge)]
    if len(safe):
        risk = safe.sort_values("loss_q90").iloc[0]
        picks["risk_aware"] = str(risk["name"])
        picks["risk_aware_rule"] = f"lowest 90th-percentile loss with P(diverge) <= {max_p_diverge:g}"
    else:
        picks["risk_aware"] = None
        picks["risk_aware_rule"] = f"no candidate has P(diverge) <= {max_p_diverge:g}"
    return Ranking(table, ties, picks, float(delta))


def format_table(r: Ranking) -> str:
    """Plain-text ranking table for the terminal."""
    t = r.table
    w = min(max([24] + [len(str(n)) for n in t["name"]]), 48)  # names up to 48 characters, never cut below that
    lines = [f"{'rank':>4}  {'candidate':<{w}} {'mean':>7} {'90% interval':>17} {'P(div)':>7} {'P(best)':>8} "
             f"{'regret':>8}"]
    for _, row in t.iterrows():
        pdiv = "   n/a" if not np.isfinite(row.p_diverge) else f"{row.p_diverge:7.3f}"
        lines.append(f"{row['rank']:>4}  {str(row['name'])[:w]:<{w}} {row.loss_mean:7.4f} "
                     f"[{row.loss_q05:7.4f}, {row.loss_q95:7.4f}] {pdiv} {row.p_best:8.3f} "
                     f"{row.expected_regret:8.4f}")
    lines.append("")
    lines.append(f"pick by expected loss: {r.picks['by_expected_loss']}")
    lines.append(f"risk-aware pick ({r.picks['risk_aware_rule']}): {r.picks['risk_aware']}")
    ties = [t for t in r.near_ties if t["near_tie"] or t["order_uncertain"]]
    for t_ in ties:
        kind = "near-tie" if t_["near_tie"] else "uncertain order"
        lines.append(f"{kind}: {t_['a']} vs {t_['b']}: P(|Δloss| < {t_['delta']:.4f}) = "
                     f"{t_['p_within_delta']:.2f}, P({t_['a']} better) = {t_['p_a_better']:.2f}")
    if not ties and r.near_ties:
        t0 = r.near_ties[0]
        lines.append(f"top two differ: P(|Δloss| < {t0['delta']:.4f}) = {t0['p_within_delta']:.2f}, "
                     f"P({t0['a']} better than {t0['b']}) = {t0['p_a_better']:.2f}")
    return "\n".join(lines)
