import numpy as np
import pytest

from bayes_optlaws import divergence as div
from bayes_optlaws.schedules import Schedule


def test_grid_areas_match_the_closed_form_for_linear_warmup_and_cooldown():
    """opt-laws.md §5: A = T(η−ρ)²/(2η), W = ρ t1 (1 − ρ/(2η)) for linear warmup + linear cooldown."""
    eta, T, t1, rho = 1.0, 2000, 200, 0.4
    s = Schedule.from_spec({"family": "linear", "peak_lr": eta, "warmup": t1, "total": T})
    inp = div.divergence_inputs([s], [1e9], [1e9], lr_ref=1.0, log_N_center=0.0, log_D_center=0.0, k=4096)
    A = div._relu_area(inp.eta[0], inp.w[0], np.array([rho]))[0]
    W = div._min_area(inp.eta_wu[0], inp.w_wu[0], np.array([rho]))[0]
    # area above ρ: the warmup triangle tip plus the cooldown triangle tip = T(η−ρ)²/(2η) in steps (δ = 1)
    np.testing.assert_allclose(A, T * (eta - rho) ** 2 / (2 * eta), rtol=1e-4)
    np.testing.assert_allclose(W, rho * t1 * (1 - rho / (2 * eta)), rtol=1e-4)


def test_area_above_is_zero_below_the_peak():
    s = Schedule.from_spec({"family": "cosine", "peak_lr": 0.5, "warmup": 10, "total": 100})
    inp = div.divergence_inputs([s], [1e9], [1e9], 1.0, 0.0, 0.0)
    assert div._relu_area(inp.eta[0], inp.w[0], np.array([0.6]))[0] == 0.0


def _training_inputs(law):
    runs = law.train_runs_
    schedules = [Schedule.from_spec(s) for s in runs["schedule"]]
    return runs, div.divergence_inputs(schedules, runs["tokens_per_step"], runs["model_params"], law.spec_.lr_ref,
                                       law.log_N_center_, law.log_D_center_)


def test_numpy_p_diverge_matches_pymc(fitted_law):
    law = fitted_law
    runs, inp = _training_inputs(law)
    p_np = div.predict_p_diverge(law.div_post_, inp)
    p_pm = law.div_idata_.posterior["p_diverge"].values.reshape(-1, len(runs))
    np.testing.assert_allclose(p_np, p_pm, rtol=1e-6, atol=1e-9)


def test_boundary_separates_the_synthetic_divergent_runs(fitted_law):
    law = fitted_law
    runs, inp = _training_inputs(law)
    p = div.predict_p_diverge(law.div_post_, inp).mean(axis=0)
    y = runs["diverged"].to_numpy()
    assert p[y].mean() > 0.7 and p[~y].mean() < 0.2
    assert ((p > 0.5) == y).mean() > 0.9


@pytest.mark.parametrize("warmup", [0, 50])
def test_p_diverge_rises_with_peak_lr(fitted_law, warmup):
    law = fitted_law
    lrs = [1e-3, 1e-2, 1e-1, 1.0]
    schedules = [Schedule.from_spec({"family": "linear", "peak_lr": lr, "warmup": warmup, "total": 1000})
                 for lr in lrs]
    inp = div.divergence_inputs(schedules, [4096] * 4, [80_000] * 4, law.spec_.lr_ref, law.log_N_center_,
                                law.log_D_center_)
    p = div.predict_p_diverge(law.div_post_, inp).mean(axis=0)
    assert np.all(np.diff(p) >= -1e-9)
    assert p[-1] > 0.5 > p[0]
