"""``PredictionDraws``: joint posterior draws for candidate schedules (numpy only, no model code).

The container the model's ``predict_draws`` fills and :mod:`bayes_optlaws.ranking` turns into decisions.  Arrays
are samples × candidates (S × C); losses are final losses in nats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PredictionDraws:
    """Joint posterior draws for candidates (samples × candidates).

    Per posterior draw ``s`` a candidate ``c`` has three outcomes:

    * it **trains normally** (probability ``1 - p_diverge - p_unstable``) and ends at ``loss[s, c]``;
    * it trains **unstably** (probability ``p_unstable[s, c]``): it does not diverge but ends
      ``unstable_excess`` nats above that, at ``loss[s, c] + unstable_excess`` (``unstable_excess[s, c]`` when
      it is an array: the unstable-loss model's per-draw excess, :mod:`bayes_optlaws.unstable_loss`);
    * it **diverges** (probability ``p_diverge[s, c]``) and is charged ``diverged_loss`` nats.

    ``loss``: expected final loss (nats; epistemic uncertainty only), ``loss_noisy``: a new run's final loss
    (run-to-run noise included), ``p_diverge``: probability of divergence per draw (all NaN when the model has no
    divergence boundary), ``diverged_loss``: the fixed loss charged to a diverged run (nats, measured from the
    diverged runs of the training table), ``p_unstable``: probability of an unstable run per draw (``None``: the
    model has no unstable outcome, i.e. probability zero), ``unstable_excess``: the excess loss of an unstable
    run (nats, ≥ 0): one fixed number, or an array (samples × candidates) of per-draw excesses.  ``names``:
    candidate names.  ``extrapolation``: per candidate, how far its target lies outside the fitted range
    (``extrap_N``, ``extrap_D``, ``extrap_lr``, ``extrap_tps``, ``extrap_max``: factors >= 1, see
    :mod:`bayes_optlaws.extrapolation`), or ``None``.
    """

    names: list[str]
    loss: np.ndarray
    loss_noisy: np.ndarray
    p_diverge: np.ndarray
    diverged_loss: float
    p_unstable: np.ndarray | None = None
    unstable_excess: float | np.ndarray = 0.0
    extrapolation: dict[str, np.ndarray] | None = None

    @property
    def n_samples(self) -> int:
        return self.loss.shape[0]

    def subset(self, columns) -> "PredictionDraws":
        """The draws of the candidates at positions ``columns`` (same draws, same fixed losses)."""
        idx = [int(i) for i in columns]
        p_unst = None if self.p_unstable is None else self.p_unstable[:, idx]
        extrap = None if self.extrapolation is None else {k: np.asarray(v)[idx]
                                                          for k, v in self.extrapolation.items()}
        excess = self.unstable_excess[:, idx] if np.ndim(self.unstable_excess) == 2 else self.unstable_excess
        return PredictionDraws([self.names[i] for i in idx], self.loss[:, idx], self.loss_noisy[:, idx],
                               self.p_diverge[:, idx], self.diverged_loss, p_unst, excess, extrap)
