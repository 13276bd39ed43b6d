"""Extrapolation factors, their warnings and the physical bounds of predicted losses."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws.extrapolation import ExtrapolationWarning, FittedRange


def _table(n, lr, tps=1000, total=100, loss=3.0):
    return pd.DataFrame([{"run_id": f"r{i}", "model_params": a, "tokens": total * tps, "tokens_per_step": tps,
                          "schedule": json.dumps({"family": "linear", "peak_lr": b, "warmup": 10, "total": total}),
                          "final_loss": loss + i, "diverged": False} for i, (a, b) in enumerate(zip(n, lr))])


def test_factors_are_one_inside_and_ratios_outside():
    fr = FittedRange.from_runs(_table([1000, 4000], [0.01, 0.04]))
    cand = _table([2000, 16000, 250], [0.02, 0.16, 0.005])
    f = fr.factors(cand)
    assert f["extrap_N"].tolist() == pytest.approx([1.0, 4.0, 4.0])
    assert f["extrap_lr"].tolist() == pytest.approx([1.0, 4.0, 2.0])
    assert f["extrap_D"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert f["extrap_max"].tolist() == pytest.approx([1.0, 4.0, 4.0])


def test_far_candidates_are_warned_about():
    fr = FittedRange.from_runs(_table([1000, 4000], [0.01, 0.04]))
    with pytest.warns(ExtrapolationWarning, match="model size"):
        msgs = fr.warn_far(fr.factors(_table([40000], [0.02])), ["big"])
    assert len(msgs) == 1 and "big" in msgs[0] and "10x" in msgs[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fr.warn_far(fr.factors(_table([3000], [0.02])), ["near"]) == []


def test_bounds_keep_losses_finite_positive_and_below_the_ceiling():
    fr = FittedRange.from_runs(_table([1000, 4000], [0.01, 0.04], loss=2.0))  # losses 2.0 and 3.0
    assert fr.loss_ceiling == pytest.approx(3.0) and fr.loss_floor == pytest.approx(0.5)
    out = np.exp(fr.bound_log_loss(np.array([np.inf, np.nan, -np.inf, 50.0, np.log(2.5), -800.0])))
    assert np.all(np.isfinite(out)) and np.all(out > 0) and np.all(out <= 3.0 + 1e-12)
    assert out[4] == pytest.approx(2.5)
    vocab = _table([1000], [0.01]).assign(x_vocab_size=256)
    assert FittedRange.from_runs(vocab).loss_ceiling == pytest.approx(np.log(256))


def test_a_far_target_through_a_fitted_law_is_finite_bounded_and_warned(fitted_law):
    cand = pd.DataFrame({"name": ["near", "huge-model", "lr-50"],
                         "schedule": [json.dumps({"family": "linear", "peak_lr": 0.01, "warmup": 100, "total": 1000}),
                                      json.dumps({"family": "linear", "peak_lr": 0.01, "warmup": 100, "total": 1000}),
                                      json.dumps({"family": "linear", "peak_lr": 50.0, "warmup": 100, "total": 1000})],
                         "model_params": [80_000, 790_000_000_000, 80_000], "tokens_per_step": [4096] * 3})
    with pytest.warns(ExtrapolationWarning):
        d = fitted_law.predict_draws(cand)
    ceiling = fitted_law.fitted_range_.loss_ceiling
    for arr in (d.loss, d.loss_noisy):
        assert np.all(np.isfinite(arr)) and np.all(arr > 0) and np.all(arr <= ceiling + 1e-12)
    assert d.extrapolation["extrap_N"][1] > 1e6 and d.extrapolation["extrap_lr"][2] > 100
    assert d.extrapolation["extrap_max"][0] == pytest.approx(1.0)


def test_candidates_held_at_a_bound_are_named_with_their_share():
    import warnings as _w

    from bayes_optlaws.extrapolation import ExtrapolationWarning, FittedRange

    fr = FittedRange({"N": 1.0}, {"N": 2.0}, loss_ceiling=3.0, loss_floor=0.5)
    log_mu = np.log(np.full((100, 3), 2.0))
    log_mu[:30, 0] = np.log(0.1)  # 30 % below the floor
    log_mu[:, 1] = np.inf         # every draw overflowed: the ceiling
    log_mu[:2, 2] = np.log(10.0)  # 2 %: below the 5 % share that warns
    with _w.catch_warnings(record=True) as caught:
        _w.simplefilter("always")
        messages = fr.warn_bounded(log_mu, ["low", "spike", "fine"])
    assert len(messages) == 2 and all(issubclass(c.category, ExtrapolationWarning) for c in caught)
    assert "low 30%" in messages[0] and "floor (0.5 nats" in messages[0]
    assert "spike 100%" in messages[1] and "ceiling (3 nats" in messages[1]
    assert not any("fine" in m for m in messages)
