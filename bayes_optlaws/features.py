"""The 15 Opt-Laws schedule features (+ intercept), their normalisation and the exponent-group search.

Units (opt-laws.md §2): N in **billions of parameters**, D and every time quantity in **billions of tokens**
(steps × tokens_per_step / 1e9), learning rates divided by a reference ``lr_ref`` (stored with the fitted model).

Per run we first compute the *segment integrals* once (:func:`segment_integrals`), then any choice of exponents
gives the feature matrix cheaply (:func:`design_matrix`):

* convergence: ``I_w = ∫_0^{t1} η``, ``I_c = ∫_{t2}^{T} η``, ``I = ∫_0^T η`` (history-aware: earlier stages add to I)
* escape (on the step grid): ``E_w = Σ_{(0, t2]} (Δη)²/δ`` (+ the jump from 0 to ``η(0)``),
  ``E_c = Σ_{(t3, T]} (Δη)²/δ``

The exact feature terms are our reconstruction of the paper's prose (see README "What is the paper's and what is
ours"); they are hypotheses tested by the ablation in :mod:`bayes_optlaws.evaluation`.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .runs import RunsError
from .runset import RunSet
from .schedules import Schedule

BLOCKS = ("scale", "convergence", "escape", "mixed")
FEATURE_NAMES = (
    # scale (group p_s)
    "N^-ps", "D^-ps", "lr_max^ps",
    # convergence (1/I fixed by theory, one term in group p_cc)
    "1/I_w", "1/I_c", "N/I", "(I_w*I_c)^-pcc",
    # escape (group p_e)
    "E_w^pe", "E_c^pe", "((E_w+E_c)/N)^pe", "(E_w*E_c)^pe",
    # mixed (group p_m)
    "(N*E_w/I)^pm", "(N*E_c/I)^pm", "(E_w/I_w)^pm", "(E_c/I_c)^pm",
)
FEATURE_BLOCK = dict(zip(FEATURE_NAMES, ["scale"] * 3 + ["convergence"] * 4 + ["escape"] * 4 + ["mixed"] * 4))
EXPONENT_CANDIDATES = (0.1, 0.15, 0.2, 0.3, 0.5)
INTEGRAL_COLUMNS = ("N", "D", "lr_max", "I_w", "I_c", "I", "E_w", "E_c")


@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to turn runs into features; stored with every fitted model.

    ``lr_ref``: raw LR that maps to 1.0 (default at fit time: the largest peak LR in the calibration data).
    ``p_s, p_cc, p_e, p_m``: the four exponent groups.  ``blocks``: which feature blocks enter the model
    (the ablation drops blocks).  ``history_escape``: how continual stages normalise their escape integrals:
    "none" (default: by ``lr_ref``, like pre-training) or "peak" (``∫η'²/η_max²`` of the current stage, our reading
    of opt-laws.md §6).  Measured on the grid's continual stages with the default model: "peak" put the escape
    features ~10⁴× outside the pre-training range (a re-warm to 0.004 is 0.0078 × lr_ref) and the predicted losses
    overflowed; "none" ranked the S3 strong-shift stage with Spearman 0.88.
    """

    lr_ref: float
    p_s: float = 0.3
    p_cc: float = 0.3
    p_e: float = 0.3
    p_m: float = 0.3
    blocks: tuple[str, ...] = BLOCKS
    history_escape: str = "none"

    def __post_init__(self) -> None:
        if not (self.lr_ref > 0 and np.isfinite(self.lr_ref)):
            raise ValueError(f"lr_ref must be a positive number, got {self.lr_ref}")
        for b in self.blocks:
            if b not in BLOCKS:
                raise ValueError(f"unknown feature block {b!r}; use {BLOCKS}")
        object.__setattr__(self, "blocks", tuple(self.blocks))

    @property
    def feature_names(self) -> list[str]:
        return [f for f in FEATURE_NAMES if FEATURE_BLOCK[f] in self.blocks]

    def with_exponents(self, p_s, p_cc, p_e, p_m) -> "FeatureSpec":
        return FeatureSpec(self.lr_ref, float(p_s), float(p_cc), float(p_e), float(p_m), self.blocks,
                           self.history_escape)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blocks"] = list(self.blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSpec":
        d = dict(d)
        d["blocks"] = tuple(d.get("blocks", BLOCKS))
        return cls(**d)


@dataclass(frozen=True)
class Stage:
    """One training stage: its schedule and tokens per optimizer step."""

    schedule: Schedule
    tokens_per_step: int


