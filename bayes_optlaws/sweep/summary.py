"""`data summary`: per block, configurations, divergent runs, seed noise, within-block spread and families."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ..schedules import schedule_family


def _config_key(df: pd.DataFrame) -> pd.Series:
    """A configuration = everything but the seed: the schedule (which holds peak, warmup, family) + parent."""
    parent = df["parent_run_id"].fillna("") if "parent_run_id" in df.columns else ""
    return df["schedule"].map(lambda s: json.dumps(json.loads(s), sort_keys=True)) + "|" + parent


def block_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per block (group, x_block if present, model_params, tokens)."""
    df = df.copy()
    if "group" not in df.columns:
        df["group"] = ""
    df["group"] = df["group"].fillna("")
    keys = ["group"] + (["x_block"] if "x_block" in df.columns else []) + ["model_params", "tokens"]
    df["_cfg"] = _config_key(df)
    df["_fam"] = df["schedule"].map(schedule_family)
    rows = []
    for key, sub in df.groupby(keys, sort=False, dropna=False):
        key = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        ok = sub[~sub["diverged"].astype(bool)]
        # seed noise: pooled std over configurations that have >= 2 non-diverged seeds
        variances, ns = [], []
        for _, c in ok.groupby("_cfg"):
            if len(c) >= 2:
                variances.append(float(np.var(c["final_loss"], ddof=1)))
                ns.append(len(c))
        seed_sd = float(np.sqrt(np.average(variances, weights=np.array(ns) - 1))) if variances else float("nan")
        spread_sd = float(np.std(ok.groupby("_cfg")["final_loss"].mean(), ddof=1)) if len(ok) > 1 else float("nan")
        rows.append({
            **key,
            "runs": len(sub),
            "configs": sub["_cfg"].nunique(),
            "diverged": int(sub["diverged"].astype(bool).sum()),
            "seeded_configs": len(variances),
            "seed_sd": seed_sd,
            "spread_sd": spread_sd,
            "loss_min": float(ok["final_loss"].min()) if len(ok) else float("nan"),
            "loss_max": float(ok["final_loss"].max()) if len(ok) else float("nan"),
            "families": ",".join(sorted(set(sub["_fam"]))),
        })
    return pd.DataFrame(rows)


def format_summary(df: pd.DataFrame) -> str:
    tab = block_table(df)
    lines = [f"{len(df)} runs, {int(df['diverged'].astype(bool).sum())} diverged, {len(tab)} blocks",
             "seed_sd = pooled std of final loss over seeds of one configuration (non-diverged); "
             "spread_sd = std over the block's configuration means (non-diverged)", ""]
    show = tab.copy()
    for c in ("seed_sd", "spread_sd", "loss_min", "loss_max"):
        show[c] = show[c].map(lambda v: "-" if not np.isfinite(v) else f"{v:.4f}")
    lines.append(show.to_string(index=False))
    return "\n".join(lines)
