"""bayes_optlaws: Bayesian Opt-Laws for choosing LLM learning-rate schedules before the expensive run.

Data flows one way: runs table -> schedules -> features -> models -> predictive draws -> decisions.
"""

__version__ = "0.1.0"

from .api import fit, load, predict, rank_candidates  # noqa: E402
from .optlaw import BayesOptLaw  # noqa: E402
from .schedules import Schedule  # noqa: E402

__all__ = ["fit", "load", "predict", "rank_candidates", "BayesOptLaw", "Schedule", "__version__"]
