"""Command line: ``bayes-optlaws fit | rank | optimize | evaluate | import | sweep | data summary``.

Thin by design: parse arguments, call the Python API, print.  A user's mistake (bad table, bad schedule, missing
file, existing output without ``--force``) prints one ``error:`` line and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from . import __version__
from .paths import DEFAULT_CANDIDATES, DEFAULT_MODEL, DEFAULT_RUNS
from .runs import RunsError, ensure_writable
from .schedules import ScheduleError


def _say(msg: str) -> None:
    print(f"[bayes-optlaws] {msg}", file=sys.stderr, flush=True)


def _note(msg: str) -> None:
    """A plain note for the user (not a warning), e.g. a value the command chose for them."""
    print(f"note: {msg}", file=sys.stderr, flush=True)


def _show_warnings() -> None:
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show


# ------------------------------------------------------------------------------ fit
def cmd_fit(args) -> int:
    from .api import fit

    from .fitted import writable_model_dir

    out = writable_model_dir(args.out, args.force)  # a bad --out fails now, not after the fit
    sampler = {"draws": args.draws, "tune": args.tune, "chains": args.chains}
    groups = tuple(args.groups.split(",")) if args.groups else None
    law = fit(args.runs, random_seed=args.seed, sampler_config=sampler, progress=_say, groups=groups)
    law.save(out, force=args.force)
    d = law.loss_diagnostics_
    print(f"fitted on {len(law.train_runs_)} runs ({args.runs}) in {law.fit_seconds_:.0f} s -> {out}")
    print(f"exponents: p_s={law.spec_.p_s:g} p_cc={law.spec_.p_cc:g} p_e={law.spec_.p_e:g} p_m={law.spec_.p_m:g}; "
          f"lr_ref={law.spec_.lr_ref:g}")
    print(f"loss model: max R-hat {d['max_rhat']:.3f}, min ESS bulk {d['min_ess_bulk']:.0f}, "
          f"divergences {d['divergences']}")
    pc, ppc, loo = law.prior_check_, law.ppc_, law.loo_
    print(f"prior predictive: {pc['share_inside_98']:.0%} of observed log losses inside the prior's 98 % range; "
          f"posterior predictive coverage on training runs: 50 % -> {ppc['coverage_50']:.0%}, "
          f"90 % -> {ppc['coverage_90']:.0%}")
    if "elpd_loo" in loo:
        print(f"LOO: elpd {loo['elpd_loo']:.1f}, p_loo {loo['p_loo']:.1f}, "
              f"{loo['n_pareto_k_gt_0.7']} runs with Pareto k > 0.7")
    if law.div_diagnostics_:
        dd = law.div_diagnostics_
        print(f"divergence boundary: max R-hat {dd['max_rhat']:.3f}, min ESS bulk {dd['min_ess_bulk']:.0f}, "
              f"divergences {dd['divergences']}")
    if law.size_step_ is not None:
        from .report import size_step_text

        # the factor of each fitted step: a step unlike the others (a size that also changes the model's shape,
        # say) shows here before it misleads a prediction at an unseen size
        print(f"an unseen model size: {size_step_text(law)}")
    level = None if law.div_fit_ is None else law.div_fit_.unstable_level
    if level is not None:
        print(f"where an unstable run ends: {level.describe()}")
    sf = law.stage_fit_
    if sf is not None:
        sd = sf.diagnostics
        print(f"stage model ({sf.n_runs} continual stages; scenarios {', '.join(sf.scenarios)}; "
              f"{len(sf.contexts)} contexts): max R-hat {sd['max_rhat']:.3f}, min ESS bulk "
              f"{sd['min_ess_bulk']:.0f}, divergences {sd['divergences']}; coverage on its runs 50 % -> "
              f"{sf.posterior_check['coverage_50']:.0%}, 90 % -> {sf.posterior_check['coverage_90']:.0%}")
    return 0


# ------------------------------------------------------------------------------ rank
def cmd_rank(args) -> int:
    from .api import load, rank_candidates
    from .ranking import format_table, ranking_legend

    json_path = ensure_writable(args.json, args.force) if args.json else None
    law = load(args.model)
    result = rank_candidates(law, args.candidates, model_params=args.params, tokens_per_step=args.tokens_per_step,
                             tokens=args.tokens, parent_run_id=args.parent, scenario=args.scenario, runs=args.runs,
                             history_schedules=args.history, delta=args.delta,
                             max_p_diverge=args.max_p_diverge, random_seed=args.seed, note=_note)
    print(f"model: {args.model} | candidates: {args.candidates}")
    print(ranking_legend(result))
    print(format_table(result))
    if json_path:
        json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"wrote {json_path}")
    return 0


def _add_rank(sub) -> None:
    p = sub.add_parser("rank", help="rank candidate schedules at a target size with a fitted model")
    p.add_argument("candidates", nargs="?", default=str(DEFAULT_CANDIDATES),
                   help="CSV (name,schedule[,model_params,tokens_per_step]) or TOML; default: shipped examples")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="fitted model directory (default: shipped model)")
    p.add_argument("--params", type=int, help="target model size (parameters, as counted in the training data)")
    p.add_argument("--tokens", type=int, help="target token budget; rescales family schedules to this budget")
    p.add_argument("--tokens-per-step", type=int, help="tokens per optimizer step of the target run")
    p.add_argument("--parent", help="run_id of the checkpoint to continue from (continual training)")
    p.add_argument("--scenario", help="kind of continuation, one of the model's stage scenarios (the group "
                   "labels of its continual runs, e.g. weak_shift = same data, strong_shift = new data)")
    p.add_argument("--runs", help="runs table holding the parent's history (default: the model's training runs)")
    p.add_argument("--history", action="append", metavar="SCHEDULE_JSON",
                   help="an earlier stage's schedule (repeat, oldest first) instead of --parent: continual training "
                   "from a checkpoint that is not in a runs table")
    p.add_argument("--delta", type=float, help="near-tie threshold in nats (default: measured seed noise)")
    p.add_argument("--max-p-diverge", type=float, default=0.05, help="risk-aware pick: max P(diverge)")
    p.add_argument("--json", help="also write the result as JSON to this path")
    p.add_argument("--force", action="store_true", help="overwrite --json if it exists")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_rank)


def _add_fit(sub) -> None:
    p = sub.add_parser("fit", help="fit the Bayesian Opt-Law on a runs table")
    p.add_argument("runs", nargs="?", default=str(DEFAULT_RUNS), help="runs table (default: the embedded grid)")
    p.add_argument("--out", required=True, help="directory for the fitted model")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--groups", help="comma-separated 'group' values to fit on (default: 'main' when the table "
                   "has it, else all rows)")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.set_defaults(func=cmd_fit)


def _register_subcommands(sub) -> None:
    """Sub-commands that live beside their concept: each module's ``register(subparsers)`` adds its own.

    Imported here, explicitly, so a reader (and a linter) sees every module the command line depends on.  None
    needs an optional extra at import time: the sweep harness imports jax only when a sweep runs.
    """
    from . import optimize, report
    from .evaluation import cli as evaluation_cli
    from .importers import cli as importers_cli
    from .sweep import cli as sweep_cli

    for module in (optimize, evaluation_cli, importers_cli, sweep_cli, report):
        module.register(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bayes-optlaws", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"bayes-optlaws {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_fit(sub)
    _add_rank(sub)
    _register_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _show_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (RunsError, ScheduleError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
