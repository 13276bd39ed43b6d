"""Divergence and instability models on the grid's CV folds: F1, Brier and reliability of P(diverge) and
P(unstable), and (``--loss-bias``) the effect of leaving unstable runs out of the loss law.

    .venv/bin/python benchmarks/bench_divergence.py [RUNS] [--variants ordered,binary,two_logistic]
                                                    [--draws 500] [--loss-bias] [--json out.json]

The folds are those of ``bayes-optlaws evaluate`` (5 block-wise folds of the ``main`` group, seed 0), so the
baselines' numbers here equal the ones ``evaluate`` prints.  Truth labels for P(unstable) come from
:func:`bayes_optlaws.instability.label_outcomes` on all CV runs (a run's block best over every fold); the models
only ever see labels computed on their training fold.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bayes_optlaws import instability as ins  # noqa: E402
from bayes_optlaws.evaluation import metrics as M  # noqa: E402
from bayes_optlaws.evaluation.baselines import DIVERGENCE_BASELINES, LogisticDivergence  # noqa: E402
from bayes_optlaws.evaluation.folds import cv_mask, make_folds  # noqa: E402
from bayes_optlaws.evaluation.ours import BayesBoundary, OptLawLS  # noqa: E402
from bayes_optlaws.evaluation.protocol import cross_validate  # noqa: E402
from bayes_optlaws.paths import DEFAULT_RUNS  # noqa: E402
from bayes_optlaws.runs import read_runs  # noqa: E402


class UnstableLogistic:
    """Baseline for P(unstable): the divergence baseline's logistic regression fitted to the unstable label."""

    def fit(self, df):
        lab = ins.label_outcomes(df)
        self.model_ = LogisticDivergence().fit(df.assign(diverged=lab == "unstable"))
        return self

    def predict_proba(self, df):
        return self.model_.predict_proba(df)


class OptLawLSNormalOnly(OptLawLS):
    """``optlaw_ls`` fitted on the training fold's normal runs only (unstable ones left out)."""

    name = "optlaw_ls[normal only]"

    def fit(self, df):
        keep = ins.label_outcomes(df) == "normal"
        return super().fit(df[keep].reset_index(drop=True))