@dataclass
class SegmentIntegrals:
    """Normalised segment integrals of one run (see module docstring for units)."""

    N: float
    D: float
    lr_max: float
    I_w: float
    I_c: float
    I: float
    E_w: float
    E_c: float
    warnings: list[str] = field(default_factory=list)


def segment_integrals(schedule: Schedule, tokens_per_step: int, model_params: float, lr_ref: float,
                      history: Sequence[Stage] = (), history_escape: str = "none") -> SegmentIntegrals:
    """Segment integrals of a stage (with optional earlier stages) in the paper's units.

    ``I_w`` is floored at half a step at the peak LR (a zero-warmup run applies the full LR from its first update,
    the same as a one-step warmup would on our midpoint grid), and ``I_c`` likewise, so ``1/I_w`` stays finite.
    """
    delta = tokens_per_step / 1e9  # one step in billions of tokens
    ph = schedule.phases()
    lr_max = schedule.peak_lr / lr_ref
    floor = 0.5 * lr_max * delta
    I_w = max(schedule.integral(0, ph.t1) / lr_ref * delta, floor)
    I_c = max(schedule.integral(ph.t2, ph.total) / lr_ref * delta, floor)
    I = schedule.integral() / lr_ref * delta
    # a stage that starts at a non-zero LR jumps to it from 0 (the optimizer was not running): count that jump,
    # so a zero-warmup run has the escape integral of a one-step warmup, consistent with the I_w floor
    start_jump = schedule.initial_lr ** 2
    E_w = (schedule.escape_integral(0, ph.t2) + start_jump) / lr_ref**2 / delta
    E_c = schedule.escape_integral(ph.t3, ph.total) / lr_ref**2 / delta
    D = schedule.total * delta
    warnings = list(ph.warnings)
    if history:
        I += sum(st.schedule.integral() / lr_ref * st.tokens_per_step / 1e9 for st in history)
        D += sum(st.schedule.total * st.tokens_per_step / 1e9 for st in history)
        if history_escape == "peak":
            scale = (schedule.peak_lr / lr_ref) ** 2
            E_w, E_c = E_w / scale, E_c / scale
    return SegmentIntegrals(N=model_params / 1e9, D=D, lr_max=lr_max, I_w=I_w, I_c=I_c, I=I, E_w=E_w, E_c=E_c,
                            warnings=warnings)


def with_lr_scaled(integrals: pd.DataFrame, factor, escape_invariant=None) -> pd.DataFrame:
    """The segment integrals of the same runs with every learning rate multiplied by ``factor`` (a number, or one
    per row): ``lr_max`` and the convergence integrals ``I_w``, ``I_c``, ``I`` scale with it (their floors are
    fractions of ``lr_max``), the escape integrals ``E_w``, ``E_c`` with its square — exactly the integrals of the
    scaled schedules, without recomputing them.  ``escape_invariant``: rows whose escape integrals are normalised
    by their own peak LR (continual stages with ``history_escape="peak"``), which do not change."""
    c = np.broadcast_to(np.asarray(factor, float), (len(integrals),))
    out = integrals.copy()
    for col in ("lr_max", "I_w", "I_c", "I"):
        out[col] = integrals[col].to_numpy(float) * c
    e_scale = c ** 2 if escape_invariant is None else np.where(np.asarray(escape_invariant, bool), 1.0, c ** 2)
    for col in ("E_w", "E_c"):
        out[col] = integrals[col].to_numpy(float) * e_scale
    return out


def reference_lr(runs: "RunSet") -> float:
    """The default ``lr_ref`` of a fit: the largest peak LR (raw units) of the runs' schedules — the LR the
    features call 1.0 (one rule for the law, its least-squares twin and the divergence model)."""
    return float(RunSet.of_table(runs, required=("schedule",)).peak_lr.max())


def stages_from_runs(runs: "RunSet", run_id: str) -> list[Stage]:
    """Earlier stages of ``run_id`` (oldest first: its parent, the parent's parent, ...) as :class:`Stage`
    objects, from a run set's parsed schedules (RunsError when ``run_id`` or a parent is not in it)."""
    runs = RunSet.of_table(runs)
    table = runs.table
    chain = []
    parent = table["parent_run_id"].iloc[runs.position(run_id)] if "parent_run_id" in table.columns else None
    while isinstance(parent, str) and parent:
        try:
            row = runs.position(parent)
        except RunsError:
            raise RunsError(f"parent_run_id {parent!r} is not in the runs table that holds the history") from None
        chain.append(Stage(runs.schedules[row], int(table["tokens_per_step"].iloc[row])))
        parent = table["parent_run_id"].iloc[row]
    return chain[::-1]


