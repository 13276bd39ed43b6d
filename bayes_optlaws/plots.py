"""Figures for decisions: loss surface, posterior predictive check, candidates, divergence map, calibration, ablation.

Plots only draw (the arviz-plots convention): every function takes objects that already hold the numbers and
calls no model.  The numbers come from :mod:`bayes_optlaws.surface` (the maps' grid of predictions and a block's
observed runs), a law's ``predict_draws`` (:class:`~bayes_optlaws.draws.PredictionDraws`),
:func:`bayes_optlaws.api.rank_candidates` (:class:`~bayes_optlaws.ranking.Ranking`) and
:func:`bayes_optlaws.evaluation.cross_validate` (:class:`~bayes_optlaws.evaluation.EvaluationResult`);
:mod:`bayes_optlaws.report` shows how to compute each and compose the page.

Every function builds its own :class:`matplotlib.figure.Figure` (object-oriented API, no pyplot state, safe
under the ``Agg`` backend) and returns it; nothing is shown.  :func:`save` writes PNG and SVG.

* :func:`loss_surface` — a :class:`~bayes_optlaws.surface.SurfaceGrid`: predicted final loss over peak LR ×
  warmup fraction for one (model size, token budget) block (linear warmup + linear decay to 0), the 90 %
  credible-interval width, the P(diverge) = 0.5 contour and the observed runs of that block (the paper's Figs. 1
  and 5, with uncertainty).
* :func:`divergence_map` — the same grid's P(diverge) with the observed diverged / stable runs.
* :func:`ppc_by_block` — observed training runs and their posterior predictive draws, one colour per block.
* :func:`candidates` — a ranking's 90 % predictive intervals, median and mean, and P(best) bars with P(diverge).
* :func:`calibration` — coverage of central intervals and the P(best) reliability diagram of an evaluation.
* :func:`ablation` — Spearman and Top-2 per feature-block ablation step of an evaluation.
* :func:`trace` — ArviZ (arviz-plots) trace or forest plot of a posterior (the loss model's main parameters).

Units: losses in nats, learning rates raw (as in the runs table), warmup as a fraction of the run's steps.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.colors import BoundaryNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

if TYPE_CHECKING:  # for the annotations only: drawing needs none of these modules
    from .draws import PredictionDraws
    from .evaluation.protocol import EvaluationResult
    from .ranking import Ranking
    from .surface import SurfaceGrid

__all__ = ["loss_surface", "ppc_by_block", "candidates", "divergence_map", "calibration", "ablation", "trace",
           "save", "to_png_bytes", "human_count"]

#: the P(diverge) level drawn as the boundary on the maps
BOUNDARY = 0.5
#: central interval shown in the candidate plot and the posterior predictive check
INTERVAL = 0.9
ABLATION_ORDER = ("scale", "+convergence", "+escape", "+mixed")
#: the paper's Table 9 (its own data), drawn for context on the ablation plot
PAPER_ABLATION = {"spearman": (0.60, 0.61, 0.77, 0.84), "top2": (0.51, 0.66, 0.89, 0.94)}
#: columns a block's runs need on the maps (:func:`bayes_optlaws.surface.block_runs` adds the last three)
BLOCK_RUN_COLUMNS = ("run_id", "model_params", "tokens", "final_loss", "diverged", "peak_lr", "warmup_frac",
                     "family")
_BLOCK_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf")

# ---------------------------------------------------------------------------------------------- helpers
def human_count(x: float, unit: str = "") -> str:
    """1_300_000_000 -> '1.3B', 25_000 -> '25K' (with an optional unit appended)."""
    x = float(x)
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            text = f"{x / div:.3g}{suffix}"
            break
    else:
        text = f"{x:.3g}"
    return f"{text} {unit}".strip()


def _block_label(model_params, tokens) -> str:
    return f"N={human_count(model_params)}, D={human_count(tokens)} tok"


def _new_figure(width: float, height: float, ncols: int = 1, nrows: int = 1, **kw) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str, fix: str) -> None:
    """ValueError naming the columns ``frame`` lacks (``what`` says which input it is, ``fix`` how to get one)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks the column(s) {', '.join(missing)}; {fix}")


def _check_block_runs(runs: pd.DataFrame) -> None:
    _require_columns(runs, BLOCK_RUN_COLUMNS, "the block's runs",
                     "make them with bayes_optlaws.surface.block_runs(runs, model_params, total_steps, "
                     "tokens_per_step)")


def _has_crossing(p: np.ndarray, level: float = BOUNDARY) -> bool:
    finite = p[np.isfinite(p)]
    return bool(finite.size and finite.min() < level < finite.max())


def _boundary(ax, X, Y, p, *, color="k", label=True):
    """Draw the P(diverge) = 0.5 contour; returns the ContourSet or None when the map never crosses 0.5."""
    if not _has_crossing(p):
        return None
    halo = ax.contour(X, Y, p, levels=[BOUNDARY], colors="white", linewidths=4.0, linestyles="-", alpha=0.8)
    halo.set_gid("p_diverge_boundary_halo")
    cs = ax.contour(X, Y, p, levels=[BOUNDARY], colors=color, linewidths=2.0, linestyles="--")
    cs.set_gid("p_diverge_boundary")
    if label:
        ax.clabel(cs, fmt={BOUNDARY: "P(div)=0.5"}, fontsize=8, inline=True)
    return cs


