"""Hyper-parameters besides the schedule: optional covariates and a hierarchical group (e.g. the optimizer).

The paper's law has the 15 schedule features only.  People also sweep the batch size (tokens per step), weight
decay, β2, ... and compare optimizers.  A fitted law may add

* **covariates** (``model_config["covariates"]``, a list of names), appended to the design matrix after the 15
  features, standardised with them and given the same slope prior:

  - ``"log_tokens_per_step"``: ln(tokens per step) — the batch size;
  - ``"x_NAME"``: a numeric column of the runs table as it is (e.g. ``"x_beta2"``);
  - ``"log:x_NAME"``: the natural log of a positive numeric column (e.g. ``"log:x_weight_decay"``);

* a **group column** (``model_config["group_column"]``, e.g. ``"x_optimizer"``; default ``"auto"``: the optimizer
  when the runs compare several): a level offset per value of that column with partial pooling (``Normal(0, sigma_level)``, ``sigma_level ~ HalfNormal``); a value not seen in
  training gets a fresh draw from the population, so its intervals are wider.

The default, ``"auto"``, uses ``log_tokens_per_step`` when the training runs have more than one tokens per step
and nothing else (measured on LossCast StepLaw, fit 72M–242M, score 372M: final-loss MAE 0.0316 → 0.0269 and
in-block regret 0.018 → 0.012 nats; the embedded grid has one batch size, so there it adds nothing).  ``[]`` is
the paper's 15-feature law unchanged.  A fitted law stores the resolved list.

Candidates must then carry the same columns; a missing or non-numeric value is a clear error naming the
candidate and the column.  Which terms a fitted law uses is recorded in its ``model_config``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .runs import RunsError

DERIVED = {"log_tokens_per_step": ("tokens_per_step", True)}


def _source(name: str) -> tuple[str, bool]:
    """(column, take the log) of a covariate name."""
    if name in DERIVED:
        return DERIVED[name]
    if name.startswith("log:x_"):
        return name[4:], True
    if name.startswith("x_"):
        return name, False
    raise RunsError(f"unknown covariate {name!r}: use 'log_tokens_per_step', an 'x_' column of the runs table "
                    "(e.g. 'x_beta2') or 'log:' + an 'x_' column (e.g. 'log:x_weight_decay')")


def resolve(covariates, runs: pd.DataFrame) -> list[str]:
    """The covariate list a law is fitted with: ``"auto"`` (or ``None``) -> ``["log_tokens_per_step"]`` when
    ``runs`` has more than one tokens per step, else ``[]``; a list is checked and returned as it is."""
    if covariates is None or covariates == "auto":
        return ["log_tokens_per_step"] if runs["tokens_per_step"].nunique() > 1 else []
    names = list(covariates)
    for name in names:
        _source(name)
    return names


def resolve_group_column(column, runs: pd.DataFrame) -> str | None:
    """The group column a law is fitted with: ``"auto"`` -> ``"x_optimizer"`` when the training runs have at least
    two optimizers (measured on LossCast Marin, fit 130M, score 300M: final-loss MAE 0.077 -> 0.059 nats, bias
    +0.067 -> +0.040), else none; a column name is returned as it is, ``None`` means none."""
    if column == "auto":
        has = "x_optimizer" in runs.columns and runs["x_optimizer"].dropna().astype(str).nunique() >= 2
        return "x_optimizer" if has else None
    return column or None


def covariate_matrix(table: pd.DataFrame, names, where: str = "runs") -> np.ndarray:
    """The covariates of every row (rows × len(names)); RunsError naming the row and column when one is missing,
    not a number, or not positive where its log is taken."""
    names = list(names or [])
    out = np.empty((len(table), len(names)))
    key = "name" if "name" in table.columns else "run_id"
    for j, name in enumerate(names):
        col, log = _source(name)
        if col not in table.columns:
            raise RunsError(f"{where}: the law uses covariate {name!r} but the table has no column {col!r}; add it "
                            "(one value per row)")
        values = pd.to_numeric(table[col], errors="coerce").to_numpy(float)
        bad = ~np.isfinite(values) | ((values <= 0) if log else False)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = "a positive number" if log else "a number"
            raise RunsError(f"{where}: row {table[key].iloc[i]!r}: column {col!r} is {table[col].iloc[i]!r}, "
                            f"not {what} (covariate {name!r}); give every row {what}")
        out[:, j] = np.log(values) if log else values
    return out


def group_index(table: pd.DataFrame, column: str | None, levels: list[str] | None = None,
                where: str = "runs") -> tuple[np.ndarray, list[str]]:
    """Index of each row's value of ``column`` in ``levels`` (``-1`` for a value not in them; ``levels`` default:
    the sorted values of this table) and the levels; all zeros and ``[]`` without a group column."""
    if not column:
        return np.zeros(len(table), dtype=int), []
    if column not in table.columns:
        raise RunsError(f"{where}: the law pools over {column!r} but the table has no such column; add it")
    values = table[column].astype(object)
    if values.isna().any():
        key = "name" if "name" in table.columns else "run_id"
        i = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise RunsError(f"{where}: row {table[key].iloc[i]!r} has no {column!r}; give every row a value")
    values = values.astype(str)
    levels = sorted(values.unique()) if levels is None else list(levels)
    lookup = {v: i for i, v in enumerate(levels)}
    return np.array([lookup.get(v, -1) for v in values], dtype=int), levels
