"""Benchmark of the core job on this machine: fit (loss + divergence), rank 1,000 candidates, peak memory.

    .venv/bin/python benchmarks/bench_core.py [RUNS] [--candidates 1000]

Prints wall-clock figures; the targets (issue 2) are fit <= 90 s including compilation, rank of 1,000 candidates ×
4,000 draws <= 3 s beyond start-up, peak RSS <= 2 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bayes_optlaws import api  # noqa: E402
from bayes_optlaws.paths import DEFAULT_RUNS  # noqa: E402
from bayes_optlaws.ranking import rank  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_candidates(n: int, total: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        fam = rng.choice(["linear", "cosine", "wsd"])
        spec = {"family": str(fam), "peak_lr": float(10 ** rng.uniform(-3, -0.5)),
                "warmup": int(rng.uniform(0, 0.2) * total), "total": total}
        if fam == "wsd":
            spec.update(cooldown=int(rng.uniform(0.05, 0.5) * total), cooldown_shape="linear")
        rows.append({"name": f"c{i}", "schedule": json.dumps(spec)})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="?", default=str(DEFAULT_RUNS))
    ap.add_argument("--candidates", type=int, default=1000)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    law = api.fit(args.runs, random_seed=0)
    fit_s = time.perf_counter() - t0
    runs = law.train_runs_
    size = int(np.median(runs["model_params"]))
    cands = random_candidates(args.candidates, total=2000)
    t0 = time.perf_counter()
    draws = api.predict(law, cands, model_params=size, tokens_per_step=int(runs["tokens_per_step"].iloc[0]))
    result = rank(draws, delta=law.noise_floor_)
    rank_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        law.save(Path(tmp) / "m")
        save_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        api.load(Path(tmp) / "m")
        load_s = time.perf_counter() - t0
    d, dd = law.loss_diagnostics_, law.div_diagnostics_ or {}
    print(f"runs table: {args.runs} ({len(runs)} runs, {int(runs['diverged'].sum())} diverged)")
    print(f"fit (exponent search + loss model + divergence boundary, incl. compilation): {fit_s:.1f} s")
    print(f"  loss model: max R-hat {d['max_rhat']:.4f}, min ESS bulk {d['min_ess_bulk']:.0f}, "
          f"tail {d['min_ess_tail']:.0f}, divergences {d['divergences']} / {d['draws']}")
    if dd:
        print(f"  divergence boundary: max R-hat {dd['max_rhat']:.4f}, min ESS bulk {dd['min_ess_bulk']:.0f}, "
              f"divergences {dd['divergences']}")
    print(f"rank {len(cands)} candidates x {draws.n_samples} draws: {rank_s:.2f} s "
          f"(top: {result.table.iloc[0]['name']})")
    print(f"save {save_s:.2f} s, load {load_s:.2f} s")
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