def _overlay_runs(ax, sel: pd.DataFrame, held_out: set, *, norm=None, cmap=None, colour_by_loss: bool = True):
    """Observed runs: stable (filled circles, coloured by observed loss), diverged (red x), held-out (square)."""
    if not len(sel):
        return []
    artists = []
    div = sel["diverged"].astype(bool).to_numpy()
    ho = sel["run_id"].isin(held_out).to_numpy() if held_out else np.zeros(len(sel), bool)
    linear = (sel["family"] == "linear").to_numpy()
    for mask, marker, what in ((~div & ~ho & linear, "o", "observed run"),
                               (~div & ~ho & ~linear, "^", "other-shape run")):
        if not mask.any():
            continue
        kw = (dict(c=sel.loc[mask, "final_loss"], cmap=cmap, norm=norm, edgecolors="white") if colour_by_loss
              else dict(color="white", edgecolors="k"))
        artists.append(ax.scatter(sel.loc[mask, "peak_lr"], sel.loc[mask, "warmup_frac"], s=46, marker=marker,
                                  linewidths=1.2, zorder=5, label=f"{what} ({int(mask.sum())})", **kw))
    if (div & ~ho).any():
        m = div & ~ho
        artists.append(ax.scatter(sel.loc[m, "peak_lr"], sel.loc[m, "warmup_frac"], marker="X", s=70,
                                  color="#d62728", edgecolors="k", linewidths=0.6, zorder=6,
                                  label=f"diverged run ({int(m.sum())})"))
    if ho.any():
        artists.append(ax.scatter(sel.loc[ho, "peak_lr"], sel.loc[ho, "warmup_frac"], marker="s", s=90,
                                  facecolors="none", edgecolors="#ff00ff", linewidths=2.0, zorder=7,
                                  label=f"held-out run ({int(ho.sum())})"))
        if (ho & div).any():
            m = ho & div
            ax.scatter(sel.loc[m, "peak_lr"], sel.loc[m, "warmup_frac"], marker="X", s=50, color="#d62728",
                       zorder=7)
    return artists


def _ssqrt(x):
    return np.sign(x) * np.sqrt(np.abs(x))


def _ssquare(y):
    return np.sign(y) * np.square(y)


WARMUP_TICKS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def _map_axes(ax, peak_lrs, warmups):
    """Log peak-LR axis; square-root warmup axis (short warmups, where most of the action is, get room)."""
    ax.set_xscale("log")
    ax.set_yscale("function", functions=(_ssqrt, _ssquare))
    xe, ye = _edges(peak_lrs, True), _wedges(warmups)
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    ticks = [t for t in WARMUP_TICKS if warmups[0] <= t <= warmups[-1] * 1.0001]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlabel("peak learning rate (log scale)")
    ax.set_ylabel("warmup (fraction of the run's steps; √ scale)")


def _wedges(warmups: np.ndarray) -> np.ndarray:
    """Cell edges of warmup fractions, midway on the square-root axis."""
    return _ssquare(_edges(_ssqrt(np.asarray(warmups, float)), False))


def _edges(values: np.ndarray, log: bool) -> np.ndarray:
    v = np.log(values) if log else values
    if len(v) == 1:
        e = np.array([v[0] - 0.5, v[0] + 0.5])
    else:
        mid = (v[1:] + v[:-1]) / 2
        e = np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
    return np.exp(e) if log else e


def _title_block(grid: SurfaceGrid) -> str:
    return (f"N = {human_count(grid.model_params)} params, D = {human_count(grid.tokens)} tokens "
            f"({grid.total_steps:,} steps × {grid.tokens_per_step:,} tokens/step)")



def _check_grid_runs(grid: SurfaceGrid, runs: pd.DataFrame) -> None:
    """The runs must be those of the grid's block (a different block would be drawn on the wrong map)."""
    _check_block_runs(runs)
    if not len(runs):
        return
    same = ((runs["model_params"].astype(float) == float(grid.model_params))
            & (runs["tokens"].astype(float) == float(grid.tokens)))
    if not same.all():
        first = runs.loc[~same].iloc[0]
        raise ValueError(f"run {first['run_id']} is not in the grid's block (N = {grid.model_params:,}, "
                         f"D = {grid.tokens:,} tokens); pass the runs of surface.block_runs for the same block")


