"""The cross-validation protocol runner (opt-laws.md §7): every method on the same block-wise folds.

``cross_validate(runs, loss_methods, divergence_methods)`` builds the folds once (:func:`folds.make_folds`), then
for each fold fits every method on the training rows and predicts the held-out rows:

* loss methods (``fit(df) -> self``, ``predict(df) -> array`` of final losses in nats, optional
  ``predict_draws(df) -> (n_draws, n_rows)`` array of joint predictive draws) see only runs that did not diverge
  (training and held-out);
* divergence methods (``fit(df) -> self``, ``predict_proba(df) -> P(diverge)``) see every CV run.

The full contract (row order, index independence, no mutation, seeded randomness, errors before ``fit``) is
written in :mod:`bayes_optlaws.evaluation.contract`, and every registered method is checked against it by
``tests/test_evaluation_contract.py``.  A method is given as a factory (a class or any zero-argument callable returning a fresh, unfitted estimator), so a
caller can pass several variants of one model under different names.  Errors of one method in one fold are recorded
(``EvaluationResult.errors``) and its metrics use the folds that worked, unless ``raise_errors``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from ..jsonsafe import json_safe as _json_safe  # the package's one JSON sanitiser
from ..runs import validate_runs
from . import metrics as M
from .contract import uses_all_runs
from .folds import DEFAULT_CV_GROUPS, block_keys, config_keys, cv_mask, fold_summary, make_folds

__all__ = ["EvaluationResult", "cross_validate", "LOSS_METRICS", "DIVERGENCE_METRICS"]

#: column order of the loss table (draw-based metrics only for methods with ``predict_draws``)
LOSS_METRICS = ("r2", "rel_err_pct", "spearman", "top2", "regret", "coverage_50", "coverage_80", "coverage_90",
                "crps", "log_score", "pbest_ece")
#: column order of the divergence table
DIVERGENCE_METRICS = ("precision", "recall", "f1", "balanced_accuracy", "brier")


@dataclass
class EvaluationResult:
    """Outcome of :func:`cross_validate`.

    * ``methods``: loss metrics per method (``r2``, ``rel_err_pct``, ``spearman``, ``top2``, ``regret``, ``n``,
      ``n_cells``, ``fit_s``; with draws also ``coverage_50/80/90``, ``crps``, ``log_score``, ``pbest_ece``,
      ``pbest_brier``);
    * ``divergence``: ``precision``, ``recall``, ``f1``, ``balanced_accuracy``, ``brier``, ``n``, ``n_diverged``,
      ``fit_s`` per divergence method;
    * ``folds``: the fold assignment (:func:`folds.fold_summary` plus seed); ``data``: what was evaluated;
    * ``predictions``: one row per CV run (``run_id, fold, block, config, final_loss, diverged``, then
      ``pred:<method>`` and ``p_diverge:<method>``; with draws ``lo50:<method>``, ``hi50:<method>``, …,
      ``crps:<method>`` and ``log_score:<method>``);
    * ``reliability``: P(best) reliability table per method with draws; ``pbest``: per-configuration P(best)
      records; ``errors``: ``{method: [messages]}``.
    """

    methods: dict[str, dict[str, float]]
    divergence: dict[str, dict[str, float]]
    folds: dict
    data: dict
    predictions: pd.DataFrame
    reliability: dict[str, pd.DataFrame] = field(default_factory=dict)
    pbest: dict[str, pd.DataFrame] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self, include_assignment: bool = True) -> dict:
        """JSON-ready ``{"methods", "divergence", "folds", "data"}`` (+ ``"errors"`` when any); NaN -> null.

        Each method with draws carries its reliability table as ``methods[NAME]["pbest_reliability"]`` (a list of
        ``{bin, lo, hi, mean_p, freq, count}``)."""
        methods = {}
        for name, vals in self.methods.items():
            entry = dict(vals)
            if name in self.reliability:
                entry["pbest_reliability"] = self.reliability[name]
            methods[name] = entry
        folds = dict(self.folds)
        if not include_assignment:
            folds.pop("assignment", None)
        out = {"methods": methods, "divergence": self.divergence, "folds": folds, "data": self.data}
        if any(self.errors.values()):
            out["errors"] = {k: v for k, v in self.errors.items() if v}
        return _json_safe(out)

    def table(self) -> str:
        """A readable fixed-width table of the loss and divergence metrics (for stdout)."""
        lines = []
        d = self.data
        lines.append(f"{d.get('n_cv_runs', '?')} CV runs in {d.get('n_blocks', '?')} blocks, "
                     f"{self.folds.get('n_folds', '?')} folds (seed {self.folds.get('seed', '?')}); "
                     f"{d.get('n_loss_runs', '?')} for the loss task, {d.get('n_diverged', '?')} diverged")
        if d.get("seed_noise_sd") is not None and np.isfinite(d.get("seed_noise_sd", np.nan)):
            lines.append(f"seed noise: sd {d['seed_noise_sd']:.4f} nats ({d['seed_noise_rel_pct']:.3f} %) from "
                         f"{d['n_replicated_configs']} replicated configurations")
        if self.methods:
            cols = [c for c in LOSS_METRICS if any(c in v for v in self.methods.values())]
            lines.append("")
            lines.append(_format_table("loss", self.methods, cols + ["n"]))
        if self.divergence:
            lines.append("")
            lines.append(_format_table("divergence", self.divergence, list(DIVERGENCE_METRICS) + ["n"]))
        for name, errs in self.errors.items():
            for e in errs:
                lines.append(f"! {name}: {e}")
        return "\n".join(lines)

    def by_group(self, method: str, key: str = "block") -> pd.DataFrame:
        """Per-group (``block``, ``fold`` or any predictions column) relative error and bias of one loss method."""
        return _error_table(self._loss_predictions(method), f"pred:{method}", key)

    def _loss_predictions(self, method: str) -> pd.DataFrame:
        """The CV rows with a loss prediction of ``method`` (KeyError for a method without any)."""
        col = f"pred:{method}"
        if col not in self.predictions.columns:
            raise KeyError(f"no loss predictions for method {method!r}")
        return self.predictions[self.predictions[col].notna()]

    def residuals(self, method: str, runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Held-out relative error and bias (predicted − actual, nats) of one loss method by block, schedule
        family, model size and distance from the block's best run (gap = final loss − best loss of the block, in
        nats): where the law is wrong, not just how much."""
        from ..schedules import schedule_family

        col = f"pred:{method}"
        p = self._loss_predictions(method)
        extra = [c for c in ("schedule", "model_params") if c not in p.columns]
        p = p.merge(runs[["run_id", *extra]], on="run_id", how="left")
        p["family"] = p["schedule"].map(schedule_family)
        p["size"] = p["model_params"]
        gap = p["final_loss"] - p.groupby("block")["final_loss"].transform("min")
        p["gap_to_block_best"] = pd.cut(gap, [-np.inf, 0.05, 0.2, 0.5, np.inf],
                                        labels=["< 0.05", "0.05-0.2", "0.2-0.5", ">= 0.5"])
        return {key: _error_table(p, col, key) for key in ("block", "family", "size", "gap_to_block_best")}


