"""The numbers behind the maps: posterior summaries over peak LR × warmup for one block, and its observed runs.

:func:`surface_grid` asks a fitted law for predictions on a grid of linear-warmup + linear-decay schedules of one
(model size, token budget) block and returns a :class:`SurfaceGrid`; :func:`block_runs` picks that block's
observed runs and adds their peak LR, warmup fraction and schedule family.  :mod:`bayes_optlaws.plots` draws
both (``loss_surface``, ``divergence_map``) without calling the model.

Units: losses in nats, learning rates raw (as in the runs table), warmup as a fraction of the run's steps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .runset import RunSet
from .schedules import schedule_family

__all__ = ["SurfaceGrid", "surface_grid", "block_runs", "default_axes", "INTERVAL"]

#: central credible interval summarised on the grid (``q05`` .. ``q95``)
INTERVAL = 0.9


@dataclass(frozen=True)
class SurfaceGrid:
    """Posterior summaries of one block on a peak LR × warmup grid (linear warmup + linear decay to 0).

    The block: ``model_params`` (parameters), ``total_steps`` (optimizer steps), ``tokens_per_step``.  The axes:
    ``peak_lrs`` (raw learning rates, increasing) and ``warmups`` (fractions of the run's steps, increasing).
    Every map is an array of shape ``(len(warmups), len(peak_lrs))``:

    * ``mean``, ``q05``, ``q50``, ``q95``: posterior mean and quantiles of the expected final loss (nats;
      epistemic uncertainty only), ``width`` = ``q95 - q05`` (nats);
    * ``p_diverge``: posterior mean P(diverge), ``p_diverge_width``: width of its central ``interval``
      credible interval (both all NaN when the model has no divergence boundary).
    """

    model_params: int
    total_steps: int
    tokens_per_step: int
    peak_lrs: np.ndarray
    warmups: np.ndarray
    mean: np.ndarray
    q05: np.ndarray
    q50: np.ndarray
    q95: np.ndarray
    width: np.ndarray
    p_diverge: np.ndarray
    p_diverge_width: np.ndarray
    interval: float = INTERVAL

    @property
    def tokens(self) -> int:
        """Token budget of the block (``total_steps × tokens_per_step``)."""
        return int(self.total_steps) * int(self.tokens_per_step)

    @property
    def has_divergence(self) -> bool:
        """Whether the model predicted P(diverge) (False: no divergence boundary, the maps are all NaN)."""
        return bool(np.isfinite(self.p_diverge).any())

    def stable(self, boundary: float = 0.5) -> np.ndarray:
        """Cells whose P(diverge) is not above ``boundary`` (every cell without a divergence boundary)."""
        if not self.has_divergence:
            return np.ones(self.mean.shape, bool)
        return ~(self.p_diverge > boundary)

    def best_stable_cell(self, boundary: float = 0.5) -> dict | None:
        """The cell with the lowest posterior mean loss among the :meth:`stable` ones, or None when none is.

        Returns ``peak_lr``, ``warmup`` (fraction), ``mean``, ``q05``, ``q95`` (nats) and ``on_edge``: True when
        the cell lies on the grid's border (the optimum may lie outside the grid; warmup 0 is not an edge).
        """
        stable = self.stable(boundary)
        if not stable.any():
            return None
        i, j = np.unravel_index(np.argmin(np.where(stable, self.mean, np.inf)), self.mean.shape)
        on_edge = bool((i in (0, len(self.warmups) - 1) and self.warmups[i] > 0) or j in (0, len(self.peak_lrs) - 1))
        return {"peak_lr": float(self.peak_lrs[j]), "warmup": float(self.warmups[i]), "mean": float(self.mean[i, j]),
                "q05": float(self.q05[i, j]), "q95": float(self.q95[i, j]), "on_edge": on_edge}


def block_runs(runs: "RunSet | pd.DataFrame", model_params, total_steps: int, tokens_per_step: int) -> pd.DataFrame:
    """The rows of ``runs`` in one (model size, token budget) block, with three added columns: ``peak_lr``
    (raw), ``warmup_frac`` (warmup steps / total steps) and ``family`` (schedule shape, e.g. ``linear``)."""
    runs = RunSet.of_table(runs, "runs", required=("schedule", "model_params", "tokens"))
    tokens = int(total_steps) * int(tokens_per_step)
    table = runs.table
    in_block = ((table["model_params"].astype(float) == float(model_params))
                & (table["tokens"].astype(float) == float(tokens))).to_numpy()
    block, sel = runs.rows(in_block), table[in_block].copy()
    sel["peak_lr"] = block.peak_lr
    sel["warmup_frac"] = block.warmup_fraction
    sel["family"] = [schedule_family(s) for s in sel["schedule"]]
    return sel


def default_axes(train_runs: "RunSet | pd.DataFrame", block: pd.DataFrame, n_lr: int = 25, n_w: int = 13
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Grid axes covering every training run and the block's runs: ``n_lr`` peak LRs, log-spaced from 1.5×
    below the smallest to 1.5× above the largest, and ``n_w`` warmup fractions from 0 to the largest seen (at
    most 1), evenly spaced on the square-root axis the maps use."""
    train_runs = RunSet.of_table(train_runs, "runs", required=("schedule",))
    peaks = train_runs.peak_lr
    lo, hi = peaks.min(), peaks.max()
    if len(block):
        lo, hi = min(lo, block["peak_lr"].min()), max(hi, block["peak_lr"].max())
    peak_lrs = np.geomspace(lo / 1.5, hi * 1.5, n_lr)
    fractions = list(train_runs.warmup_fraction)
    top = max(max(fractions) if fractions else 0.0, float(block["warmup_frac"].max()) if len(block) else 0.0)
    top = 0.1 if top <= 0 else min(1.0, top)
    warmups = np.linspace(0.0, np.sqrt(top), n_w) ** 2
    return peak_lrs, warmups


def _grid_candidates(total_steps: int, peak_lrs: np.ndarray, warmups: np.ndarray) -> pd.DataFrame:
    """One linear-warmup + linear-decay candidate per grid cell, warmups outer, peak LRs inner."""
    rows = []
    for fraction in warmups:
        for lr in peak_lrs:
            warm = min(int(round(float(fraction) * total_steps)), int(total_steps) - 1)
            spec = {"family": "linear", "peak_lr": float(lr), "warmup": warm, "total": int(total_steps)}
            rows.append({"name": f"lr{lr:.4g}-w{fraction:.4g}", "schedule": json.dumps(spec)})
    return pd.DataFrame(rows)


def surface_grid(law, model_params, total_steps: int, tokens_per_step: int, peak_lrs=None, warmups=None,
                 random_seed: int = 0) -> SurfaceGrid:
    """Predict one block on a peak LR × warmup grid with ``law`` (a fitted law with ``predict_draws`` and
    ``train_runs_``) and summarise the draws (see :class:`SurfaceGrid`).

    ``peak_lrs`` / ``warmups`` default to :func:`default_axes` of the law's training runs.
    """
    if peak_lrs is None or warmups is None:
        block = block_runs(law.train_set_, model_params, total_steps, tokens_per_step)
        auto_lrs, auto_warmups = default_axes(law.train_set_, block)
        peak_lrs = auto_lrs if peak_lrs is None else peak_lrs
        warmups = auto_warmups if warmups is None else warmups
    peak_lrs = np.asarray(sorted(peak_lrs), float)
    warmups = np.asarray(sorted(warmups), float)
    draws = law.predict_draws(_grid_candidates(int(total_steps), peak_lrs, warmups),
                              model_params=int(model_params), tokens_per_step=int(tokens_per_step),
                              random_seed=random_seed)
    shape = (len(warmups), len(peak_lrs))
    tails = [(1 - INTERVAL) / 2, (1 + INTERVAL) / 2]
    lo, mid, hi = np.quantile(draws.loss, [tails[0], 0.5, tails[1]], axis=0)
    if np.all(np.isnan(draws.p_diverge)):
        p_mean = p_width = np.full(len(peak_lrs) * len(warmups), np.nan)
    else:
        p_lo, p_hi = np.quantile(draws.p_diverge, tails, axis=0)
        p_mean, p_width = np.nanmean(draws.p_diverge, axis=0), p_hi - p_lo
    return SurfaceGrid(model_params=int(model_params), total_steps=int(total_steps),
                       tokens_per_step=int(tokens_per_step), peak_lrs=peak_lrs, warmups=warmups,
                       mean=draws.loss.mean(axis=0).reshape(shape), q05=lo.reshape(shape), q50=mid.reshape(shape),
                       q95=hi.reshape(shape), width=(hi - lo).reshape(shape), p_diverge=p_mean.reshape(shape),
                       p_diverge_width=p_width.reshape(shape))
