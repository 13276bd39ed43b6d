"""The written contract of the evaluation protocol's methods, and the checks that enforce it.

Every method :func:`~bayes_optlaws.evaluation.protocol.cross_validate` and the transfer modes run (the baselines,
``optlaw_ls``, ``bayes_optlaw``, ``bayes_boundary``, ``proxy_best``) is built by a zero-argument factory and
follows one of two contracts (as scikit-learn's estimators and CausalPy's models do; ``tests/
test_evaluation_contract.py`` runs :func:`loss_method_violations` / :func:`divergence_method_violations` on every
registered method).

**Loss method** (:class:`LossMethod`)

* ``name``: a non-empty string, the method's column in the tables.
* ``fit(df) -> self``: ``df`` is a validated runs table of runs that did not diverge (every training run when the
  method sets ``uses_all_runs = True``); state learned from it goes into attributes ending in ``_``.
* ``predict(df) -> array (n_rows,)``: one finite number per row of ``df``, in ``df``'s row order — the final loss
  in nats, or a ranking score (lower is better) when the method sets ``predicts_loss = False``.
* optional ``predict_draws(df) -> array (n_draws, n_rows)``: joint predictive draws of the final loss (nats) of
  new runs, finite, at least two draws.
* Calling ``predict`` (or ``predict_draws``) before ``fit`` raises an error that says to call ``fit``.
* Neither call changes the table it is given; the index of ``df`` does not matter; two fresh instances fitted on
  the same table predict the same numbers (all randomness is seeded).

**Divergence method** (:class:`DivergenceMethod`): the same, with ``fit(df)`` on every run (``diverged`` labels
included) and ``predict_proba(df) -> array (n_rows,)`` of P(diverge) in [0, 1] (or scikit-learn's
``(n_rows, 2)`` with P(diverge) in the second column).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = ["LossMethod", "DivergenceMethod", "require_fitted", "uses_all_runs", "loss_method_violations",
           "divergence_method_violations"]


def uses_all_runs(method) -> bool:
    """Whether a loss method is fitted on every training run, diverged ones included (it sets
    ``uses_all_runs = True``: a law with its outcome model), instead of the runs that did not diverge."""
    return bool(getattr(method, "uses_all_runs", False))


def require_fitted(method, attribute: str, call: str = "predict") -> None:
    """Raise the contract's error for a ``call`` (e.g. ``predict_proba``) before ``fit``: ``method`` lacks its
    fitted ``attribute``."""
    if not hasattr(method, attribute):
        raise RuntimeError(f"{getattr(method, 'name', type(method).__name__)}: call fit() before {call}()")


@runtime_checkable
class LossMethod(Protocol):
    """A loss method of the evaluation protocol (see the module docstring for the full contract)."""

    name: str

    def fit(self, df: pd.DataFrame) -> "LossMethod": ...

    def predict(self, df: pd.DataFrame) -> np.ndarray: ...


@runtime_checkable
class DivergenceMethod(Protocol):
    """A divergence method of the evaluation protocol (see the module docstring for the full contract)."""

    name: str

    def fit(self, df: pd.DataFrame) -> "DivergenceMethod": ...

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray: ...


def _fails_before_fit(call: Callable[[], Any], what: str) -> list[str]:
    """A violation when ``call`` (a prediction on an unfitted method) does not raise an error naming fit()."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - any exception type is allowed; its message is what is checked
        return [] if "fit" in str(exc) else [f"{what} before fit raised {type(exc).__name__}: {exc!r}, which does "
                                             "not tell the caller to call fit()"]
    return [f"{what} before fit returned instead of raising an error that says to call fit()"]


def _unchanged(before: pd.DataFrame, after: pd.DataFrame, what: str) -> list[str]:
    try:
        pd.testing.assert_frame_equal(before, after)
    except AssertionError as exc:
        return [f"{what} changed the table it was given: {str(exc).splitlines()[0]}"]
    return []