def integrals_table(runs: "RunSet", lr_ref: float, history_escape: str = "none",
                    history_runs: "RunSet | None" = None) -> pd.DataFrame:
    """Segment integrals for every row of a run set, indexed like its table.

    Rows with ``parent_run_id`` take their earlier stages from ``history_runs`` (default: ``runs`` itself).
    :meth:`RunSet.integrals` keeps the result for the next call with the same arguments; a DataFrame (with
    ``run_id, schedule, tokens_per_step, model_params``) is parsed here, not validated.
    """
    runs = RunSet.of_table(runs, required=("schedule", "tokens_per_step", "model_params"))
    lookup = runs if history_runs is None else RunSet.of_table(history_runs, "history runs")
    table = runs.table
    parents = table["parent_run_id"] if "parent_run_id" in table.columns else [None] * len(table)
    rows = []
    for schedule, tps, params, parent in zip(runs.schedules, table["tokens_per_step"], table["model_params"],
                                             parents):
        history = _history_with_parent(lookup, parent) if isinstance(parent, str) and parent else None
        seg = segment_integrals(schedule, int(tps), float(params), float(lr_ref), history, history_escape)
        rows.append(tuple(getattr(seg, c) for c in INTEGRAL_COLUMNS))
    return pd.DataFrame(rows, index=table.index, columns=list(INTEGRAL_COLUMNS))


def _history_with_parent(lookup: RunSet, parent: str) -> list[Stage]:
    """The stages a continuation of ``parent`` has behind it: the parent's own history and the parent."""
    try:
        row = lookup.position(parent)
    except RunsError:
        raise RunsError(f"parent_run_id {parent!r} is not in the runs table that holds the history") from None
    own = Stage(lookup.schedules[row], int(lookup.table["tokens_per_step"].iloc[row]))
    return [*stages_from_runs(lookup, parent), own]


