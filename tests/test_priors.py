"""Priors as objects (bayes_optlaws.priors) and their use by the loss law and the stage model."""

import json

import numpy as np
import pymc as pm
import pytest

from bayes_optlaws import continual as ct
from bayes_optlaws import loss_model as lm
from bayes_optlaws.priors import Prior, PriorError, resolve_priors


def test_prior_round_trips_through_a_json_dict():
    prior = Prior("StudentT", nu=4, mu=0.0, sigma=0.3)
    data = json.loads(json.dumps(prior.to_dict()))
    assert data == {"dist": "StudentT", "kwargs": {"nu": 4.0, "mu": 0.0, "sigma": 0.3}}
    assert Prior.from_dict(data) == prior
    assert prior.scale == 0.3 and Prior("HalfNormal").scale == 1.0


def test_create_variable_rescales_the_scale_parameter():
    with pm.Model():
        theta = Prior("Normal", mu=0.0, sigma=0.5).create_variable("theta", scale=np.array([1.0, 4.0]), shape=2)
        draws = pm.draw(theta, draws=4000, random_seed=0)
    np.testing.assert_allclose(draws.std(axis=0), [0.5, 2.0], rtol=0.05)


@pytest.mark.parametrize("bad, message", [
    (lambda: Prior("Normall"), "not a PyMC distribution"),
    (lambda: Prior("Normal", sigma=float("nan")), "finite number"),
    (lambda: Prior("Normal", sigma=[1, 2]), "one finite number"),
    (lambda: Prior.from_dict({"kwargs": {}}), "'dist'"),
    (lambda: Prior("Exponential", lam=1.0).scaled(2.0), "no scale parameter"),
])
def test_bad_priors_say_what_is_wrong(bad, message):
    with pytest.raises(PriorError, match=message):
        bad()


def test_resolve_priors_checks_names_support_and_scale():
    defaults = {"slope": Prior("Normal", mu=0, sigma=1), "sigma": Prior("HalfNormal", sigma=0.5)}
    with pytest.raises(PriorError, match="unknown prior.*slop"):
        resolve_priors(defaults, {"slop": Prior("Normal")})
    with pytest.raises(PriorError, match="sigma is a scale and needs a positive"):
        resolve_priors(defaults, {"sigma": Prior("Normal", sigma=1)}, positive=("sigma",))
    with pytest.raises(PriorError, match="slope is rescaled"):
        resolve_priors(defaults, {"slope": {"dist": "Uniform", "kwargs": {"lower": -1, "upper": 1}}},
                       scaled=("slope",))
    out = resolve_priors(defaults, {"sigma": {"dist": "Exponential", "kwargs": {"lam": 2.0}}}, positive=("sigma",))
    assert out["sigma"] == Prior("Exponential", lam=2.0) and out["slope"] == defaults["slope"]


def test_loss_law_priors_accept_objects_dicts_and_the_old_number_shorthand():
    assert lm.loss_priors(None) == lm.DEFAULT_PRIORS
    old = lm.loss_priors({"prior_slope_sd": 2.0, "prior_sigma_slope": 0.05})  # how saved models spell them
    assert old["slope"] == Prior("Normal", mu=0.0, sigma=2.0) and old["sigma_slope"] == Prior("HalfNormal", sigma=0.05)
    new = lm.loss_priors({"priors": {"sigma_slope": Prior("HalfNormal", sigma=0.05)}})
    assert new["sigma_slope"] == old["sigma_slope"]
    recorded = lm.resolved_config({"prior_sigma_slope": 0.05})
    assert "prior_sigma_slope" not in recorded and set(recorded["priors"]) == set(lm.DEFAULT_PRIORS)
    assert lm.loss_priors(json.loads(json.dumps(recorded))) == old | {"slope": lm.DEFAULT_PRIORS["slope"]}


def test_loss_model_graph_uses_the_configured_priors():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    data = lm.LossData(X, X @ [0.3, -0.2, 0.1], np.arange(30) % 2, [1000, 2000], ["a", "b", "c"])
    model = lm.build_loss_model(data, {"priors": {"sigma": Prior("Exponential", lam=3.0),
                                                  "intercept": Prior("StudentT", nu=3, mu=0, sigma=2)}})
    assert model["sigma"].owner.op.name == "exponential"
    assert model["intercept"].owner.op.name == "t"  # PyMC names the Student-t op "t"


def test_stage_priors_default_and_shorthand():
    assert ct.stage_priors(None)["slope"] == Prior("Normal", mu=0.0, sigma=0.5)
    assert ct.stage_priors({"prior_sigma_context": 0.2})["sigma_context"] == Prior("HalfNormal", sigma=0.2)
    with pytest.raises(PriorError, match="stage model priors"):
        ct.stage_priors({"priors": {"sigma": Prior("Normal")}})
