"""Where the seconds of ``bayes-optlaws fit`` go: one fit of the default model on the embedded grid, broken down.

    .venv/bin/python benchmarks/bench_fit.py [RUNS] [--draws 1000] [--tune 1000] [--seed 0] [--gradient]
                                             [--set divergence.KEY=VALUE ...]

Prints the fit's progress with timestamps, its wall clock, and for each of the three models (loss law,
divergence / instability model, stage model) the seconds nutpie spends compiling the PyMC graph and sampling,
measured by wrapping ``nutpie.compile_pymc_model`` and ``nutpie.sample`` (this script only; the package is not
changed), the mean leapfrog steps per draw and each model's max R-hat, min ESS and divergent transitions
(so a faster fit that samples worse shows).  The goals: the whole fit of the embedded grid ≤ 90 s on 2 cores,
compilation included (issue 9), and of the 1,843 LossCast StepLaw train runs ≤ 120 s (issue 12; write them with
``bayes-optlaws import losscast ../shared/datasets/losscast/train/ncpl_steplaw_* --out STEPLAW.csv``).  Compiled code is cached on disk (PyTensor's numba cache), so the first fit on a machine
compiles more than the next ones: run it twice to see both.  ``--gradient`` also prints, after the fit, the
microseconds of one log-density + gradient evaluation of each model at its initial point (PyTensor's numba
backend, called from Python, so a little above what nutpie pays per leapfrog step).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import warnings
from pathlib import Path

import nutpie

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bayes_optlaws import api  # noqa: E402
from bayes_optlaws.paths import DEFAULT_RUNS  # noqa: E402

#: a variable only that model has (every divergence outcome model has log_c) -> the model's name
MARKERS = (("log_c", "divergence model"), ("scenario_raw", "stage model"))


def model_name(model) -> str:
    names = set(getattr(model, "named_vars", {}))
    return next((label for var, label in MARKERS if var in names), "loss law")


class NutpieTimer:
    """Wraps nutpie's compile and sample functions and adds their seconds to the model they work on."""

    def __init__(self) -> None:
        self.compile: dict[str, float] = {}
        self.sample: dict[str, float] = {}
        self.steps: dict[str, float] = {}  # mean leapfrog steps per draw (post-warmup)
        self._orig = (nutpie.compile_pymc_model, nutpie.sample)
        self._by_thread: dict[int, str] = {}
        self.models: dict[str, object] = {}  # the PyMC model of each name (for --gradient)
        self._lock = threading.Lock()

    def __enter__(self) -> "NutpieTimer":
        compile_fn, sample_fn = self._orig

        def compile_model(model, *args, **kwargs):
            name = model_name(model)
            self._by_thread[threading.get_ident()] = name
            self.models[name] = model
            return self._timed(compile_fn, self.compile, name, model, *args, **kwargs)

        def sample(*args, **kwargs):
            name = self._by_thread.get(threading.get_ident(), "?")
            trace = self._timed(sample_fn, self.sample, name, *args, **kwargs)
            stats = trace["sample_stats"] if "sample_stats" in trace.children else None
            if stats is not None and "n_steps" in stats:
                self.steps[name] = float(stats["n_steps"].mean())
            return trace

        nutpie.compile_pymc_model, nutpie.sample = compile_model, sample
        return self

    def __exit__(self, *exc) -> None:
        nutpie.compile_pymc_model, nutpie.sample = self._orig

    def _timed(self, fn, into: dict[str, float], name: str, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                into[name] = into.get(name, 0.0) + time.perf_counter() - t0


def gradient_microseconds(model, evaluations: int = 2000) -> float:
    """Mean µs of one log-density + gradient evaluation of ``model`` at its initial point (numba backend)."""
    logp, dlogp = model.compile_logp(mode="NUMBA"), model.compile_dlogp(mode="NUMBA")
    point = model.initial_point()
    logp(point), dlogp(point)  # first calls pay for compilation
    t0 = time.perf_counter()
    for _ in range(evaluations):
        logp(point)
        dlogp(point)
    return (time.perf_counter() - t0) / evaluations * 1e6


def parse_sets(items: list[str]) -> dict[str, dict]:
    """``divergence.k_median=0.5`` -> {"divergence_config": {"k_median": 0.5}} (values read as JSON)."""
    out: dict[str, dict] = {}
    for item in items:
        key, _, value = item.partition("=")
        part, _, name = key.partition(".")
        target = {"divergence": "divergence_config", "loss": "model_config", "stage": "stage_config"}.get(part)
        if target is None or not name or not value:
            raise SystemExit(f"error: --set {item!r}: expected divergence.KEY=VALUE, loss.KEY=VALUE or "
                             f"stage.KEY=VALUE")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(target, {})[name] = parsed
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="?", default=str(DEFAULT_RUNS))
    ap.add_argument("--draws", type=int, default=None, help="NUTS draws per chain (default: the package's)")
    ap.add_argument("--tune", type=int, default=None, help="NUTS tuning steps per chain (default: the package's)")
    ap.add_argument("--seed", type=int, default=0, help="the fit's random_seed (default 0, the shipped model's)")
    ap.add_argument("--gradient", action="store_true",
                    help="after the fit, time one log-density + gradient of each model")
    ap.add_argument("--set", action="append", default=[], metavar="PART.KEY=VALUE",
                    help="override one config entry, e.g. divergence.outcome=binary (repeatable)")
    args = ap.parse_args(argv)
    sampler = {k: v for k, v in (("draws", args.draws), ("tune", args.tune)) if v is not None}
    timer = NutpieTimer()

    def progress(msg: str) -> None:
        print(f"  [{time.perf_counter() - t0:6.1f} s] {msg}", flush=True)

    t0 = time.perf_counter()
    with timer, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law = api.fit(args.runs, sampler_config=sampler or None, progress=progress, random_seed=args.seed,
                      **parse_sets(args.set))
    total = time.perf_counter() - t0
    print(f"\nfit of {args.runs} ({len(law.train_runs_)} runs): {total:.1f} s wall")
    print(f"{'model':<20} {'compile':>8} {'sample':>8} {'steps/draw':>11}   (seconds)   max R-hat  min ESS  "
          "divergences")
    diagnostics = {"loss law": law.loss_diagnostics_, "divergence model": law.div_diagnostics_,
                   "stage model": law.stage_fit_.diagnostics if law.stage_fit_ is not None else None}
    for name in ("loss law", "divergence model", "stage model"):
        if name in timer.compile or name in timer.sample:
            d = diagnostics[name] or {}
            ess = min(d.get("min_ess_bulk", float("nan")), d.get("min_ess_tail", float("nan")))
            print(f"{name:<20} {timer.compile.get(name, 0.0):8.1f} {timer.sample.get(name, 0.0):8.1f} "
                  f"{timer.steps.get(name, float('nan')):11.0f}   {'':9} {d.get('max_rhat', float('nan')):9.3f} "
                  f"{ess:8.0f} {d.get('divergences', -1):12d}")
    print(f"{'sum':<20} {sum(timer.compile.values()):8.1f} {sum(timer.sample.values()):8.1f}")
    if args.gradient:
        for name, model in timer.models.items():
            print(f"{name:<20} {gradient_microseconds(model):8.1f} µs per log-density + gradient")

if __name__ == "__main__":
    main()
