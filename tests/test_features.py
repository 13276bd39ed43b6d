"""Unit tests for bayes_optlaws.features: units of the segment integrals, history, design matrix, exponent search.

Units (opt-laws.md §2): N in billions of parameters, D and time in billions of tokens, LR divided by lr_ref.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayes_optlaws.features import (BLOCKS, EXPONENT_CANDIDATES, FEATURE_NAMES, INTEGRAL_COLUMNS, FeatureError,
                                    FeatureSpec, Stage, Standardiser, design_matrix, integrals_table, ridge_fit,
                                    ridge_predict, reference_lr, segment_integrals, select_exponents, stages_from_runs)
from bayes_optlaws.runs import RunsError, validate_runs
from bayes_optlaws.schedules import Schedule

# hand-computed example: linear warmup 100 steps to 1e-3, linear cooldown to 0 at step 1000
LIN = {"family": "linear", "peak_lr": 1e-3, "warmup": 100, "total": 1000}
TPS = 1_000_000          # one step = 1e-3 billion tokens
LR_REF = 2e-3            # normalised peak = 0.5
PARAMS = 100_000_000     # N = 0.1 billion
# in normalised units: η̂ = 0.5, warmup length 0.1, cooldown length 0.9 (billions of tokens)
HAND = dict(N=0.1, D=1.0, lr_max=0.5, I_w=0.5 * 0.1 / 2, I_c=0.5 * 0.9 / 2, I=0.5 * 1.0 / 2,
            E_w=0.5**2 / 0.1, E_c=0.5**2 / 0.9)


def seg(spec, tps=TPS, params=PARAMS, lr_ref=LR_REF, **kw):
    return segment_integrals(Schedule.from_spec(spec), tps, params, lr_ref, **kw)


def as_row(s) -> dict:
    return {c: getattr(s, c) for c in INTEGRAL_COLUMNS}


# ---------------------------------------------------------------------------- segment integrals
def test_segment_integrals_hand_computed_linear():
    s = seg(LIN)
    for key, value in HAND.items():
        assert getattr(s, key) == pytest.approx(value, rel=1e-12), key
    assert s.warnings == []


def test_segment_integrals_units_scale_correctly():
    base = seg(LIN)
    # twice the tokens per step: D, I_w, I_c, I double; escape integrals (per unit time) halve
    s = seg(LIN, tps=2 * TPS)
    assert (s.D, s.I_w, s.I_c, s.I) == pytest.approx((2 * base.D, 2 * base.I_w, 2 * base.I_c, 2 * base.I))
    assert (s.E_w, s.E_c) == pytest.approx((base.E_w / 2, base.E_c / 2))
    # a larger lr_ref: LRs scale by 1/2, integrals by 1/2, escape by 1/4
    s = seg(LIN, lr_ref=2 * LR_REF)
    assert s.lr_max == pytest.approx(0.25)
    assert (s.I_w, s.I_c, s.I) == pytest.approx((base.I_w / 2, base.I_c / 2, base.I / 2))
    assert (s.E_w, s.E_c) == pytest.approx((base.E_w / 4, base.E_c / 4))
    # N is in billions and nothing else depends on it
    s = seg(LIN, params=3_000_000_000)
    assert s.N == 3.0 and s.I == base.I and s.E_c == base.E_c


def test_segment_integrals_wsd_and_polygon_segments():
    # WSD: I_w warmup, I_c = plateau + cooldown (t2 = t1), E_w warmup only, E_c cooldown only
    s = seg({"family": "wsd", "peak_lr": 2e-3, "warmup": 100, "total": 1000, "cooldown": 200})
    assert s.lr_max == 1.0
    assert s.I_w == pytest.approx(1.0 * 0.1 / 2)
    assert s.I_c == pytest.approx(1.0 * 0.7 + 1.0 * 0.2 / 2)
    assert s.I == pytest.approx(s.I_w + s.I_c)
    assert s.E_w == pytest.approx(1.0 / 0.1)
    assert s.E_c == pytest.approx(1.0 / 0.2)
    # polygon: decay phase [t1, t2] is in neither I_w nor I_c, but in E_w
    p = seg({"family": "polygon", "peak_lr": 2e-3, "t1": 100, "t2": 300, "t3": 700, "mid_lr": 1e-3, "total": 1000})
    assert p.I_w == pytest.approx(0.1 / 2)
    assert p.I_c == pytest.approx(0.5 * 0.4 + 0.5 * 0.3 / 2)
    assert p.I == pytest.approx(0.1 / 2 + (1 + 0.5) / 2 * 0.2 + p.I_c)
    assert p.E_w == pytest.approx(1 / 0.1 + 0.5**2 / 0.2)
    assert p.E_c == pytest.approx(0.5**2 / 0.3)


def test_zero_warmup_floor():
    s0 = seg({**LIN, "warmup": 0})
    floor = 0.5 * s0.lr_max * TPS / 1e9
    assert s0.I_w == pytest.approx(floor)
    assert s0.I_w > 0
    # equals a one-step warmup's ∫ (the docstring's argument)
    s1 = seg({**LIN, "warmup": 1})
    assert s1.I_w == pytest.approx(s0.I_w)
    # longer warmups are above the floor and not floored
    assert seg(LIN).I_w == pytest.approx(HAND["I_w"]) and HAND["I_w"] > floor
    # the rest of a zero-warmup run is exact
    assert s0.I_c == pytest.approx(0.5 * 1.0 / 2) and s0.I == pytest.approx(0.25)
    assert s0.E_c == pytest.approx(0.25 / 1.0)


def test_zero_warmup_escape_matches_one_step_warmup():
    s0, s1 = seg({**LIN, "warmup": 0}), seg({**LIN, "warmup": 1})
    assert s0.E_w == pytest.approx(s1.E_w)


def test_warnings_are_passed_through():
    s = seg({"family": "constant", "peak_lr": 1e-3, "warmup": 10, "total": 100})
    assert len(s.warnings) == 1 and "final LR" in s.warnings[0]
    # constant: nothing cools down -> E_c = 0, I_c is the whole post-warmup area
    assert s.E_c == 0.0
    assert s.I_c == pytest.approx(0.5 * 90 * 1e-3)


# ---------------------------------------------------------------------------- history-aware (§6)
STAGE1 = {"family": "linear", "peak_lr": 2e-3, "warmup": 100, "total": 1000}
STAGE2 = {"family": "wsd", "peak_lr": 1e-3, "warmup": 10, "total": 200, "cooldown": 50}
STAGE3 = {"family": "linear", "peak_lr": 5e-4, "warmup": 0, "total": 100}


def test_history_adds_to_I_and_D_and_normalises_escape_by_current_peak():
    alone = seg(STAGE2, tps=2 * TPS)
    first = seg(STAGE1)
    default = seg(STAGE2, tps=2 * TPS, history=[Stage(Schedule.from_spec(STAGE1), TPS)])
    # default: the current stage's escape integrals keep the pre-training normalisation (by lr_ref)
    assert (default.E_w, default.E_c) == (alone.E_w, alone.E_c)
    hist = seg(STAGE2, tps=2 * TPS, history=[Stage(Schedule.from_spec(STAGE1), TPS)], history_escape="peak")
    assert hist.I == pytest.approx(alone.I + first.I) == pytest.approx(default.I)
    assert hist.D == pytest.approx(alone.D + first.D) and hist.D == pytest.approx(0.4 + 1.0)
    # warmup/tail integrals belong to the current stage only
    assert (hist.I_w, hist.I_c) == (alone.I_w, alone.I_c)
    assert hist.N == alone.N and hist.lr_max == alone.lr_max == 0.5
    # escape of the current stage only, divided by its normalised peak²
    assert hist.E_w == pytest.approx(alone.E_w / 0.5**2)
    assert hist.E_c == pytest.approx(alone.E_c / 0.5**2)
    # hand values: warmup 10 steps × 2e-3 B tokens = 0.02, cooldown 50 steps = 0.1; peak̂ = 0.5
    assert alone.E_w == pytest.approx(0.25 / 0.02) and hist.E_w == pytest.approx(1 / 0.02)
    assert alone.E_c == pytest.approx(0.25 / 0.1) and hist.E_c == pytest.approx(1 / 0.1)


def test_history_escape_other_mode_does_not_normalise():
    alone = seg(STAGE2)
    hist = seg(STAGE2, history=[Stage(Schedule.from_spec(STAGE1), TPS)], history_escape="none")
    assert (hist.E_w, hist.E_c) == (alone.E_w, alone.E_c)
    assert hist.I > alone.I


def _chain_runs() -> pd.DataFrame:
    specs = [STAGE1, STAGE2, STAGE3]
    tps = [TPS, 2 * TPS, TPS]
    return validate_runs(pd.DataFrame({
        "run_id": ["s1", "s2", "s3"], "model_params": [PARAMS] * 3,
        "tokens": [Schedule.from_spec(s).total * t for s, t in zip(specs, tps)], "tokens_per_step": tps,
        "schedule": [json.dumps(s) for s in specs], "final_loss": [3.0, 2.9, 2.8], "diverged": [False] * 3,
        "parent_run_id": [None, "s1", "s2"]}))


def test_integrals_table_follows_parent_chain():
    runs = _chain_runs()
    assert [st.tokens_per_step for st in stages_from_runs(runs, "s3")] == [TPS, 2 * TPS]
    assert stages_from_runs(runs, "s3")[0].schedule == Schedule.from_spec(STAGE1)
    table = integrals_table(runs, LR_REF)
    assert list(table.columns) == list(INTEGRAL_COLUMNS)
    assert table.index.tolist() == runs.index.tolist()
    s1, s2, s3 = seg(STAGE1), seg(STAGE2, tps=2 * TPS), seg(STAGE3)
    assert table.loc[0, "I"] == pytest.approx(s1.I)
    assert table.loc[1, "I"] == pytest.approx(s1.I + s2.I)
    assert table.loc[2, "I"] == pytest.approx(s1.I + s2.I + s3.I)
    assert table.loc[2, "D"] == pytest.approx(1.0 + 0.4 + 0.1)
    assert table.loc[2, "I_w"] == pytest.approx(s3.I_w)
    assert table.loc[2, "E_c"] == pytest.approx(s3.E_c)  # default history_escape="none"
    peak = integrals_table(runs, LR_REF, history_escape="peak")
    assert peak.loc[2, "E_c"] == pytest.approx(s3.E_c / (5e-4 / LR_REF) ** 2)
    # the first stage has no history: identical to the plain computation
    assert table.loc[0].to_dict() == pytest.approx(as_row(s1))


def test_integrals_table_history_from_another_table():
    runs = _chain_runs()
    only_s3 = runs.iloc[[2]]
    table = integrals_table(only_s3, LR_REF, history_runs=runs)
    full = integrals_table(runs, LR_REF)
    assert table.iloc[0].to_dict() == pytest.approx(full.iloc[2].to_dict())
    assert table.index.tolist() == [2]
    from bayes_optlaws.runs import RunsError
    with pytest.raises(RunsError, match="'s2' is not in the runs table"):
        integrals_table(only_s3, LR_REF)


# ---------------------------------------------------------------------------- design matrix
def _one_row(**over) -> pd.DataFrame:
    return pd.DataFrame([{**HAND, **over}])


def test_design_matrix_hand_computed_values():
    spec = FeatureSpec(LR_REF, p_s=0.5, p_cc=0.3, p_e=0.2, p_m=0.1)
    X = design_matrix(_one_row(), spec)
    Ec = 0.25 / 0.9  # N = 0.1, D = 1, lr = 0.5, I_w = 0.025, I_c = 0.225, I = 0.25, E_w = 2.5
    expected = [
        0.1 ** -0.5, 1.0, 0.5 ** 0.5,
        1 / 0.025, 1 / 0.225, 0.1 / 0.25, (0.025 * 0.225) ** -0.3,
        2.5 ** 0.2, Ec ** 0.2, ((2.5 + Ec) / 0.1) ** 0.2, (2.5 * Ec) ** 0.2,
        (0.1 * 2.5 / 0.25) ** 0.1, (0.1 * Ec / 0.25) ** 0.1, (2.5 / 0.025) ** 0.1, (Ec / 0.225) ** 0.1,
    ]
    assert X.shape == (1, 15)
    np.testing.assert_allclose(X[0], expected, rtol=1e-12)
    # explicit spot checks with literal numbers
    assert X[0, 0] == pytest.approx(3.16227766016838)
    assert X[0, 3] == pytest.approx(40.0)
    assert X[0, 5] == pytest.approx(0.4)
    assert X[0, 7] == pytest.approx(1.2011244339814313)


def test_design_matrix_from_real_schedules_matches_segment_integrals():
    runs = _chain_runs()
    spec = FeatureSpec(LR_REF)
    table = integrals_table(runs, LR_REF)
    X = design_matrix(table, spec)
    assert X.shape == (3, 15)
    assert np.all(np.isfinite(X))
    s1 = seg(STAGE1)
    assert X[0, FEATURE_NAMES.index("1/I_w")] == pytest.approx(1 / s1.I_w)
    assert X[0, FEATURE_NAMES.index("E_c^pe")] == pytest.approx(s1.E_c ** 0.3)


@pytest.mark.parametrize("blocks, n", [(BLOCKS, 15), (("scale",), 3), (("scale", "convergence"), 7),
                                       (("scale", "convergence", "escape"), 11), (("scale", "escape"), 7),
                                       (("mixed",), 4)])
def test_design_matrix_ablation_columns(blocks, n):
    spec = FeatureSpec(LR_REF, blocks=blocks)
    assert len(spec.feature_names) == n
    full = design_matrix(_one_row(), FeatureSpec(LR_REF))
    X = design_matrix(_one_row(), spec)
    assert X.shape == (1, n)
    assert np.all(np.isfinite(X))
    cols = [FEATURE_NAMES.index(f) for f in spec.feature_names]
    np.testing.assert_array_equal(X[0], full[0, cols])


def test_design_matrix_all_finite_for_every_family():
    specs = [LIN, {**LIN, "warmup": 0}, {**LIN, "family": "cosine"},
             {"family": "constant", "peak_lr": 1e-3, "warmup": 0, "total": 1000},
             {"family": "wsd", "peak_lr": 1e-3, "warmup": 0, "total": 1000, "cooldown": 100,
              "cooldown_shape": "1-sqrt"},
             {"family": "polygon", "peak_lr": 1e-3, "t1": 10, "t2": 300, "t3": 600, "mid_lr": 1e-4, "total": 1000},
             {"knots": [[0, 1e-3], [500, 1e-3], [500, 1e-4], [1000, 1e-4]]}]
    table = pd.DataFrame([as_row(seg(s)) for s in specs])
    X = design_matrix(table, FeatureSpec(LR_REF))
    assert X.shape == (len(specs), 15)
    assert np.all(np.isfinite(X))


def test_design_matrix_rejects_non_finite_and_names_feature():
    with pytest.raises(FeatureError, match=r"row 0: the schedule feature '1/I_w' is not finite") as info:
        design_matrix(_one_row(I_w=0.0), FeatureSpec(LR_REF))
    assert (info.value.row, info.value.feature) == (0, "1/I_w")
    named = info.value.named(["run-a"], "candidate")
    assert isinstance(named, RunsError) and str(named).startswith("candidate 'run-a': the schedule feature '1/I_w'")


def test_a_candidate_with_an_absurd_peak_lr_is_a_clear_error_not_a_traceback():
    """A peak LR of 1e-300 makes a feature overflow: the shipped model names the candidate and the fix."""
    import bayes_optlaws as bol

    cand = pd.DataFrame({"name": ["tiny"], "schedule": ['{"family": "linear", "peak_lr": 1e-300, "warmup": 100, '
                                                        '"total": 4000}'],
                         "model_params": [793_344], "tokens_per_step": [4096]})
    with pytest.raises(RunsError, match=r"candidate 'tiny': the schedule feature .* is not finite .* peak LR"):
        bol.load().predict_draws(cand)


def test_two_spec_forms_give_identical_features():
    sched = Schedule.from_spec(LIN)
    g = sched.grid()
    forms = [LIN, {"knots": [[0, 0], [100, 1e-3], [1000, 0]]}, json.dumps(LIN),
             {"steps": list(range(1001)), "lr": g.tolist()},
             {"steps": list(range(0, 1001, 50)), "lr": g[::50].tolist()}]
    rows = [as_row(seg(f)) for f in forms]
    X = design_matrix(pd.DataFrame(rows), FeatureSpec(LR_REF))
    np.testing.assert_array_equal(X[0], X[1])
    np.testing.assert_array_equal(X[0], X[2])
    np.testing.assert_allclose(X[3], X[0], rtol=1e-12)
    np.testing.assert_allclose(X[4], X[0], rtol=1e-12)


# ---------------------------------------------------------------------------- FeatureSpec / Standardiser
def test_feature_spec_validation_and_round_trip():
    with pytest.raises(ValueError, match="lr_ref"):
        FeatureSpec(0.0)
    with pytest.raises(ValueError, match="lr_ref"):
        FeatureSpec(float("nan"))
    with pytest.raises(ValueError, match="unknown feature block 'physics'"):
        FeatureSpec(1.0, blocks=("scale", "physics"))
    spec = FeatureSpec(3e-3, 0.1, 0.15, 0.2, 0.5, blocks=["scale", "escape"])
    assert spec.blocks == ("scale", "escape")
    d = json.loads(json.dumps(spec.to_dict()))
    assert FeatureSpec.from_dict(d) == spec
    assert spec.with_exponents(0.3, 0.3, 0.3, 0.3) == FeatureSpec(3e-3, blocks=("scale", "escape"))
    assert len(FEATURE_NAMES) == 15


def test_standardiser_round_trip():
    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, size=(50, 4))
    X[:, 2] = 7.0  # a constant column standardises to exactly 0 (infinite scale)
    st = Standardiser.fit(X)
    Z = st.transform(X)
    np.testing.assert_allclose(Z[:, [0, 1, 3]].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z[:, [0, 1, 3]].std(axis=0), 1, rtol=1e-12)
    assert np.isinf(st.scale[2]) and np.all(Z[:, 2] == 0)
    back = Standardiser.from_dict(json.loads(json.dumps(st.to_dict())))
    np.testing.assert_array_equal(back.mean, st.mean)
    np.testing.assert_array_equal(back.scale, st.scale)
    np.testing.assert_array_equal(back.transform(X), Z)


def test_ridge_fit_recovers_linear_law():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = 2.0 + X @ np.array([0.5, -1.0, 0.25])
    coef, st, b0 = ridge_fit(X, y, alpha=1e-8)
    np.testing.assert_allclose(ridge_predict(X, coef, st, b0), y, atol=1e-6)
    np.testing.assert_allclose(coef / st.scale, [0.5, -1.0, 0.25], rtol=1e-5)


# ---------------------------------------------------------------------------- exponent search
RANGES = {"N": (0.01, 1), "D": (0.1, 10), "lr_max": (0.05, 1), "I_w": (1e-4, 1e-2), "I_c": (1e-2, 1),
          "I": (0.05, 2), "E_w": (0.1, 100), "E_c": (0.01, 10)}


def synthetic_law(n: int, exps: tuple, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """SYNTHETIC data, not real runs: log-uniform random segment integrals and a log loss that is exactly linear
    in the 15 features computed with the exponents ``exps`` (p_s, p_cc, p_e, p_m)."""
    rng = np.random.default_rng(seed)
    ig = pd.DataFrame({c: np.exp(rng.uniform(np.log(lo), np.log(hi), n)) for c, (lo, hi) in RANGES.items()})
    X = design_matrix(ig, FeatureSpec(1.0).with_exponents(*exps))
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    y = 1.0 + 0.05 * Z @ rng.normal(0.0, 1.0, X.shape[1])
    return ig, y


def test_select_exponents_recovers_generating_exponents():
    true = (0.5, 0.1, 0.2, 0.15)
    ig, y = synthetic_law(120, true, seed=1)
    blocks = np.repeat(np.arange(4), 30)
    spec, table = select_exponents(ig, y, blocks, FeatureSpec(1.0))
    assert (spec.p_s, spec.p_cc, spec.p_e, spec.p_m) == true
    assert len(table) == len(EXPONENT_CANDIDATES) ** 4
    assert table["mse"].is_monotonic_increasing
    assert tuple(table.iloc[0][["p_s", "p_cc", "p_e", "p_m"]]) == true
    assert table["mse"].iloc[0] < 0.1 * table["mse"].iloc[-1]


def test_select_exponents_uses_only_the_rows_given():
    cands = (0.1, 0.3, 0.5)
    law_a, law_b = (0.5, 0.1, 0.3, 0.1), (0.1, 0.5, 0.1, 0.5)
    ig_a, y_a = synthetic_law(100, law_a, seed=2)
    ig_b, y_b = synthetic_law(100, law_b, seed=3)
    ig = pd.concat([ig_a, ig_b], ignore_index=True)
    y = np.concatenate([y_a, y_b])
    perm = np.random.default_rng(0).permutation(200)
    ig, y = ig.iloc[perm], y[perm]          # shuffled: the rows of law A are scattered, with their old labels
    rows_a = perm < 100
    blocks = np.zeros(200, dtype=int)
    spec_a, table_a = select_exponents(ig[rows_a], y[rows_a], blocks[rows_a], FeatureSpec(1.0), candidates=cands)
    spec_b, _ = select_exponents(ig[~rows_a], y[~rows_a], blocks[~rows_a], FeatureSpec(1.0), candidates=cands)
    assert (spec_a.p_s, spec_a.p_cc, spec_a.p_e, spec_a.p_m) == law_a
    assert (spec_b.p_s, spec_b.p_cc, spec_b.p_e, spec_b.p_m) == law_b
    # the index labels of the subset do not matter, only its rows
    _, table_a2 = select_exponents(ig[rows_a].reset_index(drop=True), y[rows_a], blocks[rows_a], FeatureSpec(1.0),
                                   candidates=cands)
    pd.testing.assert_frame_equal(table_a, table_a2)


def test_select_exponents_ablation_searches_only_active_groups():
    ig, y = synthetic_law(60, (0.5, 0.3, 0.3, 0.3), seed=4)
    base = FeatureSpec(1.0, p_cc=0.15, p_e=0.2, p_m=0.1, blocks=("scale",))
    spec, table = select_exponents(ig, y, np.zeros(60, dtype=int), base)
    assert len(table) == len(EXPONENT_CANDIDATES)
    assert (spec.p_cc, spec.p_e, spec.p_m) == (0.15, 0.2, 0.1)  # inactive groups keep the base values
    assert spec.blocks == ("scale",)
    assert set(table["p_s"]) == set(EXPONENT_CANDIDATES)


def test_select_exponents_is_deterministic_given_seed():
    ig, y = synthetic_law(60, (0.3, 0.3, 0.3, 0.3), seed=5)
    blocks = np.repeat([0, 1], 30)
    base = FeatureSpec(1.0, blocks=("scale", "escape"))
    _, t1 = select_exponents(ig, y, blocks, base, seed=7)
    _, t2 = select_exponents(ig, y, blocks, base, seed=7)
    pd.testing.assert_frame_equal(t1, t2)


# ---------------------------------------------------------------------------- properties
@settings(max_examples=40, deadline=None)
@given(st.floats(1e-5, 1e-1), st.integers(0, 3000), st.integers(0, 3000), st.integers(1, 5000),
       st.sampled_from(["linear", "cosine", "wsd"]), st.integers(1, 8))
def test_prop_feature_monotonicity(peak, w1, w2, rest, family, tps_k):
    """Longer warmup -> lower E_w and I_w up; more steps or a higher peak -> larger I (opt-laws.md §3-4)."""
    w1, w2 = sorted((w1, w2))
    total = w2 + rest + 1
    tps = tps_k * 65536

    def spec(w, total=total, peak=peak):
        d = {"family": family, "peak_lr": peak, "warmup": w, "total": total}
        if family == "wsd":
            d["cooldown"] = rest
        return d

    a, b = seg(spec(w1), tps=tps, lr_ref=0.1), seg(spec(w2), tps=tps, lr_ref=0.1)
    if (w1, w2) == (0, 1):  # zero warmup counts as a one-step warmup (jump from 0; I_w floor)
        assert b.E_w == pytest.approx(a.E_w) and b.I_w == pytest.approx(a.I_w)
    elif w1 < w2:
        assert b.E_w < a.E_w
        assert b.I_w > a.I_w
    longer = seg(spec(w1, total=total + rest), tps=tps, lr_ref=0.1)
    assert longer.I > a.I and longer.D > a.D
    higher = seg(spec(w1, peak=peak * 1.5), tps=tps, lr_ref=0.1)
    assert higher.I == pytest.approx(1.5 * a.I, rel=1e-9) and higher.I > a.I
    for s in (a, b, longer, higher):
        assert all(np.isfinite(getattr(s, c)) and getattr(s, c) >= 0 for c in INTEGRAL_COLUMNS)
        assert s.I_w > 0 and s.I_c > 0 and s.I >= max(s.I_w, s.I_c)


def test_reference_lr_is_the_largest_peak_lr_of_any_schedule_form():
    """Synthetic schedules in two spec forms (family and knots): lr_ref is the largest peak, in raw units."""
    runs = pd.DataFrame({"schedule": [
        json.dumps({"family": "cosine", "peak_lr": 0.002, "warmup": 10, "total": 100}),
        json.dumps({"knots": [[0, 0.0], [10, 0.008], [100, 0.0]]}),
    ]})
    assert reference_lr(runs) == pytest.approx(0.008)
