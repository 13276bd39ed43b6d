"""``bayes-optlaws evaluate``: the paper's protocol for every method on the same folds (+ ablation)."""

from __future__ import annotations

import json
import sys
from functools import partial

from ..paths import DEFAULT_MODEL, DEFAULT_RUNS
from ..runs import RunsError, ensure_writable, read_runs
from .baselines import DIVERGENCE_BASELINES, LOSS_BASELINES
from .ours import ABLATION_STEPS, BayesBoundary, BayesOptLawMethod, OptLawLS, sensitivity_methods
from .folds import DEFAULT_CV_GROUPS
from .protocol import cross_validate


def loss_methods(include_bayes: bool = True, seed: int = 0) -> dict:
    methods = dict(LOSS_BASELINES)
    methods["optlaw_ls"] = partial(OptLawLS, seed=seed)
    if include_bayes:  # the product as a user runs it: loss law + outcome model (the law alone: --ablation)
        methods["bayes_optlaw"] = partial(BayesOptLawMethod, seed=seed, outcomes=True)
    return methods


def divergence_methods(include_bayes: bool = True, seed: int = 0) -> dict:
    methods = dict(DIVERGENCE_BASELINES)
    if include_bayes:
        methods["bayes_boundary"] = partial(BayesBoundary, seed=seed)
    return methods


def ablation_methods(include_bayes: bool = True, seed: int = 0) -> dict:
    """Scale → +convergence → +escape → +mixed, for the least-squares and (optionally) the Bayesian law."""
    out = {f"optlaw_ls[{k}]": partial(OptLawLS, blocks=b, seed=seed) for k, b in ABLATION_STEPS.items()}
    if include_bayes:
        out.update({f"bayes_optlaw[{k}]": partial(BayesOptLawMethod, blocks=b, seed=seed)
                    for k, b in ABLATION_STEPS.items()})
    return out


def cmd_beyond(args, runs, json_path) -> int:
    from ..api import load
    from .beyond import beyond_grid, format_beyond

    law = load(args.model)
    res = beyond_grid(law, runs)
    print(f"model {args.model} (fitted on {len(law.train_runs_)} runs) on the runs outside its fitting set:")
    print(format_beyond(res))
    if json_path:
        json_path.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {json_path}")
    return 0


def transfer_methods(include_bayes: bool = True, seed: int = 0) -> tuple[dict, dict]:
    """Loss and divergence methods of the transfer modes: our laws, the reuse-best baseline and the baselines."""
    from .transfer import ProxyBest

    lm = {"proxy_best": ProxyBest, **loss_methods(include_bayes, seed)}
    lm.pop("block_mean", None)  # an unseen block has no mean: it would only repeat the training mean
    return lm, divergence_methods(include_bayes, seed)


def _select(methods: dict, wanted: set) -> dict:
    return {k: v for k, v in methods.items() if k in wanted}


def cmd_transfer(args, json_path) -> int:
    """``--train A --test B`` or ``--extrapolate [RUNS]``: fit on one table, score another."""
    from .transfer import evaluate_transfer, split_largest_size

    groups = tuple(args.groups.split(",")) if args.groups else DEFAULT_CV_GROUPS
    if args.extrapolate:
        train, test = split_largest_size(read_runs(args.runs)[0], groups)
        what = f"leave the largest size out of {args.runs}"
    else:
        if not (args.train and args.test):
            raise RunsError("give both --train A and --test B (runs tables): every method is fitted on A and "
                            "scored on B")
        train, test = read_runs(args.train)[0], read_runs(args.test)[0]
        what = f"fit on {args.train}, score {args.test}"
    lm, dm = transfer_methods(not args.no_bayes, args.seed)
    if args.methods:
        wanted = set(args.methods.split(","))
        unknown = wanted - set(lm) - set(dm)
        if unknown:
            raise RunsError(f"unknown method(s) {sorted(unknown)}; available: {sorted(set(lm) | set(dm))}")
        lm, dm = _select(lm, wanted), _select(dm, wanted)
    if not (test["diverged"].any() and train["diverged"].any()):
        dm = {}  # no divergence labels on one side: nothing to learn or to score
    result = evaluate_transfer(train, test, lm, dm,
                               progress=lambda m: print(f"[evaluate] {m}", file=sys.stderr, flush=True))
    print(f"{what}:")
    print(result.table())
    if json_path:
        json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"wrote {json_path}")
    return 0