def _error_table(p: pd.DataFrame, col: str, key: str) -> pd.DataFrame:
    """Mean relative error (%), mean bias (prediction − actual, nats) and count of ``p[col]`` per ``p[key]``."""
    err = p[col] - p["final_loss"]
    frame = pd.DataFrame({key: p[key], "rel_err_pct": err.abs() / p["final_loss"] * 100, "bias": err})
    return frame.groupby(key, observed=True).agg(rel_err_pct=("rel_err_pct", "mean"), bias=("bias", "mean"),
                                                 n=("bias", "size"))


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    a = abs(v)
    return f"{v:.4f}" if a < 10 else f"{v:.2f}"


def _format_table(title: str, rows: Mapping[str, Mapping[str, float]], cols: list[str]) -> str:
    name_w = max([len(title)] + [len(n) for n in rows])
    widths = [max(len(c), 8) for c in cols]
    head = title.ljust(name_w) + "  " + "  ".join(c.rjust(w) for c, w in zip(cols, widths))
    out = [head, "-" * len(head)]
    for name, vals in rows.items():
        out.append(name.ljust(name_w) + "  " + "  ".join(_fmt(vals.get(c)).rjust(w) for c, w in zip(cols, widths)))
    return "\n".join(out)


def _seed_noise(y: np.ndarray, configs: np.ndarray) -> tuple[float, float, int]:
    frame = pd.DataFrame({"c": configs, "y": y})
    g = frame.groupby("c")["y"]
    n = g.size()
    rep = n[n >= 2].index
    if len(rep) == 0:
        return float("nan"), float("nan"), 0
    sub = frame[frame["c"].isin(rep)]
    dev = sub["y"] - sub.groupby("c")["y"].transform("mean")
    dof = int((n[rep] - 1).sum())
    sd = float(np.sqrt(np.sum(dev**2) / dof))
    return sd, 100.0 * sd / float(sub["y"].mean()), int(len(rep))