# ---------------------------------------------------------------------------------------------- loss surface
def loss_surface(grid: SurfaceGrid, runs: pd.DataFrame, held_out: Iterable[str] = ()) -> Figure:
    """Predicted final loss over peak LR (log) × warmup fraction for one block, linear warmup + linear decay.

    ``grid``: the block's predictions (:func:`bayes_optlaws.surface.surface_grid`); ``runs``: its observed runs
    (:func:`bayes_optlaws.surface.block_runs`; may be empty); ``held_out``: run ids drawn as held out.

    Left: posterior mean of the expected final loss (nats), with the region where P(diverge) > 0.5 hatched;
    right: width of its 90 % credible interval (nats).  Both panels carry the P(diverge) = 0.5 contour (dashed),
    the predicted best non-diverging schedule (star) and the observed runs: stable runs coloured by their observed
    loss on the same scale, diverged runs as red crosses, ``held_out`` run ids as magenta squares.
    """
    _check_grid_runs(grid, runs)
    held = set(held_out)
    peak_lrs, warmups, p = grid.peak_lrs, grid.warmups, grid.p_diverge
    X, Y = np.meshgrid(peak_lrs, warmups)
    xe, ye = _edges(peak_lrs, True), _wedges(warmups)
    fig, axes = _new_figure(13.5, 5.4, ncols=2)
    ax_loss, ax_w = axes[0]
    stable = grid.stable(BOUNDARY)
    # colour scale from the stable region (diverging corners would swamp it), extended beyond
    ref = grid.mean[stable] if stable.any() else grid.mean.ravel()
    vmin, vmax = float(np.min(ref)), float(np.quantile(ref, 0.98))
    observed = runs.loc[~runs["diverged"].astype(bool), "final_loss"].astype(float)
    if len(observed):
        vmin = min(vmin, float(observed.min()))
    if vmax <= vmin:
        vmax = vmin + 1e-3
    cmap = _cmap("viridis")
    norm = BoundaryNorm(np.linspace(vmin, vmax, 12), cmap.N, extend="max")
    mesh = ax_loss.pcolormesh(xe, ye, grid.mean, cmap=cmap, norm=norm, shading="flat", rasterized=True)
    mesh.set_gid("loss_mean")
    fig.colorbar(mesh, ax=ax_loss, label="predicted final loss, posterior mean (nats)", format="%.3f")
    if grid.has_divergence and (p > BOUNDARY).any():
        ax_loss.contourf(X, Y, (p > BOUNDARY).astype(float), levels=[0.5, 1.5], colors="none", hatches=["///"])
    wref = grid.width[stable] if stable.any() else grid.width.ravel()
    wmin, wmax = float(np.min(wref)), float(np.quantile(wref, 0.98))
    wlevels = np.linspace(wmin, max(wmax, wmin + 1e-4), 11)
    wcmap = _cmap("magma_r")
    wmesh = ax_w.pcolormesh(xe, ye, grid.width, cmap=wcmap, norm=BoundaryNorm(wlevels, wcmap.N, extend="max"),
                            shading="flat", rasterized=True)
    wmesh.set_gid("interval_width")
    fig.colorbar(wmesh, ax=ax_w, label=f"width of the {grid.interval:.0%} credible interval (nats)", format="%.3f")
    best = grid.best_stable_cell(BOUNDARY)
    for ax in (ax_loss, ax_w):
        _map_axes(ax, peak_lrs, warmups)
        _boundary(ax, X, Y, p, color="k")
        _overlay_runs(ax, runs, held, norm=norm if ax is ax_loss else None, cmap=cmap,
                      colour_by_loss=ax is ax_loss)
        if best is not None:
            ax.scatter([best["peak_lr"]], [best["warmup"]], marker="*", s=260, color="#ffd700", edgecolors="k",
                       linewidths=1.0, zorder=8, label="predicted best (P(div) < 0.5)")
    ax_loss.set_title("Predicted final loss (hatched: P(diverge) > 0.5)")
    ax_w.set_title(f"Uncertainty: {grid.interval:.0%} credible-interval width of the expected loss")
    handles = _legend_handles(runs, held, best, grid.has_divergence and _has_crossing(p))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), fontsize=9, frameon=False)
    subtitle = _title_block(grid) + "; linear warmup + linear decay to 0"
    if best is not None:
        subtitle += (f"\npredicted best: peak LR {best['peak_lr']:.3g}, warmup {best['warmup']:.2f}: "
                     f"{best['mean']:.4f} nats [{best['q05']:.4f}, {best['q95']:.4f}]")
        if best["on_edge"]:
            subtitle += " — on the edge of the grid: the optimum may lie outside it"
    others = int((runs["family"] != "linear").sum())
    if others:
        subtitle += f"; {others} runs of other schedule shapes (triangles) at their peak LR and warmup"
    fig.suptitle("Loss surface — " + subtitle, fontsize=11)
    fig.bol_data = {"grid": grid, "runs": runs, "best": best}
    return fig


def _cmap(name: str):
    from matplotlib import colormaps

    return colormaps[name]


