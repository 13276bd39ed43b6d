"""Evaluation: the paper's block-wise cross-validation protocol, metrics and baseline laws (opt-laws.md §7–§8).

* :mod:`.folds` — k-fold CV within each ``(model_params, tokens)`` block, replicate seeds kept together;
* :mod:`.metrics` — point, ranking, interval, divergence and P(best) calibration metrics (pure numpy/scipy);
* :mod:`.baselines` — block mean, Chinchilla, linear, Tissue et al., multi-power law, simplified Opt-Law +
  Chinchilla; divergence: peak-LR threshold, logistic regression;
* :mod:`.protocol` — :func:`cross_validate` runs every method on the same folds -> :class:`EvaluationResult`.
"""

from .baselines import (DIVERGENCE_BASELINES, LOSS_BASELINES, BlockMean, Chinchilla, LinearBaseline,
                        LogisticDivergence, LRThreshold, MultiPower, SimplifiedChinchilla, Tissue, describe_runs)
from .folds import DEFAULT_CV_GROUPS, block_keys, config_keys, cv_mask, fold_summary, make_folds
from .protocol import EvaluationResult, cross_validate

__all__ = [
    "DIVERGENCE_BASELINES", "LOSS_BASELINES", "BlockMean", "Chinchilla", "LinearBaseline", "LogisticDivergence",
    "LRThreshold", "MultiPower", "SimplifiedChinchilla", "Tissue", "describe_runs", "DEFAULT_CV_GROUPS",
    "block_keys", "config_keys", "cv_mask", "fold_summary", "make_folds", "EvaluationResult", "cross_validate",
]
