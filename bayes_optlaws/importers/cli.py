"""``bayes-optlaws import FORMAT PATH... --out runs.csv``: training logs -> runs table (+ ``.meta.json``).

The main CLI calls :func:`register` with its subparsers; the ``import`` sub-command's handler returns an exit
code and raises :class:`bayes_optlaws.runs.RunsError` (file, field and fix in the message) on bad input.
"""

from __future__ import annotations

import argparse
import sys

from ..runs import write_runs
from . import FORMATS, import_runs

HELP = ("import training logs (lr-scheduling JSON, multi-power-law CSV, generic per-step CSV, LossCast-Bench run "
        "directories) as a runs table")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``import`` sub-command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "import", help=HELP, description=HELP + ".",
        epilog="formats: 'lr-scheduling' (W&B JSON logs; resumed cooldowns stitched onto their parents), "
               "'multipower' (csv_<size>/<schedule>.csv curves; needs --tokens-per-step), "
               "'csv' (one step,lr,loss[,val_loss] CSV per run; needs --model-params and --tokens-per-step or "
               "--side-table), 'losscast' (LossCast-Bench run directories with config.json + losses.json, or folders "
               "of them). Writes OUT and OUT.meta.json (source, licence, parameter rule, loss kind, "
               "divergence rule, importer version).")
    p.add_argument("format", metavar="FORMAT", help=f"one of: {', '.join(FORMATS)}")
    p.add_argument("paths", metavar="PATH", nargs="+", help="log files or folders holding them")
    p.add_argument("--out", required=True, metavar="RUNS.csv", help="runs table to write (CSV)")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.add_argument("--tokens-per-step", type=int, default=None, metavar="N",
                   help="sequence length × global batch (multipower, csv)")
    p.add_argument("--model-params", type=int, default=None, metavar="N",
                   help="parameter count of the run(s) (csv; multipower: overrides the nominal size)")
    p.add_argument("--side-table", default=None, metavar="CSV",
                   help="csv format: per-file model_params, tokens_per_step (+ group, seed, x_*) keyed by file")
    p.add_argument("--final-loss", choices=("auto", "val", "train"), default=None,
                   help="csv format: the final loss is the last val_loss (val), the last training loss (train), or "
                        "val_loss where the log has one (auto, default)")
    p.add_argument("--skip-bad", action="store_true",
                   help="losscast: leave malformed run directories out (each listed with its reason) instead of "
                        "stopping at the first")
    p.add_argument("--incomplete", choices=("truncate", "skip"), default=None,
                   help="losscast: a curve ending > 1%% of total_steps early: cut the schedule at its last "
                        "evaluation (truncate, default) or leave the run out (skip)")
    p.add_argument("--params-from", choices=("config", "architecture"), default=None,
                   help="losscast: model size from config n_params (default; the architecture formula when "
                        "absent) or from the architecture for every run")
    p.set_defaults(func=handler)
    return p


#: how many of an import's warnings are printed (all of them go to the side-car's "warnings")
MAX_WARNINGS_SHOWN = 10


def handler(args: argparse.Namespace) -> int:
    """Run the import and write the table; prints one summary line.  Bad input raises RunsError."""
    options = {}
    if args.tokens_per_step is not None:
        options["tokens_per_step"] = args.tokens_per_step
    if args.model_params is not None:
        options["model_params"] = args.model_params
    if getattr(args, "side_table", None) is not None:
        options["side_table"] = args.side_table
    if getattr(args, "skip_bad", False):
        options["skip_bad"] = True
    for name in ("incomplete", "params_from", "final_loss"):
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    df, meta = import_runs(args.format, args.paths, **options)
    skipped = meta.get("skipped") or []
    for item in skipped:
        print(f"skipped {item['run']}: {item['reason']}", file=sys.stderr)
    said = {f"skipped {item['run']}: {item['reason']}" for item in skipped}
    notes = [w for w in meta.get("warnings") or [] if w not in said]  # what the importer assumed or changed
    for note in notes[:MAX_WARNINGS_SHOWN]:
        print(f"warning: {note}", file=sys.stderr)
    if len(notes) > MAX_WARNINGS_SHOWN:
        print(f"warning: ... and {len(notes) - MAX_WARNINGS_SHOWN} more (every one is in the .meta.json side-car)",
              file=sys.stderr)
    out = write_runs(df, args.out, meta, force=args.force)
    groups = ", ".join(f"{g}: {n}" for g, n in df["group"].value_counts().sort_index().items()) \
        if "group" in df.columns and df["group"].notna().any() else "no group"
    print(f"imported {len(df)} runs ({int(df['diverged'].sum())} diverged; {groups}) from {args.format} "
          f"-> {out} (+ {out}.meta.json)")
    return 0
