"""The maps' numbers (bayes_optlaws.surface) from the session's small real fit on a SYNTHETIC grid."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from bayes_optlaws import surface
from bayes_optlaws.schedules import Schedule

# the block the tests look at (tests/synthetic.py: 5 peak LRs × 3 warmups per block)
N, STEPS, TPS = 200_000, 2000, 4096


def _block(table):
    return table[(table["model_params"] == N) & (table["tokens"] == STEPS * TPS)]


def test_block_runs_adds_peak_lr_warmup_and_family(synthetic_table):
    runs = surface.block_runs(synthetic_table, N, STEPS, TPS)
    block = _block(synthetic_table)
    assert list(runs["run_id"]) == list(block["run_id"])
    scheds = [Schedule.from_spec(s) for s in block["schedule"]]
    np.testing.assert_allclose(runs["peak_lr"], [s.peak_lr for s in scheds])
    np.testing.assert_allclose(runs["warmup_frac"], [s.phases().t1 / s.total for s in scheds])
    assert set(runs["family"]) == {"linear"}
    assert len(surface.block_runs(synthetic_table, N, 999, TPS)) == 0


def test_default_axes_cover_every_training_run(synthetic_table):
    runs = surface.block_runs(synthetic_table, N, STEPS, TPS)
    lrs, warmups = surface.default_axes(synthetic_table, runs)
    assert len(lrs) == 25 and len(warmups) == 13
    assert lrs[0] == pytest.approx(3e-3 / 1.5) and lrs[-1] == pytest.approx(3e-1 * 1.5)
    assert warmups[0] == 0 and warmups[-1] == pytest.approx(0.1)
    assert np.allclose(np.diff(np.sqrt(warmups)), np.sqrt(0.1) / 12)  # even on the square-root axis


def test_surface_grid_uncertainty_and_boundary(fitted_law):
    grid = surface.surface_grid(fitted_law, N, STEPS, TPS)
    shape = (len(grid.warmups), len(grid.peak_lrs))
    for name in ("mean", "q05", "q50", "q95", "width", "p_diverge", "p_diverge_width"):
        assert getattr(grid, name).shape == shape, name
    assert np.all(grid.width > 0) and np.all(grid.q05 <= grid.q50) and np.all(grid.q50 <= grid.q95)
    assert grid.has_divergence and grid.tokens == STEPS * TPS
    # high peak LR without warmup diverges, a small peak LR does not
    assert grid.p_diverge[0, -1] > 0.5 > grid.p_diverge[0, 0]
    best = grid.best_stable_cell()
    assert best is not None and grid.p_diverge[list(grid.warmups).index(best["warmup"]),
                                               list(grid.peak_lrs).index(best["peak_lr"])] <= 0.5


def test_surface_grid_matches_observed_losses_on_their_own_grid(fitted_law, synthetic_table):
    block = _block(synthetic_table)
    scheds = [Schedule.from_spec(s) for s in block["schedule"]]
    lrs = sorted({s.peak_lr for s in scheds})
    wus = sorted({s.phases().t1 / s.total for s in scheds})
    grid = surface.surface_grid(fitted_law, N, STEPS, TPS, peak_lrs=lrs, warmups=wus)
    checked = 0
    for s, (_, row) in zip(scheds, block.iterrows()):
        if row["diverged"]:
            continue
        i, j = wus.index(s.phases().t1 / s.total), lrs.index(s.peak_lr)
        assert abs(grid.mean[i, j] - row["final_loss"]) / row["final_loss"] < 0.03
        checked += 1
    assert checked >= 5


def test_surface_grid_without_a_divergence_model(fitted_law):
    law = copy.copy(fitted_law)
    law.div_fit_ = None
    grid = surface.surface_grid(law, N, STEPS, TPS, peak_lrs=[1e-2, 3e-1], warmups=[0.0, 0.1])
    assert not grid.has_divergence and np.all(np.isnan(grid.p_diverge))
    assert grid.stable().all()
