"""Where the seconds of ``bayes-optlaws fit`` go: one fit of the default model on the embedded grid, broken down.

    .venv/bin/python benchmarks/bench_fit.py [RUNS] [--draws 1000] [--tune 1000] [--set divergence.KEY=VALUE ...]

Prints one line per stage of :meth:`BayesOptLaw.fit` (segment integrals, exponent search, each of the three
models: loss law, divergence / instability model, stage model), and inside each model the seconds nutpie spends
compiling the PyMC graph and sampling, measured by wrapping ``nutpie.compile_pymc_model`` and ``nutpie.sample``
(this script only; the package is not changed).  The rest of a model's line is its prior predictive check,
diagnostics and posterior checks.  The goal (issue 9) is the whole fit ≤ 90 s on 2 cores, compilation included.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import nutpie

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bayes_optlaws import api  # noqa: E402
from bayes_optlaws.paths import DEFAULT_RUNS  # noqa: E402

#: the progress message that opens each stage of BayesOptLaw.fit (its first words) -> the stage's name
STAGES = {"computing segment integrals": "segment integrals", "searching exponent groups": "exponent search",
          "sampling the loss model": "loss law", "sampling the divergence model": "divergence model",
          "sampling the stage model": "stage model", "done in": None}


class NutpieTimer:
    """Wraps nutpie's compile and sample functions and adds their seconds to the stage that is running."""

    def __init__(self) -> None:
        self.stage = "setup"
        self.compile: dict[str, float] = {}
        self.sample: dict[str, float] = {}
        self._orig = (nutpie.compile_pymc_model, nutpie.sample)

    def __enter__(self) -> "NutpieTimer":
        compile_fn, sample_fn = self._orig
        nutpie.compile_pymc_model = self._timed(compile_fn, self.compile)
        nutpie.sample = self._timed(sample_fn, self.sample)
        return self

    def __exit__(self, *exc) -> None:
        nutpie.compile_pymc_model, nutpie.sample = self._orig

    def _timed(self, fn, into: dict[str, float]):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                into[self.stage] = into.get(self.stage, 0.0) + time.perf_counter() - t0
        return wrapper


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
    ap.add_argument("--set", action="append", default=[], metavar="PART.KEY=VALUE",
                    help="override one config entry, e.g. divergence.outcome=binary (repeatable)")
    args = ap.parse_args(argv)
    sampler = {k: v for k, v in (("draws", args.draws), ("tune", args.tune)) if v is not None}
    marks: list[tuple[str, float]] = []
    timer = NutpieTimer()

    def progress(msg: str) -> None:
        for prefix, stage in STAGES.items():
            if msg.startswith(prefix):
                marks.append((stage, time.perf_counter()))
                timer.stage = stage
        print(f"  [{time.perf_counter() - t0:6.1f} s] {msg}", flush=True)

    t0 = time.perf_counter()
    with timer, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law = api.fit(args.runs, sampler_config=sampler or None, progress=progress, **parse_sets(args.set))
    total = time.perf_counter() - t0
    print(f"\nfit of {args.runs} ({len(law.train_runs_)} runs): {total:.1f} s wall")
    print(f"{'stage':<20} {'seconds':>8} {'compile':>8} {'sample':>8}")
    starts = [("setup", t0)] + marks
    for (stage, start), (_, end) in zip(starts, starts[1:]):
        c, s = timer.compile.get(stage), timer.sample.get(stage)
        print(f"{stage:<20} {end - start:8.1f} {'' if c is None else f'{c:8.1f}':>8} "
              f"{'' if s is None else f'{s:8.1f}':>8}")
    print(f"{'total':<20} {total:8.1f} {sum(timer.compile.values()):8.1f} {sum(timer.sample.values()):8.1f}")


if __name__ == "__main__":
    main()
