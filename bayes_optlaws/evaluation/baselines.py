"""Baseline laws for the evaluation protocol (opt-laws.md §7–§8), with an sklearn-like interface.

Loss baselines: ``fit(runs_df) -> self`` and ``predict(runs_df) -> np.ndarray`` (point predictions of the final loss,
nats), each with a ``name``.  Divergence baselines: ``fit(runs_df) -> self`` and ``predict_proba(runs_df)`` (P(diverge)
per row).  Fitting uses only the rows given: diverged rows and rows without a finite ``final_loss`` are ignored by the
loss baselines (a :class:`ValueError` says so when nothing is left).

Units (opt-laws.md §2): ``N`` = ``model_params`` / 1e9 (billions), ``D`` = tokens / 1e9 (billions; for a continual
stage, the tokens of all earlier stages plus this one), learning rates divided by ``lr_ref_`` = the largest peak LR of
the fitting rows (stored on the fitted object).  The step-based laws (Tissue, multi-power) count optimizer updates;
the LR of update ``k`` is ``Schedule.applied_lr()[k]``, and a continual stage's LR sequence is its history
(:func:`bayes_optlaws.runs.history_of`, oldest first) followed by its own schedule.

Fitting the parametric laws (Chinchilla, Tissue, multi-power, simplified Opt-Law + Chinchilla) [ours]: every one is
linear in some coefficients once its exponents are fixed, so the fit is (1) a grid over the exponents with a bounded
linear least-squares solve for the coefficients at each grid point (``scipy.optimize.lsq_linear``), then (2) the best
``n_starts`` grid points refined jointly with ``scipy.optimize.least_squares`` on log-loss residuals, first with plain
squares and then with a Huber loss (``f_scale`` = 1e-3 in log units, as Hoffmann et al.; ``loss="linear"`` keeps plain
least squares), all parameters bounded; the solution with the lowest robust cost wins.  With no more rows than
parameters the grid solution is kept.  A fit that fails outright falls back to the mean training loss and records why in
``warnings_``; it never raises for a small or degenerate table.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import pandas as pd
from scipy import optimize, special

from ..runs import history_of
from ..schedules import PEAK_FRACTION, Schedule
from .contract import require_fitted

__all__ = [
    "LossBaseline", "BlockMean", "Chinchilla", "LinearBaseline", "Tissue", "MultiPower", "SimplifiedChinchilla",
    "LRThreshold", "LogisticDivergence", "describe_runs", "LOSS_BASELINES", "DIVERGENCE_BASELINES",
]

_REQUIRED = ("run_id", "model_params", "tokens", "tokens_per_step", "schedule")


# ============================================================================ per-run schedule quantities
@lru_cache(maxsize=128)
def _applied(spec: str) -> np.ndarray:
    """LR of every update of one stage (raw units), read-only."""
    lrs = Schedule.from_spec(spec).applied_lr()
    lrs.setflags(write=False)
    return lrs


@lru_cache(maxsize=4096)
def _stage_summary(spec: str) -> tuple[float, float, int, float, float]:
    """(peak LR, warmup fraction, steps, ∫η dt in LR×steps, step-grid escape Σ(Δη)² in LR²/step) of one stage."""
    sched = Schedule.from_spec(spec)
    g = sched.grid()
    peak = float(g.max())
    t1 = int(np.argmax(g >= PEAK_FRACTION * peak))
    return peak, t1 / sched.total, sched.total, float(sched.integral()), float(np.sum(np.diff(g) ** 2))


def _first_peak_index(a: np.ndarray) -> int:
    return int(np.argmax(a >= PEAK_FRACTION * a.max()))


@lru_cache(maxsize=4096)
def _tissue_raw(specs: tuple[str, ...], lam: float) -> tuple[float, float]:
    """Tissue et al. S1 = Σ η_i and S2 = Σ_i m_i, m_i = λ m_{i−1} + (η_{i−1} − η_i), raw LR units.

    The first stage's warmup is left out of the annealing momentum (Δ = 0 before the first update at the peak);
    later stages' re-warmups count (negative Δ: the LR rises).  Closed form of the recursion (m_0 = 0):
    ``S2 = Σ_k Δ_k (1 − λ^{n−k+1}) / (1 − λ)``.
    """
    a = np.concatenate([_applied(s) for s in specs])
    s1 = float(a.sum())
    delta = np.zeros_like(a)
    delta[1:] = a[:-1] - a[1:]
    w = _first_peak_index(_applied(specs[0]))
    delta[: w + 1] = 0.0
    n = len(a)
    k = np.arange(1, n + 1)
    weights = -np.expm1((n - k + 1) * np.log(lam)) / (1.0 - lam)
    return s1, float(np.sum(delta * weights))


def _chunk_starts(S: np.ndarray, eta: np.ndarray, max_terms: int) -> np.ndarray:
    """Start indices of at most ``max_terms`` chunks of consecutive terms: a third of the boundaries equally spaced
    in term index, a third equally spaced in log S_k (S shrinks fast at the end of a run, where G changes most)
    and a third equally spaced along the path of log η (a cooldown to ~0 changes η^(−γ) fast)."""
    n = len(S)
    m = max(max_terms // 3, 1)
    by_index = np.linspace(0, n, m + 1)[:-1].astype(int)
    neg_log_s = -np.log(np.maximum(S, 1e-300))  # non-decreasing in k
    by_s = np.searchsorted(neg_log_s, np.linspace(neg_log_s[0], neg_log_s[-1], m + 1)[:-1], side="left")
    path = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(np.log(np.maximum(eta, 1e-300)))))])
    by_eta = np.searchsorted(path, np.linspace(0.0, path[-1], m + 1)[:-1], side="left")
    starts = np.unique(np.concatenate([[0], by_index, by_s, by_eta]))
    return starts[starts < n]


@lru_cache(maxsize=4096)
def _mpl_raw(specs: tuple[str, ...], max_terms: int):
    """Multi-power-law ingredients at the final step, raw LR units.

    Returns ``(P, d, eta, S)``: ``P`` = total area Σ η over all updates (= S1(t) + S_W), and per annealing term
    ``k`` after the first stage's warmup: ``d_k = η_{k−1} − η_k``, ``η_k`` and ``S_k = Σ_{τ=k}^{t} η_τ``.  Only
    non-zero ``d_k`` are kept; when more than ``max_terms`` remain, consecutive terms are merged into
    at most ``max_terms`` chunks (:func:`_chunk_starts`; Σ d, and |d|-weighted means of η and S per chunk), exact
    for isolated drops and accurate to ~1e-5 relative for smooth 50k-step decays.
    """
    a = np.concatenate([_applied(s) for s in specs])
    total = float(a.sum())
    w = _first_peak_index(_applied(specs[0]))
    post = a[w:]
    d = np.zeros_like(post)
    d[1:] = post[:-1] - post[1:]
    S = np.cumsum(post[::-1])[::-1]
    nz = np.flatnonzero(np.abs(d) > 1e-12 * a.max())
    # a zero LR would make η^(−γ) infinite: floor it (x = C η^(1−γ) (S/η) stays finite), and S_k >= η_k
    eta = np.maximum(post[nz], 1e-9 * a.max())
    d, S = d[nz], np.maximum(S[nz], eta)
    if max_terms and len(d) > max_terms:
        starts = _chunk_starts(S, eta, max_terms)
        wt = np.abs(d)
        wsum = np.add.reduceat(wt, starts)
        eta = np.add.reduceat(wt * eta, starts) / wsum
        S = np.add.reduceat(wt * S, starts) / wsum
        d = np.add.reduceat(d, starts)
    return total, d, eta, S


# ============================================================================ run descriptors
def _blank(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip())


def _combined(df: pd.DataFrame, extra: pd.DataFrame | None) -> pd.DataFrame:
    if extra is None or len(extra) == 0:
        return df
    more = extra[~extra["run_id"].isin(set(df["run_id"]))]
    return pd.concat([df, more], ignore_index=True) if len(more) else df


def _histories(df: pd.DataFrame, lookup: pd.DataFrame | None) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """Per row: (schedule specs, tokens) of every stage, oldest first, ending with the row's own stage."""
    has_parent = "parent_run_id" in df.columns
    table = None
    out = []
    for _, row in df.iterrows():
        specs, toks = [str(row["schedule"])], [int(row["tokens"])]
        if has_parent and not _blank(row["parent_run_id"]):
            if table is None:
                table = _combined(df, lookup)
            hist = history_of(table, str(row["run_id"]))
            specs = [str(h["schedule"]) for h in hist] + specs
            toks = [int(h["tokens"]) for h in hist] + toks
        out.append((tuple(specs), tuple(toks)))
    return out


