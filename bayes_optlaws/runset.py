"""A run set: a validated runs table or candidate list together with its parsed schedules.

Runs and candidates are checked once, where they enter (the Python API, the CLI, ``BayesOptLaw.fit`` and
``predict_draws``), into a :class:`RunSet`.  The modules downstream (features, the divergence model, the
extrapolation check, the loss-surface maps, the optimizer) read its parsed :class:`~bayes_optlaws.schedules.Schedule`
objects, peak LRs, phases and segment integrals instead of parsing the ``schedule`` JSON again.

Every row has a ``run_id``: a candidate's ``name`` becomes its ``run_id`` here, once (``names`` gives them back), so
code downstream never renames the key column.

    runs = RunSet.of_runs(df)                                    # RunsError naming row and field when bad
    cands = RunSet.of_candidates(cand_df).with_target(model_params=793_344, tokens_per_step=4096)
    cands.integrals(lr_ref=0.512, history=runs)                  # computed once per (lr_ref, history) and kept
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .runs import (CANDIDATE_OPTIONAL, CANDIDATE_REQUIRED, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, RunsError,
                   checked_candidates, checked_count, checked_runs, parse_schedules)
from .schedules import Schedule


@dataclass(frozen=True, eq=False)
class RunSet:
    """``table``: the validated rows (index 0..n-1, key column ``run_id``); ``schedules``: the parsed schedule of
    each row, in the same order.  Build one with :meth:`of_runs` or :meth:`of_candidates`; never mutate
    ``table`` (derive a new set with :meth:`rows` or :meth:`assign`)."""

    table: pd.DataFrame
    schedules: tuple[Schedule, ...]
    _integrals: dict = field(default_factory=dict, repr=False, compare=False)  # (lr_ref, escape, history): table
    _positions: dict = field(default_factory=dict, repr=False, compare=False)  # run_id -> row, filled when asked

    # ------------------------------------------------------------------ construction (the boundary)
    @classmethod
    def of_runs(cls, runs: "pd.DataFrame | RunSet", where: str = "runs table") -> "RunSet":
        """A runs table validated (:func:`~bayes_optlaws.runs.validate_runs`), or a run set as it is."""
        if isinstance(runs, RunSet):
            return runs
        table, schedules = checked_runs(runs, where)
        return cls(table, tuple(schedules))

    @classmethod
    def of_candidates(cls, candidates: "pd.DataFrame | RunSet", where: str = "candidates") -> "RunSet":
        """Candidates (``name`` or ``run_id``, ``schedule``, optional target columns; ``x_`` columns kept, the
        other columns of a runs table left out) validated once, or a run set as it is."""
        if isinstance(candidates, RunSet):
            return candidates
        table, schedules = _checked_candidate_table(candidates, where)
        return cls(table.reset_index(drop=True), tuple(schedules))

    def with_target(self, model_params=None, tokens_per_step=None, parent_run_id: str | None = None,
                    where: str = "candidates") -> "RunSet":
        """The candidates at a target: ``model_params`` / ``tokens_per_step`` (arguments override columns; one or
        the other must give a value for every row), ``parent_run_id`` when given, and ``tokens`` = the
        schedule's length × tokens per step.  Not validated again."""
        table = self.table.copy()
        for col, value, flag in (("model_params", model_params, "--params"),
                                 ("tokens_per_step", tokens_per_step, "--tokens-per-step")):
            if value is not None:
                table[col] = checked_count(value, f"{col} ({flag})")
            if col not in table.columns or table[col].isna().any():
                raise RunsError(f"{where}: no '{col}' for some candidates; give it as a column or argument "
                                f"(--params / --tokens-per-step)")
            table[col] = table[col].astype("int64")
        if parent_run_id is not None:
            table["parent_run_id"] = parent_run_id
        table["tokens"] = [s.total * int(t) for s, t in zip(self.schedules, table["tokens_per_step"])]
        return RunSet(table, self.schedules)

    @classmethod
    def of_table(cls, table: "pd.DataFrame | RunSet", where: str = "runs table",
                 required: tuple[str, ...] = ("run_id", "schedule", "tokens_per_step")) -> "RunSet":
        """A table's parsed schedules and nothing else checked but the ``required`` columns: for a lookup of
        earlier stages (a history chain need not be a full runs table) and for tables already validated by
        someone else.  The table's index is kept; prefer :meth:`of_runs` / :meth:`of_candidates` at a boundary."""
        if isinstance(table, RunSet):
            return table
        missing = [c for c in required if c not in table.columns]
        if missing:
            raise RunsError(f"{where}: missing column(s) {', '.join(missing)}")
        return cls(table, tuple(parse_schedules(table, where)))

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.table)

    @property
    def names(self) -> list[str]:
        """The rows' keys (``run_id``; a candidate's ``name``)."""
        return self.table["run_id"].astype(str).tolist()

    @property
    def peak_lr(self) -> np.ndarray:
        """Peak learning rate of each row's schedule (raw units)."""
        return np.array([s.peak_lr for s in self.schedules], dtype=float)

    @property
    def warmup_fraction(self) -> np.ndarray:
        """Warmup length (steps to the peak, ``t1``) over the schedule's length, per row."""
        return np.array([s.phases().t1 / s.total for s in self.schedules], dtype=float)

    def rows(self, which) -> "RunSet":
        """The rows selected by a boolean mask or integer positions, as a run set (index 0..k-1); segment
        integrals already computed for rows trained from scratch come along."""
        positions = np.flatnonzero(np.asarray(which)) if np.asarray(which).dtype == bool else np.asarray(which, int)
        sub = RunSet(self.table.iloc[positions].reset_index(drop=True),
                     tuple(self.schedules[i] for i in positions))
        for key, integrals in self._integrals.items():
            if key[2] is None:  # no separate history table: the rows' own integrals
                sub._integrals[key] = integrals.iloc[positions].reset_index(drop=True)
        return sub

    def assign(self, **columns) -> "RunSet":
        """The same schedules with columns replaced or added (e.g. ``model_params`` for another size); their
        integrals are computed anew when asked for."""
        if "schedule" in columns:
            raise ValueError("RunSet.assign cannot replace schedules; build a new run set from the table")
        return RunSet(self.table.assign(**columns), self.schedules)

    # ------------------------------------------------------------------ derived quantities
    def integrals(self, lr_ref: float, history_escape: str = "none", history: "RunSet | None" = None
                  ) -> pd.DataFrame:
        """Segment integrals of every row (:func:`~bayes_optlaws.features.integrals_table`), kept for the next
        call with the same arguments; a row with a ``parent_run_id`` takes its earlier stages from ``history``
        (default: this set)."""
        from .features import integrals_table

        key = (float(lr_ref), history_escape, None if history is None or history is self else history)
        if key not in self._integrals:
            self._integrals[key] = integrals_table(self, lr_ref, history_escape, history)
        return self._integrals[key]

    def schedule_of(self, run_id: str) -> Schedule:
        """The parsed schedule of the row ``run_id`` (RunsError naming it when absent)."""
        return self.schedules[self.position(run_id)]

    def position(self, run_id: str) -> int:
        """The row number of ``run_id`` (RunsError naming it when absent)."""
        if not self._positions:
            self._positions.update((rid, i) for i, rid in enumerate(self.names))
        if str(run_id) not in self._positions:
            raise RunsError(f"run_id {run_id!r} is not in the runs table")
        return self._positions[str(run_id)]


