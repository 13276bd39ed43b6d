"""Sub-commands of the sweep harness, for the package CLI: ``register(subparsers)`` adds ``sweep`` and ``data``.

* ``sweep SPEC [--jobs K] [--results PATH] [--export DIR]``: train every run of a spec not yet in the results file;
* ``sweep --rerun RUN_ID [--runs data/grid/runs.csv]``: re-train one stored run, print the difference;
* ``data summary [RUNS]``: per block, configurations, divergent runs, seed noise, spread, families.

Every handler returns an exit code; user mistakes raise :class:`bayes_optlaws.runs.RunsError`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..paths import DEFAULT_RUNS as _EMBEDDED_RUNS
from ..runs import RunsError

DEFAULT_RUNS = str(_EMBEDDED_RUNS)  # the embedded grid, wherever the command runs


def _sweep(args) -> int:
    if args.rerun:
        from .runner import rerun

        r = rerun(args.rerun, args.runs, cache=args.corpus_cache)
        print(f"{r['run_id']}: stored final loss {r['stored']:.6f} ({r['stored_device']}), re-trained "
              f"{r['new']:.6f} ({r['device']}), difference {r['diff']:+.2e} in {r['wall_s']:.1f} s")
        return 0 if abs(r["diff"]) < args.tolerance else 1
    if not args.spec:
        raise RunsError("sweep needs a SPEC file (or --rerun RUN_ID)")
    from .runner import run_sweep

    results = args.results or str(Path(args.spec).with_suffix(".results.jsonl").name)
    run_sweep(args.spec, results, jobs=args.jobs, max_group=args.max_group, cache=args.corpus_cache,
              time_limit=args.time_limit, progress=not args.no_progress,
              only_groups=args.only.split(",") if args.only else None)
    if args.export:
        from .export import export

        export([results], args.export, spec_paths=[args.spec], corpus_cache=args.corpus_cache)
        print(f"exported {args.export}/runs.csv")
    return 0


def _summary(args) -> int:
    from .. import runs as runs_mod
    from .summary import format_summary

    df, _ = runs_mod.read_runs(args.runs)
    print(format_summary(df))
    return 0


def _data_missing(args) -> int:
    raise RunsError("give a data sub-command: summary")


def register(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="train a grid of tiny LMs (needs the [sweep] extra: jax, optax)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", nargs="?", help="sweep spec (TOML), e.g. data/specs/grid-v1.toml")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes, one XLA thread each (CPU)")
    p.add_argument("--results", help="results JSONL (default: <spec name>.results.jsonl in the current folder)")
    p.add_argument("--export", metavar="DIR", help="after the sweep, write DIR/runs.csv, meta, curves, MANIFEST")
    p.add_argument("--max-group", type=int, default=None,
                   help="runs trained together with vmap (default 1 on CPU, 64 on GPU)")
    p.add_argument("--time-limit", type=float, default=None, help="start no new group after this many seconds")
    p.add_argument("--only", metavar="NAMES", help="comma-separated groups or blocks to run (parents included)")
    p.add_argument("--corpus-cache", default=None, help="corpus folder (default .corpus/ or ~/.cache/...)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--rerun", metavar="RUN_ID", help="re-train one stored run and compare its final loss")
    p.add_argument("--runs", default=DEFAULT_RUNS, help=f"runs table for --rerun (default {DEFAULT_RUNS})")
    p.add_argument("--tolerance", type=float, default=1e-3, help="--rerun exit code 1 above this |difference|")
    p.set_defaults(func=_sweep)

    d = subparsers.add_parser("data", help="inspect runs tables")
    dsub = d.add_subparsers(dest="data_command")
    d.set_defaults(func=_data_missing)
    s = dsub.add_parser("summary", help="per block: configurations, divergent runs, seed noise, spread, families")
    s.add_argument("runs", nargs="?", default=DEFAULT_RUNS, help=f"runs table (default {DEFAULT_RUNS})")
    s.set_defaults(func=_summary)


def main(argv=None) -> int:
    """Stand-alone entry (``python -m bayes_optlaws.sweep ...``) until the package CLI wires ``register``."""
    import sys

    ap = argparse.ArgumentParser(prog="python -m bayes_optlaws.sweep")
    sub = ap.add_subparsers(dest="command", required=True)
    register(sub)
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except RunsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
