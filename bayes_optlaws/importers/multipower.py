"""Importer for the multi-power-law loss curves (Luo et al. 2025, thu-yao-01-luo/MultiPowerLaw).

27 CSV files ``csv_{25,100,400}/<schedule>.csv`` with columns ``step,lr,loss`` (training loss, logged every 128
steps from the end of warmup).  One runs-table row per file:

* ``schedule``: linear warmup ``0 -> peak`` over ``warmup_steps`` (2,160 for every curve, from SOURCE.txt; the
  warmup is not logged), then the logged LR.  A change of LR between two flat stretches (the ``wsdcon_*`` drop
  at step 8,000) is an abrupt one-step drop, not a 64/128-step ramp (:func:`~bayes_optlaws.importers.sharpen_drops`),
  so the logging interval does not change the escape integral.  ``total`` = the **last logged step** (the curve
  ends there; some 25M curves stop before the nominal horizon in the file name, kept in ``x_nominal_total``).
* ``final_loss``: the last logged **training** loss (nats per token).  The curves are already smooth (residual
  std about a local quadratic <= 6e-4 nats over the last 12 points), and averaging the last points would bias
  the value upwards while the LR is still decaying (by up to 0.003 nats on ``wsdld``), so no averaging by default
  (``final_window`` averages the last k points if wanted).
* ``model_params``: **nominal** size from the folder label (25M, 100M, 400M -> 25e6, 100e6, 400e6); the exact
  counts (and whether embeddings are included) are not in the files.
* ``tokens_per_step``: not in the files, and neither SOURCE.txt nor the dataset README gives the value used by
  Luo et al., so it is **required** (``tokens_per_step=`` / ``--tokens-per-step``); ``tokens`` = total ×
  tokens_per_step.
* ``diverged``: non-finite final loss, or a final loss above the first logged loss of the curve (loss went up
  over training).  No curve in the published set is flagged.
* ``group`` = ``"multipowerlaw"``; extras ``x_size`` (25M/100M/400M), ``x_family`` (``constant``, ``cos-0.1``,
  ``wsd-exp``, ``wsd-linear``, ``two-stage-3e-5`` ...), ``x_nominal_total``, ``x_file``, ``x_peak_lr``,
  ``x_block`` (``multipowerlaw/<size>``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..runs import RunsError
from . import IMPORTER_VERSION, sharpen_drops, trace_spec
from .csv_log import read_step_csv
from .lr_scheduling import _find_root, read_source_txt

WARMUP_STEPS = 2160
GROUP = "multipowerlaw"
_SIZE_RE = re.compile(r"^csv_(\d+(?:\.\d+)?)$")


def _family(stem: str) -> tuple[str, int | None]:
    """(family label, nominal horizon) from the file stem."""
    m = re.fullmatch(r"constant_(\d+)", stem)
    if m:
        return "constant", int(m.group(1))
    m = re.fullmatch(r"cosine_(\d+)", stem)
    if m:
        return "cos-0.1", int(m.group(1))
    m = re.fullmatch(r"wsd_(\d+)_(\d+)", stem)
    if m:
        return "wsd-exp", int(m.group(2))
    m = re.fullmatch(r"wsdld_(\d+)_(\d+)", stem)
    if m:
        return "wsd-linear", int(m.group(2))
    m = re.fullmatch(r"wsdcon_(\d+)", stem)
    if m:
        return f"two-stage-{int(m.group(1))}e-5", 16000
    return stem, None


def _collect(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise RunsError(f"{p}: no such file or folder; give multipower CSV curves or the folder holding them")
        if p.is_dir():
            files = sorted(f for f in p.rglob("*.csv") if _SIZE_RE.match(f.parent.name))
            if not files:
                files = sorted(p.rglob("*.csv"))
            if not files:
                raise RunsError(f"{p}: no CSV curves found (expected csv_<size>/<schedule>.csv)")
            out.extend(files)
        else:
            out.append(p)
    seen, unique = set(), []
    for f in out:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique


def import_multipower(paths: list[str], *, tokens_per_step: int | None = None, model_params: int | None = None,
                      warmup_steps: int = WARMUP_STEPS, warmup_start_lr: float = 0.0, final_window: int = 1,
                      sharp_drops: bool = True, compact: bool = True) -> tuple[pd.DataFrame, dict]:
    """Import multi-power-law CSV curves (files or folders holding ``csv_<size>/`` sub-folders).

    ``tokens_per_step`` (required): sequence length × global batch of the runs.  ``model_params``: override the
    nominal size from the folder name (needed for a file outside a ``csv_<size>`` folder).  ``warmup_steps`` /
    ``warmup_start_lr``: the unlogged linear warmup.  ``final_window``: number of last logged points averaged
    into the final loss.  ``sharp_drops``: restore one-step LR drops between flat stretches.
    """
    if tokens_per_step is None:
        raise RunsError("multipower: tokens_per_step is not in the CSV files and the dataset's SOURCE.txt/README "
                        "do not give it; pass tokens_per_step= (CLI: --tokens-per-step N, sequence length × "
                        "global batch of the runs)")
    tps = _positive_int(tokens_per_step, "tokens_per_step")
    if model_params is not None:
        model_params = _positive_int(model_params, "model_params")
    warmup_steps = int(warmup_steps)
    if warmup_steps < 0:
        raise RunsError(f"multipower: warmup_steps must be >= 0, got {warmup_steps}")
    if not (isinstance(final_window, int) and final_window >= 1):
        raise RunsError(f"multipower: final_window must be a whole number >= 1, got {final_window!r}")
    rows: list[dict[str, Any]] = []
    origin: dict[str, str] = {}  # run id -> the file it came from
    warnings: list[str] = []
    n_sharpened = 0
    for path in _collect(paths):
        where = str(path)
        m = _SIZE_RE.match(path.parent.name)
        if model_params is not None:
            params, size = model_params, f"{model_params / 1e6:g}M"
        elif m:
            size = f"{m.group(1)}M"
            params = int(round(float(m.group(1)) * 1e6))
        else:
            raise RunsError(f"{where}: model size unknown (the file is not in a csv_<size> folder); pass "
                            "model_params= (CLI: --model-params N)")
        log = read_step_csv(path, required=("step", "lr", "loss"))
        steps, lrs, loss = log["step"].to_numpy(float), log["lr"].to_numpy(float), log["loss"].to_numpy(float)
        peak = float(np.max(lrs))
        if steps[0] < warmup_steps:
            raise RunsError(f"{where}: first logged step {steps[0]:g} is inside the {warmup_steps}-step warmup; "
                            "pass warmup_steps= matching the run (the logged part must start after warmup)")
        if abs(lrs[0] - peak) > 1e-6 * peak:
            warnings.append(f"{path.parent.name}/{path.name}: first logged LR {lrs[0]:g} is not the peak "
                            f"{peak:g}; the warmup is assumed to reach {lrs[0]:g}")
        if sharp_drops:
            steps, lrs, k = sharpen_drops(steps, lrs)
            n_sharpened += k
        if warmup_steps > 0:
            pre_s = [0.0] if steps[0] == warmup_steps else [0.0, float(warmup_steps)]
            pre_l = [warmup_start_lr] if steps[0] == warmup_steps else [warmup_start_lr, float(lrs[0])]
            steps, lrs = np.concatenate([pre_s, steps]), np.concatenate([pre_l, lrs])
        total = int(round(steps[-1]))
        final = float(np.mean(loss[-final_window:]))
        diverged = (not math.isfinite(final)) or bool(np.any(~np.isfinite(loss))) or final > loss[0]
        family, nominal = _family(path.stem)
        rid = f"{size}/{path.stem}"
        if rid in origin:
            raise RunsError(f"{where}: its run id {rid!r} is also that of {origin[rid]} (a run id is the size and "
                            "the file name); import one of the two, or rename one file")
        origin[rid] = str(path)
        rows.append({
            "run_id": rid,
            "model_params": int(params),
            "tokens": int(total * tps),
            "tokens_per_step": int(tps),
            "schedule": trace_spec(steps, lrs, total, compact=compact),
            "final_loss": final if math.isfinite(final) else float("nan"),
            "diverged": bool(diverged),
            "group": GROUP,
            "source": f"multipowerlaw loss_curve_repo/{path.parent.name}/{path.name}",
            "x_block": f"{GROUP}/{size}",
            "x_size": size,
            "x_family": family,
            "x_nominal_total": nominal,
            "x_file": f"{path.parent.name}/{path.name}",
            "x_peak_lr": peak,
            "x_last_step": total,
        })
    df = pd.DataFrame(rows)
    df["x_nominal_total"] = df["x_nominal_total"].astype("Int64")
    root = _find_root([Path(p) for p in paths])
    src = read_source_txt(root)
    meta = {
        "format": "multipower",
        "importer": "bayes_optlaws.importers.multipower",
        "importer_version": IMPORTER_VERSION,
        "source": {"dataset": "multi-power-law loss curves (Luo et al. 2025)", "repo": src.get("repo"),
                   "commit": src.get("commit"), "paper": src.get("paper"), "folder": str(root) if root else None},
        "licence": src.get("license") or "unknown (SOURCE.txt not found)",
        "parameter_rule": ("nominal model size from the folder label (csv_25 -> 25e6, csv_100 -> 100e6, csv_400 -> "
                           "400e6); exact counts and whether embeddings are included are not in the files"
                           if model_params is None else f"given by the user: {model_params}"),
        "loss_kind": ("training loss (nats per token) as logged in the curves, last logged point"
                      + ("" if final_window == 1 else f" (mean of the last {final_window} logged points)")
                      + "; the published curves are already smooth"),
        "divergence_rule": "diverged if the final loss (or any logged loss) is non-finite, or the final loss is "
                           "above the first logged loss of the curve",
        "tokens_per_step_rule": f"given by the user: {tps} (not in the files; SOURCE.txt/README do not state the "
                                "value used by Luo et al.); tokens = last logged step × tokens_per_step",
        "schedule_rule": f"linear warmup {warmup_start_lr:g} -> first logged LR over {warmup_steps} steps (not "
                         "logged; SOURCE.txt: 2160 steps to peak 3e-4 for all), then the logged LR (every 128 "
                         "steps) with linear interpolation"
                         + ("; an LR change between two flat stretches is an abrupt one-step drop (knot at the "
                            "step before the first logged new value)" if sharp_drops else "")
                         + "; total = last logged step; collinear points dropped (lossless)",
        "group": GROUP,
        "n_sharpened_drops": n_sharpened,
        "warnings": warnings,
    }
    return df, meta


def _positive_int(value: Any, name: str) -> int:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise RunsError(f"multipower: {name} must be a positive whole number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0 or abs(v - round(v)) > 1e-9:
        raise RunsError(f"multipower: {name} must be a positive whole number, got {value!r}")
    return int(round(v))
