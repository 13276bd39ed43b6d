"""Fit on one table, score another: the expensive-run case (``evaluate --train A --test B`` / ``--extrapolate``).

People use a law to choose the schedule of a run *larger* than any they fitted, so the question that matters is not
cross-validation inside the grid but: fitted on the cheap sizes, how good are the predictions and the pick at a new
size?  :func:`evaluate_transfer` fits every method once on ``train`` and scores every row of ``test``;
:func:`split_largest_size` makes the leave-the-largest-size-out split (fit on all smaller sizes, score every
block of the largest).

Metrics per loss method, over the non-diverged test runs (the loss task; diverged runs are the divergence task):

* ``mae``, ``rmse`` (nats), ``spearman`` over all test runs (the LossCast-Bench leaderboard's final-loss metrics),
  ``rel_err_pct`` and ``bias`` (mean predicted − actual, nats);
* inside each test block (one ``(group, model_params, token budget)``, see :func:`budget_blocks`; replicate seeds
  of a configuration averaged):
  ``regret`` of the pick (actual loss of the lowest prediction − block's best, nats, mean over blocks),
  ``spearman_in_block`` and ``top2`` (as in the cross-validation);
* for methods with ``predict_draws`` (the Bayesian law): ``coverage_50`` / ``coverage_90`` of the central
  predictive intervals and their ``interval_score_50`` / ``interval_score_90`` (nats; width plus the misses'
  penalty, :func:`~bayes_optlaws.evaluation.metrics.interval_score`), ``crps`` (nats) and ``p_best_actual`` = mean over blocks of the P(best) given to the block's
  actual best configuration, and ``pbest_ece`` (expected calibration error of P(best) over every configuration).

``proxy_best`` (:class:`ProxyBest`) is the baseline every user has without a law: reuse the configuration that was
best at the largest fitted size.  It predicts no losses, only a pick (and a ranking by distance), so its loss
columns are empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from ..runs import RunsError, validate_runs
from ..schedules import Schedule, schedule_family
from . import metrics as M
from .folds import DEFAULT_CV_GROUPS, block_keys, config_keys, cv_mask
from .contract import require_fitted, uses_all_runs
from ..jsonsafe import json_safe
from .protocol import _check_draws, _format_table

#: column order of the transfer table
TRANSFER_METRICS = ("mae", "rmse", "spearman", "bias", "regret", "spearman_in_block", "top2", "coverage_50",
                    "coverage_90", "interval_score_50", "interval_score_90", "crps", "p_best_actual", "pbest_ece")


# ---------------------------------------------------------------------------- the reuse-best baseline
def _config_coordinates(df: pd.DataFrame) -> pd.DataFrame:
    """log2 peak LR, warmup fraction, log2 tokens per step and family of every row (for :class:`ProxyBest`)."""
    rows = []
    for spec, tps in zip(df["schedule"], df["tokens_per_step"]):
        s = Schedule.from_spec(spec)
        rows.append({"log2_lr": float(np.log2(s.peak_lr)), "warmup_frac": float(s.phases().t1) / float(s.total),
                     "log2_tps": float(np.log2(float(tps))), "family": schedule_family(spec)})
    return pd.DataFrame(rows, index=df.index)


class ProxyBest:
    """Reuse the best configuration of the largest fitted model size (no law at all).

    ``fit``: for every ``group`` (and token budget) of the training table, the non-diverged run with the lowest final
    loss at that group's largest ``model_params``.  ``predict(df)``: for each row of ``df``, its distance from the
    reused configuration of the nearest token budget (in log tokens) of its group (any group when the group is
    unknown), so the pick in a block is the row nearest the reused configuration::

        distance² = (Δ log2 peak LR)² + (Δ warmup fraction / 0.1)² + (Δ log2 tokens per step)² + [family differs]

    (one doubling of the LR weighs as much as 10 % of warmup, a doubling of the batch, or another family).  The
    output is a ranking score, not a loss: ``predicts_loss = False``.
    """

    name = "proxy_best"
    predicts_loss = False

    def fit(self, df: pd.DataFrame) -> "ProxyBest":
        ok = df[~df["diverged"].astype(bool) & np.isfinite(pd.to_numeric(df["final_loss"], errors="coerce"))]
        if ok.empty:
            raise ValueError("proxy_best: no non-diverged training run to reuse")
        groups = ok["group"].fillna("").astype(str) if "group" in ok.columns else pd.Series("", index=ok.index)
        best = {}
        for g, rows in ok.groupby(groups):
            top = rows[rows["model_params"] == rows["model_params"].max()]
            for tokens, block in top.groupby("tokens"):
                mean = block.groupby("schedule")["final_loss"].mean()  # replicate seeds averaged
                spec = mean.idxmin()
                row = block[block["schedule"] == spec].iloc[[0]]
                best[(g, int(tokens))] = _config_coordinates(row).iloc[0]
        self.reused_ = best
        return self

    def _reference(self, group: str, tokens: int) -> pd.Series:
        keys = [k for k in self.reused_ if k[0] == group] or list(self.reused_)
        key = min(keys, key=lambda k: (abs(np.log(k[1] / tokens)), -k[1]))
        return self.reused_[key]

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        require_fitted(self, "reused_")
        coords = _config_coordinates(df)
        groups = df["group"].fillna("").astype(str) if "group" in df.columns else pd.Series("", index=df.index)
        out = np.empty(len(df))
        for i, (idx, c) in enumerate(coords.iterrows()):
            ref = self._reference(groups[idx], int(df.loc[idx, "tokens"]))
            out[i] = np.sqrt((c.log2_lr - ref.log2_lr) ** 2 + ((c.warmup_frac - ref.warmup_frac) / 0.1) ** 2
                             + (c.log2_tps - ref.log2_tps) ** 2 + float(c.family != ref.family))
        return out


# ---------------------------------------------------------------------------- splits
def split_largest_size(runs: pd.DataFrame, groups=DEFAULT_CV_GROUPS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leave the largest model size out: ``(train, test)`` = (every smaller size, every block of the largest).

    Only single-stage rows of ``groups`` take part (default ``"main"`` when the table has that group, else all
    groups; see :func:`folds.cv_mask`).  With several groups, the largest size of **each** group is held out.
    """
    df = validate_runs(runs)
    if groups == DEFAULT_CV_GROUPS and "group" in df.columns and not (df["group"] == "main").any():
        groups = None
    df = df[cv_mask(df, groups)].reset_index(drop=True)
    if df.empty:
        raise RunsError("no single-stage runs to split (check the 'group' values and parent_run_id)")
    label = df["group"].fillna("").astype(str) if "group" in df.columns else pd.Series("", index=df.index)
    largest = df.groupby(label)["model_params"].transform("max")
    test = df["model_params"] == largest
    sizes = df.groupby(label)["model_params"].nunique()
    if (sizes < 2).any():
        lonely = ", ".join(repr(g) for g in sizes.index[sizes < 2])
        raise RunsError(f"--extrapolate needs at least two model sizes per group; group(s) {lonely} have one "
                        "(select groups with --groups)")
    return df[~test].reset_index(drop=True), df[test].reset_index(drop=True)


