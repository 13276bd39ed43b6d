"""Accuracy tables: the paper's protocol on the embedded grid and on the public datasets in ../shared/datasets.

    .venv/bin/python benchmarks/bench_evaluation.py [--no-bayes] [--only grid|lr124|multipower]

Prints one table per dataset (every method on the same block-wise folds).  The public logs are read from
``../shared/datasets`` beside the repository and skipped with a message when it is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bayes_optlaws.evaluation.cli import divergence_methods, loss_methods  # noqa: E402
from bayes_optlaws.evaluation.protocol import cross_validate  # noqa: E402
from bayes_optlaws.importers import import_runs  # noqa: E402
from bayes_optlaws.paths import DEFAULT_RUNS, REPO_ROOT  # noqa: E402
from bayes_optlaws.runs import read_runs  # noqa: E402

SHARED = REPO_ROOT.parent / "shared" / "datasets"


def datasets(only):
    if only in (None, "grid"):
        runs, _ = read_runs(DEFAULT_RUNS)
        yield "embedded grid (group main)", runs, ("main",)
    if not SHARED.exists():
        print(f"skipping public datasets: {SHARED} not found")
        return
    if only in (None, "lr124"):
        runs, _ = import_runs("lr-scheduling", [str(SHARED / "lr-scheduling")])
        block = runs[(runs["model_params"] == 123587328) & (runs["tokens"] == 5_120_000_000)
                     & (runs["group"] == "slimpajama")]
        yield "lr-scheduling 124M SlimPajama 50k iterations", block, None
    if only in (None, "multipower"):
        runs, _ = import_runs("multipower", [str(SHARED / "multipowerlaw")], tokens_per_step=1_048_576)
        yield "multi-power-law 25M/100M/400M (tokens/step assumed 1,048,576)", runs, None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-bayes", action="store_true")
    ap.add_argument("--only", choices=["grid", "lr124", "multipower"])
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    for name, runs, groups in datasets(args.only):
        t0 = time.perf_counter()
        res = cross_validate(runs, loss_methods(not args.no_bayes), divergence_methods(not args.no_bayes),
                             folds=args.folds, seed=0, groups=groups)
        print(f"\n=== {name}: {len(runs)} runs ({time.perf_counter() - t0:.0f} s) ===")
        print(res.table())


if __name__ == "__main__":
    main()
