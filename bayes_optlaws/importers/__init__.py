"""Importers: real training logs -> validated runs tables (runs-format.md) plus metadata.

Four formats are supported, each in its own module:

* ``"lr-scheduling"`` (:mod:`.lr_scheduling`): the W&B JSON logs of Schaipp, Hägele et al. 2025 (and Hägele et al.
  2024); logged LR, resumed cooldown runs stitched onto their parent's history;
* ``"multipower"`` (:mod:`.multipower`): the ``step,lr,loss`` curves of Luo et al. 2025 (multi-power law);
* ``"csv"`` (:mod:`.csv_log`): a generic per-step CSV (``step, lr, loss``, optional ``val_loss``) per run;
* ``"losscast"`` (:mod:`.losscast`): LossCast-Bench run directories (``config.json`` + ``losses.json``).

Entry point: :func:`import_runs` returns ``(runs_table, metadata)``; the table is already checked by
:func:`bayes_optlaws.runs.validate_runs`.  Every problem with the input is a :class:`bayes_optlaws.runs.RunsError`
naming the file, the field and the fix.

Logged LR traces become ``{"steps": [...], "lr": [...], "total": T}`` schedules.  :func:`compact_trace` drops the
interior points that lie on the straight line through their neighbours (within ``1e-12`` × peak), so a
piecewise-linear trace keeps only its corners; because :meth:`Schedule.from_logged` interpolates linearly between
logged points, the compacted trace gives the same schedule (and the same features) as the full one.
"""

from __future__ import annotations

import inspect
import json
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..jsonsafe import json_safe
from ..runs import RunsError, validate_runs

IMPORTER_VERSION = "1.0"
FORMATS = ("lr-scheduling", "multipower", "csv", "losscast")
#: relative tolerance (× peak LR) under which an interior logged point counts as lying on the line of its neighbours
COMPACT_RTOL = 1e-12

__all__ = ["FORMATS", "IMPORTER_VERSION", "import_runs", "compact_trace", "trace_spec", "sharpen_drops",
           "extend_to_total"]


