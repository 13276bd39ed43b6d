"""Importer for the lr-scheduling W&B JSON logs (Schaipp, Hägele et al. 2025; Hägele et al. 2024 runs).

One runs-table row per JSON log.  What each column is, and why:

* ``schedule``: the **logged** LR (``history.train.train_lr``, sorted by ``iter``; duplicate iters written twice
  after a restart are kept once, the later one) as ``{"steps", "lr", "total"}``, compacted losslessly.  The log
  starts at iter 50 (10 for some 210M runs); the LR at step 0 is ``peak / 100`` (the warmup of
  epfml/schedules-and-scaling starts at peak/``init_div_factor`` = 100; extrapolating the logged linear warmups back
  to step 0 gives exactly this value).  A logged value at iter ``k`` is taken as ``eta(k)``.
* **Resumed runs** (``config.resume_from = .../<parent>/ckpts/<step>``, the ``ann*`` and ``extend-*`` cooldowns)
  log only the resumed segment.  Their schedule is the parent's trace up to the resume step (recursively, if the
  parent was itself resumed) followed by the run's own log: one row whose schedule is the whole stitched trace,
  starting at step 0.  The parent is found among the logs by file name or by W&B run name (``d["name"]``; 29
  parents are named only that way).  A parent found nowhere is rebuilt from the run's config as warmup +
  constant (the parents of all cooldown runs are constant-LR runs), and the row says so (``x_parent_source``).
  ``parent_run_id`` is **not** set: no run starts from its parent's *final* state (they resume mid-run), and the
  stitched schedule already contains the history, so a parent stage would count it twice.
* **Fake final zero**: constant-LR runs (scheduler ``wsd`` with ``wsd_fract_decay`` 0) log LR = 0 at the last
  iteration, which would create a fake 50-step cooldown; that point is dropped and the LR held to the end.
* When the last logged iter is before ``config.iterations`` (logging every 10 steps), the last logged interval is
  extended in a straight line to ``iterations`` (clipped at 0).
* ``total`` = ``config.iterations``; ``tokens_per_step`` = ``batch_size × acc_steps × world_size ×
  sequence_length`` (micro-batch × gradient accumulation × data-parallel GPUs × sequence length: 102,400, and
  204,800 for the 360M runs); ``tokens`` = ``iterations × tokens_per_step``.
* ``model_params`` = ``summary.parameters``: all learnable parameters as counted by the training code, token
  embedding included (tied with the output layer, counted once).
* ``final_loss`` = ``summary["final-val/loss"]``: validation loss in nats per token (GPT-2 tokenizer) at the end.
* ``diverged``: non-finite final loss or training loss, or a final loss more than ``divergence_margin`` (1 nat)
  above the lowest final loss of the same (group, model_params) among the imported runs.
* ``group`` = ``config.dataset`` (``slimpajama``, ``openwebtext2``, ``slimpajama_chunk1`` for the horizon-transfer
  runs); ``seed`` = ``config.seed``.
* Extras: ``x_block`` (``group/<params in M>M/<iterations>``), ``x_family`` (``constant``, ``wsd-linear-0.2``,
  ``wsd-1sqrt-0.2``, ``wsd-twostage-linear-0.2``, ``cos-0.1``, ``cos-0``), ``x_config`` (block|family|peak: equal
  for replicate runs), ``x_file``, ``x_peak_lr``, ``x_warmup``, ``x_iterations``, ``x_resumed_from``,
  ``x_resume_step``, ``x_parent_source``, ``x_n_layer``, ``x_n_embd``, ``x_n_head``, ``x_wandb_name``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..runs import RunsError
from . import IMPORTER_VERSION, extend_to_total, trace_spec

#: the warmup of epfml/schedules-and-scaling starts at peak / INIT_DIV_FACTOR
INIT_DIV_FACTOR = 100.0
DIVERGENCE_MARGIN = 1.0
_RESUME_RE = re.compile(r"(?:^|/)([^/]+)/ckpts/(\d+)/?$")
_FLAT_RTOL = 1e-9


@dataclass
class _Log:
    path: Path
    run_id: str
    data: dict
    config: dict
    summary: dict
    iters: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lrs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_duplicates: int = 0
    fake_zero_dropped: bool = False

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def wandb_name(self) -> str:
        name = self.data.get("name")
        return str(name) if name else self.stem


# ---------------------------------------------------------------------------- reading one log
def _require(mapping: Any, key: str, where: str, fix: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping or mapping[key] is None:
        raise RunsError(f"{where}: missing field {key!r}; {fix}")
    return mapping[key]


def _num(value: Any, where: str, field_name: str, *, integer: bool = False, positive: bool = True) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise RunsError(f"{where}: field {field_name!r} is not a number ({value!r}); fix the log") from None
    if not math.isfinite(v) or (positive and v <= 0):
        raise RunsError(f"{where}: field {field_name!r} must be a positive finite number, got {value!r}")
    if integer and abs(v - round(v)) > 1e-9:
        raise RunsError(f"{where}: field {field_name!r} must be a whole number, got {value!r}")
    return v


def _load(path: Path, run_id: str) -> _Log:
    where = str(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise RunsError(f"{where}: cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise RunsError(f"{where}: not valid JSON ({exc.msg}, line {exc.lineno}); is this a W&B run export?"
                        ) from None
    if not isinstance(data, dict):
        raise RunsError(f"{where}: expected a JSON object with 'config', 'summary' and 'history'")
    fix = "expected a W&B export with 'config', 'summary' and 'history' (lr-scheduling format)"
    config = _require(data, "config", where, fix)
    summary = _require(data, "summary", where, fix)
    history = _require(data, "history", where, fix)
    train = _require(history, "train", f"{where}: history", "the log needs history.train with iter and train_lr")
    iters = _require(train, "iter", f"{where}: history.train", "the log needs the logged iterations")
    lrs = _require(train, "train_lr", f"{where}: history.train", "the log needs the logged learning rate")
    if not isinstance(iters, list) or not isinstance(lrs, list) or len(iters) != len(lrs) or not iters:
        raise RunsError(f"{where}: history.train.iter and history.train.train_lr must be non-empty lists of equal "
                        f"length (found {len(iters) if isinstance(iters, list) else type(iters).__name__} and "
                        f"{len(lrs) if isinstance(lrs, list) else type(lrs).__name__})")
    try:
        it = np.asarray(iters, dtype=float)
        lr = np.asarray([np.nan if v is None else v for v in lrs], dtype=float)
    except (TypeError, ValueError):
        raise RunsError(f"{where}: history.train.train_lr / iter contain non-numeric values; fix the log") from None
    keep = np.isfinite(lr) & np.isfinite(it)
    if not keep.any():
        raise RunsError(f"{where}: history.train.train_lr has no finite value")
    it, lr = it[keep], lr[keep]
    if np.any(lr < 0):
        raise RunsError(f"{where}: history.train.train_lr has a negative learning rate ({lr.min():g})")
    if not np.any(lr > 0):
        raise RunsError(f"{where}: every logged history.train.train_lr is 0; a run that never trained has no "
                        "schedule to learn from (leave the file out)")
    if np.any(np.abs(it - np.round(it)) > 1e-9) or np.any(it < 0):
        raise RunsError(f"{where}: history.train.iter must be whole, non-negative step numbers")
    order = np.argsort(it, kind="stable")
    it, lr = it[order], lr[order]
    last = np.append(it[1:] != it[:-1], True)  # keep the last write of a repeated iter (restart)
    n_dup = int((~last).sum())
    log = _Log(path=path, run_id=run_id, data=data, config=config, summary=summary,
               iters=it[last], lrs=lr[last], n_duplicates=n_dup)
    _drop_fake_zero(log)
    return log


def _is_constant(config: dict) -> bool:
    return config.get("scheduler") == "wsd" and float(config.get("wsd_fract_decay") or 0.0) == 0.0


def _drop_fake_zero(log: _Log) -> None:
    """Constant-LR runs log LR = 0 at the final iteration; drop that point (it is not a real cooldown)."""
    it, lr = log.iters, log.lrs
    if len(lr) >= 3 and _is_constant(log.config) and lr[-1] == 0.0 and lr[-2] > 0:
        if abs(lr[-2] - lr[-3]) <= _FLAT_RTOL * lr[-2]:
            log.iters, log.lrs = it[:-1], lr[:-1]
            log.fake_zero_dropped = True


def _peak(log: _Log) -> float:
    return _num(_require(log.config, "lr", str(log.path), "config.lr (peak LR) is needed"), str(log.path),
                "config.lr")


def _resume(log: _Log) -> tuple[str, int] | None:
    """(parent key, resume step) from ``config.resume_from``, or None for a run trained from scratch."""
    raw = log.config.get("resume_from")
    if raw in (None, "", False):
        return None
    m = _RESUME_RE.search(str(raw))
    if not m:
        raise RunsError(f"{log.path}: config.resume_from {raw!r} is not of the form .../<run>/ckpts/<step>; "
                        "cannot tell which run and step it resumed from")
    return m.group(1), int(m.group(2))


def tokens_per_step_of(config: dict, where: str) -> int:
    """``batch_size × acc_steps × world_size × sequence_length`` (sequences per micro-batch × accumulation steps
    × data-parallel processes × tokens per sequence)."""
    fix = "tokens_per_step needs batch_size, acc_steps, world_size and sequence_length in the config"
    b = _num(_require(config, "batch_size", where, fix), where, "config.batch_size", integer=True)
    a = _num(config.get("acc_steps", 1), where, "config.acc_steps", integer=True)
    w = _num(config.get("world_size", 1), where, "config.world_size", integer=True)
    s = _num(_require(config, "sequence_length", where, fix), where, "config.sequence_length", integer=True)
    return int(b * a * w * s)


# ---------------------------------------------------------------------------- stitching
class _Library:
    """All logs we know, found by file stem or W&B name; sibling files are loaded lazily when a parent is missing."""

    def __init__(self, logs: list[_Log]):
        self.by_key: dict[str, _Log] = {}
        for log in logs:
            self._add(log)
        self._scanned: set[Path] = set()

    def _add(self, log: _Log) -> None:
        self.by_key.setdefault(log.stem, log)
        self.by_key.setdefault(log.wandb_name, log)

    def find(self, key: str, near: Path) -> _Log | None:
        if key in self.by_key:
            return self.by_key[key]
        folder = near.parent
        if folder not in self._scanned:
            self._scanned.add(folder)
            for p in sorted(folder.glob("*.json")):
                if p.stem in self.by_key:
                    continue
                try:
                    self._add(_load(p, p.stem))
                except RunsError:
                    continue
        return self.by_key.get(key)


def _warmup_start(log: _Log) -> tuple[np.ndarray, np.ndarray]:
    """Add the step-0 LR (peak / 100) when the log starts after step 0."""
    it, lr = log.iters, log.lrs
    if it[0] > 0:
        return np.insert(it, 0, 0.0), np.insert(lr, 0, _peak(log) / INIT_DIV_FACTOR)
    return it, lr


def rebuilt_prefix(config: dict, resume: int, where: str = "config") -> tuple[np.ndarray, np.ndarray]:
    """Warmup (peak/100 -> peak, linear) + constant LR up to ``resume``: the schedule of a constant-LR parent."""
    peak = _num(_require(config, "lr", where, "config.lr is needed"), where, "config.lr")
    warm = int(_num(config.get("warmup_steps", 0), where, "config.warmup_steps", integer=True, positive=False))
    lr0 = peak / INIT_DIV_FACTOR if warm > 0 else peak
    if resume <= 0:
        return np.array([0.0]), np.array([lr0])
    if warm <= 0:
        return np.array([0.0, float(resume)]), np.array([peak, peak])
    if resume <= warm:
        return np.array([0.0, float(resume)]), np.array([lr0, lr0 + (peak - lr0) * resume / warm])
    return np.array([0.0, float(warm), float(resume)]), np.array([lr0, peak, peak])


@dataclass
class _Trace:
    steps: np.ndarray
    lrs: np.ndarray
    parent: _Log | None = None
    resume_step: int | None = None
    parent_source: str = ""
    parent_max_dev: float | None = None  # max |logged parent - rebuilt| / peak over the stitched prefix
    chain: list[str] = field(default_factory=list)


def _full_trace(log: _Log, lib: _Library, rebuild_parents: bool, depth: int = 0) -> _Trace:
    if depth > 20:
        raise RunsError(f"{log.path}: config.resume_from chain is longer than 20 runs (a loop?)")
    res = _resume(log)
    if res is None or res[1] == 0:
        it, lr = _warmup_start(log)
        tr = _Trace(it, lr)
        if res is not None:  # resumed from the step-0 checkpoint: the log covers the whole run
            parent = lib.find(res[0], log.path)
            tr.parent, tr.resume_step, tr.parent_source = parent, 0, "none needed (resumed at step 0)"
        return tr
    key, step = res
    parent = None if rebuild_parents else lib.find(key, log.path)
    peak = _peak(log)
    if parent is not None:
        ptr = _full_trace(parent, lib, rebuild_parents, depth + 1)
        if ptr.steps[-1] < step:
            raise RunsError(f"{log.path}: resumes at step {step} from {parent.path.name}, whose log ends at "
                            f"step {ptr.steps[-1]:g}")
        mask = ptr.steps <= step
        ps, pl = ptr.steps[mask], ptr.lrs[mask]
        if ps[-1] < step:
            ps = np.append(ps, float(step))
            pl = np.append(pl, float(np.interp(step, ptr.steps, ptr.lrs)))
        rs, rl = rebuilt_prefix(log.config, step, str(log.path))
        dev = float(np.max(np.abs(pl - np.interp(ps, rs, rl)))) / peak
        source = "logged" if not ptr.parent_source.startswith("rebuilt") else "logged+rebuilt"
        chain = [parent.run_id] + ptr.chain
    else:
        ps, pl = rebuilt_prefix(log.config, step, str(log.path))
        dev = None
        source = "rebuilt (warmup + constant from the config)"
        chain = []
    own = log.iters > step
    if not own.any():
        raise RunsError(f"{log.path}: resumes at step {step} but logs no step after it; nothing to stitch")
    steps = np.concatenate([ps, log.iters[own]])
    lrs = np.concatenate([pl, log.lrs[own]])
    return _Trace(steps, lrs, parent=parent, resume_step=step, parent_source=source, parent_max_dev=dev,
                  chain=chain)


# ---------------------------------------------------------------------------- labels
def _size_label(params: int) -> str:
    return f"{round(params / 1e6):d}M"


def family_of(config: dict, final_ratio: float) -> str:
    """Schedule family label from the config (cosine families from the logged final LR / peak)."""
    sched = str(config.get("scheduler") or "")
    frac = float(config.get("wsd_fract_decay") or 0.0)
    dt = config.get("decay_type")
    shape = {None: "linear", "": "linear", "linear": "linear", "sqrt": "1sqrt"}.get(dt, str(dt))
    if sched == "wsd":
        return "constant" if frac == 0 else f"wsd-{shape}-{frac:g}"
    if sched == "wsd_twostage":
        return f"wsd-twostage-{shape}-{frac:g}"
    if sched == "cos":
        # cos_final_lr: -1 (or absent) = 10 % of peak; otherwise the absolute final LR (1e-7: "to ~0")
        cfl = config.get("cos_final_lr")
        cfl = None if cfl is None else float(cfl)
        if cfl is None or cfl < 0:
            return "cos-0.1"
        if cfl <= 1e-6:
            return "cos-0"
        return f"cos-{round(final_ratio, 3):g}"
    return sched or "unknown"


# ---------------------------------------------------------------------------- source and index
def _find_root(paths: list[Path]) -> Path | None:
    """The dataset folder (the one holding SOURCE.txt / _derived_index.csv) above the given paths, if any."""
    for p in paths:
        for cand in [p] + list(p.parents)[:4]:
            if (cand / "SOURCE.txt").exists() or (cand / "_derived_index.csv").exists():
                return cand
    return None


def read_source_txt(root: Path | None) -> dict:
    """``key: value`` lines of SOURCE.txt (repo, commit, path, license, paper, ...), continuation lines joined."""
    out: dict[str, str] = {}
    if root is None or not (root / "SOURCE.txt").exists():
        return out
    key = None
    for line in (root / "SOURCE.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z_]+):\s*(.*)$", line)
        if m:
            key = m.group(1).lower()
            out[key] = m.group(2).strip()
        elif key and line.strip():
            out[key] += " " + line.strip()
    return out


def index_facts(log: _Log, row: dict) -> dict:
    """What the JSON log (and the import) says for each column of ``_derived_index.csv``."""
    cfg, tr = log.config, log.data.get("history", {}).get("train", {})
    val = log.data.get("history", {}).get("val", {}) or {}
    it_raw = tr.get("iter") or []
    vi, vl = val.get("iter") or [], val.get("val_loss") or []
    tl = tr.get("train_loss") or []
    res = _resume(log)
    return {
        "prefix": cfg.get("wandb_run_prefix"), "dataset": cfg.get("dataset"), "n_layer": cfg.get("n_layer"),
        "n_embd": cfg.get("n_embd"), "n_head": cfg.get("n_head"), "params": row["model_params"],
        "lr": cfg.get("lr"), "scheduler": cfg.get("scheduler"), "decay_type": cfg.get("decay_type"),
        "wsd_fract_decay": cfg.get("wsd_fract_decay"), "cos_final_lr": cfg.get("cos_final_lr"),
        "wsd_final_lr_scale": cfg.get("wsd_final_lr_scale"), "warmup_steps": cfg.get("warmup_steps"),
        "iterations": cfg.get("iterations"), "tokens_per_step": row["tokens_per_step"],
        "final_val_loss": row["final_loss"],
        "last_val_loss": vl[int(np.argmax(vi))] if vi and len(vi) == len(vl) else None,
        "last_train_loss": tl[int(np.argmax(it_raw))] if it_raw and len(tl) == len(it_raw) else None,
        "n_train_pts": len(it_raw), "train_iter_min": min(it_raw) if it_raw else None,
        "train_iter_max": max(it_raw) if it_raw else None, "n_val_pts": len(vi),
        "has_grad_norm": "grad_norm" in tr,
        "resumed_from_run": res[0] if res else None, "resumed_from_ckpt": res[1] if res else None,
        "tokens": row["tokens"],
    }


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def check_derived_index(index_path: str | os.PathLike, facts: dict[str, dict], rtol: float = 1e-9) -> dict:
    """Compare ``_derived_index.csv`` (a convenience index made for this project, not from the source repo) with
    the JSON logs: every index column that :func:`index_facts` knows is compared for every imported run.

    Returns ``{"checked", "columns", "missing_in_index", "not_imported", "disagreements": [{"file", "field",
    "index", "json"}]}``.  ``facts`` maps run_id (path under ``data/`` without ``.json``) to :func:`index_facts`.
    """
    idx = pd.read_csv(index_path)
    if "file" not in idx.columns:
        return {"checked": 0, "error": f"{index_path}: no 'file' column"}
    keys = idx["file"].astype(str).str.replace(r"\.json$", "", regex=True)
    disagreements: list[dict] = []
    columns = sorted(c for c in idx.columns if any(c in f for f in facts.values()))

    def differ(a: Any, b: Any) -> bool:
        if _missing(a) or _missing(b) or a == "" or b == "":
            return not ((_missing(a) or a == "") and (_missing(b) or b == ""))
        if isinstance(a, (bool, np.bool_)) or isinstance(b, (bool, np.bool_)):
            return str(a).lower() != str(b).lower()
        try:
            fa, fb = float(a), float(b)
        except (TypeError, ValueError):
            return str(a) != str(b)
        return abs(fa - fb) > rtol * max(abs(fa), abs(fb), 1e-300)

    checked = 0
    for key, (_, r) in zip(keys, idx.iterrows()):
        f = facts.get(key)
        if f is None:
            continue
        checked += 1
        for col in columns:
            if col in f and differ(r[col], f[col]):
                disagreements.append({"file": key, "field": col, "index": r[col], "json": f[col]})
    return {"checked": checked, "columns": columns, "missing_in_index": sorted(set(facts) - set(keys)),
            "not_imported": sorted(set(keys) - set(facts)), "disagreements": disagreements}


# ---------------------------------------------------------------------------- import
def _collect(paths: list[str]) -> list[tuple[Path, str]]:
    """(file, run_id) for every JSON log: run_id is the path relative to the folder given (its ``data/``
    sub-folder when the dataset folder itself was given), without ``.json``; a single file gives its stem."""
    out: list[tuple[Path, str]] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise RunsError(f"{p}: no such file or folder; give lr-scheduling JSON logs or the folder holding them")
        if p.is_dir():
            base = p / "data" if (p / "data").is_dir() else p
            files = sorted(f for f in base.rglob("*.json"))
            if not files:
                raise RunsError(f"{p}: no JSON logs found (looked for *.json under {base})")
            out.extend((f, f.relative_to(base).with_suffix("").as_posix()) for f in files)
        else:
            if p.suffix.lower() != ".json":
                raise RunsError(f"{p}: not a .json file; the lr-scheduling format is W&B JSON run exports")
            out.append((p, p.stem))
    seen: dict[str, Path] = {}
    unique = []
    for f, rid in out:
        if rid in seen:
            if seen[rid].resolve() == f.resolve():
                continue
            raise RunsError(f"{f}: run id {rid!r} also comes from {seen[rid]}; give the parent folder instead of "
                            "single files so that ids include the sub-folder")
        seen[rid] = f
        unique.append((f, rid))
    return unique


def _early_end_warning(log: _Log, last_step: float, iterations: int) -> str | None:
    """A warning when the LR log ends well before ``iterations`` (more than two of its logging intervals and 1 % of
    the run): the importer continues the last logged interval's line to the end (:func:`extend_to_total`), which
    is right for a log written every few steps but a guess for a run whose log stopped early."""
    interval = float(np.median(np.diff(log.iters))) if len(log.iters) >= 2 else 0.0
    missing = iterations - float(last_step)
    if missing <= max(2 * interval, 0.01 * iterations):
        return None
    logged = (f"{len(log.iters)} logged points, median spacing {interval:g} iters" if len(log.iters) >= 2
              else "a single logged point")
    return (f"{log.run_id}: the LR is logged to iter {last_step:g} of config.iterations {iterations} ({logged}); "
            f"the last {missing:g} steps ({missing / iterations:.0%}) continue the last logged interval's line. If "
            "the run stopped early, its final loss is not that of this schedule: leave it out")


def import_lr_scheduling(paths: list[str], *, divergence_margin: float = DIVERGENCE_MARGIN,
                         rebuild_parents: bool = False, compact: bool = True,
                         check_index: bool = True) -> tuple[pd.DataFrame, dict]:
    """Import lr-scheduling JSON logs (files, folders, or the dataset folder with ``data/``) as a runs table.

    ``divergence_margin``: nats above the lowest final loss of the same (group, model_params) beyond which a run
    counts as diverged.  ``rebuild_parents``: ignore logged parents and rebuild every resumed run's history as
    warmup + constant from its config (for comparison).  ``compact``: drop collinear logged points.
    ``check_index``: compare with ``_derived_index.csv`` when it sits in the dataset folder (result in metadata).
    """
    if not (isinstance(divergence_margin, (int, float)) and divergence_margin > 0):
        raise RunsError(f"divergence_margin must be a positive number of nats, got {divergence_margin!r}")
    files = _collect(paths)
    logs = [_load(f, rid) for f, rid in files]
    lib = _Library(logs)
    rows: list[dict[str, Any]] = []
    facts: dict[str, dict] = {}
    warnings: list[str] = []
    stitch_stats = {"n_resumed": 0, "n_resumed_at_step0": 0, "parents_logged": 0, "parents_rebuilt": 0,
                    "parents_found_by_wandb_name_only": 0, "max_parent_vs_rebuilt_dev": 0.0,
                    "n_fake_zero_dropped": 0, "n_logs_with_duplicate_iters": 0}
    for log in logs:
        where = str(log.path)
        cfg, summ = log.config, log.summary
        peak = _peak(log)
        iterations = int(_num(_require(cfg, "iterations", where, "config.iterations (run length) is needed"),
                              where, "config.iterations", integer=True))
        warmup = int(_num(cfg.get("warmup_steps", 0), where, "config.warmup_steps", integer=True, positive=False))
        tps = tokens_per_step_of(cfg, where)
        params = _num(_require(summ, "parameters", where, "summary.parameters (parameter count) is needed"),
                      where, "summary.parameters", integer=True)
        tr = _full_trace(log, lib, rebuild_parents)
        if tr.steps[-1] > iterations:
            raise RunsError(f"{where}: logged LR goes to iter {tr.steps[-1]:g}, beyond config.iterations "
                            f"{iterations}; the run length is inconsistent")
        note = _early_end_warning(log, tr.steps[-1], iterations)
        if note:
            warnings.append(note)
        steps, lrs = extend_to_total(tr.steps, tr.lrs, iterations)
        if log.fake_zero_dropped:
            stitch_stats["n_fake_zero_dropped"] += 1
        if log.n_duplicates:
            stitch_stats["n_logs_with_duplicate_iters"] += 1
        if tr.resume_step is not None:
            if tr.resume_step == 0:
                stitch_stats["n_resumed_at_step0"] += 1
            else:
                stitch_stats["n_resumed"] += 1
                if tr.parent is not None:
                    stitch_stats["parents_logged"] += 1
                    key = (_resume(log) or ("", 0))[0]
                    if key != tr.parent.stem:
                        stitch_stats["parents_found_by_wandb_name_only"] += 1
                    if tr.parent_max_dev is not None:
                        stitch_stats["max_parent_vs_rebuilt_dev"] = max(stitch_stats["max_parent_vs_rebuilt_dev"],
                                                                        tr.parent_max_dev)
                        if tr.parent_max_dev > 1e-6:
                            warnings.append(f"{log.run_id}: logged parent history differs from warmup + constant "
                                            f"by up to {tr.parent_max_dev:.3g} × peak")
                else:
                    stitch_stats["parents_rebuilt"] += 1
                    missing_key = (_resume(log) or ("?", 0))[0]
                    warnings.append(f"{log.run_id}: parent {missing_key} not found; history rebuilt as "
                                    "warmup + constant from the config")
        if abs(float(np.max(lrs)) - peak) > 1e-6 * peak:
            warnings.append(f"{log.run_id}: largest logged LR {np.max(lrs):.6g} differs from config.lr {peak:g}")
        loss = summ.get("final-val/loss")
        loss_source = "summary.final-val/loss"
        if loss is None:
            val = log.data.get("history", {}).get("val", {})
            vi, vl = val.get("iter") or [], val.get("val_loss") or []
            if vi and vl and len(vi) == len(vl):
                loss = vl[int(np.argmax(vi))]
                loss_source = "history.val (last)"
            else:
                raise RunsError(f"{where}: missing summary['final-val/loss'] and no history.val to fall back on")
        try:
            loss = float(loss)
        except (TypeError, ValueError):
            raise RunsError(f"{where}: summary['final-val/loss'] is not a number ({loss!r})") from None
        train_losses = log.data.get("history", {}).get("train", {}).get("train_loss") or []
        nonfinite_train = any(v is None or not math.isfinite(float(v)) for v in train_losses)
        group = str(cfg.get("dataset") or "unknown")
        final_ratio = float(lrs[-1]) / float(np.max(lrs))
        family = family_of(cfg, final_ratio)
        block = f"{group}/{_size_label(int(params))}/{iterations}"
        resumed = tr.resume_step is not None
        parent_id = tr.parent.run_id if (tr.parent is not None and resumed) else ""
        rows.append({
            "run_id": log.run_id,
            "model_params": int(params),
            "tokens": int(iterations * tps),
            "tokens_per_step": int(tps),
            "schedule": trace_spec(steps, lrs, iterations, compact=compact),
            "final_loss": loss,
            "_nonfinite": (not math.isfinite(loss)) or nonfinite_train,
            "seed": int(cfg["seed"]) if isinstance(cfg.get("seed"), (int, float)) else None,
            "group": group,
            "source": f"lr-scheduling data/{log.run_id}.json",
            "x_block": block,
            "x_family": family,
            "x_config": f"{block}|{family}|{peak:g}",
            "x_file": log.path.name if log.run_id == log.stem else f"{log.run_id}.json",
            "x_peak_lr": peak,
            "x_warmup": warmup,
            "x_iterations": iterations,
            "x_resumed_from": parent_id,
            "x_parent_wandb_name": tr.parent.wandb_name if (tr.parent is not None and resumed) else "",
            "x_resume_step": tr.resume_step,
            "x_parent_source": tr.parent_source if resumed else "",
            "x_n_layer": cfg.get("n_layer"),
            "x_n_embd": cfg.get("n_embd"),
            "x_n_head": cfg.get("n_head"),
            "x_wandb_name": log.wandb_name,
            "x_loss_source": loss_source,
        })
        facts[log.run_id] = index_facts(log, rows[-1])
    df = pd.DataFrame(rows)
    # divergence: non-finite, or far above the best run of the same group and model size
    finite = df["final_loss"].where(np.isfinite(df["final_loss"]))
    best = finite.groupby([df["group"], df["model_params"]]).transform("min")
    df["diverged"] = df["_nonfinite"] | (finite > best + divergence_margin).fillna(False)
    df = df.drop(columns=["_nonfinite"])
    df["x_resume_step"] = df["x_resume_step"].astype("Int64")
    cols = ["run_id", "model_params", "tokens", "tokens_per_step", "schedule", "final_loss", "diverged", "seed",
            "group", "source"]
    df = df[cols + [c for c in df.columns if c not in cols]]

    root = _find_root([Path(p) for p in paths])
    src = read_source_txt(root)
    meta: dict[str, Any] = {
        "format": "lr-scheduling",
        "importer": "bayes_optlaws.importers.lr_scheduling",
        "importer_version": IMPORTER_VERSION,
        "source": {"dataset": "lr-scheduling (Schaipp, Hägele et al. 2025; includes Hägele et al. 2024 runs)",
                   "repo": src.get("repo"), "commit": src.get("commit"), "paper": src.get("paper"),
                   "folder": str(root) if root else None},
        "licence": src.get("license") or "unknown (SOURCE.txt not found)",
        "parameter_rule": "summary.parameters of each W&B log: all learnable parameters counted by the training code, "
                          "token embedding included (tied with the output layer, counted once); not nominal",
        "loss_kind": "validation loss, nats per token, GPT-2 tokenizer: summary['final-val/loss'] at the end of "
                     "the run (SlimPajama / OpenWebText2 validation split)",
        "divergence_rule": f"diverged if the final validation loss or any logged training loss is non-finite, or "
                           f"the final validation loss is more than {divergence_margin:g} nat above the lowest "
                           f"final loss of the imported runs with the same group (dataset) and model_params",
        "tokens_per_step_rule": "config batch_size × acc_steps × world_size × sequence_length; tokens = "
                                "config.iterations × tokens_per_step",
        "schedule_rule": "logged LR history.train.train_lr (every 50 steps, 10 for some 210M runs) sorted by iter, "
                         "repeated iters kept once (the later write); eta(0) = peak/100 (warmup start of "
                         "epfml/schedules-and-scaling); the fake LR = 0 logged at the last iteration of constant-LR "
                         "runs dropped; a log ending before config.iterations extended along its last interval; "
                         "resumed runs stitched onto the parent's trace up to the resume step (parent found by file "
                         "name or W&B run name, else rebuilt as warmup + constant from the config); linear "
                         "interpolation between logged points; collinear points dropped (lossless, 1e-12 × peak)",
        "group": "config.dataset",
        "parent_run_id": "not used: resumed runs start from a mid-run checkpoint of the parent, not its final state; "
                         "each row's schedule is the whole stitched trace (x_resumed_from, x_resume_step record "
                         "the resume)",
        "stitching": stitch_stats,
        "warnings": warnings,
        "rows_per_group": {str(k): int(v) for k, v in df["group"].value_counts().sort_index().items()},
    }
    if rebuild_parents:
        meta["stitching"]["note"] = "rebuild_parents=True: logged parent histories ignored"
    index_path = root / "_derived_index.csv" if root else None
    if check_index and index_path is not None and index_path.exists():
        meta["derived_index_check"] = check_derived_index(index_path, facts)
    return df, meta