def cmd_evaluate(args) -> int:
    json_path = ensure_writable(args.json, args.force) if args.json else None
    if args.extrapolate or args.train or args.test:
        return cmd_transfer(args, json_path)
    runs, _ = read_runs(args.runs)
    if args.beyond:
        return cmd_beyond(args, runs, json_path)
    include_bayes = not args.no_bayes
    if args.sensitivity:
        lm, dm = {"optlaw_ls": partial(OptLawLS, seed=args.seed), **sensitivity_methods(args.seed)}, {}
    elif args.ablation:
        lm, dm = ablation_methods(include_bayes, args.seed), {}
    else:
        lm, dm = loss_methods(include_bayes, args.seed), divergence_methods(include_bayes, args.seed)
    if args.methods:
        wanted = set(args.methods.split(","))
        unknown = wanted - set(lm) - set(dm)
        if unknown:
            raise RunsError(f"unknown method(s) {sorted(unknown)}; available: {sorted(set(lm) | set(dm))}")
        lm = {k: v for k, v in lm.items() if k in wanted}
        dm = {k: v for k, v in dm.items() if k in wanted}
    if args.groups:
        groups = tuple(args.groups.split(","))
    elif "group" in runs.columns and (runs["group"] == "main").any():
        groups = ("main",)  # the embedded grid: extrapolation and shift scenarios are evaluated separately
    else:
        groups = None
    result = cross_validate(runs, lm, dm, folds=args.folds, seed=args.seed, groups=groups,
                            progress=lambda m: print(f"[evaluate] {m}", file=sys.stderr, flush=True))
    print(result.table())
    out = result.to_dict(include_assignment=False)
    law = next((m for m in ("bayes_optlaw", "optlaw_ls") if m in result.methods), None)
    if law is not None and not (args.ablation or args.sensitivity):
        tables = result.residuals(law, runs)
        out["residuals"] = {law: {k: t.reset_index().to_dict("records") for k, t in tables.items()}}
        for key, t in tables.items():
            print(f"\nheld-out residuals of {law} by {key} (bias = predicted - actual, nats):")
            print(t.round(4).to_string())
    if json_path:
        json_path.write_text(json.dumps(out, indent=2, default=str) + "\n")
        print(f"wrote {json_path}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="block-wise cross-validation of our law against the baselines")
    p.add_argument("runs", nargs="?", default=str(DEFAULT_RUNS), help="runs table (default: the embedded grid)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ablation", action="store_true", help="scale → +convergence → +escape → +mixed")
    p.add_argument("--sensitivity", action="store_true",
                   help="exponent-group sensitivity: each group held at 0.1 / 0.2 / 0.5, the others searched")
    p.add_argument("--beyond", action="store_true",
                   help="predict the runs outside the fitting grid (extrapolation, continual stages) with --model")
    p.add_argument("--extrapolate", action="store_true",
                   help="leave the largest model size out: fit on every smaller size, score every block of the "
                   "largest (the expensive-run case)")
    p.add_argument("--train", help="fit every method on this runs table (with --test)")
    p.add_argument("--test", help="score every method on this runs table's rows (with --train)")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="fitted model for --beyond (default: shipped)")
    p.add_argument("--methods", help="comma-separated subset of methods")
    p.add_argument("--no-bayes", action="store_true", help="skip the (slower) Bayesian fits")
    p.add_argument("--groups", help="comma-separated 'group' values taking part in the CV (default: 'main' when "
                   "the table has it, else every group); continual stages never take part")
    p.add_argument("--json", help="write the metrics as JSON")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_evaluate)
