"""Unit tests for bayes_optlaws.schedules: spec forms, exact integrals, phase detection, validation.

Closed forms are from opt-laws.md §3 (per piece of length ℓ): ∫η and the step-grid escape integral Σ(Δη)².
No sampling here; everything is plain numpy and runs in well under a second per test.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import integrate

from bayes_optlaws.schedules import (FAMILIES, PEAK_FRACTION, SHAPES, Schedule, ScheduleError, scale_spec,
                                     schedule_family)

HYP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def S(spec) -> Schedule:
    return Schedule.from_spec(spec)


def logged(sched: Schedule, every: int = 1) -> Schedule:
    """The same schedule as a logged per-step (or every-k-step) LR trace."""
    steps = np.arange(0, sched.total + 1, every)
    assert steps[-1] == sched.total
    return Schedule.from_spec({"steps": steps.tolist(), "lr": sched.lr_at(steps).tolist()})


def approx(x, rel=1e-12, abs_=1e-300):
    return pytest.approx(x, rel=rel, abs=abs_)


# ============================================================================ spec forms -> one schedule
LINEAR = {"family": "linear", "peak_lr": 3e-3, "warmup": 100, "total": 2000}


def test_family_linear_equals_knots():
    fam = S(LINEAR)
    kn = S({"knots": [[0, 0.0], [100, 3e-3], [2000, 0.0]]})
    assert fam == kn
    assert fam.total == 2000 and fam.peak_lr == 3e-3 and fam.final_lr == 0.0
    assert fam.integral() == kn.integral() == approx(3e-3 * 2000 / 2)
    assert fam.escape_integral() == kn.escape_integral()
    np.testing.assert_array_equal(fam.knots, [[0, 0.0], [100, 3e-3], [2000, 0.0]])


def test_json_string_spec_equals_dict_spec():
    assert S(json.dumps(LINEAR)) == S(LINEAR)
    assert S(S(LINEAR)) == S(LINEAR)  # a Schedule passes through


@pytest.mark.parametrize("spec, knots", [
    ({"family": "wsd", "peak_lr": 1e-3, "warmup": 50, "total": 1000, "cooldown": 200},
     [[0, 0], [50, 1e-3], [800, 1e-3], [1000, 0]]),
    ({"family": "wsd", "peak_lr": 1e-3, "warmup": 50, "total": 1000, "cooldown": 200, "cooldown_shape": "linear"},
     [[0, 0], [50, 1e-3], [800, 1e-3], [1000, 0]]),
    ({"family": "constant", "peak_lr": 1e-3, "warmup": 50, "total": 1000}, [[0, 0], [50, 1e-3], [1000, 1e-3]]),
    ({"family": "constant", "peak_lr": 1e-3, "warmup": 0, "total": 1000}, [[0, 1e-3], [1000, 1e-3]]),
    ({"family": "polygon", "peak_lr": 1e-3, "t1": 50, "t2": 300, "t3": 700, "mid_lr": 4e-4, "total": 1000},
     [[0, 0], [50, 1e-3], [300, 4e-4], [700, 4e-4], [1000, 0]]),
    ({"family": "polygon", "peak_lr": 1e-3, "t1": 50, "t2": 300, "t3": 300, "mid_lr": 4e-4, "total": 1000},
     [[0, 0], [50, 1e-3], [300, 4e-4], [1000, 0]]),
    ({"family": "linear", "peak_lr": 1e-3, "warmup": 0, "total": 1000, "final_lr": 1e-4}, [[0, 1e-3], [1000, 1e-4]]),
])
def test_piecewise_linear_families_equal_knots(spec, knots):
    fam, kn = S(spec), S({"knots": knots})
    assert fam == kn
    assert fam.integral() == kn.integral()
    assert fam.escape_integral() == kn.escape_integral()


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt"])
def test_wsd_equals_knots_with_shapes(shape):
    spec = {"family": "wsd", "peak_lr": 2e-3, "warmup": 20, "total": 500, "cooldown": 100, "cooldown_shape": shape}
    kn = S({"knots": [[0, 0], [20, 2e-3], [400, 2e-3], [500, 0]], "shapes": ["linear", "linear", shape]})
    assert S(spec) == kn
    assert S(spec).integral() == kn.integral()


def test_cosine_family_equals_knots_with_cosine_piece():
    spec = {"family": "cosine", "peak_lr": 2e-3, "warmup": 20, "total": 500, "final_lr": 2e-4}
    kn = S({"knots": [[0, 0], [20, 2e-3], [500, 2e-4]], "shapes": ["linear", "cosine"]})
    assert S(spec) == kn
    # ∫ = warmup triangle + cosine piece (mean of its end values × length)
    assert S(spec).integral() == approx(2e-3 * 20 / 2 + (2e-3 + 2e-4) / 2 * 480)


def test_different_schedules_are_not_equal():
    assert S(LINEAR) != S({**LINEAR, "warmup": 101})
    assert S(LINEAR) != S({**LINEAR, "family": "cosine"})
    assert S(LINEAR) != S({**LINEAR, "peak_lr": 3.1e-3})


@pytest.mark.parametrize("spec", [
    LINEAR,
    {"family": "wsd", "peak_lr": 1e-3, "warmup": 40, "total": 1200, "cooldown": 240},
    {"family": "constant", "peak_lr": 1e-3, "warmup": 40, "total": 1200},
    {"family": "polygon", "peak_lr": 1e-3, "t1": 40, "t2": 200, "t3": 800, "mid_lr": 3e-4, "total": 1200},
    {"knots": [[0, 0], [40, 1e-3], [600, 1e-3], [600, 2e-4], [1200, 2e-4]]},  # a jump (logged per step: a 1-step ramp)
])
def test_per_step_logged_trace_matches_piecewise_linear(spec):
    sched = S(spec)
    log = logged(sched)
    assert log.source == "logged"
    assert log.total == sched.total
    np.testing.assert_array_equal(log.grid(), sched.grid())
    assert log.escape_integral() == approx(sched.escape_integral())
    assert log.phases() == sched.phases()
    if math.isfinite(sched.continuous_escape_integral()):  # no jump: the logged trace is exactly the same function
        assert log.integral() == approx(sched.integral())
        np.testing.assert_allclose(log.applied_lr(), sched.applied_lr(), rtol=1e-12)
    else:  # the jump becomes a one-step ramp in the log: ∫ differs by half a step of the drop
        assert sched.integral() - log.integral() == pytest.approx(0.5 * (1e-3 - 2e-4), rel=1e-9)


@pytest.mark.parametrize("every", [2, 5, 20, 40])
def test_logged_every_k_steps_matches_family(every):
    spec = {"family": "wsd", "peak_lr": 1e-3, "warmup": 40, "total": 1200, "cooldown": 240}
    sched = S(spec)
    log = logged(sched, every)  # knots are multiples of every k: linear interpolation recovers the schedule
    np.testing.assert_allclose(log.grid(), sched.grid(), rtol=1e-12, atol=1e-18)
    assert log.integral() == approx(sched.integral())
    assert log.escape_integral() == approx(sched.escape_integral(), rel=1e-9)
    assert log.phases() == sched.phases()


def test_logged_trace_starting_late_and_with_total():
    # first logged LR is held back to step 0; the last one held to 'total'
    log = S({"steps": [10, 20], "lr": [1e-3, 2e-3], "total": 30})
    np.testing.assert_allclose(log.knots, [[0, 1e-3], [10, 1e-3], [20, 2e-3], [30, 2e-3]])
    assert log.integral() == approx(10 * 1e-3 + 10 * 1.5e-3 + 10 * 2e-3)
    # unsorted logs are sorted
    assert S({"steps": [20, 0, 10], "lr": [0.0, 0.0, 1.0]}) == S({"knots": [[0, 0], [10, 1], [20, 0]]})


def test_to_spec_round_trip_including_jumps_and_shapes():
    for spec in (LINEAR,
                 {"family": "wsd", "peak_lr": 1e-3, "warmup": 10, "total": 300, "cooldown": 50,
                  "cooldown_shape": "1-sqrt"},
                 {"knots": [[0, 1.0], [100, 1.0], [100, 0.1], [200, 0.1], [200, 0.01], [300, 0.01]]}):
        sched = S(spec)
        canon = sched.to_spec()
        json.dumps(canon)  # JSON-serialisable
        again = S(canon)
        assert again == sched
        assert again.integral() == sched.integral()
        assert again.escape_integral() == sched.escape_integral()


# ============================================================================ closed forms (opt-laws.md §3)
ELLS = [1, 3, 7, 100, 1000]
ETAS = [1e-3, 0.5]


@pytest.mark.parametrize("ell", ELLS)
@pytest.mark.parametrize("eta", ETAS)
def test_closed_form_linear_warmup(eta, ell):
    s = S({"knots": [[0, 0.0], [ell, eta]]})
    assert s.integral() == approx(eta * ell / 2)
    assert s.escape_integral() == approx(eta**2 / ell)
    assert s.continuous_escape_integral() == approx(eta**2 / ell)
    assert s.applied_lr().sum() == approx(s.integral())


@pytest.mark.parametrize("ell", ELLS)
@pytest.mark.parametrize("eta", ETAS)
def test_closed_form_linear_cooldown(eta, ell):
    s = S({"knots": [[0, eta], [ell, 0.0]]})
    assert s.integral() == approx(eta * ell / 2)
    assert s.escape_integral() == approx(eta**2 / ell)
    assert s.applied_lr().sum() == approx(s.integral())


@pytest.mark.parametrize("ell", ELLS)
@pytest.mark.parametrize("eta", ETAS)
def test_closed_form_constant(eta, ell):
    s = S({"knots": [[0, eta], [ell, eta]]})
    assert s.integral() == approx(eta * ell)
    assert s.escape_integral() == 0.0
    assert s.continuous_escape_integral() == 0.0
    assert s.applied_lr().sum() == approx(eta * ell)


@pytest.mark.parametrize("ell", ELLS)
@pytest.mark.parametrize("a, b", [(1e-3, 4e-4), (2e-4, 9e-4), (0.7, 0.1)])
def test_closed_form_linear_a_to_b(a, b, ell):
    s = S({"knots": [[0, a], [ell, b]]})
    assert s.integral() == approx((a + b) * ell / 2)
    assert s.escape_integral() == approx((a - b) ** 2 / ell)
    assert s.continuous_escape_integral() == approx((a - b) ** 2 / ell)
    assert s.applied_lr().sum() == approx(s.integral())


@pytest.mark.parametrize("ell", [10, 100, 1000, 10000])
@pytest.mark.parametrize("eta", ETAS)
def test_closed_form_cosine_cooldown(eta, ell):
    s = S({"knots": [[0, eta], [ell, 0.0]], "shapes": ["cosine"]})
    assert s.integral() == approx(eta * ell / 2)
    closed = math.pi**2 * eta**2 / (8 * ell)
    assert s.continuous_escape_integral() == approx(closed)
    # on the step grid: Σ (Δη)² = (ℓ/2) η² sin²(π/(2ℓ)) exactly, → π²η²/(8ℓ) with relative error ~ π²/(12 ℓ²)
    assert s.escape_integral() == approx(ell / 2 * eta**2 * math.sin(math.pi / (2 * ell)) ** 2, rel=1e-10)
    rel_err = abs(s.escape_integral() / closed - 1)
    assert rel_err < math.pi**2 / (12 * ell**2) * 1.01
    assert s.escape_integral() < closed


def test_cosine_escape_converges_monotonically():
    errs = [abs(S({"family": "cosine", "peak_lr": 1.0, "warmup": 0, "total": ell}).escape_integral()
                * 8 * ell / math.pi**2 - 1) for ell in (4, 16, 64, 256, 1024)]
    assert all(e2 < e1 / 10 for e1, e2 in zip(errs, errs[1:]))
    # at equal ∫η, linear decay has the smaller escape integral (1 vs π²/8)
    lin = S({"family": "linear", "peak_lr": 1.0, "warmup": 0, "total": 1000})
    cos = S({"family": "cosine", "peak_lr": 1.0, "warmup": 0, "total": 1000})
    assert lin.integral() == approx(cos.integral())
    assert cos.escape_integral() / lin.escape_integral() == pytest.approx(math.pi**2 / 8, rel=1e-5)


@pytest.mark.parametrize("shape, factor", [("cosine", 0.5), ("1-sqrt", 1 / 3)])
def test_curved_pieces_integral_matches_quadrature(shape, factor):
    eta, ell = 2e-3, 400
    s = S({"knots": [[0, eta], [ell, 0.0]], "shapes": [shape]})
    assert s.integral() == approx(eta * ell * factor)
    quad, _ = integrate.quad(lambda t: float(s.lr_at(t)), 0, ell, limit=200)
    assert s.integral() == pytest.approx(quad, rel=1e-8)
    # partial integrals too
    for a, b in ((0, 37.5), (100, 399), (250.25, 400)):
        q, _ = integrate.quad(lambda t: float(s.lr_at(t)), a, b, limit=200)
        assert s.integral(a, b) == pytest.approx(q, rel=1e-8)


@pytest.mark.parametrize("shape", ["cosine", "1-sqrt"])
def test_curved_pieces_vs_per_step_array(shape):
    eta, ell = 1e-3, 1000
    s = S({"knots": [[0, eta], [ell, 0.0]], "shapes": [shape]})
    log = logged(s)
    # the escape integral is defined on the step grid, so the per-step array gives the same value
    assert log.escape_integral() == approx(s.escape_integral(), rel=1e-12)
    # ∫η of the per-step array is the trapezoid rule: close, not exact
    assert log.integral() == pytest.approx(s.integral(), rel=1e-3)
    # the numerical sum of the per-step array equals the trapezoid rule on the grid
    g = s.grid()
    assert log.integral() == approx(float(np.sum((g[1:] + g[:-1]) / 2)), rel=1e-12)


def test_one_minus_sqrt_escape_is_finite_on_step_grid():
    s = S({"family": "wsd", "peak_lr": 1.0, "warmup": 0, "total": 1000, "cooldown": 100, "cooldown_shape": "1-sqrt"})
    assert math.isinf(s.continuous_escape_integral())
    e = s.escape_integral()
    assert math.isfinite(e)
    # eta(u) = 1 - sqrt(u) on the cooldown: one step in (u = 1/100) the LR has already dropped by 1/10
    g = s.grid()
    assert g[901] == pytest.approx(1 - math.sqrt(1 / 100))
    assert e == approx(float(np.sum(np.diff(g) ** 2)))
    assert e > S({"family": "wsd", "peak_lr": 1.0, "warmup": 0, "total": 1000, "cooldown": 100}).escape_integral()


@pytest.mark.parametrize("spec", [
    LINEAR,
    {"family": "wsd", "peak_lr": 1e-3, "warmup": 17, "total": 999, "cooldown": 123},
    {"family": "constant", "peak_lr": 1e-3, "warmup": 17, "total": 999},
    {"family": "polygon", "peak_lr": 1e-3, "t1": 17, "t2": 300, "t3": 700, "mid_lr": 3e-4, "total": 999},
    {"knots": [[0, 1e-3], [500, 1e-3], [500, 1e-4], [999, 1e-4]]},
])
def test_applied_lr_sums_to_integral_for_piecewise_linear(spec):
    s = S(spec)
    assert s.applied_lr().shape == (s.total,)
    assert s.applied_lr().sum() == approx(s.integral())
    assert s.grid().shape == (s.total + 1,)


def test_applied_lr_is_midpoint_value():
    s = S({"knots": [[0, 0.0], [4, 4.0]]})
    np.testing.assert_allclose(s.applied_lr(), [0.5, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(s.grid(), [0, 1, 2, 3, 4])
    assert s.cumulative_integral([0, 1, 2, 4]) == pytest.approx([0, 0.5, 2.0, 8.0])
    with pytest.raises(ValueError):
        s.lr_at(5)


def test_integral_of_segments_adds_up():
    s = S({"family": "polygon", "peak_lr": 1e-3, "t1": 50, "t2": 300, "t3": 700, "mid_lr": 3e-4, "total": 1000})
    parts = s.integral(0, 50) + s.integral(50, 300) + s.integral(300, 700) + s.integral(700, 1000)
    assert parts == approx(s.integral())
    assert s.integral(0, 50) == approx(1e-3 * 50 / 2)
    assert s.integral(50, 300) == approx((1e-3 + 3e-4) * 250 / 2)
    assert s.integral(300, 700) == approx(3e-4 * 400)
    assert s.integral(700, 1000) == approx(3e-4 * 300 / 2)
    assert s.escape_integral(0, 50) == approx(1e-6 / 50)
    assert s.escape_integral(50, 300) == approx(7e-4**2 / 250)
    assert s.escape_integral(300, 700) == 0.0
    assert s.escape_integral(700, 1000) == approx(9e-8 / 300)
    assert s.escape_integral() == approx(1e-6 / 50 + 7e-4**2 / 250 + 9e-8 / 300)


# ============================================================================ jumps
def test_jump_via_two_knots_at_same_step():
    s = S({"knots": [[0, 1.0], [500, 1.0], [500, 0.1], [1000, 0.1]]})
    assert s.lr_at(499.5) == pytest.approx(1.0)
    assert s.lr_at(500) == pytest.approx(0.1)  # right-continuous: the new LR applies from the jump step on
    assert s.integral() == approx(500 * 1.0 + 500 * 0.1)
    assert s.applied_lr().sum() == approx(s.integral())
    assert s.escape_integral() == approx(0.9**2)  # one step of Δη = 0.9
    assert math.isinf(s.continuous_escape_integral())
    ph = s.phases()
    assert (ph.t1, ph.t2, ph.t3) == (0, 0, 499)
    assert any("final LR" in w for w in ph.warnings)
    assert any("floor" in w for w in ph.warnings)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 40.0), st.floats(0.0, 1.0), st.sampled_from(SHAPES)), min_size=1,
                max_size=6),
       st.integers(1, 300))
def test_step_grid_is_lr_at_every_whole_step(pieces, total):
    """grid() is built piece by piece on slices; it must equal lr_at(0..total) bit for bit, with fractional knots,
    jumps (zero-length gaps) and every piece shape."""
    gaps = np.array([p[0] for p in pieces])
    assume(gaps.sum() > 0)
    steps = np.concatenate([[0.0], np.cumsum(gaps) / gaps.sum() * total])
    steps[-1] = total
    lrs = [1.0] + [p[1] for p in pieces]
    assume(max(lrs) > 0)
    s = Schedule.from_knots(np.column_stack([steps, lrs]), shapes=[p[2] for p in pieces])
    np.testing.assert_array_equal(s.grid(), s.lr_at(np.arange(s.total + 1, dtype=float)))


def test_escape_integral_independent_of_where_a_drop_is_logged():
    # a one-step drop at step 500 written as knots, and as a per-step log: same grid, same escape integral
    s = S({"knots": [[0, 1.0], [500, 1.0], [500, 0.1], [1000, 0.1]]})
    assert logged(s).escape_integral() == approx(s.escape_integral())


# ============================================================================ phases (opt-laws.md §4 rule)
def _ph(spec):
    p = S(spec).phases()
    return p.t1, p.t2, p.t3, p.total, p.warnings


@pytest.mark.parametrize("warmup", [0, 1, 10, 100, 999])
def test_phases_linear(warmup):
    t1, t2, t3, total, warnings = _ph({"family": "linear", "peak_lr": 3e-3, "warmup": warmup, "total": 5000})
    assert (t1, t2, t3, total) == (warmup, warmup, warmup, 5000)
    assert warnings == ()


@pytest.mark.parametrize("warmup", [1000, 2000, 5000])
def test_phases_linear_long_warmup_no_spurious_warning(warmup):
    t1, t2, t3, total, warnings = _ph({"family": "linear", "peak_lr": 3e-3, "warmup": warmup, "total": 10000})
    assert warnings == ()
    assert t1 == t2 == t3
    assert warmup * PEAK_FRACTION <= t1 <= warmup


@pytest.mark.parametrize("warmup", [1000, 2000, 5000])
def test_phases_linear_long_warmup(warmup):
    t1, t2, t3, total, warnings = _ph({"family": "linear", "peak_lr": 3e-3, "warmup": warmup, "total": 10000})
    assert (t1, t2, t3) == (warmup, warmup, warmup)


def test_phases_long_warmup_logged_every_k():
    fam = S({"family": "linear", "peak_lr": 1e-3, "warmup": 2000, "total": 4000})
    assert logged(fam, 4).phases() == fam.phases()


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("warmup", [0, 25])
def test_phases_wsd(shape, warmup):
    spec = {"family": "wsd", "peak_lr": 3e-3, "warmup": warmup, "total": 1000, "cooldown": 200,
            "cooldown_shape": shape}
    t1, t2, t3, total, warnings = _ph(spec)
    assert (t1, t2, t3, total) == (warmup, warmup, 800, 1000)
    assert warnings == ()


@pytest.mark.parametrize("total", [100, 1000, 20000])
@pytest.mark.parametrize("warmup", [0, 30])
def test_phases_cosine_has_no_plateau_at_the_top(warmup, total):
    t1, t2, t3, _, warnings = _ph({"family": "cosine", "peak_lr": 3e-3, "warmup": warmup, "total": total})
    assert (t1, t2, t3) == (warmup, warmup, warmup)
    assert warnings == ()


def test_phases_cosine_to_floor_warns_final_lr_but_not_floor():
    *_, warnings = _ph({"family": "cosine", "peak_lr": 1.0, "warmup": 10, "total": 1000, "final_lr": 0.1})
    assert len(warnings) == 1 and "final LR is 0.1" in warnings[0]


def test_phases_polygon():
    t1, t2, t3, total, warnings = _ph({"family": "polygon", "peak_lr": 1e-3, "t1": 40, "t2": 300, "t3": 700,
                                       "mid_lr": 3e-4, "total": 1000})
    assert (t1, t2, t3, total) == (40, 300, 700, 1000)
    assert warnings == ()


def test_phases_polygon_with_mid_at_peak_is_wsd():
    # mid_lr == peak: the plateau is at the top, so t2 = t1 (a WSD schedule)
    t1, t2, t3, *_ = _ph({"family": "polygon", "peak_lr": 1e-3, "t1": 40, "t2": 40, "t3": 700, "mid_lr": 1e-3,
                          "total": 1000})
    assert (t1, t2, t3) == (40, 40, 700)


def test_phases_constant_warns_non_zero_final_lr():
    t1, t2, t3, total, warnings = _ph({"family": "constant", "peak_lr": 1e-3, "warmup": 50, "total": 1000})
    assert (t1, t2, t3) == (50, 50, 50)
    assert len(warnings) == 1
    assert "final LR is 1 × peak" in warnings[0]


def test_phases_linear_with_final_lr_warns():
    *_, warnings = _ph({"family": "linear", "peak_lr": 1.0, "warmup": 10, "total": 100, "final_lr": 0.01})
    assert len(warnings) == 1 and "final LR" in warnings[0]
    # a residual LR below 1e-3 × peak is treated as zero
    *_, warnings = _ph({"family": "linear", "peak_lr": 1.0, "warmup": 10, "total": 100, "final_lr": 1e-4})
    assert warnings == ()


def test_phases_two_stage_drop_to_floor_is_flagged():
    spec = {"knots": [[0, 0], [100, 1.0], [1000, 1.0], [1000, 0.3], [1500, 0.3], [1500, 0.1], [2000, 0.1]]}
    t1, t2, t3, total, warnings = _ph(spec)
    # last flat segment followed by a decrease is the 0.3 shelf [1000, 1499]; it lies below the peak
    assert (t1, t2, t3, total) == (100, 1000, 1499, 2000)
    assert any("floor" in w for w in warnings)
    assert any("final LR is 0.1" in w for w in warnings)


def test_phases_linear_decay_to_floor_held_is_flagged():
    spec = {"knots": [[0, 0], [10, 1.0], [500, 0.1], [1000, 0.1]]}
    *_, warnings = _ph(spec)
    assert any("floor" in w for w in warnings)


def test_phases_rise_after_cooldown_is_flagged():
    spec = {"knots": [[0, 0], [10, 1.0], [50, 1.0], [60, 0.5], [80, 0.8], [100, 0]]}
    t1, t2, t3, _, warnings = _ph(spec)
    assert (t1, t2, t3) == (10, 10, 50)
    assert any("rises again" in w for w in warnings)


def test_phase_constants_match_reference():
    assert PEAK_FRACTION == 0.999
    # the 0.999 × peak threshold only locates the top: t1 follows the rise to where the LR stops increasing, so a
    # long linear warmup (which crosses 0.999 × peak a few steps early, on a float-fragile grid value) ends at
    # its knot in every spec form
    s = S({"knots": [[0, 0], [10, 0.9995], [11, 1.0], [500, 0]]})
    assert s.phases().t1 == 11
    # a flat top just under the peak (logged noise) is not a rise: t1 stays at the first step >= 0.999 × peak
    s = S({"knots": [[0, 0], [10, 0.9995], [400, 0.9995], [401, 1.0], [500, 0]]})
    assert s.phases().t1 == 10


# ============================================================================ validation errors
@pytest.mark.parametrize("spec, match", [
    ({"family": "linear", "peak_lr": -1e-3, "warmup": 10, "total": 100}, "'peak_lr' must be >= 0"),
    ({"family": "linear", "peak_lr": 0.0, "warmup": 10, "total": 100}, "'peak_lr' must be > 0"),
    ({"knots": [[0, 0], [10, -1e-3], [100, 0]]}, r"learning rates must be >= 0 \(knot 1"),
    ({"steps": [0, 10, 20], "lr": [0, -1, 0]}, "learning rates must be >= 0"),
    ({"family": "linear", "peak_lr": 1e-3, "warmup": 200, "total": 100}, "'warmup' .* longer than the run"),
    ({"family": "cosine", "peak_lr": 1e-3, "warmup": 100, "total": 100}, "'warmup' .* equals 'total'"),
    ({"family": "step", "peak_lr": 1e-3, "warmup": 10, "total": 100}, "unknown schedule family 'step'"),
    ({"family": "linear", "peak_lr": 1e-3, "warmup": 10, "total": 100, "decay": 5}, r"unknown key\(s\) \['decay'\]"),
    ({"knots": [[0, 0], [10, 1]], "total": 10}, r"unknown key\(s\) \['total'\]"),
    ({"steps": [0, 1], "lr": [1, 1], "every": 2}, r"unknown key\(s\) \['every'\]"),
    ({"family": "linear", "peak_lr": "fast", "warmup": 10, "total": 100}, "'peak_lr' must be a number"),
    ({"family": "linear", "peak_lr": 1e-3, "warmup": [10], "total": 100}, "'warmup' must be a number"),
    ({"family": "linear", "peak_lr": 1e-3, "warmup": 10.5, "total": 100}, "'warmup' is a number of steps"),
    ({"family": "linear", "peak_lr": float("nan"), "warmup": 10, "total": 100}, "'peak_lr' must be finite"),
    ({"family": "linear", "peak_lr": 1e-3, "warmup": 10}, "missing 'total'"),
    ({"family": "linear", "peak_lr": 1e-3, "warmup": 10, "total": 0}, "'total' must be at least 1 step"),
    ({"family": "linear", "peak_lr": 1e-3, "warmup": 10, "total": 100, "final_lr": 2e-3}, "'final_lr'"),
    ({"family": "wsd", "peak_lr": 1e-3, "warmup": 10, "total": 100}, "missing 'cooldown'"),
    ({"family": "wsd", "peak_lr": 1e-3, "warmup": 10, "total": 100, "cooldown": 20, "cooldown_shape": "exp"},
     "'cooldown_shape'"),
    ({"family": "wsd", "peak_lr": 1e-3, "warmup": 60, "total": 100, "cooldown": 50}, "'warmup' \\+ 'cooldown'"),
    ({"family": "wsd", "peak_lr": 1e-3, "warmup": 10, "total": 100, "cooldown": 0}, "'cooldown' must be at least"),
    ({"family": "polygon", "peak_lr": 1e-3, "t1": 50, "t2": 30, "t3": 60, "mid_lr": 5e-4, "total": 100},
     "t1 <= t2 <= t3 <= total"),
    ({"family": "polygon", "peak_lr": 1e-3, "t1": 10, "t2": 30, "t3": 60, "mid_lr": 5e-3, "total": 100},
     "'mid_lr'"),
    ({"knots": [[0, 0], [100, 1e-3], [50, 0]]}, "knot steps must not decrease"),
    ({"knots": [[5, 0], [100, 1e-3]]}, "first knot must be at step 0"),
    ({"knots": [[0, 1e-3]]}, "at least two knots"),
    ({"knots": [0, 1, 2]}, "'knots' must be a list of \\[step, lr\\] pairs"),
    ({"knots": [[0, 0], [10, 0]]}, "0 everywhere"),
    ({"knots": [[0, 0], [10, 1], [20, 0]], "shapes": ["linear", "exp"]}, "unknown shape 'exp'"),
    ({"knots": [[0, 0], [10, 1], [20, 0]], "shapes": ["linear"]}, "one shape per piece"),
    ({"knots": [[0, 0], [10.5, 1]]}, "whole step"),
    ({"steps": [0, 10, 10], "lr": [0, 1, 1]}, "step 10 appears twice"),
    ({"steps": [0, 10], "lr": [0, 1], "total": 5}, "'total' \\(5\\) is before the last logged step"),
    ({"steps": [0, 10]}, "needs both 'steps' and 'lr'"),
    ({"steps": [0, 10], "lr": [1]}, "equal, non-zero length"),
    ({"peak_lr": 1e-3}, "needs 'family'"),
    ('{"family": "linear", peak_lr: 1}', "not valid JSON"),
    ("[1, 2, 3]", "must be a JSON object"),
])
def test_validation_errors_name_the_field(spec, match):
    with pytest.raises(ScheduleError, match=match):
        Schedule.from_spec(spec)


def test_schedule_error_is_value_error():
    assert issubclass(ScheduleError, ValueError)


def test_boolean_value_is_rejected():
    with pytest.raises(ScheduleError, match="'peak_lr' must be a number"):
        Schedule.from_spec({"family": "linear", "peak_lr": True, "warmup": 10, "total": 100})


def test_numeric_strings_are_accepted():
    assert S({"family": "linear", "peak_lr": "3e-3", "warmup": "100", "total": "2000"}) == S(LINEAR)


# ============================================================================ scale_spec / labels
def test_scale_spec_family():
    spec = {"family": "wsd", "peak_lr": 1e-3, "warmup": 50, "total": 1000, "cooldown": 200}
    big = scale_spec(spec, 3000)
    assert big == {**spec, "warmup": 150, "cooldown": 600, "total": 3000}
    assert spec["total"] == 1000  # input not modified
    assert S(big).integral() == approx(3 * S(spec).integral())
    assert S(big).phases().t3 == 2400
    poly = {"family": "polygon", "peak_lr": 1e-3, "t1": 10, "t2": 30, "t3": 60, "mid_lr": 5e-4, "total": 100}
    assert scale_spec(json.dumps(poly), 1000) == {**poly, "t1": 100, "t2": 300, "t3": 600, "total": 1000}


def test_scale_spec_knots_and_errors():
    spec = {"knots": [[0, 0], [10, 1e-3], [100, 0]]}
    out = scale_spec(spec, 500)
    assert out["knots"] == [[0, 0], [50, 1e-3], [500, 0]]
    assert S(out).integral() == approx(5 * S(spec).integral())
    with pytest.raises(ScheduleError, match="logged LR trace cannot be rescaled"):
        scale_spec({"steps": [0, 10], "lr": [1, 0]}, 100)
    with pytest.raises(ScheduleError, match="cannot rescale"):
        scale_spec(LINEAR, 0)


def test_scale_spec_wsd_without_plateau_stays_valid():
    spec = {"family": "wsd", "peak_lr": 1e-3, "warmup": 1000, "total": 2000, "cooldown": 1000}
    out = scale_spec(spec, 3003)  # 1501.5 + 1501.5: both round up to 1502
    assert S(out).total == 3003


def test_schedule_family_labels():
    assert schedule_family(LINEAR) == "linear"
    assert schedule_family(json.dumps({"family": "wsd", "cooldown_shape": "1-sqrt"})) == "wsd-1-sqrt"
    assert schedule_family({"family": "wsd"}) == "wsd-linear"
    assert schedule_family({"knots": []}) == "knots"
    assert schedule_family({"steps": [], "lr": []}) == "logged"
    assert set(FAMILIES) == {"linear", "cosine", "wsd", "constant", "polygon"}


# ============================================================================ property-based
peaks = st.floats(1e-5, 1.0, allow_nan=False, allow_infinity=False)


@st.composite
def family_specs(draw, families=FAMILIES, shapes=("linear", "cosine", "1-sqrt")):
    family = draw(st.sampled_from(families))
    total = draw(st.integers(3, 20000))
    peak = draw(peaks)
    if family == "polygon":
        t1 = draw(st.integers(1, total - 2))
        t2 = draw(st.integers(t1 + 1, total - 1))
        t3 = draw(st.integers(t2, total - 1))
        mid = draw(st.floats(0.0, 0.999)) * peak
        return {"family": family, "peak_lr": peak, "t1": t1, "t2": t2, "t3": t3, "mid_lr": mid, "total": total}
    if family == "wsd":
        cooldown = draw(st.integers(1, total))
        warmup = draw(st.integers(0, total - cooldown))
        spec = {"family": family, "peak_lr": peak, "warmup": warmup, "total": total, "cooldown": cooldown,
                "cooldown_shape": draw(st.sampled_from(shapes))}
    elif family == "constant":
        spec = {"family": family, "peak_lr": peak, "warmup": draw(st.integers(0, total - 1)), "total": total}
    else:
        spec = {"family": family, "peak_lr": peak, "warmup": draw(st.integers(0, total - 1)), "total": total}
    if family != "constant" and draw(st.booleans()):
        spec["final_lr"] = draw(st.floats(0.0, 1.0)) * peak
    return spec


def assert_same_phases(a: Schedule, b: Schedule) -> None:
    """Equal phases; the final-LR warning may differ only when the final LR sits on its 1e-3 × peak threshold
    (the two forms' last grid values can differ by one ulp there)."""
    pa, pb = a.phases(), b.phases()
    assert (pa.t1, pa.t2, pa.t3, pa.total) == (pb.t1, pb.t2, pb.t3, pb.total)
    if abs(b.final_lr / b.peak_lr - 1e-3) > 1e-9:
        assert pa.warnings == pb.warnings


@HYP
@given(family_specs())
def test_prop_integrals_finite_and_non_negative(spec):
    s = S(spec)
    total_int = s.integral()
    assert math.isfinite(total_int) and total_int > 0
    assert total_int <= s.peak_lr * s.total * (1 + 1e-12)
    e = s.escape_integral()
    assert math.isfinite(e) and e >= 0
    ph = s.phases()
    assert 0 <= ph.t1 <= ph.t2 <= ph.t3 <= ph.total == s.total
    for a, b in ((0, ph.t1), (ph.t2, ph.total), (ph.t3, ph.total)):
        assert s.integral(a, b) >= 0
        assert math.isfinite(s.escape_integral(a, b)) and s.escape_integral(a, b) >= 0
    # segment pieces add up
    assert s.escape_integral(0, ph.t2) + s.escape_integral(ph.t2, ph.t3) + s.escape_integral(ph.t3, ph.total) \
        == pytest.approx(e, rel=1e-9, abs=1e-20 * s.peak_lr**2)
    assert s.integral(0, ph.t1) + s.integral(ph.t1, ph.total) == pytest.approx(total_int, rel=1e-12)
    assert s.peak_lr == pytest.approx(spec["peak_lr"])


@HYP
@given(family_specs(shapes=("linear",)).filter(lambda s: s["family"] != "cosine"))
def test_prop_spec_form_invariance_piecewise_linear(spec):
    fam = S(spec)
    kn = S(fam.to_spec())
    assert kn == fam
    assert kn.integral() == fam.integral() and kn.escape_integral() == fam.escape_integral()
    log = logged(fam)
    assert log.integral() == pytest.approx(fam.integral(), rel=1e-9)
    assert log.escape_integral() == pytest.approx(fam.escape_integral(), rel=1e-9, abs=1e-20 * fam.peak_lr**2)
    assert_same_phases(log, fam)
    assert fam.applied_lr().sum() == pytest.approx(fam.integral(), rel=1e-9)


@HYP
@given(family_specs(families=("linear", "wsd", "constant")), st.sampled_from([2, 4, 10]))
def test_prop_logged_every_k_invariance(spec, k):
    # make every transition point a multiple of k so the every-k log describes the same function
    spec = dict(spec)
    for key in ("warmup", "total", "cooldown"):
        if key in spec:
            spec[key] = spec[key] * k
    assume(spec.get("cooldown_shape", "linear") == "linear")
    fam = S(spec)
    log = logged(fam, k)
    assert log.integral() == pytest.approx(fam.integral(), rel=1e-9)
    assert log.escape_integral() == pytest.approx(fam.escape_integral(), rel=1e-9, abs=1e-20 * fam.peak_lr**2)
    assert_same_phases(log, fam)


@HYP
@given(family_specs(families=("cosine", "wsd")))
def test_prop_curved_schedule_vs_per_step_array(spec):
    fam = S(spec)
    log = logged(fam)
    # escape integrals live on the step grid: identical; ∫η by trapezoid differs by at most O(peak / total)
    assert log.escape_integral() == pytest.approx(fam.escape_integral(), rel=1e-9, abs=1e-20 * fam.peak_lr**2)
    assert abs(log.integral() - fam.integral()) <= fam.peak_lr * 1.0
    assert_same_phases(log, fam)


@HYP
@given(family_specs(), st.floats(1.01, 10.0))
def test_prop_integral_increases_with_peak_lr(spec, factor):
    spec2 = dict(spec, peak_lr=spec["peak_lr"] * factor)
    for key in ("final_lr", "mid_lr"):
        if key in spec:
            spec2[key] = spec[key] * factor
    a, b = S(spec), S(spec2)
    assert b.integral() == pytest.approx(factor * a.integral(), rel=1e-9)
    assert b.integral() > a.integral()
    assert b.escape_integral() == pytest.approx(factor**2 * a.escape_integral(), rel=1e-9, abs=1e-20 * b.peak_lr**2)


@HYP
@given(family_specs(families=("linear", "cosine", "wsd", "constant")), st.integers(1, 5000))
def test_prop_integral_increases_with_total(spec, extra):
    longer = dict(spec, total=spec["total"] + extra)
    assert S(longer).integral() > S(spec).integral()


@HYP
@given(peaks, st.integers(1, 3000), st.integers(1, 3000), st.integers(0, 200), st.integers(0, 5000))
def test_prop_longer_linear_cooldown_lowers_escape(peak, c1, c2, warmup, plateau):
    assume(c1 != c2)
    c1, c2 = sorted((c1, c2))
    total = warmup + plateau + c2
    e = []
    for c in (c1, c2):
        s = S({"family": "wsd", "peak_lr": peak, "warmup": warmup, "total": total, "cooldown": c})
        ph = s.phases()
        assert ph.t3 == total - c
        e.append(s.escape_integral(ph.t3, ph.total))
        assert e[-1] == pytest.approx(peak**2 / c, rel=1e-9)
    assert e[1] < e[0]


@HYP
@given(peaks, st.integers(1, 3000), st.integers(1, 3000), st.integers(1, 5000),
       st.sampled_from(["linear", "cosine", "wsd"]))
def test_prop_longer_warmup_lowers_warmup_escape(peak, w1, w2, rest, family):
    assume(w1 != w2)
    w1, w2 = sorted((w1, w2))
    total = w2 + rest + 1
    e = []
    for w in (w1, w2):
        spec = {"family": family, "peak_lr": peak, "warmup": w, "total": total}
        if family == "wsd":
            spec["cooldown"] = rest
        s = S(spec)
        e.append(s.escape_integral(0, s.phases().t2))
    assert e[1] < e[0]


@HYP
@given(family_specs(families=("linear", "cosine", "wsd", "polygon")))
def test_prop_template_families_ending_at_zero_have_no_warnings(spec):
    spec = {k: v for k, v in spec.items() if k != "final_lr"}
    ph = S(spec).phases()
    assert ph.warnings == ()
    if spec["family"] == "wsd" and spec["total"] - spec["cooldown"] > spec["warmup"]:  # has a plateau
        assert ph.t3 == spec["total"] - spec["cooldown"]
        assert ph.t2 == ph.t1
    if spec["family"] in ("linear", "cosine"):
        assert ph.t1 == ph.t2 == ph.t3
        assert ph.t1 == spec["warmup"]


@HYP
@given(family_specs(), st.floats(1.0, 20.0))
def test_prop_scale_spec_up_gives_valid_schedule(spec, factor):
    assume(not (spec["family"] == "wsd" and spec["warmup"] + spec["cooldown"] == spec["total"]))  # xfail above
    new_total = int(math.ceil(spec["total"] * factor))
    out = scale_spec(spec, new_total)
    s, big = S(spec), S(out)
    assert big.total == new_total
    assert big.peak_lr == s.peak_lr
    # same shape stretched: ∫η scales with the length, up to rounding each transition point to a whole step
    # (at most half a step × peak LR each, three points at most)
    r = new_total / spec["total"]
    assert abs(big.integral() - r * s.integral()) <= 1.5 * s.peak_lr * (1 + 1e-9)


def test_polygon_without_warmup_starts_at_the_peak():
    s = S({"family": "polygon", "peak_lr": 1e-2, "t1": 0, "t2": 100, "t3": 800, "mid_lr": 5e-3, "total": 1000})
    assert s.lr_at(0.0) == pytest.approx(1e-2)
    assert s == S({"knots": [[0, 1e-2], [100, 5e-3], [800, 5e-3], [1000, 0]]})
    ph = s.phases()
    assert (ph.t1, ph.t2, ph.t3) == (0, 100, 800)


@pytest.mark.parametrize("spec, message", [
    ({"knots": [[0, 0], [100, "x"], [200, 0]]}, "'knots' must hold numbers only"),
    ({"knots": [[0, 0], [100], [200, 0]]}, "'knots' must hold numbers only"),
    ({"steps": [0, 100, "a"], "lr": [0, 1e-3, 1e-4]}, "logged 'steps' must hold numbers only"),
    ({"family": "linear", "peak_lr": 1e-3, "warmup": 10, "total": 10 ** 30}, "'total'|more than"),
    ({"family": "linear", "peak_lr": 1e-3, "warmup": 10, "total": 10 ** 9}, "more than the 1e\\+07"),
])
def test_malformed_or_absurd_schedules_are_schedule_errors(spec, message):
    with pytest.raises(ScheduleError, match=message):
        Schedule.from_spec(spec)


def test_the_longest_accepted_schedule_is_a_frontier_run_with_room():
    from bayes_optlaws.schedules import MAX_STEPS

    assert Schedule.from_spec({"family": "linear", "peak_lr": 1e-3, "warmup": 10, "total": 2_000_000}).total \
        == 2_000_000
    assert MAX_STEPS >= 5 * 1_500_000  # the longest LossCast StepLaw run, with room