# ---------------------------------------------------------------------------- shared trace helpers
def compact_trace(steps: Sequence[float], lrs: Sequence[float], rtol: float = COMPACT_RTOL
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Drop interior points of a piecewise-linear trace that lie on the line between the kept neighbours.

    Greedy and exact: a segment from the last kept point is extended while **every** point it skips lies within
    ``rtol × max|lr|`` of the segment, so dropped points never drift from the final line.  First and last points
    are always kept; steps must be strictly increasing.
    """
    s = np.asarray(steps, dtype=float)
    y = np.asarray(lrs, dtype=float)
    n = len(s)
    if n <= 2:
        return s.copy(), y.copy()
    tol = rtol * max(float(np.max(np.abs(y))), np.finfo(float).tiny)
    keep = [0]
    a = 0
    while a < n - 1:
        b = a + 1
        while b + 1 < n:
            cand = b + 1
            idx = np.arange(a + 1, cand)
            line = y[a] + (y[cand] - y[a]) * (s[idx] - s[a]) / (s[cand] - s[a])
            if np.all(np.abs(y[idx] - line) <= tol):
                b = cand
            else:
                break
        keep.append(b)
        a = b
    k = np.asarray(keep)
    return s[k], y[k]


def trace_spec(steps: Sequence[float], lrs: Sequence[float], total: int, *, compact: bool = True) -> str:
    """The runs-table ``schedule`` JSON of a logged trace: ``{"steps": [...], "lr": [...], "total": T}``.

    Steps are written as integers, LRs with Python's shortest round-trip repr (lossless)."""
    s = np.asarray(steps, dtype=float)
    y = np.asarray(lrs, dtype=float)
    if compact:
        s, y = compact_trace(s, y)
    if np.any(np.abs(s - np.round(s)) > 1e-9):
        raise ValueError("trace steps must be whole optimizer steps")
    spec = {"steps": [int(round(v)) for v in s], "lr": [float(v) for v in y], "total": int(total)}
    return json.dumps(spec, separators=(",", ":"))


def sharpen_drops(steps: np.ndarray, lrs: np.ndarray, rtol: float = 1e-9) -> tuple[np.ndarray, np.ndarray, int]:
    """Turn logged step drops back into one-step drops.

    Where the LR is flat over the two logged points before a change and flat over the two logged points after it,
    the change is taken as abrupt: a knot ``(s_new - 1, old_lr)`` is inserted before the first logged step
    ``s_new`` showing the new value.  Without this, linear interpolation between logged points turns a one-step
    drop into a ramp as long as the logging interval, and the step-grid escape integral would depend on the
    logging interval (opt-laws.md §3).  Returns the new arrays and the number of drops sharpened.
    """
    s = np.asarray(steps, dtype=float)
    y = np.asarray(lrs, dtype=float)
    tol = rtol * max(float(np.max(np.abs(y))) if len(y) else 0.0, np.finfo(float).tiny)
    out_s, out_y = [], []
    count = 0
    for i in range(len(s)):
        if 2 <= i <= len(s) - 2:
            flat_before = abs(y[i - 1] - y[i - 2]) <= tol
            flat_after = abs(y[i + 1] - y[i]) <= tol
            changed = abs(y[i] - y[i - 1]) > tol
            if flat_before and flat_after and changed and s[i] - s[i - 1] > 1:
                out_s.append(s[i] - 1)
                out_y.append(y[i - 1])
                count += 1
        out_s.append(s[i])
        out_y.append(y[i])
    return np.asarray(out_s), np.asarray(out_y), count


def extend_to_total(steps: np.ndarray, lrs: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Extend a trace whose last logged step is before ``total``: continue the last logged interval's straight
    line to ``total`` (a flat end stays flat; a linear cooldown logged every k steps reaches its end value),
    clipped to ``[0, max logged LR]``."""
    s = np.asarray(steps, dtype=float)
    y = np.asarray(lrs, dtype=float)
    if s[-1] >= total:
        return s, y
    if len(s) >= 2 and s[-1] > s[-2]:
        slope = (y[-1] - y[-2]) / (s[-1] - s[-2])
        end = y[-1] + slope * (total - s[-1])
    else:
        end = y[-1]
    end = float(min(max(end, 0.0), float(np.max(y))))
    return np.append(s, float(total)), np.append(y, end)


# ---------------------------------------------------------------------------- entry point
def _importer(fmt: str) -> Callable[..., tuple[pd.DataFrame, dict]]:
    if fmt == "lr-scheduling":
        from .lr_scheduling import import_lr_scheduling
        return import_lr_scheduling
    if fmt == "multipower":
        from .multipower import import_multipower
        return import_multipower
    if fmt == "csv":
        from .csv_log import import_csv_logs
        return import_csv_logs
    if fmt == "losscast":
        from .losscast import import_losscast
        return import_losscast
    raise RunsError(f"unknown import format {fmt!r}; use one of {', '.join(FORMATS)}")


def import_runs(fmt: str, paths: Sequence[str] | str, **options) -> tuple[pd.DataFrame, dict]:
    """Import training logs as a validated runs table and its metadata.

    ``fmt``: ``"lr-scheduling"``, ``"multipower"``, ``"csv"`` or ``"losscast"``; ``paths``: files or folders (folders are searched
    for the format's files).  ``options`` are passed to the format's importer (e.g. ``tokens_per_step=`` for
    ``multipower`` and ``csv``, ``model_params=`` / ``side_table=`` for ``csv``); an option the format does not take
    is a :class:`RunsError`.  Metadata keys: ``format, importer, importer_version, source, licence,
    parameter_rule, loss_kind, divergence_rule, tokens_per_step_rule, schedule_rule, n_runs, warnings`` and
    format-specific extras.
    """
    func = _importer(fmt)
    if isinstance(paths, (str, bytes)) or not isinstance(paths, Sequence):
        paths = [paths]  # type: ignore[list-item]
    paths = [str(p) for p in paths]
    if not paths:
        raise RunsError(f"import {fmt}: no input paths given; pass one or more files or folders")
    allowed = [p for p in inspect.signature(func).parameters if p != "paths"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise RunsError(f"import {fmt}: option(s) {', '.join(unknown)} not used by this format; "
                        f"allowed: {', '.join(allowed) or 'none'}")
    df, meta = func(paths, **options)
    where = f"import {fmt} ({len(df)} runs)"
    table = validate_runs(df, where=where)
    meta = dict(meta)
    meta.setdefault("format", fmt)
    meta.setdefault("importer_version", IMPORTER_VERSION)
    meta["n_runs"] = int(len(table))
    meta["n_diverged"] = int(table["diverged"].sum())
    return table, json_safe(meta)  # the package's one JSON sanitiser
