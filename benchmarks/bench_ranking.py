"""Benchmark of ranking 1,000 candidate schedules with the shipped model: ``predict`` and ``rank`` timed apart.

    .venv/bin/python benchmarks/bench_ranking.py [--candidates 1000] [--seed 0] [--repeat 3] [--write-csv PATH]
                                                 [--profile] [--cli]

The candidates are the issue's case: linear / cosine / WSD (linear cooldown, 10-40 % of the run), peak LR
log-uniform in [0.001, 0.512], warmup uniform in [1 %, 20 %] of the run, at ``--params 84912 --tokens 8192000
--tokens-per-step 4096`` (2,000 steps).  ``--write-csv`` also writes them as a candidates CSV, so that the same
case can be timed through the CLI (``bayes-optlaws rank PATH --params 84912 --tokens 8192000
--tokens-per-step 4096``).  ``--profile`` prints the top functions (cumulative time) of one predict + rank.  ``--cli`` also times
the CLI itself: ``bayes-optlaws rank`` on the 1,000 candidates minus the same command on the first candidate
alone (start-up: interpreter, imports and loading the model), median of ``--repeat`` runs each — the issue's
"beyond start-up" figure.
Figures are wall-clock seconds on this machine (best of ``--repeat``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bayes_optlaws import api  # noqa: E402
from bayes_optlaws.ranking import rank  # noqa: E402

MODEL_PARAMS = 84_912
TOKENS = 8_192_000
TOKENS_PER_STEP = 4096


def issue_candidates(n: int = 1000, seed: int = 0, total_steps: int = TOKENS // TOKENS_PER_STEP) -> pd.DataFrame:
    """``n`` seeded candidates (name, schedule): family, peak LR and warmup drawn as described in the module."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        family = str(rng.choice(["linear", "cosine", "wsd"]))
        peak_lr = float(np.exp(rng.uniform(np.log(0.001), np.log(0.512))))
        warmup = max(1, int(round(rng.uniform(0.01, 0.20) * total_steps)))
        spec = {"family": family, "peak_lr": peak_lr, "warmup": warmup, "total": total_steps}
        if family == "wsd":
            spec.update(cooldown=int(round(rng.uniform(0.10, 0.40) * total_steps)), cooldown_shape="linear")
        rows.append({"name": f"{family}-lr{peak_lr:.4g}-w{warmup}-{i}", "schedule": json.dumps(spec)})
    return pd.DataFrame(rows)


def best_of(repeat: int, fn):
    """(best wall-clock seconds, best CPU seconds of this process over ``repeat`` calls, result of the last call).

    CPU seconds are the fairer figure on a shared machine (other jobs inflate wall-clock time, not CPU time)."""
    wall, cpu, out = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu), out


def cli_seconds(csv: Path, repeat: int) -> float:
    """Median wall-clock seconds of ``bayes-optlaws rank CSV`` at the issue's target (a fresh process each)."""
    cmd = [sys.executable, "-m", "bayes_optlaws.cli", "rank", str(csv), "--params", str(MODEL_PARAMS), "--tokens",
           str(TOKENS), "--tokens-per-step", str(TOKENS_PER_STEP)]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def time_cli(cands: pd.DataFrame, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        one, full = Path(tmp) / "one.csv", Path(tmp) / "all.csv"
        cands.iloc[:1].to_csv(one, index=False)
        cands.to_csv(full, index=False)
        start, total = cli_seconds(one, repeat), cli_seconds(full, repeat)
    print(f"CLI: rank {len(cands)} candidates {total:.2f} s, 1 candidate (start-up) {start:.2f} s, beyond start-up "
          f"{total - start:.2f} s (median of {repeat} runs each)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--candidates", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write-csv", help="also write the candidates to this CSV (for timing the CLI)")
    ap.add_argument("--profile", action="store_true", help="print a cProfile summary of one predict + rank")
    ap.add_argument("--cli", action="store_true", help="also time the CLI (beyond start-up)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    cands = issue_candidates(args.candidates, args.seed)
    if args.write_csv:
        cands.to_csv(args.write_csv, index=False)
        print(f"wrote {len(cands)} candidates to {args.write_csv}")
    t0 = time.perf_counter()
    law = api.load()
    load_s = time.perf_counter() - t0

    def predict():
        return api.predict(law, cands, model_params=MODEL_PARAMS, tokens=TOKENS, tokens_per_step=TOKENS_PER_STEP,
                           random_seed=args.seed)

    predict_s, predict_cpu, draws = best_of(args.repeat, predict)
    rank_s, rank_cpu, ranking = best_of(args.repeat, lambda: rank(draws, delta=law.noise_floor_,
                                                                  random_seed=args.seed))
    print(f"{len(cands)} candidates x {draws.n_samples} draws (N={MODEL_PARAMS:,}, D={TOKENS:,} tokens, "
          f"{TOKENS_PER_STEP} tokens/step)")
    print(f"load model: {load_s:.2f} s   predict: {predict_s:.2f} s   rank: {rank_s:.2f} s   "
          f"predict + rank: {predict_s + rank_s:.2f} s   (wall clock, best of {args.repeat})")
    print(f"CPU time: predict {predict_cpu:.2f} s   rank {rank_cpu:.2f} s   predict + rank "
          f"{predict_cpu + rank_cpu:.2f} s")
    top = ranking.table.iloc[0]
    print(f"first row: {top['name']} expected loss {top.expected_loss:.4f}, P(best) {top.p_best:.3f}; "
          f"pick by P(best): {ranking.picks['by_p_best']}; max loss draw {float(draws.loss.max()):.3f} nats, "
          f"diverged_loss {draws.diverged_loss:.3f} nats")
    if args.cli:
        time_cli(cands, args.repeat)
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        rank(predict(), delta=law.noise_floor_, random_seed=args.seed)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
        print(buf.getvalue())


if __name__ == "__main__":
    main()
