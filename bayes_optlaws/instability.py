"""Runs that train badly without diverging: the third outcome "unstable".

A run is **diverged** when the runs table says so (the sweep's divergence rule: non-finite loss, loss at the
unigram entropy, or a training-loss spike).  A run that did not diverge but ended at least ``unstable_gap`` nats
(default :data:`DEFAULT_UNSTABLE_GAP` = 0.5) above the best non-diverged run of its **block** is **unstable**:
it trained, but so badly that its final loss says more about instability (high peak LR, short warmup) than about
the schedule's shape.  A block is the set of single-stage runs with the same ``model_params``, ``tokens`` and
``group``; a block with a single non-diverged run cannot say what "badly" means, so its runs count as normal.

On the embedded grid (417 runs, 49 diverged) 77 of the 318 non-diverged main runs are unstable at 0.5 nats
(51 at 1 nat); fitted as ordinary runs they dominated the loss law's errors.  The loss law is therefore fitted on
the normal runs only (``BayesOptLaw(divergence_config={"exclude_unstable": False})`` restores the old behaviour),
and the divergence model (:mod:`bayes_optlaws.divergence`) predicts the outcome normal / unstable / diverged
(P(diverge) and P(unstable) per draw).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: nats above the block's best non-diverged run from which a non-diverged run counts as unstable
DEFAULT_UNSTABLE_GAP = 0.5

#: the outcome labels in their order (the ordered-logistic category index is the position here)
OUTCOMES = ("normal", "unstable", "diverged")


def block_labels(runs: pd.DataFrame) -> np.ndarray:
    """Block of each row: ``model_params|tokens|group`` (group blank when the table has no ``group`` column)."""
    group = runs["group"].astype(object).where(runs["group"].notna(), "") if "group" in runs.columns else ""
    return (runs["model_params"].astype(str) + "|" + runs["tokens"].astype(str) + "|"
            + pd.Series(group, index=runs.index).astype(str)).to_numpy()


def gap_to_block_best(runs: pd.DataFrame) -> np.ndarray:
    """Final loss minus the best non-diverged final loss of the row's block (nats; NaN for diverged rows,
    rows without a finite loss, and blocks with fewer than two non-diverged runs)."""
    loss = pd.to_numeric(runs["final_loss"], errors="coerce").to_numpy(float)
    ok = ~runs["diverged"].astype(bool).to_numpy() & np.isfinite(loss)
    blocks = block_labels(runs)
    gap = np.full(len(runs), np.nan)
    for b in np.unique(blocks[ok]):
        sel = ok & (blocks == b)
        if sel.sum() >= 2:
            gap[sel] = loss[sel] - loss[sel].min()
    return gap


def _check_gap(unstable_gap: float) -> float:
    gap = float(unstable_gap)
    if not np.isfinite(gap) or gap <= 0:
        raise ValueError(f"unstable_gap must be a positive number of nats (e.g. {DEFAULT_UNSTABLE_GAP}), "
                         f"got {unstable_gap!r}")
    return gap


def label_outcomes(runs: pd.DataFrame, unstable_gap: float = DEFAULT_UNSTABLE_GAP) -> np.ndarray:
    """Outcome per row: ``"diverged"``, ``"unstable"`` (gap to the block's best >= ``unstable_gap`` nats) or
    ``"normal"``; an object array of the strings in :data:`OUTCOMES`."""
    gap_limit = _check_gap(unstable_gap)
    out = np.full(len(runs), "normal", dtype=object)
    gap = gap_to_block_best(runs)
    out[np.nan_to_num(gap, nan=-np.inf) >= gap_limit] = "unstable"
    out[runs["diverged"].astype(bool).to_numpy()] = "diverged"
    return out


def outcome_codes(labels) -> np.ndarray:
    """0 / 1 / 2 for normal / unstable / diverged (the ordered-logistic observation)."""
    lab = np.asarray(labels, dtype=object)
    codes = np.array([OUTCOMES.index(v) for v in lab], dtype="int64")
    return codes


def unstable_excess(runs: pd.DataFrame, unstable_gap: float = DEFAULT_UNSTABLE_GAP,
                    above: np.ndarray | None = None) -> float:
    """Typical excess loss of an unstable run (nats): the median of :func:`unstable_excesses`; NaN when no row
    is unstable."""
    excesses = unstable_excesses(runs, unstable_gap, above)
    return float(np.median(excesses)) if excesses.size else float("nan")


def unstable_excesses(runs: pd.DataFrame, unstable_gap: float = DEFAULT_UNSTABLE_GAP,
                      above: np.ndarray | None = None) -> np.ndarray:
    """Excess loss (nats) of each unstable row: its final loss minus ``above`` (per row, nats; e.g. the loss
    law's prediction for the run, to which a prediction adds the excess) or, by default, minus the best final
    loss of its block."""
    sel = label_outcomes(runs, unstable_gap) == "unstable"
    gap = (gap_to_block_best(runs) if above is None
           else runs["final_loss"].to_numpy(float) - np.asarray(above, float))
    return np.asarray(gap[sel], float)
