"""Importer for generic per-step training logs: one CSV per run with columns ``step, lr, loss`` (optional
``val_loss``), plus the run's ``model_params`` and ``tokens_per_step`` given as arguments or in a side table.

* ``schedule``: the logged LR (rows sorted by step; a step logged twice keeps its last row, and must repeat the
  same LR) as ``{"steps", "lr", "total"}``; linear interpolation between logged points; a log that starts after
  step 0 has its first LR held back to step 0 (log from step 0 to avoid this); ``total`` = last logged step.
  ``sharp_drops=True`` turns an LR change between two flat stretches into a one-step drop.
* ``final_loss``: ``final_loss="auto"`` (default) uses the last finite ``val_loss`` when the column is there, else
  the last training ``loss``; ``"val"`` / ``"train"`` force one; ``final_window`` averages the last k points.
* ``diverged``: a non-finite final loss, a non-finite training loss anywhere in the log, or (when
  ``diverge_above`` is given) a final loss above that value.
* Side table (``side_table=PATH``, CSV): one row per run, keyed by ``file`` (file name, stem or path) or
  ``run_id`` (= file stem), with ``model_params`` and ``tokens_per_step`` and optionally ``group``, ``seed``,
  ``diverged`` and ``x_*`` columns, which are copied to the runs table.  Arguments give defaults for every file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..runs import RunsError
from . import IMPORTER_VERSION, sharpen_drops, trace_spec

FINAL_LOSS_CHOICES = ("auto", "val", "train")


def read_step_csv(path: str | Path, required: Sequence[str] = ("step", "lr", "loss"),
                  optional: Sequence[str] = ("val_loss",)) -> pd.DataFrame:
    """Read a per-step log: check columns, numbers and steps; sort by step; one row per step.

    ``step`` must be whole and >= 0, ``lr`` finite and >= 0; losses may be NaN/inf (a diverged run) and
    ``val_loss`` may be empty on rows without evaluation.  Errors name the file, line and column.
    """
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise RunsError(f"{where}: no such file")
    if path.is_dir():
        raise RunsError(f"{where}: is a folder, expected a CSV log")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise RunsError(f"{where}: empty file; expected a header '{','.join(required)}' and one row per step"
                        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise RunsError(f"{where}: cannot be read as CSV ({exc})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise RunsError(f"{where}: missing column(s) {', '.join(missing)} (found {', '.join(raw.columns) or 'none'});"
                        f" a log needs columns {', '.join(required)}"
                        + (f" and optionally {', '.join(optional)}" if optional else ""))
    if len(raw) == 0:
        raise RunsError(f"{where}: no rows; a log needs at least two logged steps")
    out = pd.DataFrame(index=raw.index)
    for col in list(required) + [c for c in optional if c in raw.columns]:
        text = raw[col].astype(str).str.strip()
        values = pd.to_numeric(text.replace({"": "nan"}), errors="coerce")
        bad = values.isna() & ~text.str.lower().isin(["nan", "", "inf", "-inf", "+inf", "infinity", "-infinity"])
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise RunsError(f"{where}: line {i + 2}, column '{col}': {raw[col].iloc[i]!r} is not a number; "
                            "write plain numbers (e.g. 0.0003)")
        out[col] = values.astype(float)
    step, lr = out["step"].to_numpy(), out["lr"].to_numpy()
    for i in range(len(out)):
        if not math.isfinite(step[i]) or step[i] < 0 or abs(step[i] - round(step[i])) > 1e-9:
            raise RunsError(f"{where}: line {i + 2}, column 'step': {raw['step'].iloc[i]!r} must be a whole "
                            "number of optimizer steps >= 0")
        if not math.isfinite(lr[i]) or lr[i] < 0:
            raise RunsError(f"{where}: line {i + 2}, column 'lr': {raw['lr'].iloc[i]!r} must be a finite "
                            "learning rate >= 0")
    out = out.sort_values("step", kind="stable")
    dup = out["step"].duplicated(keep="last")
    if dup.any():
        for s, grp in out.groupby("step"):
            if len(grp) > 1 and grp["lr"].nunique() > 1:
                raise RunsError(f"{where}: step {int(s)} is logged more than once with different LRs "
                                f"({', '.join(f'{v:g}' for v in grp['lr'])}); keep one row per step")
        out = out[~dup]
    if len(out) < 2:
        raise RunsError(f"{where}: needs at least two distinct logged steps (found {len(out)})")
    if out["lr"].max() <= 0:
        raise RunsError(f"{where}: column 'lr' is 0 everywhere; the log needs the learning rate used")
    return out.reset_index(drop=True)


def _read_side_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise RunsError(f"{path}: side table not found; give a CSV with file (or run_id), model_params, "
                        "tokens_per_step")
    try:
        side = pd.read_csv(path, dtype={"file": str, "run_id": str, "group": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise RunsError(f"{path}: side table cannot be read as CSV ({exc})") from None
    if "file" not in side.columns and "run_id" not in side.columns:
        raise RunsError(f"{path}: side table needs a 'file' or 'run_id' column naming each log "
                        f"(found {', '.join(side.columns)})")
    allowed = {"file", "run_id", "model_params", "tokens_per_step", "group", "seed", "diverged"}
    unknown = [c for c in side.columns if c not in allowed and not str(c).startswith("x_")]
    if unknown:
        raise RunsError(f"{path}: side table has unknown column(s) {', '.join(unknown)}; allowed: "
                        f"{', '.join(sorted(allowed))} and x_* columns")
    return side


def _side_row(side: pd.DataFrame | None, path: Path, where: str) -> dict:
    if side is None:
        return {}
    keys = {path.name, path.stem, str(path)}
    hits = pd.Series(False, index=side.index)
    if "file" in side.columns:
        names = side["file"].astype(str).str.strip()
        hits |= names.map(lambda s: s in keys or (Path(s).exists() and Path(s).resolve() == path.resolve()))
    if "run_id" in side.columns:
        hits |= side["run_id"].astype(str).str.strip() == path.stem
    rows = side[hits]
    if len(rows) > 1:
        raise RunsError(f"{where}: the side table has {len(rows)} rows for this log; keep one")
    return {} if rows.empty else {k: v for k, v in rows.iloc[0].items() if not (isinstance(v, float) and
                                                                                  math.isnan(v))}


#: a final loss measured more than this share of the run before its last logged step is warned about as stale
STALE_LOSS_SHARE = 0.05


def _stale_loss_warnings(rows: list[dict]) -> list[str]:
    """One warning per row that trained (not diverged) whose final loss was measured well before the run's last
    logged step (the last evaluation of a ``val_loss`` column logged only now and then, or a run whose evaluations
    stopped): its ``final_loss`` is then not the loss at the end of the schedule it is paired with."""
    out = []
    for r in rows:
        if r["diverged"]:
            continue  # its final loss is not used as one
        total = r["tokens"] // r["tokens_per_step"]
        gap = total - r["x_final_loss_step"]
        if gap > STALE_LOSS_SHARE * total:
            out.append(f"{r['run_id']}: final_loss is the {r['x_loss_kind']} loss at step {r['x_final_loss_step']}, "
                       f"{gap} steps ({gap / total:.0%}) before the log's last step {total}; the schedule runs to "
                       f"{total}. Log an evaluation at the last step, or import with final_loss='train' "
                       f"(CLI: --final-loss train)")
    return out


def _positive_int(value: Any, what: str, where: str) -> int:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise RunsError(f"{where}: {what} must be a positive whole number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0 or abs(v - round(v)) > 1e-6 * max(1.0, abs(v)):
        raise RunsError(f"{where}: {what} must be a positive whole number, got {value!r}")
    return int(round(v))


def import_csv_logs(paths: list[str], *, model_params: int | None = None, tokens_per_step: int | None = None,
                    side_table: str | None = None, final_loss: str = "auto", final_window: int = 1,
                    diverge_above: float | None = None, group: str | None = None, sharp_drops: bool = False,
                    compact: bool = True) -> tuple[pd.DataFrame, dict]:
    """Import generic per-step CSV logs (files, or folders searched for ``*.csv``), one row per file.

    ``model_params`` / ``tokens_per_step``: for every file, unless the ``side_table`` gives them per file.
    ``final_loss``: ``"auto"`` | ``"val"`` | ``"train"``.  ``final_window``: average of the last k finite points.
    ``diverge_above``: a final loss above this counts as diverged.  ``group``: label for every row (side table
    wins).  ``sharp_drops``: restore one-step LR drops between flat stretches.
    """
    if final_loss not in FINAL_LOSS_CHOICES:
        raise RunsError(f"csv: final_loss must be one of {', '.join(FINAL_LOSS_CHOICES)}, got {final_loss!r}")
    if not (isinstance(final_window, int) and final_window >= 1):
        raise RunsError(f"csv: final_window must be a whole number >= 1, got {final_window!r}")
    side = _read_side_table(side_table) if side_table else None
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise RunsError(f"{p}: no such file or folder")
        if p.is_dir():
            found = sorted(f for f in p.rglob("*.csv") if side_table is None or f.resolve() !=
                           Path(side_table).resolve())
            if not found:
                raise RunsError(f"{p}: no CSV logs found in this folder")
            files.extend(found)
        else:
            files.append(p)
    rows: list[dict[str, Any]] = []
    loss_kinds: set[str] = set()
    for path in files:
        where = str(path)
        extra = _side_row(side, path, where)
        mp = extra.get("model_params", model_params)
        tps = extra.get("tokens_per_step", tokens_per_step)
        if mp is None:
            raise RunsError(f"{where}: model_params unknown; pass model_params= (CLI: --model-params N) or give it "
                            "in the side table")
        if tps is None:
            raise RunsError(f"{where}: tokens_per_step unknown; pass tokens_per_step= (CLI: --tokens-per-step N, "
                            "sequence length × global batch) or give it in the side table")
        mp = _positive_int(mp, "model_params", where)
        tps = _positive_int(tps, "tokens_per_step", where)
        log = read_step_csv(path)
        steps, lrs = log["step"].to_numpy(float), log["lr"].to_numpy(float)
        if sharp_drops:
            steps, lrs, _ = sharpen_drops(steps, lrs)
        total = int(round(steps[-1]))
        if total <= 0:
            raise RunsError(f"{where}: the last logged step is 0; the run must last at least one step")
        if steps[0] > 0:
            steps, lrs = np.insert(steps, 0, 0.0), np.insert(lrs, 0, lrs[0])
        use_val = final_loss == "val" or (final_loss == "auto" and "val_loss" in log.columns
                                          and np.isfinite(log["val_loss"]).any())
        if use_val:
            if "val_loss" not in log.columns:
                raise RunsError(f"{where}: final_loss='val' but the log has no 'val_loss' column")
            series = log["val_loss"].dropna()  # rows without evaluation
            kind = "val"
            if series.empty:
                raise RunsError(f"{where}: final_loss='val' but its val_loss column has no value; log an evaluation, "
                                "or import with final_loss='train' (CLI: --final-loss train)")
        else:
            series = log["loss"]
            kind = "train"
        loss_kinds.add(kind)
        train_nonfinite = bool((~np.isfinite(log["loss"].to_numpy())).any())
        if len(series) == 0:
            value, loss_step = float("nan"), total
        else:
            tail = series.to_numpy()[-final_window:]
            value = float(np.mean(tail))
            loss_step = int(round(float(log.loc[series.index[-1], "step"])))
        diverged = (not math.isfinite(value)) or train_nonfinite
        if diverge_above is not None and math.isfinite(value) and value > float(diverge_above):
            diverged = True
        if "diverged" in extra:
            diverged = str(extra["diverged"]).strip().lower() in ("true", "1", "yes", "t", "y", "1.0")
        row: dict[str, Any] = {
            "run_id": str(extra.get("run_id", path.stem)),
            "model_params": mp,
            "tokens": total * tps,
            "tokens_per_step": tps,
            "schedule": trace_spec(steps, lrs, total, compact=compact),
            "final_loss": value if math.isfinite(value) else float("nan"),
            "diverged": bool(diverged),
            "source": f"csv log {path}",
            "x_file": path.name,
            "x_loss_kind": kind,
            "x_first_logged_step": int(log["step"].iloc[0]),
            "x_final_loss_step": loss_step,
        }
        g = extra.get("group", group)
        if g is not None:
            row["group"] = str(g)
        if "seed" in extra:
            row["seed"] = extra["seed"]
        for k, v in extra.items():
            if str(k).startswith("x_"):
                row[str(k)] = v
        rows.append(row)
    df = pd.DataFrame(rows)
    dup = df["run_id"][df["run_id"].duplicated()]
    if len(dup):
        raise RunsError(f"csv: two logs give run_id {dup.iloc[0]!r}; rename one file or set run_id in the side "
                        "table")
    kinds = sorted(loss_kinds)
    meta = {
        "format": "csv",
        "importer": "bayes_optlaws.importers.csv_log",
        "importer_version": IMPORTER_VERSION,
        "source": {"files": [str(f) for f in files], "side_table": str(side_table) if side_table else None},
        "licence": "as stated by the owner of the logs (not recorded in the files)",
        "parameter_rule": "model_params as given by the user (argument or side table); whether embeddings are "
                          "counted is the user's convention",
        "loss_kind": ", ".join({"val": "validation loss (last finite val_loss)", "train": "training loss (last "
                                "logged loss)"}[k] for k in kinds)
                     + ("" if final_window == 1 else f", mean of the last {final_window} points")
                     + "; units as logged (usually nats per token)",
        "divergence_rule": "diverged if the final loss or any logged training loss is non-finite"
                           + (f", or the final loss is above {diverge_above:g}" if diverge_above is not None else "")
                           + ("; side-table 'diverged' overrides" if side is not None and "diverged" in side.columns
                              else ""),
        "tokens_per_step_rule": "as given by the user (argument or side table); tokens = last logged step × "
                                "tokens_per_step",
        "schedule_rule": "logged LR with linear interpolation between logged steps; a log starting after step 0 "
                         "holds its first LR back to step 0; total = last logged step"
                         + ("; LR changes between flat stretches are one-step drops" if sharp_drops else "")
                         + "; collinear points dropped (lossless)",
        "warnings": [f"{r['run_id']}: log starts at step {r['x_first_logged_step']}, first LR held back to step 0"
                     for r in rows if r["x_first_logged_step"] > 0] + _stale_loss_warnings(rows),
    }
    return df, meta
