"""How far a prediction extrapolates, and the physical bounds every predicted loss respects.

A law is fitted on a range of model sizes N, token budgets D, peak learning rates and tokens per step; the target
of a real decision usually lies outside it (the expensive run is larger).  For every candidate we report the
**extrapolation factor** of each quantity::

    factor(x) = max(x / x_max, x_min / x, 1)        (1 inside the fitted range, 4 = two doublings beyond it)

in the columns ``extrap_N``, ``extrap_D``, ``extrap_lr`` and ``extrap_tps`` (and their maximum ``extrap_max``), and
warn (:class:`ExtrapolationWarning`) when a factor exceeds :data:`WARN_FACTORS`: 4× in N or D (the paper's own
checks extrapolate about 3–10× in N; the embedded grid's leave-largest-size-out split is 4×), 2× in peak LR or
tokens per step (outside the swept LR range the divergence and escape terms are pure extrapolation).

Bounds: a predicted final loss is finite, positive and at most the **loss ceiling** — ``ln(vocab_size)`` (the loss
of an untrained model that predicts uniformly) when the vocabulary is known (runs-table column ``x_vocab_size``),
else the largest final loss in the fitted table (diverged runs included: the worst outcome the data has seen).
Draws beyond it (or non-finite because a feature overflowed far outside the fitted range) are set to the ceiling;
draws below the **loss floor**, a quarter of the lowest final loss in the fitted table (far below anything the data
supports, but positive), are set to the floor.  A candidate with 5 % or more of its draws at either bound gets a
warning (:meth:`FittedRange.warn_bounded`): there the bound, not the runs, decides its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .runs import shown_names
from .runset import RunSet
from .user_warnings import warn_user

#: factor beyond which a prediction is flagged, per quantity
WARN_FACTORS = {"N": 4.0, "D": 4.0, "lr": 2.0, "tps": 2.0}
#: output column of each quantity
COLUMNS = {"N": "extrap_N", "D": "extrap_D", "lr": "extrap_lr", "tps": "extrap_tps"}
_DESCRIPTION = {"N": "model size", "D": "token budget", "lr": "peak LR", "tps": "tokens per step"}


class ExtrapolationWarning(UserWarning):
    """A candidate lies far outside the range of the runs the law was fitted on."""


class OutsideRangeWarning(ExtrapolationWarning):
    """A candidate's N, D, peak LR or tokens per step lies beyond :data:`WARN_FACTORS` of the fitted range
    (:meth:`FittedRange.warn_far`)."""


def _quantities(runs: RunSet) -> dict[str, np.ndarray]:
    table = runs.table
    return {"N": table["model_params"].to_numpy(float), "D": table["tokens"].to_numpy(float), "lr": runs.peak_lr,
            "tps": table["tokens_per_step"].to_numpy(float)}


def range_factor(x, low, high) -> np.ndarray:
    """How far each ``x`` lies outside ``[low, high]``: ``max(x / high, low / x, 1)`` (1 inside; inf where that is
    not finite, e.g. x = 0)."""
    x = np.asarray(x, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.maximum.reduce([x / high, low / x, np.ones_like(x)])
    return np.where(np.isfinite(f), f, np.inf)


def _run_set(runs: "RunSet | pd.DataFrame") -> RunSet:
    return RunSet.of_table(runs, required=("schedule", "model_params", "tokens", "tokens_per_step"))


#: the share of a candidate's draws at the loss floor or ceiling from which :meth:`FittedRange.warn_bounded` warns
WARN_BOUND_SHARE = 0.05


@dataclass
class FittedRange:
    """Smallest and largest N, D, peak LR and tokens per step of the fitted runs, and the loss ceiling (nats)."""

    low: dict[str, float]
    high: dict[str, float]
    loss_ceiling: float
    loss_floor: float

    @classmethod
    def from_runs(cls, runs: "RunSet | pd.DataFrame", vocab_size: float | None = None) -> "FittedRange":
        """The range of a run set (or a validated runs table); ``vocab_size`` (or a unique ``x_vocab_size``
        column) sets the ceiling to ``ln(vocab_size)``."""
        runs = _run_set(runs)
        q = _quantities(runs)
        runs = runs.table
        if vocab_size is None and "x_vocab_size" in runs.columns:
            sizes = pd.to_numeric(runs["x_vocab_size"], errors="coerce").dropna().unique()
            vocab_size = float(sizes.max()) if len(sizes) else None
        losses = pd.to_numeric(runs["final_loss"], errors="coerce")
        finite = losses[np.isfinite(losses) & (losses > 0)]
        ceiling = float(np.log(vocab_size)) if vocab_size else float(finite.max())
        return cls({k: float(v.min()) for k, v in q.items()}, {k: float(v.max()) for k, v in q.items()}, ceiling,
                   0.25 * float(finite.min()))

    def factors(self, candidates: "RunSet | pd.DataFrame") -> pd.DataFrame:
        """Extrapolation factors (≥ 1) per row of a candidate run set (or table with ``model_params, tokens,
        tokens_per_step, schedule``): columns ``extrap_N, extrap_D, extrap_lr, extrap_tps, extrap_max``."""
        candidates = _run_set(candidates)
        q = _quantities(candidates)
        out = pd.DataFrame(index=candidates.table.index)
        for key, x in q.items():
            out[COLUMNS[key]] = range_factor(x, self.low[key], self.high[key])
        out["extrap_max"] = out[list(COLUMNS.values())].max(axis=1)
        return out

    def warn_far(self, factors: pd.DataFrame, names) -> list[str]:
        """Warn (once per quantity) about candidates beyond :data:`WARN_FACTORS`; returns the messages."""
        names = list(names)
        messages = []
        for key, col in COLUMNS.items():
            far = np.flatnonzero(factors[col].to_numpy() > WARN_FACTORS[key])
            if not far.size:
                continue
            worst = float(factors[col].to_numpy()[far].max())
            shown = shown_names(names, far)
            messages.append(
                f"{far.size} candidate(s) ({shown}) lie up to {worst:.3g}x outside the fitted {_DESCRIPTION[key]} "
                f"range [{self.low[key]:.4g}, {self.high[key]:.4g}] (warned beyond {WARN_FACTORS[key]:g}x): the "
                f"law extrapolates there and its intervals may be too narrow; fit on runs nearer the target")
        for m in messages:
            warn_user(m, OutsideRangeWarning)
        return messages

    def warn_bounded(self, log_loss: np.ndarray, names) -> list[str]:
        """Warn about candidates whose mean log-loss draws (samples × candidates, before :meth:`bound_log_loss`)
        reach the loss floor or ceiling in at least :data:`WARN_BOUND_SHARE` of the draws: the law has left its
        data so far that the bound, not the runs, sets their interval, P(best) and regret (e.g. a peak LR of
        1e-8, or a spike that makes a schedule feature enormous while N, D and the peak LR look ordinary)."""
        names = list(names)
        logs = np.asarray(log_loss, float)
        messages = []
        for label, hit in (("floor", np.isfinite(logs) & (logs <= np.log(self.loss_floor))),
                           ("ceiling", ~np.isfinite(logs) | (logs >= np.log(self.loss_ceiling)))):
            share = hit.mean(axis=0)
            far = np.flatnonzero(share >= WARN_BOUND_SHARE)
            if not far.size:
                continue
            shown = shown_names([f"{name} {s:.0%}" for name, s in zip(names, share)], far)
            if label == "floor":
                why = (f"below the floor ({self.loss_floor:.4g} nats, a quarter of the lowest loss in the runs): the "
                       "law is far outside its runs there, so the floor, not the data, sets their interval, P(best) "
                       "and regret; do not pick them on these numbers")
            else:
                why = (f"at or above the ceiling ({self.loss_ceiling:.4g} nats: an untrained model's loss, or the "
                       "worst in the runs): the law expects them to train as badly as anything it has seen, and the "
                       "ceiling, not the data, sets their interval")
            messages.append(f"{far.size} candidate(s) ({shown} of draws) have their loss held {why}")
        for m in messages:
            warn_user(m, ExtrapolationWarning)
        return messages

    def bound_log_loss(self, log_loss: np.ndarray) -> np.ndarray:
        """Log losses held in ``[log(loss_floor), log(loss_ceiling)]``; non-finite values go to the ceiling."""
        cap = float(np.log(self.loss_ceiling))
        out = np.where(np.isfinite(log_loss), log_loss, cap)
        return np.clip(out, float(np.log(self.loss_floor)), cap)
