"""Where an unstable run ends: the figures behind ``divergence_config["unstable_loss"] = "level"``.

    .venv/bin/python benchmarks/bench_unstable_loss.py [--inner-only]

1. **The plateau** (the embedded grid's main group, every size): the mean final loss of the unstable runs (ended
   at least ``unstable_gap`` nats above their block's best without diverging) per peak LR and warmup, by model
   size — it hardly moves with the size, while a normal run's loss falls.  (The 793K column is the held-out size
   of ``bench_extrapolation.py``'s grid split: shown as data, never used by item 2.)
2. **The choice** (the grid's inner split only: fit 25K + 85K, score the 200K block's non-diverged runs; the
   793K size is never used): one law fitted with its outcome model (4 chains × 500 draws, as the evaluation fits
   it), then every non-diverged 200K run predicted as the normal / unstable mixture with an unstable outcome
   ending (a) the fixed excess above the law (the median over the training runs, the rule before), or at the
   unstable-loss regression on (b) log peak LR, (c) + log N, (d) + log N + warmup fraction (the default).
   Printed: the final-loss MAE over all scored runs and over the unstable ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bayes_optlaws.evaluation.ours import BayesOptLawMethod  # noqa: E402
from bayes_optlaws.evaluation.transfer import split_largest_size  # noqa: E402
from bayes_optlaws.instability import label_outcomes  # noqa: E402
from bayes_optlaws.paths import DEFAULT_RUNS  # noqa: E402
from bayes_optlaws.runs import read_runs  # noqa: E402
from bayes_optlaws.runset import RunSet  # noqa: E402
from bayes_optlaws.unstable_loss import UnstableLossFit  # noqa: E402

#: the regressions compared, by name: their features (``None``: the fixed excess above the law)
VARIANTS = {"fixed excess above the law": None, "log LR": ("log_peak_lr",),
            "log LR + log N": ("log_peak_lr", "log_N"),
            "log LR + log N + warmup (default)": ("log_peak_lr", "log_N", "warmup_frac")}


def plateau_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean final loss of the unstable runs per (peak LR, warmup fraction) and model size."""
    main = RunSet.of_runs(runs[runs["group"] == "main"].reset_index(drop=True))
    table = main.table.assign(peak_lr=main.peak_lr, warmup=np.round(main.warmup_fraction, 2),
                              outcome=label_outcomes(main.table))
    unstable = table[table["outcome"] == "unstable"]
    return unstable.pivot_table(index=["peak_lr", "warmup"], columns="model_params", values="final_loss",
                                aggfunc="mean").round(2)


def compare_on_inner_split(runs: pd.DataFrame) -> pd.DataFrame:
    """Item 2 of the module docstring: one row per variant with its MAE over all scored runs and the unstable
    ones."""
    train, test = split_largest_size(split_largest_size(runs)[0], groups=None)
    method = BayesOptLawMethod(seed=0, outcomes=True).fit(train)
    scored = test[~test["diverged"].astype(bool)].reset_index(drop=True)
    draws = method._draws(scored)
    share = method._unstable_share(draws)
    train_set = RunSet.of_runs(train)
    unstable_train = label_outcomes(train_set.table) == "unstable"
    actual = scored["final_loss"].to_numpy(float)
    is_unstable = label_outcomes(scored) == "unstable"
    rows = []
    for name, features in VARIANTS.items():
        if features is None:
            excess = float(np.median(method._excesses(draws)))
        else:
            level = UnstableLossFit.fit(train_set, unstable_train, features)
            excess = level.excess_draws(RunSet.of_candidates(scored), draws.loss, np.random.default_rng(0))
        error = np.abs((draws.loss + share * excess).mean(axis=0) - actual)
        rows.append({"unstable run ends": name, "MAE": error.mean(), "MAE unstable runs": error[is_unstable].mean(),
                     "runs": len(actual), "unstable runs": int(is_unstable.sum())})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inner-only", action="store_true", help="skip the plateau table")
    args = ap.parse_args(argv)
    runs, _ = read_runs(DEFAULT_RUNS)
    if not args.inner_only:
        print("=== the unstable runs' mean final loss (nats) by peak LR, warmup and model size (embedded grid)")
        print(plateau_table(runs).to_string())
    print("\n=== the grid's inner split: fit 25K + 85K, score the 200K block's non-diverged runs")
    print(compare_on_inner_split(runs).round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