def _checked_candidate_table(candidates: pd.DataFrame, where: str) -> tuple[pd.DataFrame, list[Schedule]]:
    """A candidate table validated, its ``name`` as ``run_id``, its ``x_`` columns kept (covariates and the
    group column of a law), other columns of a runs table (``final_loss``, ``diverged``, ...) left out."""
    cand = candidates
    if "name" not in cand.columns and "run_id" in cand.columns:
        cand = cand.rename(columns={"run_id": "name"})
    base = ("name", "schedule", "model_params", "tokens", "tokens_per_step", "parent_run_id", "scenario")
    table, schedules = checked_candidates(cand[[c for c in cand.columns if c in base]], where)  # missing first
    runs_only = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)  # a runs table passed as candidates: its own columns
    unknown = [str(c) for c in cand.columns if c not in base and c not in runs_only and not str(c).startswith("x_")]
    if unknown:
        raise RunsError(f"{where}: unknown column(s) {', '.join(repr(c) for c in unknown)}; a candidate list has "
                        f"{', '.join(CANDIDATE_REQUIRED)}, optionally {', '.join(CANDIDATE_OPTIONAL)} and x_* "
                        "columns (check the spelling)")
    for col in (c for c in cand.columns if str(c).startswith("x_")):
        table[col] = cand[col].to_numpy()
    return table.drop(columns=["tokens"], errors="ignore").rename(columns={"name": "run_id"}), schedules