def _shifted(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a non-default index (1000, 1001, ...): results must not depend on the index."""
    return df.set_axis(np.arange(1000, 1000 + len(df)), axis=0)


def _vector(values, n: int, what: str) -> tuple[np.ndarray | None, list[str]]:
    """``values`` as a float vector of length ``n``, or the violation that it is not one."""
    try:
        v = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        return None, [f"{what} returned something that is not numeric: {exc}"]
    if v.shape != (n,):
        return None, [f"{what} returned shape {v.shape}, expected ({n},)"]
    if not np.isfinite(v).all():
        return None, [f"{what} returned {int((~np.isfinite(v)).sum())} non-finite value(s) of {n}"]
    return v, []


def _common(factory: Callable[[], Any], train: pd.DataFrame, predict_name: str) -> tuple[Any, list[str]]:
    """Name, unfitted-prediction and ``fit -> self`` checks shared by both contracts; the fitted method."""
    problems = []
    method = factory()
    if not isinstance(getattr(method, "name", None), str) or not method.name:
        problems.append("has no non-empty string attribute 'name'")
    problems += _fails_before_fit(lambda: getattr(method, predict_name)(train.head(2)), predict_name)
    given = train.copy(deep=True)
    fitted = method.fit(given)
    if fitted is not method:
        problems.append(f"fit returned {type(fitted).__name__}, not the method itself")
    problems += _unchanged(train, given, "fit")
    return method, problems


def _prediction_checks(method, refit, test: pd.DataFrame, predict_name: str, n: int) -> tuple[np.ndarray | None,
                                                                                               list[str]]:
    """Shape, row order, index independence, no mutation and reproducibility of one prediction method."""
    predict = getattr(method, predict_name)
    given = test.copy(deep=True)
    first, problems = _vector(_column(predict(given), predict_name), n, predict_name)
    problems += _unchanged(test, given, predict_name)
    if first is None:
        return None, problems
    order = np.arange(n)[::-1]
    reordered, extra = _vector(_column(predict(test.iloc[order]), predict_name), n, predict_name + " (rows reversed)")
    problems += extra
    if reordered is not None and not np.allclose(reordered, first[order], rtol=1e-9, atol=1e-12):
        problems.append(f"{predict_name} of the rows in reverse order is not the reverse of its predictions")
    shifted, extra = _vector(_column(predict(_shifted(test)), predict_name), n, predict_name + " (index 1000+)")
    problems += extra
    if shifted is not None and not np.allclose(shifted, first, rtol=1e-9, atol=1e-12):
        problems.append(f"{predict_name} depends on the table's index")
    again, extra = _vector(_column(getattr(refit, predict_name)(test), predict_name), n, predict_name)
    problems += extra
    if again is not None and not np.allclose(again, first, rtol=1e-9, atol=1e-12):
        problems.append(f"two fresh instances fitted on the same table give different {predict_name} (unseeded "
                        "randomness?)")
    return first, problems


def _column(values, predict_name: str):
    """P(diverge) from a scikit-learn style ``(n, 2)`` ``predict_proba``; anything else unchanged."""
    v = np.asarray(values)
    return v[:, 1] if predict_name == "predict_proba" and v.ndim == 2 and v.shape[1] == 2 else values


def loss_method_violations(factory: Callable[[], Any], train: pd.DataFrame, test: pd.DataFrame) -> list[str]:
    """Every way the method built by ``factory`` breaks the loss-method contract on a ``train`` / ``test`` split
    of validated runs tables (pass the non-diverged rows, or every row for a method with ``uses_all_runs``);
    an empty list when it keeps it.  Fits the method twice (the reproducibility check)."""
    method, problems = _common(factory, train, "predict")
    refit = factory().fit(train.copy(deep=True))
    n = len(test)
    _, extra = _prediction_checks(method, refit, test, "predict", n)
    problems += extra
    if hasattr(method, "predict_draws"):
        problems += _fails_before_fit(lambda: factory().predict_draws(test.head(2)), "predict_draws")
        given = test.copy(deep=True)
        draws = np.asarray(method.predict_draws(given), dtype=float)
        problems += _unchanged(test, given, "predict_draws")
        if draws.ndim != 2 or draws.shape[1] != n or draws.shape[0] < 2:
            problems.append(f"predict_draws returned shape {draws.shape}, expected (n_draws >= 2, {n})")
        elif not np.isfinite(draws).all():
            problems.append(f"predict_draws returned {int((~np.isfinite(draws)).sum())} non-finite draw(s)")
        elif not np.allclose(draws, np.asarray(refit.predict_draws(test), dtype=float)):
            problems.append("two fresh instances fitted on the same table give different predict_draws")
    return problems


def divergence_method_violations(factory: Callable[[], Any], train: pd.DataFrame, test: pd.DataFrame) -> list[str]:
    """Every way the method built by ``factory`` breaks the divergence-method contract (``train`` / ``test``:
    validated runs tables with diverged runs); an empty list when it keeps it."""
    method, problems = _common(factory, train, "predict_proba")
    refit = factory().fit(train.copy(deep=True))
    p, extra = _prediction_checks(method, refit, test, "predict_proba", len(test))
    problems += extra
    if p is not None and ((p < 0) | (p > 1)).any():
        problems.append(f"predict_proba returned values outside [0, 1] (min {p.min():g}, max {p.max():g})")
    return problems