def _legend_handles(runs: pd.DataFrame, held: set, best: dict | None, has_boundary: bool) -> list:
    h = []
    if len(runs):
        h.append(Line2D([], [], marker="o", ls="", color="0.5", mec="white", ms=7,
                        label="observed run (colour = its final loss)"))
        if (runs["family"] != "linear").any():
            h.append(Line2D([], [], marker="^", ls="", color="0.5", mec="white", ms=7,
                            label="run of another schedule shape"))
        if runs["diverged"].astype(bool).any():
            h.append(Line2D([], [], marker="X", ls="", color="#d62728", mec="k", ms=8, label="diverged run"))
        if held and runs["run_id"].isin(held).any():
            h.append(Line2D([], [], marker="s", ls="", mfc="none", mec="#ff00ff", mew=2, ms=9,
                            label="held-out run"))
    if has_boundary:
        h.append(Line2D([], [], ls="--", color="k", lw=2, label="P(diverge) = 0.5"))
    if best is not None:
        h.append(Line2D([], [], marker="*", ls="", color="#ffd700", mec="k", ms=14,
                        label="predicted best with P(diverge) < 0.5"))
    return h


# ---------------------------------------------------------------------------------------------- divergence map
def divergence_map(grid: SurfaceGrid, runs: pd.DataFrame, held_out: Iterable[str] = ()) -> Figure:
    """Posterior mean P(diverge) over peak LR × warmup (linear warmup + decay) with the observed runs of the
    block: diverged (red crosses) and stable (white circles); right panel: 90 % interval width of P(diverge).

    ``grid`` and ``runs`` as in :func:`loss_surface`.  A grid without P(diverge) (the model has no divergence
    boundary) draws the runs and says so instead of a map.
    """
    _check_grid_runs(grid, runs)
    held = set(held_out)
    peak_lrs, warmups = grid.peak_lrs, grid.warmups
    fig, axes = _new_figure(13.5, 5.2, ncols=2)
    ax, ax_u = axes[0]
    title = "Divergence map — " + _title_block(grid)
    if not grid.has_divergence:
        for a in (ax, ax_u):
            _map_axes(a, peak_lrs, warmups)
            _overlay_runs(a, runs, held, colour_by_loss=False)
        ax.text(0.5, 0.5, "no divergence model:\nthe training data has no diverged runs\n(P(diverge) unknown)",
                transform=ax.transAxes, ha="center", va="center", fontsize=11,
                bbox=dict(facecolor="white", edgecolor="0.6"))
        ax.set_title("P(diverge): unavailable")
        ax_u.set_title("Uncertainty of P(diverge): unavailable")
        fig.suptitle(title, fontsize=11)
        fig.bol_data = {"grid": None, "runs": runs}
        return fig
    X, Y = np.meshgrid(peak_lrs, warmups)
    xe, ye = _edges(peak_lrs, True), _wedges(warmups)
    cmap = _cmap("RdYlBu_r")
    mesh = ax.pcolormesh(xe, ye, grid.p_diverge, cmap=cmap, norm=BoundaryNorm(np.linspace(0, 1, 11), cmap.N),
                         shading="flat", rasterized=True)
    mesh.set_gid("p_diverge")
    fig.colorbar(mesh, ax=ax, label="P(diverge), posterior mean (probability)")
    umesh = ax_u.pcolormesh(xe, ye, grid.p_diverge_width, cmap=_cmap("Greys"), vmin=0, vmax=1, shading="flat",
                            rasterized=True)
    umesh.set_gid("p_diverge_width")
    fig.colorbar(umesh, ax=ax_u, label=f"{grid.interval:.0%} credible-interval width of P(diverge)")
    for a in (ax, ax_u):
        _map_axes(a, peak_lrs, warmups)
        _boundary(a, X, Y, grid.p_diverge, color="k")
        _overlay_runs(a, runs, held, colour_by_loss=False)
    ax.set_title("P(diverge) (dashed: 0.5)")
    ax_u.set_title("Uncertainty of P(diverge)")
    h = [Line2D([], [], marker="o", ls="", mfc="white", mec="k", ms=7, label="stable run")]
    if (runs["family"] != "linear").any():
        h.append(Line2D([], [], marker="^", ls="", mfc="white", mec="k", ms=7, label="stable run, other shape"))
    h += [Line2D([], [], marker="X", ls="", color="#d62728", mec="k", ms=8, label="diverged run"),
          Line2D([], [], ls="--", color="k", lw=2, label="P(diverge) = 0.5")]
    if held and runs["run_id"].isin(held).any():
        h.append(Line2D([], [], marker="s", ls="", mfc="none", mec="#ff00ff", mew=2, ms=9, label="held-out run"))
    fig.legend(handles=h, loc="outside lower center", ncols=len(h), fontsize=9, frameon=False)
    n_div = int(runs["diverged"].astype(bool).sum())
    fig.suptitle(f"{title}; linear warmup + linear decay to 0; {len(runs)} runs observed here, {n_div} diverged",
                 fontsize=11)
    fig.bol_data = {"grid": grid, "runs": runs}
    return fig


# ---------------------------------------------------------------------------------------------- PPC by block
PPC_RUN_COLUMNS = ("final_loss", "model_params", "tokens")