def _call_factory(factory: Callable[[], Any]):
    return factory()


def _pct(level: float) -> str:
    """0.5 -> "50", 0.9 -> "90", 0.95 -> "95", 0.975 -> "97.5"."""
    return f"{level * 100:g}"


def _check_draws(draws, n: int, name: str) -> np.ndarray:
    d = np.asarray(draws, dtype=float)
    if d.ndim == 2 and d.shape[1] != n and d.shape[0] == n:
        d = d.T
    if d.ndim != 2 or d.shape[1] != n:
        raise ValueError(f"{name}.predict_draws returned shape {np.shape(draws)}, expected (n_draws, {n})")
    return d


def cross_validate(runs_df: pd.DataFrame,
                   loss_methods: Mapping[str, Callable[[], Any]] | None = None,
                   divergence_methods: Mapping[str, Callable[[], Any]] | None = None,
                   folds: int | np.ndarray = 5, seed: int = 0, *,
                   groups: Iterable[str] | None = DEFAULT_CV_GROUPS,
                   intervals: Iterable[float] = (0.5, 0.8, 0.9), reliability_bins: int | Iterable[float] = 10,
                   min_cell: int = 3, validate: bool = True, raise_errors: bool = False,
                   progress: Callable[[str], None] | None = None) -> EvaluationResult:
    """Run the paper's block-wise k-fold CV for every method on the same folds and compute all metrics.

    Parameters
    ----------
    runs_df: a runs table (validated with :func:`validate_runs` unless ``validate=False``).
    loss_methods / divergence_methods: ``{name: factory}``; ``factory()`` returns a fresh estimator.  A loss
    method is fitted on the fold's non-diverged training rows, or on all of them (diverged ones included) when it
    sets ``uses_all_runs`` (a law with its outcome model); it is scored on the fold's non-diverged rows.
    folds: number of folds, or precomputed fold ids per row (``-1`` = not in the CV; see :func:`make_folds`).
    seed: seed of the fold assignment.
    groups: the ``group`` values taking part in the CV (rows with no group always do; continual stages never).
    intervals: central predictive-interval levels for the coverage metrics of methods with ``predict_draws``.
    reliability_bins: bins of the P(best) reliability table.  min_cell: smallest block × fold cell (in
    configurations) that counts for the ranking metrics and P(best).
    raise_errors: re-raise an exception of a method instead of recording it.
    progress: optional callback receiving one line per fitted method and fold.
    """
    loss_methods = dict(loss_methods or {})
    divergence_methods = dict(divergence_methods or {})
    df = validate_runs(runs_df) if validate else runs_df.reset_index(drop=True)
    if isinstance(folds, (int, np.integer)):
        fold_ids = make_folds(df, int(folds), seed, mask=cv_mask(df, groups))
    else:
        fold_ids = np.asarray(folds, dtype=int)
        if fold_ids.shape != (len(df),):
            raise ValueError(f"fold ids must have one entry per row ({len(df)}), got shape {fold_ids.shape}")
    in_cv = fold_ids >= 0
    if not in_cv.any():
        raise ValueError("no rows take part in the cross-validation (check 'group' and 'parent_run_id')")
    n_folds = int(fold_ids.max()) + 1
    y = pd.to_numeric(df["final_loss"], errors="coerce").to_numpy(float)
    diverged = df["diverged"].astype(bool).to_numpy()
    loss_ok = in_cv & ~diverged & np.isfinite(y)
    blocks = block_keys(df)
    configs = config_keys(df)
    levels = tuple(float(lv) for lv in intervals)

    pred = {name: np.full(len(df), np.nan) for name in loss_methods}
    prob = {name: np.full(len(df), np.nan) for name in divergence_methods}
    draw_stats: dict[str, dict[str, np.ndarray]] = {}
    pbest_parts: dict[str, list[pd.DataFrame]] = {}
    errors: dict[str, list[str]] = {name: [] for name in list(loss_methods) + list(divergence_methods)}
    fit_time = {name: 0.0 for name in errors}

    def record(name: str, f: int, exc: Exception) -> None:
        if raise_errors:
            raise exc
        errors[name].append(f"fold {f}: {type(exc).__name__}: {exc}")

    for f in range(n_folds):
        test = fold_ids == f
        train = in_cv & ~test
        tr_loss, te_loss = train & loss_ok, test & loss_ok
        te_idx = np.flatnonzero(te_loss)
        for name, factory in loss_methods.items():
            if not te_loss.any():
                continue
            t0 = time.perf_counter()
            try:
                model = _call_factory(factory)
                model.fit(df[train if uses_all_runs(model) else tr_loss].reset_index(drop=True))
                test_df = df[te_loss].reset_index(drop=True)
                draws = None
                if hasattr(model, "predict_draws"):
                    draws = _check_draws(model.predict_draws(test_df), len(test_df), name)
                if hasattr(model, "predict"):
                    p = np.asarray(model.predict(test_df), dtype=float).reshape(-1)
                elif draws is not None:
                    p = draws.mean(axis=0)
                else:
                    raise TypeError(f"{name}: a loss method needs predict() or predict_draws()")
                if p.shape != (len(test_df),):
                    raise ValueError(f"{name}.predict returned {p.shape}, expected ({len(test_df)},)")
                pred[name][te_idx] = p
                if draws is not None:
                    st = draw_stats.setdefault(name, {})
                    for lv in levels:
                        lo, hi = M.central_interval(draws, lv)
                        st.setdefault(f"lo{_pct(lv)}", np.full(len(df), np.nan))[te_idx] = lo
                        st.setdefault(f"hi{_pct(lv)}", np.full(len(df), np.nan))[te_idx] = hi
                    yt = y[te_idx]
                    st.setdefault("crps", np.full(len(df), np.nan))[te_idx] = M.crps_per_obs(yt, draws)
                    st.setdefault("log_score", np.full(len(df), np.nan))[te_idx] = M.log_score_per_obs(yt, draws)
                    pb = M.pbest_from_draws(draws, blocks[te_idx], np.full(len(te_idx), f), configs[te_idx], yt,
                                            min_size=min_cell)
                    pbest_parts.setdefault(name, []).append(pb)
            except Exception as exc:  # noqa: BLE001 - one failing method must not stop the others
                record(name, f, exc)
            fit_time[name] += time.perf_counter() - t0
            if progress:
                progress(f"fold {f + 1}/{n_folds}: {name} ({time.perf_counter() - t0:.1f} s)")
        for name, factory in divergence_methods.items():
            if not test.any() or not train.any():
                continue
            t0 = time.perf_counter()
            try:
                model = _call_factory(factory)
                model.fit(df[train].reset_index(drop=True))
                q = np.asarray(model.predict_proba(df[test].reset_index(drop=True)), dtype=float)
                if q.ndim == 2 and q.shape[1] == 2:  # scikit-learn style (P(no), P(yes))
                    q = q[:, 1]
                q = q.reshape(-1)
                if q.shape != (int(test.sum()),):
                    raise ValueError(f"{name}.predict_proba returned {q.shape}, expected ({int(test.sum())},)")
                prob[name][test] = q
            except Exception as exc:  # noqa: BLE001
                record(name, f, exc)
            fit_time[name] += time.perf_counter() - t0
            if progress:
                progress(f"fold {f + 1}/{n_folds}: {name} ({time.perf_counter() - t0:.1f} s)")

    # ----------------------------------------------------------------- metrics
    methods_out: dict[str, dict[str, float]] = {}
    reliability: dict[str, pd.DataFrame] = {}
    pbest: dict[str, pd.DataFrame] = {}
    for name in loss_methods:
        p = pred[name]
        ok = loss_ok & np.isfinite(p)
        yy, pp = y[ok], p[ok]
        rank_args = (yy, pp, blocks[ok], fold_ids[ok], configs[ok], min_cell)
        vals: dict[str, float] = {
            "r2": M.r2_log(yy, pp) if ok.any() and np.all(pp > 0) else float("nan"),
            "rel_err_pct": M.rel_err_pct(yy, pp),
            "spearman": M.spearman_within_blocks(*rank_args),
            "top2": M.top2_hit_rate(*rank_args),
            "regret": M.regret(*rank_args),
            "n": int(ok.sum()),
            "n_cells": len(M.ranking_cells(*rank_args)),
            "fit_s": round(fit_time[name], 3),
        }
        if name in draw_stats:
            st = draw_stats[name]
            have = ok & np.isfinite(st["crps"])
            for lv in levels:
                vals[f"coverage_{_pct(lv)}"] = M.coverage(y[have], st[f"lo{_pct(lv)}"][have],
                                                          st[f"hi{_pct(lv)}"][have])
            vals["crps"] = float(np.mean(st["crps"][have])) if have.any() else float("nan")
            vals["log_score"] = float(np.mean(st["log_score"][have])) if have.any() else float("nan")
            pb = pd.concat(pbest_parts.get(name, []), ignore_index=True) if pbest_parts.get(name) else \
                pd.DataFrame(columns=["block", "fold", "config", "p_best", "actual", "is_best"])
            pbest[name] = pb
            table = M.pbest_reliability(pb["p_best"].to_numpy(float), pb["is_best"].to_numpy(bool),
                                        reliability_bins)
            reliability[name] = table
            vals["pbest_ece"] = M.expected_calibration_error(table)
            vals["pbest_brier"] = M.brier(pb["is_best"].to_numpy(bool), pb["p_best"].to_numpy(float)) \
                if len(pb) else float("nan")
        if errors[name]:
            vals["failed_folds"] = len(errors[name])
        methods_out[name] = vals

    divergence_out: dict[str, dict[str, float]] = {}
    for name in divergence_methods:
        q = prob[name]
        ok = in_cv & np.isfinite(q)
        vals = M.divergence_metrics(diverged[ok], q[ok]) if ok.any() else {
            k: float("nan") for k in DIVERGENCE_METRICS}
        vals["fit_s"] = round(fit_time[name], 3)
        if errors[name]:
            vals["failed_folds"] = len(errors[name])
        divergence_out[name] = vals

    # ----------------------------------------------------------------- bookkeeping
    cv = df[in_cv]
    pred_frame = pd.DataFrame({"run_id": cv["run_id"].to_numpy(), "fold": fold_ids[in_cv], "block": blocks[in_cv],
                               "config": configs[in_cv], "model_params": cv["model_params"].to_numpy(),
                               "tokens": cv["tokens"].to_numpy(), "final_loss": y[in_cv],
                               "diverged": diverged[in_cv]})
    for name in loss_methods:
        pred_frame[f"pred:{name}"] = pred[name][in_cv]
        for key, arr in draw_stats.get(name, {}).items():
            pred_frame[f"{key}:{name}"] = arr[in_cv]
    for name in divergence_methods:
        pred_frame[f"p_diverge:{name}"] = prob[name][in_cv]

    sd, rel, n_rep = _seed_noise(y[loss_ok], configs[loss_ok])
    block_rows = []
    for b in sorted(set(blocks[in_cv])):
        sel = in_cv & (blocks == b)
        group = df["group"][sel].iloc[0] if "group" in df.columns else None
        block_rows.append({"block": b, "group": None if pd.isna(group) else str(group),
                           "model_params": int(df["model_params"][sel].iloc[0]),
                           "tokens": int(df["tokens"][sel].iloc[0]), "n_runs": int(sel.sum()),
                           "n_configs": int(len(set(configs[sel]))), "n_diverged": int(diverged[sel].sum())})
    data = {
        "n_runs": int(len(df)), "n_cv_runs": int(in_cv.sum()), "n_excluded": int((~in_cv).sum()),
        "n_loss_runs": int(loss_ok.sum()), "n_diverged": int((in_cv & diverged).sum()),
        "n_blocks": len(block_rows), "n_configs": int(len(set(configs[in_cv]))),
        "seed_noise_sd": sd, "seed_noise_rel_pct": rel, "n_replicated_configs": n_rep,
        "groups": None if groups is None else list(groups), "blocks": block_rows,
    }
    fold_info = fold_summary(df, fold_ids)
    fold_info["seed"] = int(seed) if isinstance(folds, (int, np.integer)) else None
    fold_info["min_cell"] = int(min_cell)
    return EvaluationResult(methods=methods_out, divergence=divergence_out, folds=fold_info, data=data,
                            predictions=pred_frame, reliability=reliability, pbest=pbest,
                            errors={k: v for k, v in errors.items()})