# ---------------------------------------------------------------------------- the evaluation
@dataclass
class TransferResult:
    """Outcome of :func:`evaluate_transfer`.

    ``methods``: metrics per loss method (see the module docstring); ``divergence``: F1 / Brier / ... per
    divergence method on the test rows; ``blocks``: per test block and method ``{pick, actual_best, regret,
    spearman, p_best_actual}``; ``data``: what was fitted and scored; ``predictions``: one row per test run with
    ``pred:<method>`` (and ``lo50/hi50/lo90/hi90:<method>`` for methods with draws); ``errors``: per method.
    """

    methods: dict[str, dict[str, float]]
    divergence: dict[str, dict[str, float]]
    blocks: dict[str, dict[str, dict]]
    data: dict
    predictions: pd.DataFrame
    errors: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready ``{"methods", "divergence", "blocks", "data"}`` (+ ``"errors"``); NaN -> null."""
        out = {"methods": self.methods, "divergence": self.divergence, "blocks": self.blocks, "data": self.data}
        if any(self.errors.values()):
            out["errors"] = {k: v for k, v in self.errors.items() if v}
        return json_safe(out)

    def table(self) -> str:
        """Readable fixed-width tables: the loss metrics, the divergence metrics, the pick of every block."""
        d = self.data
        lines = [f"fitted on {d['n_train']} runs ({_sizes_text(d['train_sizes'])}); scored on {d['n_test']} runs "
                 f"in {d['n_test_blocks']} blocks ({_sizes_text(d['test_sizes'])}), {d['n_test_loss']} for the "
                 f"loss task"]
        if self.methods:
            cols = [c for c in TRANSFER_METRICS if any(np.isfinite(v.get(c, np.nan)) for v in self.methods.values())]
            lines += ["", _format_table("loss", self.methods, cols + ["n"])]
        if self.divergence:
            lines += ["", _format_table("divergence", self.divergence, ["precision", "recall", "f1", "brier", "n"])]
        if self.blocks:
            lines += ["", "pick per test block (regret = actual loss of the pick - block's best, nats):"]
            for block, per in self.blocks.items():
                parts = [f"{m} {r['regret']:.4f}" for m, r in per.items() if np.isfinite(r.get("regret", np.nan))]
                lines.append(f"  {block}: " + ", ".join(parts))
        for name, errs in self.errors.items():
            lines += [f"! {name}: {e}" for e in errs]
        return "\n".join(lines)


def _sizes_text(sizes: list[int]) -> str:
    return ", ".join(_fmt_count(s) for s in sizes)


def _fmt_count(n: float) -> str:
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:g}"


def _block_records(y, pred, blocks, configs, run_ids, draws=None, min_cell: int = 3) -> dict[str, dict]:
    """Per block: the pick (lowest prediction, replicates averaged; named by its first run_id), its regret,
    Spearman and the P(best) of the actual best (from the draws)."""
    out = {}
    frame = pd.DataFrame({"b": blocks, "c": configs, "y": y, "p": pred, "run": run_ids})
    for b, cell in frame.groupby("b", sort=True):
        agg = cell.groupby("c", sort=False)[["y", "p"]].mean()
        names = cell.groupby("c", sort=False)["run"].first()
        if len(agg) < min_cell or not np.isfinite(agg["p"]).all():
            continue
        tied = agg.index[agg["p"] == agg["p"].min()]  # tied predictions: the mean of the tied (as M.regret)
        best = agg["y"].idxmin()
        rec = {"n_configs": int(len(agg)), "pick": str(names[tied[0]]), "actual_best": str(names[best]),
               "regret": float(agg.loc[tied, "y"].mean() - agg["y"].min()),
               "spearman": M.spearman_within_blocks(agg["y"], agg["p"], np.zeros(len(agg)), min_size=2)}
        if draws is not None:
            cols = [cell.index[cell["c"] == c].to_numpy() for c in agg.index]
            mat = np.column_stack([draws[:, c].mean(axis=1) for c in cols])
            is_min = mat == mat.min(axis=1, keepdims=True)
            pb = (is_min / is_min.sum(axis=1, keepdims=True)).mean(axis=0)
            rec["p_best_actual"] = float(pb[list(agg.index).index(best)])
        out[str(b)] = rec
    return out


def budget_blocks(df: pd.DataFrame) -> np.ndarray:
    """Test blocks: ``group``, model size and the token budget rounded to 3 significant digits.

    A user choosing a schedule for a budget compares batch sizes too, but ``tokens = steps × tokens per step``
    differs by a few steps' worth between batch sizes of one nominal budget (LossCast StepLaw: 3,999,531,008 vs
    3,999,793,152 tokens); exact tokens would split every batch size into its own block."""
    rounded = df.assign(tokens=[int(float(f"{t:.3g}")) for t in df["tokens"]])
    return block_keys(rounded)


def _loss_metrics(y, pred, blocks, configs, min_cell: int, predicts_loss: bool) -> dict[str, float]:
    cells = (y, pred, blocks, None, configs, min_cell)
    out = {"regret": M.regret(*cells), "spearman_in_block": M.spearman_within_blocks(*cells),
           "top2": M.top2_hit_rate(*cells), "n": int(len(y))}
    if predicts_loss:
        err = pred - y
        out.update({"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
                    "spearman": M.spearman_within_blocks(y, pred, np.zeros(len(y)), min_size=3),
                    "bias": float(np.mean(err)), "rel_err_pct": M.rel_err_pct(y, pred)})
    return out


def _draw_metrics(y, draws, intervals: dict, blocks, configs, min_cell: int) -> dict[str, float]:
    """Coverage of the central ``intervals`` (``{level: (lo, hi)}``), CRPS and P(best) metrics from the draws."""
    out = {f"coverage_{int(level * 100)}": M.coverage(y, lo, hi) for level, (lo, hi) in intervals.items()}
    out.update({f"interval_score_{int(level * 100)}": M.interval_score(y, lo, hi, level)
                for level, (lo, hi) in intervals.items()})
    out["crps"] = M.crps_from_samples(y, draws)
    pb = M.pbest_from_draws(draws, blocks, None, configs, y, min_size=min_cell)
    if len(pb):
        out["pbest_ece"] = M.expected_calibration_error(M.pbest_reliability(pb["p_best"], pb["is_best"]))
        out["p_best_actual"] = float(pb.loc[pb["is_best"], "p_best"].groupby(pb["block"]).max().mean())
    return out


def evaluate_transfer(train: pd.DataFrame, test: pd.DataFrame,
                      loss_methods: Mapping[str, Callable[[], Any]],
                      divergence_methods: Mapping[str, Callable[[], Any]] | None = None, *,
                      min_cell: int = 3, raise_errors: bool = False,
                      progress: Callable[[str], None] | None = None) -> TransferResult:
    """Fit every method on ``train`` (validated runs tables) and score it on every row of ``test``.

    Loss methods are fitted on the non-diverged training runs and score the non-diverged test runs; divergence
    methods see every run.  A method is a factory (``factory()`` -> fresh estimator with ``fit(df)`` and
    ``predict(df)``, optional ``predict_draws(df)`` of shape ``(n_draws, n_rows)``; ``predicts_loss = False``
    marks a method whose ``predict`` is only a ranking score, like :class:`ProxyBest`).  An error of one method is
    recorded in ``errors`` (its metrics are absent) unless ``raise_errors``.
    """
    say = progress or (lambda msg: None)
    train, test = validate_runs(train), validate_runs(test)
    y = pd.to_numeric(test["final_loss"], errors="coerce").to_numpy(float)
    loss_ok = ~test["diverged"].astype(bool).to_numpy() & np.isfinite(y)
    tr_ok = train[~train["diverged"].astype(bool) & np.isfinite(pd.to_numeric(train["final_loss"],
                                                                               errors="coerce"))]
    tr_ok = tr_ok.reset_index(drop=True)
    te = test[loss_ok].reset_index(drop=True)
    yt = y[loss_ok]
    blocks, configs = budget_blocks(te), config_keys(te)
    preds = pd.DataFrame({"run_id": te["run_id"], "block": blocks, "model_params": te["model_params"],
                          "tokens": te["tokens"], "final_loss": yt})
    methods, per_block, errors = {}, {}, {}
    for name, factory in loss_methods.items():
        errors[name] = []
        try:
            model = factory()
            model.fit(train if uses_all_runs(model) else tr_ok)
            draws = _check_draws(model.predict_draws(te), len(te), name) if hasattr(model, "predict_draws") \
                else None
            p = np.asarray(model.predict(te), dtype=float).reshape(-1)
            if p.shape != (len(te),) or not np.all(np.isfinite(p)):
                raise ValueError(f"{name}.predict returned {np.sum(~np.isfinite(p))} non-finite values or shape "
                                 f"{p.shape}, expected ({len(te)},) finite")
        except Exception as exc:  # noqa: BLE001 - one failing method must not stop the others
            if raise_errors:
                raise
            errors[name].append(f"{type(exc).__name__}: {exc}")
            continue
        predicts_loss = getattr(model, "predicts_loss", True)
        vals = _loss_metrics(yt, p, blocks, configs, min_cell, predicts_loss)
        if draws is not None:
            intervals = {level: M.central_interval(draws, level) for level in (0.5, 0.9)}
            vals.update(_draw_metrics(yt, draws, intervals, blocks, configs, min_cell))
            for level, (lo, hi) in intervals.items():
                preds[f"lo{int(level * 100)}:{name}"], preds[f"hi{int(level * 100)}:{name}"] = lo, hi
        preds[f"pred:{name}"] = p
        methods[name] = vals
        for block, rec in _block_records(yt, p, blocks, configs, te["run_id"].to_numpy(), draws,
                                                   min_cell).items():
            per_block.setdefault(block, {})[name] = rec
        say(f"{name}: done")
    divergence = {}
    for name, factory in (divergence_methods or {}).items():
        errors[name] = []
        labels = test["diverged"].astype(bool).to_numpy()
        try:
            q = np.asarray(factory().fit(train).predict_proba(test), dtype=float)
            q = q[:, 1] if q.ndim == 2 else q
            divergence[name] = M.divergence_metrics(labels, q.reshape(-1))
        except Exception as exc:  # noqa: BLE001
            if raise_errors:
                raise
            errors[name].append(f"{type(exc).__name__}: {exc}")
    data = {"n_train": int(len(train)), "n_test": int(len(test)), "n_test_loss": int(loss_ok.sum()),
            "n_test_diverged": int(test["diverged"].sum()), "n_test_blocks": int(len(set(blocks))),
            "train_sizes": sorted(int(s) for s in train["model_params"].unique()),
            "test_sizes": sorted(int(s) for s in test["model_params"].unique())}
    return TransferResult(methods, divergence, per_block, data, preds, errors)
