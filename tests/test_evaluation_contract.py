"""Every method of the evaluation protocol keeps the written contract of :mod:`bayes_optlaws.evaluation.contract`
(as CausalPy's prediction-contract test does for its models).  The methods come from the CLI's registries, so a
method added there is checked here without editing this file.  Data: the SYNTHETIC grid of tests/synthetic.py."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest

from bayes_optlaws.evaluation import cli as ev_cli
from bayes_optlaws.evaluation.contract import (DivergenceMethod, LossMethod, divergence_method_violations,
                                               loss_method_violations, uses_all_runs)
from bayes_optlaws.evaluation.folds import make_folds
from bayes_optlaws.evaluation.ours import BayesBoundary, BayesOptLawMethod, sensitivity_methods
from bayes_optlaws.runs import validate_runs

#: tiny NUTS runs for the Bayesian methods (the contract, not the posterior, is under test; keeps the suite short)
CONTRACT_SAMPLER = {"draws": 40, "tune": 80, "chains": 2}


def _fast(factory):
    """The registry's factory with a small sampler for the Bayesian methods (others unchanged)."""
    func = getattr(factory, "func", factory)
    keywords = dict(getattr(factory, "keywords", {}))
    if func is BayesOptLawMethod:
        return partial(func, **{**keywords, "sampler_config": CONTRACT_SAMPLER})
    if func is BayesBoundary:
        return partial(func, **{**keywords, "draws": CONTRACT_SAMPLER["draws"], "tune": CONTRACT_SAMPLER["tune"],
                                "chains": CONTRACT_SAMPLER["chains"]})
    return factory


def _registered_loss_methods() -> dict:
    transfer_loss, _ = ev_cli.transfer_methods(include_bayes=True)
    methods = {**ev_cli.loss_methods(include_bayes=True), **sensitivity_methods(),
               **ev_cli.ablation_methods(include_bayes=False),
               "bayes_optlaw[law alone]": partial(BayesOptLawMethod, seed=0)}  # the ablation's Bayesian steps
    # a transfer-mode method that is the cross-validation's own (the same estimator and arguments) is tested once
    seen = {_factory_key(f) for f in methods.values()}
    methods.update({f"transfer:{k}": v for k, v in transfer_loss.items() if _factory_key(v) not in seen})
    return {name: _fast(f) for name, f in methods.items()}


def _factory_key(factory):
    """What a factory builds: the estimator and its arguments (a plain class: itself)."""
    if isinstance(factory, partial):
        return factory.func, repr(factory.args), tuple(sorted((k, repr(v)) for k, v in factory.keywords.items()))
    return factory


def _registered_divergence_methods() -> dict:
    _, transfer_div = ev_cli.transfer_methods(include_bayes=True)
    return {name: _fast(f) for name, f in {**ev_cli.divergence_methods(include_bayes=True), **transfer_div}.items()}


LOSS_METHODS = _registered_loss_methods()
DIVERGENCE_METHODS = _registered_divergence_methods()


@pytest.fixture(scope="module")
def split(synthetic_table):
    """(train, test) of fold 0 of the protocol's block-wise folds on the synthetic grid."""
    df = validate_runs(synthetic_table)
    folds = make_folds(df, 5, seed=0)
    return df[folds > 0].reset_index(drop=True), df[folds == 0].reset_index(drop=True)


def _not_diverged(df: pd.DataFrame) -> pd.DataFrame:
    return df[~df["diverged"] & np.isfinite(df["final_loss"])].reset_index(drop=True)


def test_every_registry_lists_the_bayesian_methods():
    """The contract run covers our own laws, not only the baselines (the product as a user runs it, which the
    cross-validation and the transfer modes share, and the law alone of the ablation)."""
    assert {"bayes_optlaw", "bayes_optlaw[law alone]", "optlaw_ls", "transfer:proxy_best"} <= set(LOSS_METHODS)
    transfer, _ = ev_cli.transfer_methods(include_bayes=True)
    assert _factory_key(transfer["bayes_optlaw"]) == _factory_key(ev_cli.loss_methods()["bayes_optlaw"])
    assert LOSS_METHODS["bayes_optlaw"]().outcomes and not LOSS_METHODS["bayes_optlaw[law alone]"]().outcomes
    assert {"bayes_boundary", "lr_threshold", "logistic"} <= set(DIVERGENCE_METHODS)


@pytest.mark.parametrize("name", sorted(LOSS_METHODS))
def test_loss_method_keeps_the_contract(name, split):
    train, test = split
    factory = LOSS_METHODS[name]
    fit_rows = train if uses_all_runs(factory()) else _not_diverged(train)
    assert isinstance(factory(), LossMethod)
    assert loss_method_violations(factory, fit_rows, _not_diverged(test)) == []


@pytest.mark.parametrize("name", sorted(DIVERGENCE_METHODS))
def test_divergence_method_keeps_the_contract(name, split):
    train, test = split
    assert train["diverged"].any() and test["diverged"].any()
    factory = DIVERGENCE_METHODS[name]
    assert isinstance(factory(), DivergenceMethod)
    assert divergence_method_violations(factory, train, test) == []


# ---------------------------------------------------------------------------- the checks themselves can fail
class _Careless:
    """A loss method that breaks the contract in every way the checks look for (SYNTHETIC test double)."""

    name = "careless"

    def fit(self, df):
        df["final_loss"] = 0.0  # changes the caller's table
        self.level_ = 3.0
        return None  # not self

    def predict(self, df):
        rng = np.random.default_rng()  # unseeded
        return np.append(self.level_ + rng.random(len(df)) + df.index.to_numpy(), np.nan)  # index-dependent


def test_contract_checks_catch_a_careless_method(split):
    train, test = split
    problems = loss_method_violations(_Careless, _not_diverged(train), _not_diverged(test))
    text = "\n".join(problems)
    for expected in ("before fit", "fit returned NoneType", "fit changed the table", "returned shape"):
        assert expected in text, text


class _IndexDependent(_Careless):
    name = "index_dependent"

    def fit(self, df):
        self.level_ = 3.0
        return self

    def predict(self, df):
        if not hasattr(self, "level_"):
            raise RuntimeError("call fit() first")
        return self.level_ + df.index.to_numpy(float) / 1e3 + df["final_loss"].to_numpy()


def test_contract_checks_catch_index_dependence(split):
    train, test = split
    problems = loss_method_violations(_IndexDependent, _not_diverged(train), _not_diverged(test))
    assert any("index" in p for p in problems), problems
    assert not any("before fit" in p for p in problems), problems