def describe_runs(df: pd.DataFrame, lookup: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-run quantities the baselines use (one row per input row, same order).

    Columns: ``N`` (billions of parameters), ``D`` (billions of tokens of this stage and all earlier ones),
    ``peak_lr`` (this stage, raw), ``warmup_frac`` (first update at ≥ 0.999 × peak / steps, this stage),
    ``steps`` (all stages), ``area_bt`` (∫η dt over all stages in raw LR × billions of tokens), ``escape_bt``
    (this stage's step-grid Σ(Δη)² / δ, δ = one step in billions of tokens; raw LR² per billion tokens), ``specs``
    (tuple of the stages' schedule JSON, oldest first).  ``lookup`` supplies parent rows missing from ``df``.
    """
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"runs table is missing column(s) {', '.join(missing)}")
    hists = _histories(df, lookup)
    tps_by_id = dict(zip(df["run_id"], df["tokens_per_step"]))
    if lookup is not None:
        for r, t in zip(lookup["run_id"], lookup["tokens_per_step"]):
            tps_by_id.setdefault(r, t)
    recs = []
    for (specs, toks), n, tps in zip(hists, df["model_params"], df["tokens_per_step"]):
        summaries = [_stage_summary(s) for s in specs]
        peak, wfrac, _, _, esc = summaries[-1]
        area_bt = 0.0
        for (_, _, steps, integ, _), tok in zip(summaries, toks):
            area_bt += integ * (tok / steps) / 1e9  # LR × steps × (tokens per step) -> LR × B tokens
        recs.append({"N": float(n) / 1e9, "D": float(sum(toks)) / 1e9, "peak_lr": peak, "warmup_frac": wfrac,
                     "steps": int(sum(s[2] for s in summaries)), "area_bt": area_bt,
                     "escape_bt": esc / (float(tps) / 1e9), "specs": specs})
    return pd.DataFrame.from_records(recs, index=df.index)


def _loss_rows(df: pd.DataFrame, who: str) -> pd.DataFrame:
    missing = [c for c in _REQUIRED + ("final_loss",) if c not in df.columns]
    if missing:
        raise ValueError(f"{who}: runs table is missing column(s) {', '.join(missing)}")
    y = pd.to_numeric(df["final_loss"], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(y) & (y > 0)
    if "diverged" in df.columns:
        ok &= ~df["diverged"].astype(bool).to_numpy()
    if not ok.any():
        raise ValueError(f"{who}: no usable rows to fit (need at least one run that did not diverge and has a "
                         "finite, positive final_loss)")
    return df[ok]


# ============================================================================ loss baselines
class LossBaseline:
    """Base class: ``fit(runs_df) -> self``, ``predict(runs_df) -> np.ndarray`` (final loss, nats)."""

    name = "baseline"

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def fit(self, runs_df: pd.DataFrame) -> "LossBaseline":  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, runs_df: pd.DataFrame) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def _check_fitted(self) -> None:
        require_fitted(self, "fit_rows_")


def _groups(df: pd.DataFrame) -> list[str]:
    if "group" not in df.columns:
        return [""] * len(df)
    return ["" if _blank(g) else str(g) for g in df["group"]]


class BlockMean(LossBaseline):
    """Mean training loss of the run's block (``group``, ``model_params``, ``tokens``); for a block not seen in
    training, the mean of its ``(model_params, tokens)`` over all groups, else the overall training mean."""

    name = "block_mean"

    def fit(self, runs_df):
        rows = _loss_rows(runs_df, self.name)
        self.fit_rows_ = rows
        keys = list(zip(_groups(rows), rows["model_params"].astype("int64"), rows["tokens"].astype("int64")))
        y = rows["final_loss"].to_numpy(float)
        frame = pd.DataFrame(keys, columns=["g", "n", "d"]).assign(y=y)
        self.means_ = frame.groupby(["g", "n", "d"])["y"].mean().to_dict()
        self.size_means_ = frame.groupby(["n", "d"])["y"].mean().to_dict()
        self.global_mean_ = float(y.mean())
        return self

    def predict(self, runs_df):
        self._check_fitted()
        out = []
        for g, n, d in zip(_groups(runs_df), runs_df["model_params"], runs_df["tokens"]):
            key = (g, int(n), int(d))
            out.append(self.means_.get(key, self.size_means_.get(key[1:], self.global_mean_)))
        return np.array(out, dtype=float)


class LinearBaseline(LossBaseline):
    """Ordinary least squares of the final loss on standardised (log peak LR, warmup fraction, log N, log D)
    plus an intercept (minimum-norm solution when columns are collinear, e.g. a single block)."""

    name = "linear"

    @staticmethod
    def _features(desc: pd.DataFrame) -> np.ndarray:
        return np.column_stack([np.log(desc["peak_lr"]), desc["warmup_frac"], np.log(desc["N"]), np.log(desc["D"])])

    def fit(self, runs_df):
        rows = _loss_rows(runs_df, self.name)
        self.fit_rows_ = rows
        x = self._features(describe_runs(rows))
        self.mean_ = x.mean(axis=0)
        sd = x.std(axis=0)
        self.scale_ = np.where(sd > 1e-12, sd, 1.0)
        z = np.column_stack([np.ones(len(x)), (x - self.mean_) / self.scale_])
        self.coef_, *_ = np.linalg.lstsq(z, rows["final_loss"].to_numpy(float), rcond=None)
        return self

    def predict(self, runs_df):
        self._check_fitted()
        x = self._features(describe_runs(runs_df, self.fit_rows_))
        z = np.column_stack([np.ones(len(x)), (x - self.mean_) / self.scale_])
        return z @ self.coef_


@dataclass
class _LawSpec:
    """A law ``pred = X(θ_nl; features) @ θ_lin`` (see module docstring for the fitting recipe)."""

    nl_names: tuple[str, ...]
    nl_bounds: tuple[tuple[float, float], ...]
    lin_names: tuple[str, ...]


class _SeparableLaw(LossBaseline):
    """Shared fitting machinery: exponent grid × bounded linear LS, then joint Huber refinement in log space."""

    spec: _LawSpec

    def __init__(self, loss: str = "huber", f_scale: float = 1e-3, n_starts: int = 3):
        if loss not in ("huber", "linear", "soft_l1", "cauchy", "arctan"):
            raise ValueError(f"loss must be a scipy least_squares loss such as 'huber' or 'linear', got {loss!r}")
        self.loss = loss
        self.f_scale = f_scale
        self.n_starts = n_starts

    # subclasses implement these three
    def _features(self, desc: pd.DataFrame) -> dict:
        raise NotImplementedError

    def _design(self, feats: dict, nl: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _grid(self, feats: dict) -> list[tuple[float, ...]]:
        raise NotImplementedError

    def _lin_bounds(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _design_jac(self, feats: dict, nl: np.ndarray) -> np.ndarray | None:
        """Optional analytic ∂X/∂θ_nl, shape (rows, n_lin, n_nl); None = finite differences."""
        return None

    # ----------------------------------------------------------------- fitting
    def _set_lr_ref(self, desc: pd.DataFrame) -> None:
        self.lr_ref_ = float(desc["peak_lr"].max())

    def _fit_arrays(self, feats: dict, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        lb, ub = self._lin_bounds(y)
        results = []
        with np.errstate(all="ignore"):
            for nl in self._grid(feats):
                nl = np.asarray(nl, dtype=float)
                X = self._design(feats, nl)
                if not np.all(np.isfinite(X)):
                    continue
                sol = optimize.lsq_linear(X, y, bounds=(lb, ub), method="bvls")
                results.append((float(np.sum((X @ sol.x - y) ** 2)), nl, sol.x))
        if not results:
            raise FloatingPointError("no grid point gave a finite design matrix")
        results.sort(key=lambda r: r[0])
        n_nl, n_lin = len(self.spec.nl_names), len(self.spec.lin_names)
        best_nl, best_lin = results[0][1], results[0][2]
        best_cost = self._cost(feats, y, best_nl, best_lin)
        if len(y) <= n_nl + n_lin:  # too few rows to refine all parameters jointly: keep the grid solution
            return best_nl, best_lin, best_cost
        lo = np.concatenate([[b[0] for b in self.spec.nl_bounds], lb])
        hi = np.concatenate([[b[1] for b in self.spec.nl_bounds], ub])
        logy = np.log(y)

        def resid(theta):
            with np.errstate(all="ignore"):
                pred = self._design(feats, theta[:n_nl]) @ theta[n_nl:]
            r = np.log(np.maximum(pred, 1e-8)) - logy
            return np.where(np.isfinite(r), r, 10.0)

        jac: Callable | str = "2-point"
        if self._design_jac(feats, best_nl) is not None:
            def jac(theta):
                with np.errstate(all="ignore"):
                    X = self._design(feats, theta[:n_nl])
                    dX = self._design_jac(feats, theta[:n_nl])  # (rows, n_lin, n_nl)
                    pred = X @ theta[n_nl:]
                    J = np.concatenate([np.einsum("rlk,l->rk", dX, theta[n_nl:]), X], axis=1)
                    J = np.where(pred[:, None] > 1e-8, J / pred[:, None], 0.0)
                return np.where(np.isfinite(J), J, 0.0)

        for _, nl, lin in results[: self.n_starts]:
            x0 = np.clip(np.concatenate([nl, lin]), lo, hi)
            # nudge values sitting on a bound inside it (least_squares needs a strictly feasible start)
            span = np.where(np.isfinite(hi - lo), hi - lo, np.maximum(np.abs(x0), 1.0))
            x0 = np.minimum(np.maximum(x0, lo + 1e-9 * span), hi - 1e-9 * span)
            # plain least squares first (a Huber loss whose scale is far below the residuals stalls the trust
            # region far from the optimum), then the robust loss from there
            x = x0
            for loss in dict.fromkeys(("linear", self.loss)):
                try:
                    res = optimize.least_squares(resid, x, jac=jac, bounds=(lo, hi), loss=loss,
                                                 f_scale=self.f_scale, x_scale="jac", max_nfev=100 * len(x0))
                except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:  # pragma: no cover
                    self.warnings_.append(f"refinement failed from one start: {exc}")
                    break
                x = np.minimum(np.maximum(res.x, lo + 1e-12 * span), hi - 1e-12 * span)
                cost = self._cost(feats, y, res.x[:n_nl], res.x[n_nl:])
                if cost < best_cost:
                    best_nl, best_lin, best_cost = res.x[:n_nl], res.x[n_nl:], cost
        return best_nl, best_lin, best_cost

    def _cost(self, feats, y, nl, lin) -> float:
        with np.errstate(all="ignore"):
            pred = self._design(feats, np.asarray(nl)) @ np.asarray(lin)
        r = np.log(np.maximum(pred, 1e-8)) - np.log(y)
        if not np.all(np.isfinite(r)):
            return float("inf")
        z = (r / self.f_scale) ** 2
        if self.loss == "huber":
            rho = np.where(z <= 1, z, 2 * np.sqrt(z) - 1)
        elif self.loss == "soft_l1":
            rho = 2 * (np.sqrt(1 + z) - 1)
        elif self.loss == "cauchy":
            rho = np.log1p(z)
        elif self.loss == "arctan":
            rho = np.arctan(z)
        else:
            rho = z
        return float(np.sum(rho))

    def _fit_table(self, rows: pd.DataFrame, desc: pd.DataFrame):
        y = rows["final_loss"].to_numpy(float)
        feats = self._features(desc)
        try:
            nl, lin, _ = self._fit_arrays(feats, y)
            return {"nl": np.asarray(nl, float), "lin": np.asarray(lin, float), "mean": None}
        except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
            self.warnings_.append(f"fit failed ({exc}); predicting the mean training loss")
            return {"nl": None, "lin": None, "mean": float(y.mean())}

    def fit(self, runs_df):
        rows = _loss_rows(runs_df, self.name)
        self.fit_rows_ = rows
        self.warnings_ = []
        desc = describe_runs(rows)
        self.fit_desc_ = desc
        self._set_lr_ref(desc)
        self.fit_ = self._fit_table(rows, desc)
        return self

    def _predict_with(self, fitted: dict, desc: pd.DataFrame) -> np.ndarray:
        if fitted["mean"] is not None:
            return np.full(len(desc), fitted["mean"])
        with np.errstate(all="ignore"):
            return self._design(self._features(desc), fitted["nl"]) @ fitted["lin"]

    def predict(self, runs_df):
        self._check_fitted()
        return self._predict_with(self.fit_, describe_runs(runs_df, self.fit_rows_))

    @property
    def params_(self) -> dict[str, float]:
        """Fitted parameters by name (empty when the fit fell back to the mean)."""
        if self.fit_["mean"] is not None:
            return {}
        names = self.spec.nl_names + self.spec.lin_names
        return dict(zip(names, map(float, np.concatenate([self.fit_["nl"], self.fit_["lin"]]))))


_EXP_GRID = (0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2)


class Chinchilla(_SeparableLaw):
    """Chinchilla scaling law ``L = E + A / N^α + B / D^β`` (N, D in billions), E ∈ [0, min y], A, B ≥ 0,
    α, β ∈ [0.01, 3].  Schedule-blind: within a block it predicts one value."""

    name = "chinchilla"
    spec = _LawSpec(("alpha", "beta"), ((0.01, 3.0), (0.01, 3.0)), ("E", "A", "B"))

    def _features(self, desc):
        return {"N": desc["N"].to_numpy(float), "D": desc["D"].to_numpy(float)}

    def _design(self, f, nl):
        return np.column_stack([np.ones(len(f["N"])), f["N"] ** -nl[0], f["D"] ** -nl[1]])

    def _grid(self, f):
        return list(itertools.product(_EXP_GRID, _EXP_GRID))

    def _lin_bounds(self, y):
        return np.array([0.0, 0.0, 0.0]), np.array([y.min(), np.inf, np.inf])


class Tissue(_SeparableLaw):
    """Tissue et al. cross-scale LR-annealing law (7 parameters)::

        L = L0 + B·N^(−β) + A·S1^(−α) − C·N^γ·S2,   S1 = Σ_i η_i,   S2 = Σ_i m_i,  m_i = λ m_{i−1} + (η_{i−1} − η_i)

    with η normalised by ``lr_ref_`` (largest training peak LR), sums over optimizer updates, λ = 0.999.  The first
    stage's warmup is excluded from the momentum (not from S1); a continual stage uses its full history.  Bounds:
    L0 ∈ [0, 2 max y], A, B, C ≥ 0, α, β ∈ [0.01, 3], γ ∈ [−2, 2].
    """

    name = "tissue"
    spec = _LawSpec(("beta", "alpha", "gamma"), ((0.01, 3.0), (0.01, 3.0), (-2.0, 2.0)), ("L0", "B", "A", "C"))

    def __init__(self, lam: float = 0.999, **fit_options):
        if not 0 < lam < 1:
            raise ValueError(f"lam must lie in (0, 1), got {lam}")
        super().__init__(**fit_options)
        self.lam = lam

    def _features(self, desc):
        raw = np.array([_tissue_raw(s, self.lam) for s in desc["specs"]], dtype=float).reshape(-1, 2)
        return {"N": desc["N"].to_numpy(float), "S1": raw[:, 0] / self.lr_ref_, "S2": raw[:, 1] / self.lr_ref_}

    def _design(self, f, nl):
        beta, alpha, gamma = nl
        return np.column_stack([np.ones(len(f["N"])), f["N"] ** -beta, f["S1"] ** -alpha,
                                -(f["N"] ** gamma) * f["S2"]])

    def _grid(self, f):
        return list(itertools.product((0.1, 0.3, 0.6, 1.0), (0.1, 0.2, 0.35, 0.5, 0.75, 1.0),
                                      (-0.5, -0.25, 0.0, 0.25, 0.5)))

    def _lin_bounds(self, y):
        return np.zeros(4), np.array([2 * y.max(), np.inf, np.inf, np.inf])


class MultiPower(_SeparableLaw):
    """Multi-power law (Luo et al. 2025) at the final step, 7 parameters (L0, A, α, B, C, β, γ)::

        L(t) = L0 + A (S1(t) + S_W)^(−α) − B Σ_k (η_{k−1} − η_k) G(η_k^(−γ) S_k(t)),
        S_k(t) = Σ_{τ=k}^{t} η_τ,   G(x) = 1 − (C x + 1)^(−β)

    η normalised by ``lr_ref_``; S1 + S_W = the total area of all updates (warmup included); the annealing sum runs
    over the updates after the first stage's warmup (a later re-warmup enters with negative Δη).  Sums are
    vectorised with reverse cumulative sums and evaluated on at most ``max_terms`` merged terms per schedule (see
    ``_mpl_raw``; ``max_terms=0``: exact sums), so 50k-step runs are cheap; the Jacobian is analytic.  The law has no model-size term: with ``per_size`` (default) one law
    is fitted per ``model_params`` with at least ``min_runs_per_size`` (3) training runs — sizes with no more runs
    than parameters keep the grid solution (exponents from the grid, L0/A/B by bounded linear least squares) — and
    a pooled law serves the other sizes.  (On the public lr-scheduling SlimPajama table, 8 sizes of which 6 have
    6 runs, this beat a threshold of 10 runs: rel. error 1.05 % vs 1.89 %, pooled only 2.11 %.)  Fitted in log C.  Bounds: L0 ∈ [0, 2 max y], A, B ≥ 0, α ∈ [0.01, 3], log C ∈ [−30, 30],
    β ∈ [0.01, 10], γ ∈ [−1, 3].
    """

    name = "multi_power"
    spec = _LawSpec(("alpha", "log_C", "beta", "gamma"), ((0.01, 3.0), (-30.0, 30.0), (0.01, 10.0), (-1.0, 3.0)),
                    ("L0", "A", "B"))

    def __init__(self, per_size: bool = True, min_runs_per_size: int = 3, max_terms: int = 512, **fit_options):
        super().__init__(**fit_options)
        self.per_size = per_size
        self.min_runs_per_size = min_runs_per_size
        self.max_terms = max_terms

    def _features(self, desc):
        uniq = list(dict.fromkeys(desc["specs"]))
        pos = {s: i for i, s in enumerate(uniq)}
        raws = [_mpl_raw(s, self.max_terms) for s in uniq]
        r = self.lr_ref_
        seg = np.concatenate([np.full(len(raw[1]), i) for i, raw in enumerate(raws)]).astype(int)
        return {
            "row": np.array([pos[s] for s in desc["specs"]], dtype=int), "n_uniq": len(uniq), "seg": seg,
            "P": np.array([raw[0] for raw in raws]) / r,
            "d": np.concatenate([raw[1] for raw in raws]) / r,
            "eta": np.concatenate([raw[2] for raw in raws]) / r,
            "S": np.concatenate([raw[3] for raw in raws]) / r,
        }

    def _design(self, f, nl):
        alpha, log_c, beta, gamma = nl
        x = np.exp(log_c) * f["eta"] ** (-gamma) * f["S"]
        g = -np.expm1(-beta * np.log1p(x))  # 1 − (1 + x)^(−β), accurate for small x
        ld = np.bincount(f["seg"], weights=f["d"] * g, minlength=f["n_uniq"])
        per_uniq = np.column_stack([np.ones(f["n_uniq"]), f["P"] ** -alpha, -ld])
        return per_uniq[f["row"]]

    def _design_jac(self, f, nl):
        alpha, log_c, beta, gamma = nl
        x = np.exp(log_c) * f["eta"] ** (-gamma) * f["S"]
        lu = np.log1p(x)
        dg_dx_x = beta * np.exp(-(beta + 1.0) * lu) * x  # x · ∂G/∂x
        seg, n = f["seg"], f["n_uniq"]
        out = np.zeros((n, 3, 4))
        pa = f["P"] ** -alpha
        out[:, 1, 0] = -np.log(f["P"]) * pa
        out[:, 2, 1] = -np.bincount(seg, weights=f["d"] * dg_dx_x, minlength=n)
        out[:, 2, 2] = -np.bincount(seg, weights=f["d"] * lu * np.exp(-beta * lu), minlength=n)
        out[:, 2, 3] = np.bincount(seg, weights=f["d"] * dg_dx_x * np.log(f["eta"]), minlength=n)
        return out[f["row"]]

    def _grid(self, f):
        grid = []
        for gamma in (0.2, 0.5, 0.8):
            scale = f["eta"] ** (-gamma) * f["S"]
            med = float(np.median(scale)) if len(scale) else 1.0
            med = med if np.isfinite(med) and med > 0 else 1.0
            for alpha, c, beta in itertools.product((0.2, 0.4, 0.7), (0.1, 1.0, 10.0, 100.0), (0.3, 0.6, 1.2)):
                grid.append((alpha, float(np.log(c / med)), beta, gamma))
        return grid

    def _lin_bounds(self, y):
        return np.zeros(3), np.array([2 * y.max(), np.inf, np.inf])

    def fit(self, runs_df):
        super().fit(runs_df)
        rows, desc = self.fit_rows_, self.fit_desc_
        self.size_fits_ = {}
        if self.per_size:
            sizes = rows["model_params"].astype("int64")
            if sizes.nunique() > 1:
                for n, count in sizes.value_counts().items():
                    if count >= self.min_runs_per_size:
                        sel = (sizes == n).to_numpy()
                        self.size_fits_[int(n)] = self._fit_table(rows[sel], desc[sel])
        return self

    def predict(self, runs_df):
        self._check_fitted()
        desc = describe_runs(runs_df, self.fit_rows_)
        out = self._predict_with(self.fit_, desc)
        sizes = runs_df["model_params"].astype("int64").to_numpy()
        for n, fitted in self.size_fits_.items():
            sel = sizes == n
            if sel.any():
                out[sel] = self._predict_with(fitted, desc[sel])
        return out


class SimplifiedChinchilla(_SeparableLaw):
    """Chinchilla scale terms plus a simplified Opt-Law (our choice of the "few terms", opt-laws.md §1/§4)::

        L = E + A·N^(−α) + B·D^(−β) + c1 / I + c2 · N / I + c3 · E_esc^p

    ``I`` = ∫η dt over the run (all stages; η normalised by ``lr_ref_``, t in billions of tokens) — the convergence
    term, alone and scaled by model size; ``E_esc`` = this stage's escape integral on the optimizer-step grid,
    Σ_k (Δη_k)² / δ (δ = one step in billions of tokens) — the escape term.  E ∈ [0, 2 max y], A, B, c1, c2 ≥ 0,
    c3 free (the sign of the escape effect on the final loss is left to the data), α, β ∈ [0.01, 3],
    p ∈ [0.05, 1] (grid {0.1, 0.2, 0.3, 0.5}).
    """

    name = "simplified_chinchilla"
    spec = _LawSpec(("alpha", "beta", "p"), ((0.01, 3.0), (0.01, 3.0), (0.05, 1.0)),
                    ("E", "A", "B", "c1", "c2", "c3"))

    def _features(self, desc):
        r = self.lr_ref_
        return {"N": desc["N"].to_numpy(float), "D": desc["D"].to_numpy(float),
                "I": desc["area_bt"].to_numpy(float) / r, "Esc": desc["escape_bt"].to_numpy(float) / r**2}

    def _design(self, f, nl):
        alpha, beta, p = nl
        return np.column_stack([np.ones(len(f["N"])), f["N"] ** -alpha, f["D"] ** -beta, 1.0 / f["I"],
                                f["N"] / f["I"], f["Esc"] ** p])

    def _grid(self, f):
        return list(itertools.product((0.1, 0.3, 0.5, 0.8), (0.1, 0.3, 0.5, 0.8), (0.1, 0.2, 0.3, 0.5)))

    def _lin_bounds(self, y):
        return (np.array([0.0, 0.0, 0.0, 0.0, 0.0, -np.inf]),
                np.array([2 * y.max(), np.inf, np.inf, np.inf, np.inf, np.inf]))


# ============================================================================ divergence baselines
def _div_rows(df: pd.DataFrame, who: str) -> tuple[pd.DataFrame, np.ndarray]:
    missing = [c for c in _REQUIRED + ("diverged",) if c not in df.columns]
    if missing:
        raise ValueError(f"{who}: runs table is missing column(s) {', '.join(missing)}")
    if len(df) == 0:
        raise ValueError(f"{who}: no usable rows to fit (the table is empty)")
    return df, df["diverged"].astype(bool).to_numpy()


class LRThreshold:
    """Peak-LR threshold: predict divergence when ``log(peak LR) >= threshold_``.

    The threshold is the midpoint (in log LR) between consecutive training peak LRs that maximises the training
    ``criterion`` (``"f1"`` or ``"balanced_accuracy"``), ties broken by the other metric, then by taking the middle of
    the tied thresholds.  ``predict_proba`` is 0/1, or ``expit((log lr − threshold) / softness)`` when
    ``softness`` > 0.  No divergent training run: threshold +inf (never diverges); all divergent: −inf.
    """

    name = "lr_threshold"

    def __init__(self, criterion: str = "f1", softness: float = 0.0):
        if criterion not in ("f1", "balanced_accuracy"):
            raise ValueError(f"criterion must be 'f1' or 'balanced_accuracy', got {criterion!r}")
        self.criterion = criterion
        self.softness = softness

    def fit(self, runs_df):
        from . import metrics

        rows, labels = _div_rows(runs_df, self.name)
        self.fit_rows_ = rows
        x = np.log(describe_runs(rows)["peak_lr"].to_numpy(float))
        if not labels.any():
            self.threshold_ = float("inf")
            return self
        if labels.all():
            self.threshold_ = float("-inf")
            return self
        u = np.unique(x)
        cands = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2, [u[-1] + 1.0]])
        scores = []
        for c in cands:
            hard = (x >= c).astype(float)
            f = metrics.f1(labels, hard)
            b = metrics.balanced_accuracy(labels, hard)
            scores.append((f, b) if self.criterion == "f1" else (b, f))
        best = max(scores)
        tied = [c for c, s in zip(cands, scores) if s == best]
        self.threshold_ = float(tied[len(tied) // 2])
        return self

    def predict_proba(self, runs_df):
        require_fitted(self, "threshold_", "predict_proba")
        x = np.log(describe_runs(runs_df, self.fit_rows_)["peak_lr"].to_numpy(float))
        if self.softness > 0 and np.isfinite(self.threshold_):
            return special.expit((x - self.threshold_) / self.softness)
        return (x >= self.threshold_).astype(float)


class LogisticDivergence:
    """L2-penalised logistic regression of ``diverged`` on standardised (log peak LR, warmup fraction, log N, log D).

    Minimises ``Σ log(1 + exp(−s_i z_i)) + ||w||² / (2 C)`` (intercept not penalised; C = 1 as scikit-learn's
    default), with L-BFGS.  A training set with one class gives the constant ``(n_diverged + 0.5) / (n + 1)``.
    """

    name = "logistic"

    def __init__(self, C: float = 1.0):
        self.C = C

    @staticmethod
    def _features(desc):
        return np.column_stack([np.log(desc["peak_lr"]), desc["warmup_frac"], np.log(desc["N"]), np.log(desc["D"])])

    def fit(self, runs_df):
        rows, labels = _div_rows(runs_df, self.name)
        self.fit_rows_ = rows
        x = self._features(describe_runs(rows))
        self.mean_ = x.mean(axis=0)
        sd = x.std(axis=0)
        self.scale_ = np.where(sd > 1e-12, sd, 1.0)
        if labels.all() or not labels.any():
            self.coef_ = None
            self.constant_ = (labels.sum() + 0.5) / (len(labels) + 1.0)
            return self
        z = np.column_stack([np.ones(len(x)), (x - self.mean_) / self.scale_])
        s = np.where(labels, 1.0, -1.0)
        lam = 1.0 / self.C

        def objective(w):
            m = s * (z @ w)
            val = np.sum(np.logaddexp(0.0, -m)) + 0.5 * lam * np.sum(w[1:] ** 2)
            grad = -(z.T @ (s * special.expit(-m)))
            grad[1:] += lam * w[1:]
            return val, grad

        res = optimize.minimize(objective, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B")
        self.coef_ = res.x
        return self

    def predict_proba(self, runs_df):
        require_fitted(self, "fit_rows_", "predict_proba")
        if self.coef_ is None:
            return np.full(len(runs_df), self.constant_)
        x = self._features(describe_runs(runs_df, self.fit_rows_))
        z = np.column_stack([np.ones(len(x)), (x - self.mean_) / self.scale_])
        return special.expit(z @ self.coef_)


#: name -> factory of every loss baseline (``optlaw_ls`` and ``bayes_optlaw`` live elsewhere)
LOSS_BASELINES: dict[str, Callable[[], LossBaseline]] = {
    "block_mean": BlockMean,
    "chinchilla": Chinchilla,
    "linear": LinearBaseline,
    "tissue": Tissue,
    "multi_power": MultiPower,
    "simplified_chinchilla": SimplifiedChinchilla,
}

#: name -> factory of every divergence baseline
DIVERGENCE_BASELINES: dict[str, Callable[[], object]] = {
    "lr_threshold": LRThreshold,
    "logistic": LogisticDivergence,
}