def design_matrix(integrals: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """The feature matrix (runs × features in ``spec.feature_names``) for given segment integrals."""
    g = {c: integrals[c].to_numpy(dtype=float) for c in INTEGRAL_COLUMNS}
    N, D, lr, Iw, Ic, I, Ew, Ec = (g[c] for c in INTEGRAL_COLUMNS)
    ps, pcc, pe, pm = spec.p_s, spec.p_cc, spec.p_e, spec.p_m
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # non-finite values are refused below
        cols = _feature_columns(N, D, lr, Iw, Ic, I, Ew, Ec, ps, pcc, pe, pm)
    X = np.column_stack([cols[name] for name in spec.feature_names])
    if not np.all(np.isfinite(X)):
        bad_row, bad_col = np.argwhere(~np.isfinite(X))[0]
        raise FeatureError(int(bad_row), spec.feature_names[bad_col])
    return X


def _feature_columns(N, D, lr, Iw, Ic, I, Ew, Ec, ps, pcc, pe, pm) -> dict[str, np.ndarray]:
    """The 15 features by name, from the segment integrals and the exponent groups."""
    return {
        "N^-ps": N ** -ps, "D^-ps": D ** -ps, "lr_max^ps": lr ** ps,
        "1/I_w": 1.0 / Iw, "1/I_c": 1.0 / Ic, "N/I": N / I, "(I_w*I_c)^-pcc": (Iw * Ic) ** -pcc,
        "E_w^pe": Ew ** pe, "E_c^pe": Ec ** pe, "((E_w+E_c)/N)^pe": ((Ew + Ec) / N) ** pe, "(E_w*E_c)^pe": (Ew * Ec) ** pe,
        "(N*E_w/I)^pm": (N * Ew / I) ** pm, "(N*E_c/I)^pm": (N * Ec / I) ** pm,
        "(E_w/I_w)^pm": (Ew / Iw) ** pm, "(E_c/I_c)^pm": (Ec / Ic) ** pm,
    }


class FeatureError(RunsError):
    """A schedule whose feature is not finite (an LR so small or so large that a power of its integrals
    overflows); ``row``: its position in the design, ``feature``: the feature's name.  :meth:`named` gives the
    message for a row with a name."""

    def __init__(self, row: int, feature: str, who: str | None = None):
        self.row, self.feature = row, feature
        who = who or f"row {row}"
        super().__init__(f"{who}: the schedule feature {feature!r} is not finite (an LR so small or so large that "
                         "a power of its integrals overflows); use a schedule with a peak LR nearer the fitted runs'")

    def named(self, names: Sequence[str], what: str) -> "FeatureError":
        """The same error naming the row as ``what`` ``names[row]`` (e.g. ``"candidate"``)."""
        return FeatureError(self.row, self.feature, f"{what} {names[self.row]!r}")


# ------------------------------------------------------------------------------------ exponent search
@dataclass(frozen=True)
class Standardiser:
    """Column means and standard deviations of a training design matrix (stored with the model).

    Columns that are constant in the training data get an infinite scale, so they standardise to exactly 0 and
    carry no coefficient (their effect is absorbed by the intercept)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> "Standardiser":
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        # a column that is constant up to rounding (e.g. N^-ps within one block) becomes exactly 0
        constant = scale <= 1e-9 * np.maximum(np.abs(mean), 1e-300)
        return cls(mean, np.where(constant, np.inf, scale))

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) / self.scale

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": [None if np.isinf(v) else float(v) for v in self.scale]}

    @classmethod
    def from_dict(cls, d: dict) -> "Standardiser":
        scale = np.array([np.inf if v is None else v for v in d["scale"]], float)
        return cls(np.asarray(d["mean"], float), scale)


def ridge_fit(X: np.ndarray, y: np.ndarray, alpha: float = 1e-3) -> tuple[np.ndarray, Standardiser, float]:
    """Least squares on standardised features with a tiny ridge penalty (numerical stability only).

    Returns (coefficients, standardiser, intercept) so that ``pred = Z @ coef + intercept``.
    """
    st = Standardiser.fit(X)
    Z = st.transform(X)
    y_mean = float(y.mean())
    A = Z.T @ Z + alpha * len(y) * np.eye(Z.shape[1])
    coef = np.linalg.solve(A, Z.T @ (y - y_mean))
    return coef, st, y_mean


def ridge_predict(X: np.ndarray, coef: np.ndarray, st: Standardiser, intercept: float) -> np.ndarray:
    return st.transform(X) @ coef + intercept


def _inner_folds(blocks: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold id per row, assigned within each block (so every fold holds out part of every block)."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(blocks), dtype=int)
    for b in np.unique(blocks):
        idx = np.flatnonzero(blocks == b)
        perm = rng.permutation(len(idx))
        folds[idx[perm]] = np.arange(len(idx)) % n_folds
    return folds


def select_exponents(integrals: pd.DataFrame, log_loss: np.ndarray, blocks: np.ndarray, base: FeatureSpec,
                     candidates: Iterable[float] = EXPONENT_CANDIDATES, n_folds: int = 5, seed: int = 0,
                     alpha: float = 1e-3) -> tuple[FeatureSpec, pd.DataFrame]:
    """Level-1 exponent search (opt-laws.md §4): one shared exponent per group over all combinations.

    Scored by inner K-fold (within blocks) mean squared error of log loss, on the rows given — pass **training
    rows only** for nested cross-validation.  Returns the best spec and a table of every combination's score.
    """
    candidates = tuple(candidates)
    folds = _inner_folds(np.asarray(blocks), n_folds, seed)
    y = np.asarray(log_loss, float)
    groups = {"p_s": "scale", "p_cc": "convergence", "p_e": "escape", "p_m": "mixed"}
    active = [k for k, b in groups.items() if b in base.blocks]
    grid = list(itertools.product(candidates, repeat=len(active)))
    records = []
    for combo in grid:
        values = dict(p_s=base.p_s, p_cc=base.p_cc, p_e=base.p_e, p_m=base.p_m)
        values.update(zip(active, combo))
        spec = base.with_exponents(**values)
        X = design_matrix(integrals, spec)
        err = 0.0
        for k in range(n_folds):
            tr, te = folds != k, folds == k
            if te.sum() == 0 or tr.sum() <= 2:
                continue
            coef, st, b0 = ridge_fit(X[tr], y[tr], alpha)
            err += float(np.sum((ridge_predict(X[te], coef, st, b0) - y[te]) ** 2))
        records.append({**values, "mse": err / len(y)})
    table = pd.DataFrame(records).sort_values("mse", kind="stable").reset_index(drop=True)
    best = table.iloc[0]
    return base.with_exponents(best.p_s, best.p_cc, best.p_e, best.p_m), table
