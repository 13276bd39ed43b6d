"""Learning-rate schedules: one object from every spec form, with exact integrals.

Units
-----
Time is measured in **optimizer steps of this stage** (step 0 = before the first update, step ``total`` = after
the last).  Learning rates are raw (un-normalised) values; :mod:`bayes_optlaws.features` normalises them and
converts steps to billions of tokens.

A :class:`Schedule` is a continuous function ``eta(t)`` on ``[0, total]`` made of pieces between knots.  Each
piece is ``linear`` (also covers constant), ``cosine`` (half-cosine from the left value to the right value) or
``1-sqrt`` (``right + (left - right) * (1 - sqrt(u))``).  Every spec form of ``runs-format.md`` converts to this one
representation, so two specs of the same schedule give identical features.

The update at step ``k`` (0-based) applies ``eta(k + 0.5)`` (:meth:`Schedule.applied_lr`): with that midpoint rule
the sum of applied LRs equals ``∫ eta dt`` exactly for piecewise-linear schedules with whole-step knots.

Escape integrals are defined on the optimizer-step grid (opt-laws.md §3): ``E = Σ_k (eta(k) - eta(k-1))^2`` in
step units, finite for every real schedule (abrupt drops and 1-sqrt cooldowns included) and equal to the closed
form ``∫ eta'(t)^2 dt`` for linear pieces whose lengths are whole steps.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping

import numpy as np

SHAPES = ("linear", "cosine", "1-sqrt")
FAMILIES = ("linear", "cosine", "wsd", "constant", "polygon")
_SHAPE_CODE = {name: code for code, name in enumerate(SHAPES)}

#: relative tolerance for a "flat" step (|Δeta| <= FLAT_RTOL * peak); looser values mistake a cosine top for a plateau
FLAT_RTOL = 1e-9
#: fraction of the peak LR at which warmup is considered finished (t1)
PEAK_FRACTION = 0.999


def _piece_lr(code: int, a, b, u):
    """LR of a piece of shape ``code`` (:data:`SHAPES`' index) from ``a`` to ``b`` at fraction ``u`` in [0, 1] of
    its length (raw LR units; numbers or arrays)."""
    if code == 1:
        return b + (a - b) * 0.5 * (1.0 + np.cos(np.pi * u))
    if code == 2:
        return b + (a - b) * (1.0 - np.sqrt(u))
    return a + (b - a) * u


class ScheduleError(ValueError):
    """A schedule spec that cannot be turned into a valid schedule; the message names the field and the fix."""


@dataclass(frozen=True)
class Phases:
    """Transition points of the paper's template, in steps: warmup ends at ``t1``, the decay phase at ``t2``,
    the plateau at ``t3``; ``total`` is the end of the stage.  ``warnings`` lists ways the schedule departs from
    the template (non-zero final LR, a drop to a constant floor, a rise after the cooldown started)."""

    t1: int
    t2: int
    t3: int
    total: int
    warnings: tuple[str, ...] = field(default=())


#: the longest schedule (steps) accepted: ten times a 1M-step frontier run, and small enough that its per-step LR
#: grid (8 bytes a step) fits in memory
MAX_STEPS = 10_000_000


def _float_array(values, what: str, example: str) -> np.ndarray:
    """``values`` as a float array, or a :class:`ScheduleError` naming ``what`` (a non-number inside, or lists of
    different lengths) and an ``example`` of the right form."""
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError, OverflowError):
        raise ScheduleError(f"{what} must hold numbers only, in lists of equal length (got {values!r}); e.g. "
                            f"{example}") from None


class Schedule:
    """A learning-rate schedule ``eta(t)`` on ``[0, total]`` steps, made of linear / cosine / 1-sqrt pieces.

    Build one with :meth:`from_spec` (any form of runs-format.md), :meth:`from_knots` or :meth:`from_logged`.
    """

    def __init__(self, knot_steps, knot_lrs, shapes=None, *, source: str = "knots") -> None:
        steps = _float_array(knot_steps, "knot steps", "[0, 100, 2000]")
        lrs = _float_array(knot_lrs, "knot LRs", "[0, 3e-3, 0]")
        if steps.ndim != 1 or lrs.shape != steps.shape:
            raise ScheduleError("knot steps and knot LRs must be 1-D sequences of equal length")
        if len(steps) < 2:
            raise ScheduleError("a schedule needs at least two knots (start and end); give [[0, lr0], [total, lr1]]")
        if not np.all(np.isfinite(steps)) or not np.all(np.isfinite(lrs)):
            raise ScheduleError("knot steps and LRs must be finite numbers (found NaN or inf)")
        if steps[0] != 0:
            raise ScheduleError(f"the first knot must be at step 0 (found {steps[0]:g}); add [0, lr] at the start")
        if np.any(np.diff(steps) < 0):
            bad = int(np.argmax(np.diff(steps) < 0)) + 1
            raise ScheduleError(f"knot steps must not decrease (knot {bad} at step {steps[bad]:g} comes after "
                                f"step {steps[bad - 1]:g}); sort the knots by step")
        if np.any(lrs < 0):
            bad = int(np.argmax(lrs < 0))
            raise ScheduleError(f"learning rates must be >= 0 (knot {bad} has lr {lrs[bad]:g}); use a non-negative LR")
        if steps[-1] <= 0:
            raise ScheduleError("the schedule must last at least one step (last knot step > 0)")
        if lrs.max() <= 0:
            raise ScheduleError("the schedule's learning rate is 0 everywhere; give a positive peak LR")
        n_pieces = len(steps) - 1
        if shapes is None:
            shapes = ["linear"] * n_pieces
        shapes = list(shapes)
        if len(shapes) != n_pieces:
            raise ScheduleError(f"'shapes' must name one shape per piece ({n_pieces}), found {len(shapes)}")
        for i, shape in enumerate(shapes):
            if shape not in _SHAPE_CODE:
                raise ScheduleError(f"piece {i} has unknown shape {shape!r}; use one of {', '.join(SHAPES)}")
        # A pair of knots at one step is an abrupt jump; the pieces are the consecutive pairs of positive length,
        # each from the last knot at its start step to the first knot at its end step.
        positive = np.diff(steps) > 0
        idx = np.flatnonzero(positive)
        self._steps = np.concatenate([steps[idx], [steps[-1]]])
        self._left = lrs[idx].copy()
        self._right = lrs[idx + 1].copy()
        self._codes = np.array([_SHAPE_CODE[s] for s in shapes], dtype=int)[idx]
        self._lrs = np.concatenate([self._left, [self._right[-1]]])
        self.source = source
        total = float(self._steps[-1])
        if abs(total - round(total)) > 1e-9:
            raise ScheduleError(f"the schedule must end on a whole step (ends at {total:g})")
        if total > MAX_STEPS:
            raise ScheduleError(f"the schedule lasts {total:.3g} steps, more than the {MAX_STEPS:.0e} this package "
                                "handles (its features integrate the LR step by step); check the budget: tokens / "
                                "tokens per step")
        self.total = int(round(total))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_knots(cls, knots, shapes=None) -> "Schedule":
        """Piecewise schedule through ``knots = [[step, lr], ...]`` (linear between knots unless ``shapes``)."""
        arr = _float_array(knots, "'knots'", "[[0, 0], [100, 3e-3], [2000, 0]]")
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ScheduleError("'knots' must be a list of [step, lr] pairs, e.g. [[0, 0], [100, 3e-3], [2000, 0]]")
        return cls(arr[:, 0], arr[:, 1], shapes)

    @classmethod
    def from_logged(cls, steps, lrs, total: int | None = None) -> "Schedule":
        """A logged LR trace (possibly every k steps): linear interpolation between logged points on the step grid.

        If the log starts after step 0, the first logged LR is held back to step 0; if ``total`` is beyond the last
        logged step, the last LR is held to ``total``.
        """
        s = _float_array(steps, "logged 'steps'", '{"steps": [0, 100, 200], "lr": [0, 3e-3, 1e-3]}')
        lr = _float_array(lrs, "logged 'lr'", '{"steps": [0, 100, 200], "lr": [0, 3e-3, 1e-3]}')
        if s.ndim != 1 or s.shape != lr.shape or len(s) == 0:
            raise ScheduleError("'steps' and 'lr' must be lists of equal, non-zero length")
        order = np.argsort(s, kind="stable")
        s, lr = s[order], lr[order]
        if np.any(np.diff(s) == 0):
            dup = s[np.flatnonzero(np.diff(s) == 0)[0]]
            raise ScheduleError(f"logged steps repeat (step {dup:g} appears twice); keep one LR per step")
        if s[0] < 0:
            raise ScheduleError(f"logged steps must be >= 0 (found {s[0]:g})")
        if s[0] > 0:
            s, lr = np.concatenate([[0.0], s]), np.concatenate([[lr[0]], lr])
        if total is not None:
            if total < s[-1]:
                raise ScheduleError(f"'total' ({total}) is before the last logged step ({s[-1]:g})")
            if total > s[-1]:
                s, lr = np.concatenate([s, [float(total)]]), np.concatenate([lr, [lr[-1]]])
        if len(s) == 1:
            raise ScheduleError("a logged schedule needs at least two distinct steps")
        sched = cls(s, lr)
        sched.source = "logged"
        return sched

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | str) -> "Schedule":
        """Build from any runs-format.md form: a family dict, ``{"knots": ...}``, ``{"steps": ..., "lr": ...}``,
        or the same as a JSON string."""
        if isinstance(spec, Schedule):
            return spec
        if isinstance(spec, str):
            return _from_json(spec)
        return cls._from_mapping(spec)

    @classmethod
    def _from_mapping(cls, spec) -> "Schedule":
        if isinstance(spec, str):
            try:
                spec = json.loads(spec)
            except json.JSONDecodeError as exc:
                raise ScheduleError(f"schedule is not valid JSON ({exc.msg} at char {exc.pos}); "
                                    'write e.g. {"family": "linear", "peak_lr": 3e-3, "warmup": 100, "total": 2000}'
                                    ) from None
        if not isinstance(spec, Mapping):
            raise ScheduleError(f"schedule must be a JSON object, got {type(spec).__name__}")
        if "knots" in spec:
            _only_keys(spec, {"knots", "shapes"}, "knots")
            return cls.from_knots(spec["knots"], spec.get("shapes"))
        if "steps" in spec or "lr" in spec:
            _only_keys(spec, {"steps", "lr", "total"}, "logged")
            if "steps" not in spec or "lr" not in spec:
                raise ScheduleError("a logged schedule needs both 'steps' and 'lr' lists")
            return cls.from_logged(spec["steps"], spec["lr"], spec.get("total"))
        if "family" not in spec:
            raise ScheduleError("schedule needs 'family' (one of " + ", ".join(FAMILIES) +
                                "), 'knots', or 'steps' + 'lr'")
        return _from_family(cls, dict(spec))

    # ------------------------------------------------------------------ evaluation
    @property
    def knots(self) -> np.ndarray:
        """Knot steps and LRs as an (n, 2) array (a jump shows as the post-jump value)."""
        return np.column_stack([self._steps, self._lrs])

    @property
    def peak_lr(self) -> float:
        """Largest LR of the schedule (raw units)."""
        return float(max(self._left.max(), self._right.max()))

    @property
    def initial_lr(self) -> float:
        """LR at step 0 (raw units): the first piece's left end, whatever its shape."""
        return float(self._left[0])

    @property
    def final_lr(self) -> float:
        """LR at the last step (raw units)."""
        return float(self._right[-1])

    def lr_at(self, t) -> np.ndarray:
        """LR at (fractional) step(s) ``t`` in ``[0, total]``."""
        t = np.asarray(t, dtype=float)
        if np.any(t < 0) or np.any(t > self.total):
            raise ValueError(f"steps must lie in [0, {self.total}]")
        idx = np.clip(np.searchsorted(self._steps, t, side="right") - 1, 0, len(self._codes) - 1)
        length = self._steps[idx + 1] - self._steps[idx]
        u = np.clip((t - self._steps[idx]) / length, 0.0, 1.0)
        a, b, code = self._left[idx], self._right[idx], self._codes[idx]
        out = _piece_lr(0, a, b, u)  # linear pieces; the other shapes only where they occur (most schedules have few)
        for shape in (1, 2):
            where = code == shape
            if where.any():
                out = np.where(where, _piece_lr(shape, a, b, u), out)
        return out

    def grid(self) -> np.ndarray:
        """LR at every whole step ``0..total`` (``total + 1`` values; cached and read-only: a schedule never
        changes after construction)."""
        if getattr(self, "_grid_cache", None) is None:
            g = self._lr_on_whole_steps()
            g.setflags(write=False)
            self._grid_cache = g
        return self._grid_cache

    def _lr_on_whole_steps(self) -> np.ndarray:
        """``lr_at(0..total)`` piece by piece on slices: the same arithmetic without a lookup and gather per step
        (on the 1,843 StepLaw schedules, most of the 8–9 s that computing their integrals took)."""
        t = np.arange(self.total + 1, dtype=float)
        out = np.empty_like(t)
        bounds = np.searchsorted(t, self._steps, side="left")  # first whole step of each piece
        bounds[-1] = len(t)  # the last step belongs to the last piece (u = 1), as in lr_at
        for i, code in enumerate(self._codes.tolist()):
            lo, hi = int(bounds[i]), int(bounds[i + 1])
            if hi <= lo:
                continue
            u = np.clip((t[lo:hi] - self._steps[i]) / (self._steps[i + 1] - self._steps[i]), 0.0, 1.0)
            out[lo:hi] = _piece_lr(code, self._left[i], self._right[i], u)
        return out

    def applied_lr(self) -> np.ndarray:
        """LR applied by update ``k = 0..total-1``: ``eta(k + 0.5)`` (midpoint rule, see module docstring)."""
        return self.lr_at(np.arange(self.total, dtype=float) + 0.5)

    def cumulative_integral(self, t) -> np.ndarray:
        """Exact ``∫_0^t eta(s) ds`` (raw LR × steps) for each ``t`` in ``[0, total]`` (array of ``t``'s shape)."""
        t = np.asarray(t, dtype=float)
        return np.array([self._integral_to(x) for x in t.ravel().tolist()]).reshape(t.shape)

    def integral(self, start: float = 0.0, end: float | None = None) -> float:
        """Exact ``∫_start^end eta dt`` in raw LR × steps (defaults: the whole stage)."""
        end = self.total if end is None else end
        return self._integral_to(float(end)) - self._integral_to(float(start))

    def _integral_to(self, t: float) -> float:
        """Exact ``∫_0^t eta(s) ds`` at one step ``t``, in plain Python floats: the closed form of each piece
        shape (a schedule's integrals are asked for a few points at a time, where numpy's per-call cost would
        dominate); the per-piece totals are computed once per schedule."""
        if getattr(self, "_pieces_cache", None) is None:
            steps, full = self._steps.tolist(), []
            for a, b, c, ell in zip(self._left.tolist(), self._right.tolist(), self._codes.tolist(),
                                    np.diff(self._steps).tolist()):
                full.append(b * ell + (a - b) * ell / 3.0 if c == 2 else 0.5 * (a + b) * ell)
            before = [0.0, *np.cumsum(full).tolist()]
            self._pieces_cache = (steps, self._left.tolist(), self._right.tolist(), self._codes.tolist(), before)
        steps, left, right, codes, before = self._pieces_cache
        i = min(max(bisect.bisect_right(steps, t) - 1, 0), len(codes) - 1)
        ell = steps[i + 1] - steps[i]
        u = min(max((t - steps[i]) / ell, 0.0), 1.0)
        a, b = left[i], right[i]
        if codes[i] == 0:
            part = ell * (a * u + 0.5 * (b - a) * u**2)
        elif codes[i] == 1:
            part = ell * (b * u + (a - b) * 0.5 * (u + math.sin(math.pi * u) / math.pi))
        else:
            part = ell * (b * u + (a - b) * (u - (2.0 / 3.0) * u**1.5))
        return before[i] + part

    def escape_integral(self, start: int = 0, end: int | None = None) -> float:
        """``Σ_{k=start+1}^{end} (eta(k) - eta(k-1))^2`` in raw LR² per step: ``∫ eta'^2 dt`` on the step grid."""
        end = self.total if end is None else int(end)
        g = self.grid()[int(start):end + 1]
        return float(np.sum(np.diff(g) ** 2))

    def continuous_escape_integral(self) -> float:
        """Closed-form ``∫ eta'(t)^2 dt`` over the stage (raw LR² per step); ``inf`` for 1-sqrt pieces and jumps.

        Only used to check the step-grid definition against calculus (opt-laws.md §3 table).
        """
        lengths = np.diff(self._steps)
        d = self._left - self._right
        per_piece = np.where(self._codes == 0, d**2 / lengths,
                             np.where(self._codes == 1, np.pi**2 * d**2 / (8 * lengths),
                                      np.where(d == 0, 0.0, np.inf)))
        jumps = np.any(self._left[1:] != self._right[:-1])
        return float(np.inf) if jumps else float(per_piece.sum())

    # ------------------------------------------------------------------ template phases
    def phases(self) -> Phases:
        """Template phases (cached: a schedule never changes after construction); see :meth:`_phases`."""
        if getattr(self, "_phases_cache", None) is None:
            self._phases_cache = self._phases()
        return self._phases_cache

    def _phases(self) -> Phases:
        """Detect ``t1 <= t2 <= t3 <= total`` on the step grid (rule in opt-laws.md §4, documented in README).

        * ``t1``: first step where the LR reaches ``PEAK_FRACTION`` × peak, followed up the rise to its top
          (end of warmup);
        * ``t3``: end of the last flat segment (|Δeta| <= FLAT_RTOL × peak) that is followed by a decrease;
          ``t1`` if there is none (e.g. linear or cosine decay straight from the peak);
        * ``t2``: start of that flat segment if it lies below the peak (a polygon's plateau), else ``t1``.
        """
        g = self.grid()
        peak = g.max()
        t1 = int(np.argmax(g >= PEAK_FRACTION * peak))
        # the threshold is crossed a few steps early in a long warmup: follow the rise to its top
        while t1 < len(g) - 1 and g[t1 + 1] > g[t1] + FLAT_RTOL * peak:
            t1 += 1
        d = np.diff(g)
        flat = np.abs(d) <= FLAT_RTOL * peak
        t2 = t3 = t1
        # segments of consecutive flat differences: step indices [s, e] with g constant, scanned from the last
        edges = np.diff(np.concatenate([[0], flat.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # ends: one past the last flat d
        for s, e in zip(starts[::-1], ends[::-1]):
            if e < len(g) - 1 and d[e] < -FLAT_RTOL * peak and e >= t1:
                t3 = int(e)
                t2 = int(s) if (g[s] < PEAK_FRACTION * peak and s >= t1) else t1
                break
        warnings = []
        if g[-1] > 1e-3 * peak:
            warnings.append(f"final LR is {g[-1] / peak:.3g} × peak, not 0: outside the theory's template "
                            "(the residual LR is kept in the integrals)")
        tail = np.diff(g[max(t3, int(np.argmax(g))):])  # after the true peak: warmup tails are not rises
        if len(tail) and np.any(tail > FLAT_RTOL * peak):
            warnings.append("LR rises again after the cooldown started: not the paper's template")
        elif len(tail) > 2:
            drops = np.flatnonzero(tail < -FLAT_RTOL * peak)
            if len(drops) and drops[-1] < len(tail) - 1 and g[-1] > 1e-3 * peak:
                warnings.append("cooldown ends on a constant floor: a drop to a floor is outside the template")
        return Phases(t1=t1, t2=int(t2), t3=int(t3), total=self.total, warnings=tuple(warnings))

    # ------------------------------------------------------------------ misc
    def to_spec(self) -> dict:
        """Canonical ``{"knots": ..., "shapes": ...}`` spec (JSON-serialisable) of this schedule."""
        knots = []
        shapes = []
        for i in range(len(self._codes)):
            knots.append([float(self._steps[i]), float(self._left[i])])
            if i > 0 and self._left[i] != self._right[i - 1]:
                knots.insert(len(knots) - 1, [float(self._steps[i]), float(self._right[i - 1])])
                shapes.append("linear")
            shapes.append(SHAPES[self._codes[i]])
        knots.append([float(self._steps[-1]), float(self._right[-1])])
        return {"knots": knots, "shapes": shapes}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return (self.total == other.total and np.array_equal(self._steps, other._steps)
                and np.array_equal(self._left, other._left) and np.array_equal(self._right, other._right)
                and np.array_equal(self._codes, other._codes))

    def __repr__(self) -> str:
        return (f"Schedule(total={self.total} steps, peak_lr={self.peak_lr:.3g}, final_lr={self.final_lr:.3g}, "
                f"pieces={len(self._codes)})")


@lru_cache(maxsize=8192)
def _from_json(text: str) -> Schedule:
    """Parse a JSON spec once: runs tables and candidate lists repeat the same strings across modules."""
    return Schedule._from_mapping(text)


# ---------------------------------------------------------------------- family specs
_FAMILY_KEYS = {
    "linear": {"peak_lr", "warmup", "total", "final_lr"},
    "cosine": {"peak_lr", "warmup", "total", "final_lr"},
    "wsd": {"peak_lr", "warmup", "total", "cooldown", "cooldown_shape", "final_lr"},
    "constant": {"peak_lr", "warmup", "total"},
    "polygon": {"peak_lr", "t1", "t2", "t3", "mid_lr", "total"},
}


def _only_keys(spec: Mapping, allowed: set, form: str) -> None:
    unknown = set(spec) - allowed - {"family"}
    if unknown:
        raise ScheduleError(f"unknown key(s) {sorted(unknown)} for a {form} schedule; allowed: {sorted(allowed)}")


def _number(spec: Mapping, key: str, *, integer: bool = False, default=None) -> float:
    if key not in spec:
        if default is not None:
            return default
        raise ScheduleError(f"'{spec.get('family', 'schedule')}' schedule is missing '{key}'")
    value = spec[key]
    if isinstance(value, bool):
        raise ScheduleError(f"'{key}' must be a number, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ScheduleError(f"'{key}' must be a number, got {spec[key]!r}") from None
    if not np.isfinite(value):
        raise ScheduleError(f"'{key}' must be finite, got {value}")
    if value < 0:
        raise ScheduleError(f"'{key}' must be >= 0, got {value:g}")
    if integer and abs(value - round(value)) > 1e-9:
        raise ScheduleError(f"'{key}' is a number of steps and must be a whole number, got {value:g}")
    return float(round(value)) if integer else float(value)


def _from_family(cls, spec: dict) -> Schedule:
    family = spec["family"]
    if family not in _FAMILY_KEYS:
        raise ScheduleError(f"unknown schedule family {family!r}; use one of {', '.join(FAMILIES)}, "
                            "or give 'knots' / 'steps' + 'lr'")
    _only_keys(spec, _FAMILY_KEYS[family], f"'{family}'")
    peak = _number(spec, "peak_lr")
    if peak <= 0:
        raise ScheduleError(f"'peak_lr' must be > 0, got {peak:g}")
    total = _number(spec, "total", integer=True)
    if total <= 0:
        raise ScheduleError("'total' must be at least 1 step")
    if family == "polygon":
        t1, t2, t3 = (_number(spec, k, integer=True) for k in ("t1", "t2", "t3"))
        mid = _number(spec, "mid_lr")
        if not t1 <= t2 <= t3 <= total:
            raise ScheduleError(f"polygon needs t1 <= t2 <= t3 <= total, got {t1:g}, {t2:g}, {t3:g}, {total:g}")
        if mid > peak:
            raise ScheduleError(f"polygon 'mid_lr' ({mid:g}) must not exceed 'peak_lr' ({peak:g})")
        steps = [0.0, t1, t2, t3, total] if t1 > 0 else [0.0, t2, t3, total]
        lrs = [0.0, peak, mid, mid, 0.0] if t1 > 0 else [peak, mid, mid, 0.0]  # t1 = 0: no warmup
        return _dedupe(cls, steps, lrs, ["linear"] * (len(steps) - 1))
    warmup = _number(spec, "warmup", integer=True)
    if warmup > total:
        raise ScheduleError(f"'warmup' ({warmup:g} steps) is longer than the run ('total' = {total:g} steps); "
                            "shorten the warmup or lengthen the run")
    final = _number(spec, "final_lr", default=0.0) if family != "constant" else peak
    if final > peak:
        raise ScheduleError(f"'final_lr' ({final:g}) must not exceed 'peak_lr' ({peak:g})")
    start = [0.0, warmup] if warmup > 0 else [0.0]
    start_lr = [0.0, peak] if warmup > 0 else [peak]
    start_shapes = ["linear"] if warmup > 0 else []
    if family in ("linear", "cosine"):
        if warmup == total:
            raise ScheduleError(f"'warmup' ({warmup:g}) equals 'total': no steps left for the decay")
        shape = "linear" if family == "linear" else "cosine"
        return cls(start + [total], start_lr + [final], start_shapes + [shape])
    if family == "constant":
        if warmup == total:
            return cls(start, start_lr, start_shapes)
        return cls(start + [total], start_lr + [peak], start_shapes + ["linear"])
    # wsd
    cooldown = _number(spec, "cooldown", integer=True)
    shape = spec.get("cooldown_shape", "linear")
    if shape not in SHAPES:
        raise ScheduleError(f"'cooldown_shape' must be one of {', '.join(SHAPES)}, got {shape!r}")
    if cooldown <= 0:
        raise ScheduleError("'cooldown' must be at least 1 step for a wsd schedule (use family 'constant' for none)")
    if warmup + cooldown > total:
        raise ScheduleError(f"'warmup' + 'cooldown' ({warmup:g} + {cooldown:g} steps) exceed 'total' "
                            f"({total:g}); shorten one of them")
    steps = start + [total - cooldown, total]
    lrs = start_lr + [peak, final]
    shapes = start_shapes + ["linear", shape]
    return _dedupe(cls, steps, lrs, shapes)


def _dedupe(cls, steps, lrs, shapes) -> Schedule:
    """Drop zero-length pieces that come from coinciding transition points (e.g. t2 == t3)."""
    out_s, out_l, out_sh = [steps[0]], [lrs[0]], []
    for s, lr, sh in zip(steps[1:], lrs[1:], shapes):
        if s == out_s[-1]:
            if lr != out_l[-1]:
                raise ScheduleError("coinciding transition points would make the LR jump; give distinct steps")
            continue
        out_s.append(s)
        out_l.append(lr)
        out_sh.append(sh)
    return cls(out_s, out_l, out_sh)


def schedule_family(spec: Mapping[str, Any] | str) -> str:
    """Short family label of a spec for reports: the ``family`` (+ cooldown shape for wsd), else knots/logged."""
    if isinstance(spec, str):
        spec = json.loads(spec)
    if "family" in spec:
        fam = spec["family"]
        if fam == "wsd":
            return f"wsd-{spec.get('cooldown_shape', 'linear')}"
        return fam
    return "knots" if "knots" in spec else "logged"


def scale_spec(spec: Mapping[str, Any] | str, total: int) -> dict:
    """The same schedule shape stretched to ``total`` steps (warmup, cooldown and phase points scale too).

    Works for family specs and knots; a logged LR trace cannot be rescaled (it is one specific run).
    """
    if isinstance(spec, str):
        spec = json.loads(spec)
    spec = dict(spec)
    if total < 1:
        raise ScheduleError(f"cannot rescale a schedule to {total} steps")
    if "family" in spec:
        old = float(spec["total"])
        if "cooldown" in spec:  # scale where the cooldown starts, so warmup + cooldown never exceed the total
            spec["cooldown"] = int(total - int(round((old - float(spec["cooldown"])) * total / old)))
        for key in ("warmup", "t1", "t2", "t3"):
            if key in spec:
                spec[key] = int(round(float(spec[key]) * total / old))
        spec["total"] = int(total)
        return spec
    if "knots" in spec:
        knots = np.asarray(spec["knots"], float)
        knots[:, 0] = np.round(knots[:, 0] * total / knots[-1, 0])
        spec["knots"] = knots.tolist()
        return spec
    raise ScheduleError("a logged LR trace cannot be rescaled to another budget; give a family spec or knots")