def ppc_by_block(observed: pd.DataFrame, draws: PredictionDraws) -> Figure:
    """In-sample posterior predictive check of the final loss per (model size, token budget) block.

    ``observed``: the non-diverged training runs (``final_loss`` in nats, ``model_params``, ``tokens``), one row
    per column of ``draws`` (their posterior predictive draws, same order; ``loss_noisy`` is used: a new run,
    run-to-run noise included).  :func:`bayes_optlaws.report.training_draws` makes both.

    Left: observed final loss (x) vs posterior predictive median of a new run (y) with its 90 % interval, one
    colour per block, and the y = x line.  Right: the same as residuals (observed − predicted median, nats) per
    block, so misfit far smaller than the loss range stays visible.  Diverged runs are not part of the loss model.
    """
    _require_columns(observed, PPC_RUN_COLUMNS, "the observed runs",
                     "pass the runs table rows the draws were predicted for")
    if draws.loss_noisy.shape[1] != len(observed):
        raise ValueError(f"{len(observed)} observed runs but draws for {draws.loss_noisy.shape[1]} candidates; "
                         "predict exactly the observed runs, in their order")
    y = observed["final_loss"].to_numpy(float)
    lo, med, hi = np.quantile(draws.loss_noisy, [(1 - INTERVAL) / 2, 0.5, (1 + INTERVAL) / 2], axis=0)
    key = list(zip(observed["model_params"].astype(int), observed["tokens"].astype(int)))
    blocks = sorted(set(key))
    fig, axes = _new_figure(13.5, 5.6, ncols=2, width_ratios=[1.0, 1.25])
    ax, ax_r = axes[0]
    inside = (lo <= y) & (y <= hi)
    for b_i, blk in enumerate(blocks):
        m = np.array([k == blk for k in key])
        colour = _BLOCK_COLOURS[b_i % len(_BLOCK_COLOURS)]
        label = f"{_block_label(*blk)} ({int(m.sum())} runs)"
        ax.errorbar(y[m], med[m], yerr=[med[m] - lo[m], hi[m] - med[m]], fmt="o", ms=4, color=colour, ecolor=colour,
                    elinewidth=0.8, alpha=0.85, label=label)
        jitter = np.random.default_rng(b_i).uniform(-0.25, 0.25, int(m.sum()))
        xr_ = b_i + jitter
        ax_r.errorbar(xr_, y[m] - med[m], yerr=[hi[m] - med[m], med[m] - lo[m]], fmt="o", ms=4, color=colour,
                      ecolor=colour, elinewidth=0.8, alpha=0.85)
        out = m & ~inside
        if out.any():
            ax_r.scatter(xr_[out[m]], (y - med)[out], s=80, facecolors="none", edgecolors="k", zorder=5)
    span = [min(y.min(), med.min()), max(y.max(), med.max())]  # long interval tails may leave the frame
    pad = 0.06 * (span[1] - span[0])
    span = [span[0] - pad, span[1] + pad]
    ax.plot(span, span, color="k", lw=1, ls="--", label="y = x")
    ax.set_xlim(span)
    ax.set_ylim(span)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("observed final loss (nats)")
    ax.set_ylabel(f"posterior predictive final loss (nats): median, {INTERVAL:.0%} interval")
    ax.set_title("Predicted vs observed")
    ax.legend(fontsize=8, loc="lower right")
    ax_r.axhline(0, color="k", lw=1, ls="--")
    ax_r.set_xticks(range(len(blocks)), [_block_label(*b).replace(", ", "\n") for b in blocks], fontsize=8)
    ax_r.set_xlabel("block (model size, token budget)")
    ax_r.set_ylabel("observed − predicted median (nats)")
    ax_r.set_title(f"Residuals with {INTERVAL:.0%} predictive intervals (circled: observation outside)")
    fig.suptitle(f"Posterior predictive check (in-sample, {len(y)} non-diverged training runs): "
                 f"{int(inside.sum())}/{len(y)} = {inside.mean():.0%} inside their {INTERVAL:.0%} interval",
                 fontsize=11)
    fig.bol_data = {"observed": y, "median": med, "lo": lo, "hi": hi, "blocks": blocks, "coverage": inside.mean()}
    return fig



