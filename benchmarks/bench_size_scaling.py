"""How well Chinchilla's size term transfers, and the one-size law with and without the size-scaling prior.

    .venv/bin/python benchmarks/bench_size_scaling.py [--factors-only] [--only grid|steplaw|marin] [--json PATH]

1. **Size-term factor k** (:mod:`bayes_optlaws.size_scaling`): for every pair of model sizes trained at the same
   token count, ``k = observed / Chinchilla`` change of log loss between the best non-diverged run of each size.
   Printed for the LossCast StepLaw train split and the embedded grid (Marin's pairs are its held-out size step,
   so they are not used here).
2. **One-size splits** (fit on one size, score the next larger one): the Bayesian law with
   ``new_size="nearest_size"`` (default: the law at the fitted size + the size step) and ``"features"`` (the
   law's own features at the new size), beside least squares and reusing the best configuration:

   * embedded grid (group main): fit 200K, score 793K;
   * LossCast StepLaw train split: fit 200M, score 242M;
   * LossCast Marin train split: fit 130M, score 300M (our held-out size step; figures reported, never tuned on).

The LossCast runs are read from ``../shared/datasets/losscast/train`` and skipped with a message when it is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_extrapolation import LOSSCAST, losscast_family  # noqa: E402
from bayes_optlaws.evaluation.ours import BayesOptLawMethod, OptLawLS  # noqa: E402
from bayes_optlaws.evaluation.transfer import ProxyBest, evaluate_transfer  # noqa: E402
from bayes_optlaws.paths import DEFAULT_RUNS  # noqa: E402
from bayes_optlaws.runs import read_runs  # noqa: E402
from bayes_optlaws.size_scaling import chinchilla_log_shift  # noqa: E402


def size_factors(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (smaller size, larger size, token count) with both sizes' best loss: observed and Chinchilla
    log-loss change and their ratio ``k``.  Token counts are rounded to 2 significant digits (LossCast's runs of
    one budget differ in the last steps)."""
    ok = runs[~runs["diverged"] & runs["final_loss"].notna()].copy()
    ok["D"] = ok["tokens"].map(lambda t: float(f"{t:.2g}"))
    best = ok.groupby(["model_params", "D"])["final_loss"].min().unstack(0)
    rows = []
    sizes = list(best.columns)
    for D, row in best.iterrows():
        for i, small in enumerate(sizes):
            for large in sizes[i + 1:]:
                if np.isfinite(row[small]) and np.isfinite(row[large]):
                    observed = float(np.log(row[large] / row[small]))
                    prior = float(chinchilla_log_shift(small, large, D))
                    rows.append({"N_small": small, "N_large": large, "D": D, "observed": observed,
                                 "chinchilla": prior, "k": observed / prior})
    return pd.DataFrame(rows)


def one_size_split(runs: pd.DataFrame, fit_size: int, score_size: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs of ``fit_size``, runs of ``score_size``), single-stage rows only."""
    single = runs[runs["parent_run_id"].isna()] if "parent_run_id" in runs.columns else runs
    return (single[single["model_params"] == fit_size].reset_index(drop=True),
            single[single["model_params"] == score_size].reset_index(drop=True))


def sources(only):
    grid = read_runs(DEFAULT_RUNS)[0]
    grid = grid[grid["group"] == "main"].reset_index(drop=True)
    if only in (None, "grid"):
        yield "embedded grid", grid, (200064, 793344)
    if only == "grid":
        return
    if not LOSSCAST.exists():
        print(f"skipping LossCast-Bench: {LOSSCAST} not found (the shared datasets are not beside this checkout)")
        return
    if only in (None, "steplaw"):
        yield "LossCast StepLaw", losscast_family("ncpl_steplaw_"), (199957440, 241517568)
    if only in (None, "marin"):
        yield "LossCast Marin (held-out step)", losscast_family("ncpl_marin_"), (130000000, 300000000)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=("grid", "steplaw", "marin"))
    ap.add_argument("--factors-only", action="store_true", help="print the k tables only (no fits)")
    ap.add_argument("--json", help="write the results as JSON")
    args = ap.parse_args(argv)
    out = {}
    methods = {"proxy_best": ProxyBest, "optlaw_ls": OptLawLS,
               "bayes_nearest_size": partial(BayesOptLawMethod, model_config={"new_size": "nearest_size"},
                                   outcomes=True),
               "bayes_features": partial(BayesOptLawMethod, model_config={"new_size": "features"}, outcomes=True)}
    for title, runs, (fit_size, score_size) in sources(args.only):
        entry = {}
        if "held-out" not in title:
            k = size_factors(runs)
            print(f"\n=== {title}: size-term factor k over {len(k)} size pairs: mean {k['k'].mean():.2f}, "
                  f"sd {k['k'].std():.2f}, range {k['k'].min():.2f}-{k['k'].max():.2f}")
            print(k.round(4).to_string(index=False))
            entry["k"] = {"mean": float(k["k"].mean()), "sd": float(k["k"].std()), "n": int(len(k))}
        if not args.factors_only:
            train, test = one_size_split(runs, fit_size, score_size)
            res = evaluate_transfer(train, test, methods)
            print(f"\n=== {title}: fit {fit_size:,} only, score {score_size:,}")
            print(res.table())
            entry["one_size"] = res.to_dict()["methods"]
        out[title] = entry
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