def _number_or_text(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def _reliability_lines(p, happened) -> str:
    t = M.event_reliability(p, happened)
    t = t[t["count"] > 0]
    return "\n".join(f"    [{r.lo:.2f}, {r.hi:.2f}): n={int(r['count']):3d}  mean p={r.mean_p:.3f}  observed={r.freq:.3f}"
                     for _, r in t.iterrows())


def cross_validated_probabilities(df, methods, folds) -> dict[str, dict[str, np.ndarray]]:
    """Held-out P(diverge) (and P(unstable) where a method has it) per CV row, and fit seconds per method."""
    out = {}
    for name, factory in methods.items():
        p_div, p_uns = np.full(len(df), np.nan), np.full(len(df), np.nan)
        t0 = time.perf_counter()
        for f in range(folds.max() + 1):
            test, train = folds == f, (folds >= 0) & (folds != f)
            model = factory().fit(df[train].reset_index(drop=True))
            te = df[test].reset_index(drop=True)
            if hasattr(model, "predict_outcome_proba"):
                p_div[test], p_uns[test] = model.predict_outcome_proba(te)
            else:
                p_div[test] = model.predict_proba(te)
            print(f"  {name}: fold {f + 1} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        out[name] = {"p_diverge": p_div, "p_unstable": p_uns, "seconds": time.perf_counter() - t0}
    return out


def loss_bias(runs) -> dict:
    """Held-out bias (predicted − actual, nats) of optlaw_ls by gap to the block's best, with and without the
    unstable runs in its training folds."""
    res = cross_validate(runs, {"optlaw_ls": OptLawLS, "optlaw_ls[normal only]": OptLawLSNormalOnly}, {},
                         folds=5, seed=0, groups=("main",))
    return {name: res.residuals(name, runs)["gap_to_block_best"].reset_index().to_dict("records")
            for name in res.methods}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="?", default=str(DEFAULT_RUNS))
    ap.add_argument("--variants", default="ordered", help="comma-separated outcome models of bayes_boundary")
    ap.add_argument("--draws", type=int, default=500, help="draws (and tuning steps) per chain")
    ap.add_argument("--set", action="append", default=[],
                    help="extra config entry KEY=VALUE (a number, else a string), e.g. unstable_boundary=shared")
    ap.add_argument("--loss-bias", action="store_true")
    ap.add_argument("--no-divergence", action="store_true", help="only the loss-bias comparison")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    runs, _ = read_runs(args.runs)
    from bayes_optlaws.runs import validate_runs

    df = validate_runs(runs)
    folds = make_folds(df, 5, 0, mask=cv_mask(df, ("main",)))
    in_cv = folds >= 0
    labels = np.full(len(df), "", dtype=object)
    labels[in_cv] = ins.label_outcomes(df[in_cv])
    extra = {k: _number_or_text(v) for k, v in (s.split("=", 1) for s in args.set)}
    methods = {} if args.no_divergence else {**DIVERGENCE_BASELINES, "logistic[unstable]": UnstableLogistic}
    for v in ([] if args.no_divergence else [v for v in args.variants.split(",") if v]):
        methods[f"bayes_boundary[{v}]"] = (lambda v=v: BayesBoundary(seed=0, draws=args.draws, tune=args.draws,
                                                                     config={"outcome": v, **extra}))
    probs = cross_validated_probabilities(df, methods, folds)
    if args.json:  # the slow part is done: keep the held-out probabilities whatever happens next
        np.savez(Path(args.json).with_suffix(".npz"), **{f"{n}|{k}": v for n, p in probs.items()
                                                        for k, v in p.items() if k != "seconds"})
    diverged = df["diverged"].astype(bool).to_numpy()
    unstable = labels == "unstable"
    report = {"n": int(in_cv.sum()), "n_diverged": int(diverged[in_cv].sum()),
              "n_unstable": int(unstable[in_cv].sum()), "config": extra, "methods": {}}
    print(f"{report['n']} CV runs, {report['n_diverged']} diverged, {report['n_unstable']} unstable")
    for name, pr in probs.items():
        rec = {"seconds": pr["seconds"]}
        if name != "logistic[unstable]":
            rec["diverge"] = M.divergence_metrics(diverged[in_cv], pr["p_diverge"][in_cv])
            rec["diverge_reliability"] = M.event_reliability(pr["p_diverge"][in_cv], diverged[in_cv]).to_dict("records")
            d = rec["diverge"]
            print(f"\n{name}: F1 {d['f1']:.3f}  precision {d['precision']:.3f}  recall {d['recall']:.3f}  "
                  f"Brier {d['brier']:.4f}  min P(diverge) {np.min(pr['p_diverge'][in_cv]):.2e}  "
                  f"({pr['seconds']:.0f} s)")
            print("  P(diverge) reliability:\n" + _reliability_lines(pr["p_diverge"][in_cv], diverged[in_cv]))
        pu = pr["p_diverge"] if name == "logistic[unstable]" else pr["p_unstable"]
        if np.isfinite(pu[in_cv]).all():
            rec["unstable_brier"] = M.brier(unstable[in_cv], pu[in_cv])
            rec["unstable_reliability"] = M.event_reliability(pu[in_cv], unstable[in_cv]).to_dict("records")
            print(f"{name}: P(unstable) Brier {rec['unstable_brier']:.4f} (constant rate: "
                  f"{M.brier(unstable[in_cv], np.full(in_cv.sum(), unstable[in_cv].mean())):.4f})")
            print("  P(unstable) reliability:\n" + _reliability_lines(pu[in_cv], unstable[in_cv]))
        report["methods"][name] = rec
    probe = df.index[in_cv & (df["model_params"] == df["model_params"].max())]
    for i in probe:
        s = json.loads(df.at[i, "schedule"])
        if s.get("peak_lr") == 0.064 and s.get("warmup") == 0:
            row = {n: {"p_diverge": float(p["p_diverge"][i]), "p_unstable": float(p["p_unstable"][i])}
                   for n, p in probs.items()}
            report["probe"] = {"run_id": df.at[i, "run_id"], "final_loss": float(df.at[i, "final_loss"]),
                               "label": labels[i], **row}
            print(f"\nheld-out probe {df.at[i, 'run_id']} (793K, peak 0.064, no warmup, loss "
                  f"{df.at[i, 'final_loss']:.2f}, {labels[i]}): "
                  + "; ".join(f"{n} P(div) {v['p_diverge']:.3f} P(unst) {v['p_unstable']:.3f}" for n, v in row.items()))
    if args.loss_bias:
        report["loss_bias"] = loss_bias(runs)
        for name, rows in report["loss_bias"].items():
            print(f"\nheld-out bias of {name} by gap to the block's best (nats):")
            print(pd.DataFrame(rows).round(4).to_string(index=False))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