# ---------------------------------------------------------------------------------------------- candidates
def candidates(ranking: Ranking, max_candidates: int = 30, max_p_diverge: float = 0.05) -> Figure:
    """Per-candidate 90 % predictive interval (q05–q95), median and mean of the final loss, and P(best) bars.

    Candidates in rank order (best at the top; at most ``max_candidates``).  The P(diverge) of each candidate is
    written next to its bar, in red above ``max_p_diverge``; the picks by expected loss and the risk-aware pick
    are marked.  ``ranking``: :func:`bayes_optlaws.api.rank_candidates` (or :func:`bayes_optlaws.ranking.rank`).
    """
    t = ranking.table.head(max_candidates).reset_index(drop=True)
    n = len(t)
    fig, axes = _new_figure(13.0, max(2.6, 0.42 * n + 1.8), ncols=2, sharey=True, width_ratios=[1.5, 1.0])
    ax, ax_p = axes[0]
    ypos = np.arange(n)
    picks = ranking.picks
    for i, row in t.iterrows():
        ax.plot([row["loss_q05"], row["loss_q95"]], [i, i], color="#1f77b4", lw=3, solid_capstyle="butt",
                alpha=0.6)
    ax.scatter(t["loss_q50"], ypos, marker="|", s=220, color="#1f3f7f", zorder=4, label="median")
    ax.scatter(t["loss_mean"], ypos, marker="o", s=36, color="white", edgecolors="#d62728", linewidths=1.5,
               zorder=5, label="mean (if the run trains normally)")
    ax.plot([], [], color="#1f77b4", lw=3, alpha=0.6, label=f"{INTERVAL:.0%} predictive interval (new run)")
    labels = []
    for _, row in t.iterrows():
        tag = str(row["name"])
        if len(tag) > 34:
            tag = tag[:33] + "…"
        marks = []
        if picks.get("by_expected_loss") == row["name"]:
            marks.append("★")
        if picks.get("risk_aware") == row["name"]:
            marks.append("◆")
        labels.append(f"{int(row['rank'])}. {tag}" + (" " + "".join(marks) if marks else ""))
    ax.set_yticks(ypos, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("final loss (nats)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3, frameon=False)
    ax.set_title("Predicted final loss", pad=22)
    pdiv = t["p_diverge"].to_numpy(float)
    risky = np.isfinite(pdiv) & (pdiv > max_p_diverge)
    bars = ax_p.barh(ypos, t["p_best"], color=np.where(risky, "#f4a6a6", "#2ca02c"), height=0.6)
    for b in bars:
        b.set_gid("p_best_bar")
    xmax = max(0.05, float(t["p_best"].max())) * 1.55
    ax_p.set_xlim(0, min(1.0, xmax) if xmax < 1.0 else xmax)
    for i, (pb, pd_) in enumerate(zip(t["p_best"], pdiv)):
        text = "P(div) n/a" if not np.isfinite(pd_) else f"P(div) {pd_:.2f}" if pd_ >= 0.005 else "P(div) <0.01"
        ax_p.text(pb + 0.01 * xmax, i, f"{pb:.2f} | {text}", va="center", fontsize=8,
                  color="#c00000" if risky[i] else "0.2")
    ax_p.set_xlabel("P(best) (probability; diverging draws never best)")
    ax_p.set_title(f"P(best) and P(diverge) (red: P(diverge) > {max_p_diverge:g})", pad=22)
    ax_p.grid(axis="x", alpha=0.3)
    notes = ["★ pick by expected loss"]
    if picks.get("risk_aware"):
        notes.append("◆ risk-aware pick")
    elif picks:
        notes.append(f"no risk-aware pick ({picks.get('risk_aware_rule', 'no candidate is safe enough')})")
    more = len(ranking.table) - n
    suffix = f"; {more} more candidates not shown" if more > 0 else ""
    fig.suptitle(f"Candidate ranking ({len(ranking.table)} candidates{suffix}) — " + ", ".join(notes)
                 + "\nintervals include run-to-run noise; P(best) compares expected losses (epistemic draws)",
                 fontsize=11)
    fig.bol_data = {"table": t}
    return fig



# ---------------------------------------------------------------------------------------------- evaluation plots
def _coverage_points(vals: Mapping) -> tuple[list[float], list[float], int]:
    """(nominal levels, observed coverages, number of runs) of one method from its ``coverage_<pct>`` metrics;
    missing (None or NaN) values are left out."""
    points = []
    for key, value in vals.items():
        m = re.fullmatch(r"coverage_(\d+(?:\.\d+)?)", str(key))
        if m and value is not None and np.isfinite(float(value)):
            points.append((float(m.group(1)) / 100, float(value)))
    points.sort()
    return [lv for lv, _ in points], [ob for _, ob in points], int(vals.get("n") or 0)


def calibration(result: EvaluationResult, methods: Iterable[str] | None = None) -> Figure:
    """Calibration of an evaluation (:func:`bayes_optlaws.evaluation.cross_validate`; from its JSON, see
    :func:`bayes_optlaws.report.evaluation_from_json`).

    Left: nominal vs observed coverage of the central predictive intervals (the methods' ``coverage_50/80/90``),
    per method with draws, with ±2 binomial standard errors; right: P(best) reliability diagram (the
    ``reliability`` tables: mean predicted P(best) vs observed frequency of being best, marker area ∝ number of
    configurations, ECE in the legend).
    """
    all_methods, rel = result.methods, result.reliability
    names = [m for m in (methods or all_methods) if m in all_methods]
    cov = {m: _coverage_points(all_methods[m]) for m in names}
    cov = {m: c for m, c in cov.items() if c[0]}
    if not cov and not any(m in rel for m in names):
        raise ValueError("the evaluation has no method with predictive draws (no coverage or P(best) "
                         "reliability); run `bayes-optlaws evaluate` with the Bayesian law included")
    fig, axes = _new_figure(12.0, 5.4, ncols=2)
    ax, ax_r = axes[0]
    for a in (ax, ax_r):
        a.plot([0, 1], [0, 1], color="k", ls="--", lw=1, label="perfect calibration")
        a.set_xlim(0, 1)
        a.set_ylim(-0.02, 1.02)
        a.set_aspect("equal", adjustable="box")
        a.grid(alpha=0.3)
    shown = [m for m in names if m in cov or m in rel]
    colours = {m: _BLOCK_COLOURS[i % len(_BLOCK_COLOURS)] for i, m in enumerate(shown)}
    for m, (lv, ob, n) in cov.items():
        lv, ob = np.array(lv), np.array(ob)
        err = 2 * np.sqrt(lv * (1 - lv) / n) if n else None
        ax.errorbar(lv, ob, yerr=err, fmt="o-", color=colours[m], capsize=3, label=f"{m} (n={n} runs)")
    ax.set_xlabel("nominal coverage of the central interval (probability)")
    ax.set_ylabel("observed coverage on held-out runs (fraction)")
    ax.set_title("Predictive-interval coverage\n(error bars: ±2 binomial s.e. at the nominal level)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)
    for m in names:
        if m not in rel:
            continue
        t = pd.DataFrame(rel[m])
        t = t[t["count"].astype(float) > 0]
        if not len(t):
            continue
        cnt = t["count"].to_numpy(float)
        freq = t["freq"].to_numpy(float)
        mean_p = t["mean_p"].to_numpy(float)
        ece = all_methods[m].get("pbest_ece")  # the evaluation's expected calibration error of this table
        ece_text = f"ECE {float(ece):.3f}" if ece is not None and np.isfinite(float(ece)) else "ECE n/a"
        lo, hi = _wilson(freq, cnt)
        ax_r.errorbar(mean_p, freq, yerr=[freq - lo, hi - freq], fmt="none", ecolor=colours[m], alpha=0.6,
                      capsize=2)
        ax_r.scatter(mean_p, freq, s=20 + 300 * cnt / cnt.max(), color=colours[m], alpha=0.8, edgecolors="k",
                     linewidths=0.5, zorder=4, label=f"{m} ({ece_text}, {int(cnt.sum())} configurations)")
        for x_, y_, c_ in zip(mean_p, freq, cnt):
            ax_r.annotate(f"{int(c_)}", (x_, y_), textcoords="offset points", xytext=(7, 3), fontsize=7,
                          color="0.25")
    ax_r.set_xlabel("predicted P(best), bin mean (probability)")
    ax_r.set_ylabel("observed frequency of being best (fraction)")
    ax_r.set_title("P(best) reliability (marker area ∝ configurations in the bin,\n"
                   "numbers = count; bars: 95 % Wilson interval)")
    ax_r.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)
    fig.suptitle("Calibration on held-out runs (block-wise cross-validation)", fontsize=11)
    fig.bol_data = {"coverage": cov, "reliability": {m: rel[m] for m in names if m in rel}}
    return fig


def _wilson(freq: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """95 % Wilson score interval of a binomial proportion (well-behaved for small counts and 0 or 1)."""
    denom = 1 + z**2 / n
    centre = (freq + z**2 / (2 * n)) / denom
    half = z * np.sqrt(freq * (1 - freq) / n + z**2 / (4 * n**2)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def _parse_ablation(methods: Mapping) -> dict[str, dict[str, Mapping]]:
    out: dict[str, dict[str, Mapping]] = {}
    for name, vals in methods.items():
        m = re.fullmatch(r"(.+)\[(.+)\]", str(name))
        if m:
            out.setdefault(m.group(1), {})[m.group(2)] = vals
    return out



def ablation(result: EvaluationResult, paper_reference: bool = True) -> Figure:
    """Spearman and Top-2 hit rate per feature-block ablation step of an evaluation (methods named
    ``family[step]``, e.g. ``optlaw_ls[scale]``, ``optlaw_ls[+convergence]``, ``bayes_optlaw[+mixed]``), one line
    per family; the paper's Table 9 (its own data) in grey for context."""
    fams = _parse_ablation(result.methods)
    if not fams:
        raise ValueError("the evaluation has no ablation methods (named like 'optlaw_ls[+escape]'); run "
                         "`bayes-optlaws evaluate --ablation --json EVAL.json`")
    steps = [s for s in ABLATION_ORDER if any(s in f for f in fams.values())]
    steps += sorted({s for f in fams.values() for s in f} - set(steps))
    fig, axes = _new_figure(12.0, 4.8, ncols=2)
    for ax, metric, label, scale in ((axes[0][0], "spearman", "Spearman ρ within blocks (−1 to 1)", 1.0),
                                     (axes[0][1], "top2", "Top-2 hit rate (%)", 100.0)):
        n_fam = len(fams)
        for i, (fam, vals) in enumerate(sorted(fams.items())):
            dodge = (i - (n_fam - 1) / 2) * 0.08  # families side by side, so equal values stay visible
            ks = [k for k, s in enumerate(steps) if s in vals]
            xs = [k + dodge for k in ks]
            ys = [float(vals[steps[k]].get(metric)) * scale if vals[steps[k]].get(metric) is not None
                  else np.nan for k in ks]
            ax.plot(xs, ys, marker="oD^v"[i % 4], ls="-", color=_BLOCK_COLOURS[i % len(_BLOCK_COLOURS)], lw=2,
                    ms=7, label=fam)
            for x_, y_ in zip(xs, ys):
                if np.isfinite(y_):
                    ax.annotate(f"{y_:.2f}" if scale == 1 else f"{y_:.0f}", (x_, y_), textcoords="offset points",
                                xytext=(0, 8 if i % 2 == 0 else -14), ha="center", fontsize=8,
                                color=_BLOCK_COLOURS[i % len(_BLOCK_COLOURS)])
        if paper_reference and list(steps[:4]) == list(ABLATION_ORDER):
            ax.plot(range(4), np.array(PAPER_ABLATION[metric]) * scale, "s--", color="0.6", ms=5,
                    label="paper, Table 9 (its data)")
        ax.set_xticks(range(len(steps)), steps)
        ax.set_xlabel("feature blocks (cumulative)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        if scale == 100.0:
            ax.set_ylim(-6, 106)
        else:
            ys_all = np.concatenate([np.asarray(ln.get_ydata(), float) for ln in ax.get_lines()])
            low = float(np.nanmin(ys_all)) if np.isfinite(ys_all).any() else 0.0
            ax.set_ylim(min(-0.05, low - 0.12), 1.05)
    axes[0][0].set_title("Ranking within blocks: Spearman")
    axes[0][1].set_title("Top-2: predicted best among the 2 actual best")
    fig.suptitle("Ablation: scale → +convergence → +escape → +mixed features (held-out, block-wise CV)",
                 fontsize=11)
    fig.bol_data = {"steps": steps, "families": fams}
    return fig



# ---------------------------------------------------------------------------------------------- diagnostics
TRACE_VARS = ("intercept", "beta", "sigma", "sigma_size")


def _diagnostics_line(diagnostics: Mapping) -> str:
    nan = float("nan")
    return (f"all sampled parameters: max R-hat {diagnostics.get('max_rhat', nan):.3f}, "
            f"min bulk ESS {diagnostics.get('min_ess_bulk', nan):.0f}"
            f", {diagnostics.get('divergences', 0)} divergent transitions, {diagnostics.get('draws', 0)} draws")


def trace(idata, diagnostics: Mapping, kind: str = "forest", var_names: Iterable[str] = TRACE_VARS) -> Figure:
    """ArviZ (arviz-plots) plot of a posterior's main parameters (the loss model's: standardised scale).

    ``idata``: a DataTree with a ``posterior`` group (e.g. ``law.loss_idata_``); ``diagnostics``: its sampler
    summary for the title (``max_rhat``, ``min_ess_bulk``, ``divergences``, ``draws``; e.g.
    ``law.loss_diagnostics_``).  ``kind="forest"`` (default): per-chain 94 % intervals of intercept, each slope
    ``beta`` and the scales ``sigma``/``sigma_size`` (chains that disagree show as shifted rows).
    ``kind="trace"``: marginal densities and traces per chain (``beta`` overlaid in one panel).
    """
    import arviz_plots as azp

    if kind not in ("forest", "trace"):
        raise ValueError(f"kind must be 'forest' or 'trace', got {kind!r}")
    names = [v for v in var_names if v in idata.posterior.data_vars]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "forest":
            pc = azp.plot_forest(idata, var_names=names, backend="matplotlib")
        else:
            pc = azp.plot_trace_dist(idata, var_names=names, compact=True, backend="matplotlib")
    fig = pc.get_viz("figure")
    if kind == "forest":
        for ax in fig.axes:
            if ax.get_xticks().size and ax.get_visible() and ax.get_xaxis().get_visible() and ax.has_data():
                ax.set_xlabel("standardised units (log loss / sd; slopes per feature sd)")
                ax.axvline(0, color="0.7", lw=0.8, zorder=0)
    else:
        for ax in fig.axes:
            if ax.get_xlabel() == "Draw":
                ax.set_xlabel("draw (per chain)")
    what = "forest, one row per chain" if kind == "forest" else "trace"
    fig.suptitle(f"Loss model parameters ({what})\n{_diagnostics_line(diagnostics or {})}", fontsize=11)
    fig.bol_data = {"var_names": names, "kind": kind}
    fig.bol_plot_collection = pc
    return fig


# ---------------------------------------------------------------------------------------------- saving
def save(fig: Figure, path, dpi: int = 150) -> list[Path]:
    """Write ``fig`` as PNG and SVG: ``path`` with its suffix replaced (``.png``/``.svg``) or appended."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix.lower() in (".png", ".svg") else path
    base.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in (".png", ".svg"):
        target = base.parent / (base.name + ext)
        fig.savefig(target, dpi=dpi, bbox_inches="tight")
        out.append(target)
    return out


def to_png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """PNG bytes of a figure (for embedding)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()
