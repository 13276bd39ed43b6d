"""bayes_optlaws: Bayesian Opt-Laws for choosing LLM learning-rate schedules before the expensive run.

Data flows one way: runs table -> run set (validated, schedules parsed) -> features -> models -> predictive
draws -> decisions.

The top-level API (``fit``, ``load``, ``predict``, ``rank_candidates``, ``BayesOptLaw``, ``Schedule``,
``RunSet``) is imported lazily, so light sub-packages (e.g. the sweep harness on a GPU machine without PyMC)
import without PyMC.
"""

__version__ = "0.1.0"

__all__ = ["fit", "load", "predict", "rank_candidates", "BayesOptLaw", "Schedule", "RunSet", "__version__"]

_LAZY = {"fit": "api", "load": "api", "predict": "api", "rank_candidates": "api", "BayesOptLaw": "optlaw",
         "Schedule": "schedules", "RunSet": "runset"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'bayes_optlaws' has no attribute {name!r}")
