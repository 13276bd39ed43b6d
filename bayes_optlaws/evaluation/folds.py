"""Block-wise cross-validation folds (opt-laws.md §7, the paper's App. A.2 protocol).

The runs of a calibration grid fall into **blocks**, one per ``(model_params, tokens)`` pair (and per ``group``
when several groups are evaluated together: losses of different corpora are not comparable).  The paper's protocol
is k-fold cross-validation *within each block*: every fold holds out some configurations of every block (as far as
a block has configurations to spare), so each fold tests ranking inside every block.

A **configuration** is one ``(model_params, tokens, schedule)`` triple; replicate seeds of one configuration always
land in the same fold (otherwise the other seeds would leak the answer into the training folds).  Schedules are
compared in canonical form (:meth:`Schedule.to_spec`), so two specs of the same schedule are one configuration.

Continual-training stages (rows with a ``parent_run_id``) and rows of other groups (e.g. ``"extrapolation"``) are not
part of the CV blocks; :func:`cv_mask` selects the rows that are (by default: no parent, and ``group`` absent, empty
or ``"main"``).  Fold ids of rows outside the CV set are ``-1``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Iterable

import numpy as np
import pandas as pd

from ..runs import RunsError
from ..schedules import Schedule

#: groups whose rows take part in the cross-validation by default
DEFAULT_CV_GROUPS: tuple[str, ...] = ("main",)


def _is_blank(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or (
        isinstance(value, str) and not value.strip()) or value is pd.NA


def cv_mask(df: pd.DataFrame, groups: Iterable[str] | None = DEFAULT_CV_GROUPS,
            include_continual: bool = False) -> np.ndarray:
    """Boolean mask of the rows that take part in block-wise cross-validation.

    A row is selected when it has no ``parent_run_id`` (unless ``include_continual``) and its ``group`` is absent,
    empty, or one of ``groups``.  ``groups=None`` accepts every group.
    """
    n = len(df)
    mask = np.ones(n, dtype=bool)
    if not include_continual and "parent_run_id" in df.columns:
        mask &= np.array([_is_blank(p) for p in df["parent_run_id"]], dtype=bool)
    if groups is not None and "group" in df.columns:
        allowed = set(groups)
        mask &= np.array([_is_blank(g) or str(g) in allowed for g in df["group"]], dtype=bool)
    return mask


@lru_cache(maxsize=4096)
def _canonical_schedule(spec: str) -> str:
    return json.dumps(Schedule.from_spec(spec).to_spec(), sort_keys=True)


def _group_prefix(df: pd.DataFrame) -> list[str]:
    if "group" not in df.columns:
        return [""] * len(df)
    return ["" if _is_blank(g) else f"{g}|" for g in df["group"]]


def block_keys(df: pd.DataFrame) -> np.ndarray:
    """One label per row naming its ``(model_params, tokens)`` block, e.g. ``"N=124000000,D=5120000000"``.

    When the table has a ``group`` column, a non-empty group prefixes the label (``"slimpajama|N=...,D=..."``):
    losses of different corpora or scenarios are not comparable, so they never share a block.  With a single
    group (e.g. only ``"main"``) this changes nothing but the label."""
    return np.array([f"{g}N={int(n)},D={int(d)}" for g, n, d in zip(_group_prefix(df), df["model_params"],
                                                                    df["tokens"])], dtype=object)


def config_keys(df: pd.DataFrame) -> np.ndarray:
    """One label per row naming its configuration ``(group, model_params, tokens, canonical schedule)``.

    Replicate seeds of one configuration share a label."""
    return np.array([f"{g}N={int(n)},D={int(d)},S={_canonical_schedule(str(s))}"
                     for g, n, d, s in zip(_group_prefix(df), df["model_params"], df["tokens"], df["schedule"])],
                    dtype=object)


def make_folds(df: pd.DataFrame, n_folds: int = 5, seed: int = 0, mask: np.ndarray | None = None,
               groups: Iterable[str] | None = DEFAULT_CV_GROUPS) -> np.ndarray:
    """Fold id (``0 .. n_folds-1``) of every row for k-fold CV within each ``(model_params, tokens)`` block.

    * Rows outside the CV set (``mask`` is False; default :func:`cv_mask` with ``groups``) get ``-1``.
    * Within each block the configurations are shuffled (``seed``) and each is given to the fold that has the fewest
      configurations *of this block and stratum* so far, ties broken by the fewest of this block, then the fewest
      rows overall, then at random; so every fold holds out configurations of every block with at least
      ``n_folds`` configurations, blocks with fewer spread over different folds, and fold sizes stay balanced.
      The strata are configurations with a usable loss (some run did not diverge) and configurations whose runs
      all diverged, so the loss task gets as many held-out configurations per block × fold as possible.
    * All rows of one configuration (replicate seeds) get the same fold.

    Deterministic given ``seed`` and the table (row order does not matter: blocks and configurations are visited in
    sorted order).
    """
    if n_folds < 2:
        raise RunsError(f"the number of folds (--folds) must be at least 2 (each fold is scored by a law fitted "
                        f"on the others), got {n_folds}")
    if mask is None:
        mask = cv_mask(df, groups)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (len(df),):
        raise ValueError(f"mask must have one entry per row ({len(df)}), got shape {mask.shape}")
    folds = np.full(len(df), -1, dtype=int)
    if not mask.any():
        return folds
    rng = np.random.default_rng(seed)
    sub = df[mask]
    idx = np.flatnonzero(mask)
    blocks = block_keys(sub)
    configs = config_keys(sub)
    if "diverged" in sub.columns:
        usable = ~sub["diverged"].astype(bool).to_numpy()
        if "final_loss" in sub.columns:
            usable &= np.isfinite(pd.to_numeric(sub["final_loss"], errors="coerce").to_numpy(float))
    else:
        usable = np.ones(len(sub), dtype=bool)
    rows_per_fold = np.zeros(n_folds, dtype=int)
    for block in sorted(set(blocks)):
        in_block = blocks == block
        cfgs = sorted(set(configs[in_block]))
        # stratum 0: configurations with a usable loss (the loss task), stratum 1: only diverged runs
        stratum = {c: 0 if usable[in_block & (configs == c)].any() else 1 for c in cfgs}
        per_block = np.zeros(n_folds, dtype=int)
        for level in (0, 1):
            group = [c for c in cfgs if stratum[c] == level]
            per_stratum = np.zeros(n_folds, dtype=int)
            for j in rng.permutation(len(group)):
                rows = np.flatnonzero(in_block & (configs == group[j]))
                tie = rng.random(n_folds)
                f = int(np.lexsort((tie, rows_per_fold, per_block, per_stratum))[0])
                folds[idx[rows]] = f
                per_stratum[f] += 1
                per_block[f] += 1
                rows_per_fold[f] += len(rows)
    return folds


def fold_summary(df: pd.DataFrame, folds: np.ndarray) -> dict:
    """JSON-ready description of a fold assignment: sizes, blocks per fold, and the ``run_id -> fold`` map."""
    folds = np.asarray(folds)
    used = folds >= 0
    n_folds = int(folds.max()) + 1 if used.any() else 0
    blocks = block_keys(df)
    configs = config_keys(df)
    out = {
        "n_folds": n_folds,
        "rows_per_fold": [int(np.sum(folds == f)) for f in range(n_folds)],
        "configs_per_fold": [int(len(set(configs[folds == f]))) for f in range(n_folds)],
        "blocks_per_fold": [int(len(set(blocks[folds == f]))) for f in range(n_folds)],
        "n_blocks": int(len(set(blocks[used]))),
        "assignment": {str(r): int(f) for r, f in zip(df["run_id"], folds) if f >= 0},
    }
    return out
