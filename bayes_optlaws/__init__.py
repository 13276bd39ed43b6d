"""bayes_optlaws: Bayesian Opt-Laws for choosing LLM learning-rate schedules before the expensive run.

Data flows one way: runs table -> schedules -> features -> models -> predictive draws -> decisions.
"""

__version__ = "0.1.0"
