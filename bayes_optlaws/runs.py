"""The runs table: load, validate and save training-run tables and candidate lists (runs-format.md).

A runs table has one row per training run or per stage of a multi-stage run.  Columns (units):

* ``run_id`` (str, unique), ``model_params`` (int, parameter count; the metadata says whether embeddings are
  counted), ``tokens`` (int, tokens seen in this stage), ``tokens_per_step`` (int, sequence length × global batch),
  ``schedule`` (JSON string, see :mod:`bayes_optlaws.schedules`; steps are optimizer steps of this stage),
  ``final_loss`` (float, nats; NaN only when ``diverged``), ``diverged`` (bool)
* optional: ``parent_run_id``, ``seed``, ``group``, ``source``, and any column whose name starts with ``x_``.

Every problem is reported as :class:`RunsError` naming the row (by ``run_id`` when there is one), the column and
the fix, so a CLI can print it without a traceback.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .schedules import Schedule, ScheduleError

REQUIRED_COLUMNS = ("run_id", "model_params", "tokens", "tokens_per_step", "schedule", "final_loss", "diverged")
OPTIONAL_COLUMNS = ("parent_run_id", "seed", "group", "source")
CANDIDATE_REQUIRED = ("name", "schedule")
CANDIDATE_OPTIONAL = ("model_params", "tokens", "tokens_per_step", "parent_run_id", "scenario")


class RunsError(ValueError):
    """A runs table or candidate list that cannot be used; the message names row, column and fix."""


# ---------------------------------------------------------------------------- reading
def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV or Parquet file as strings-preserving DataFrame; clear error when missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise RunsError(f"{path}: no such file")
    if path.is_dir():
        raise RunsError(f"{path}: is a directory, expected a CSV or Parquet file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype={"run_id": str, "parent_run_id": str, "schedule": str, "name": str,
                                          "group": str, "source": str}, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise RunsError(f"{path}: cannot be read as a table ({exc})") from None
    return df


def read_runs(path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """Read and validate a runs table and its JSON side-car (``<path>.meta.json``, optional)."""
    df = read_table(path)
    meta = read_metadata(path)
    return validate_runs(df, where=str(path)), meta


def read_metadata(path: str | os.PathLike) -> dict:
    """The side-car metadata of a runs table (``runs.csv`` -> ``runs.csv.meta.json``), or ``{}``."""
    side = Path(str(path) + ".meta.json")
    if not side.exists():
        return {}
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise RunsError(f"{side}: metadata is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(meta, dict):
        raise RunsError(f"{side}: metadata must be a JSON object ({{\"key\": value, ...}}), got a JSON "
                        f"{type(meta).__name__}")
    return meta


# ---------------------------------------------------------------------------- validation
def _row_name(df: pd.DataFrame, i: int) -> str:
    """``"row 7 (run_id 'x')"``: the ``i``-th row as a spreadsheet shows it (the header is row 1), with its key
    (``run_id``, or a candidate's ``name``)."""
    key = "run_id" if "run_id" in df.columns else "name" if "name" in df.columns else None
    rid = df[key].iloc[i] if key else None
    return f"row {i + 2} ({key} {rid!r})" if isinstance(rid, str) and rid else f"row {i + 2}"


def shown_names(names, rows=None, limit: int = 3) -> str:
    """The names (of ``rows``; all by default) for a message: the first ``limit``, then ", ..." when there are
    more."""
    rows = list(range(len(names)) if rows is None else rows)
    return ", ".join(str(names[i]) for i in rows[:limit]) + (", ..." if len(rows) > limit else "")


def _check_columns(df: pd.DataFrame, required, optional, where: str, what: str) -> None:
    if len(df) == 0:
        raise RunsError(f"{where}: the {what} is empty; it needs at least one row with columns {', '.join(required)}")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise RunsError(f"{where}: missing column(s) {', '.join(missing)}; a {what} needs "
                        f"{', '.join(required)} (see runs-format.md)")
    unknown = [c for c in df.columns if c not in required and c not in optional and not str(c).startswith("x_")]
    if unknown:
        raise RunsError(f"{where}: unknown column(s) {', '.join(map(str, unknown))}; allowed are "
                        f"{', '.join(required + tuple(optional))}, or prefix custom columns with 'x_'")


def _numeric(df: pd.DataFrame, col: str, where: str, *, integer: bool, positive: bool,
             allow_nan: bool = False) -> pd.Series:
    values = pd.to_numeric(df[col], errors="coerce")
    for i, (raw, v) in enumerate(zip(df[col], values)):
        if pd.isna(v):
            if allow_nan and (pd.isna(raw) or str(raw).strip().lower() in ("nan", "")):
                continue
            raise RunsError(f"{where}: {_row_name(df, i)}, column '{col}': {raw!r} is not a number")
        if not math.isfinite(v) and not allow_nan:
            raise RunsError(f"{where}: {_row_name(df, i)}, column '{col}': value must be finite, got {v}")
        if positive and v <= 0:
            raise RunsError(f"{where}: {_row_name(df, i)}, column '{col}': must be > 0, got {v:g}")
        if integer and abs(v) >= MAX_COUNT:
            raise RunsError(f"{where}: {_row_name(df, i)}, column '{col}': {v:g} is too large (a count must be "
                            f"below {MAX_COUNT:.0e}); check the units")
        if integer and abs(v - round(v)) > 1e-6 * max(1.0, abs(v)):
            raise RunsError(f"{where}: {_row_name(df, i)}, column '{col}': must be a whole number, got {v:g}")
    if integer:
        return values.round().astype("Int64" if values.isna().any() else "int64")
    return values.astype(float)


#: the largest final loss (nats) a run that did not diverge may report: ten times the loss of a uniform guess over a
#: million-token vocabulary (log 1e6 = 13.8); a larger number is a perplexity or a unit mistake
MAX_LOSS_NATS = 100.0
#: the largest count (parameters, tokens, steps, seeds) a runs table may hold: far above any real run, and well
#: inside int64 (9.2e18), which a larger number would silently wrap around
MAX_COUNT = 1e18


def _seeds(df: pd.DataFrame, where: str) -> pd.Series:
    """The optional ``seed`` column as nullable whole numbers: a blank cell is a missing seed; anything else
    that is not a whole number is an error naming its row."""
    values = _numeric(df, "seed", where, integer=False, positive=False, allow_nan=True)
    for i, v in enumerate(values):
        if pd.notna(v) and (not math.isfinite(v) or abs(v - round(v)) > 1e-9 or abs(v) >= MAX_COUNT):
            raise RunsError(f"{where}: {_row_name(df, i)}, column 'seed': must be a whole number (or blank), got "
                            f"{df['seed'].iloc[i]}")
    return values.round().astype("Int64")


def checked_count(value, name: str, *, allow_zero: bool = False) -> int:
    """A count given by the user (parameters, tokens, tokens per step, a seed) as an ``int``, or a
    :class:`RunsError` naming ``name`` (e.g. ``"model_params (--params)"``): a finite whole number, above 0 (or
    at least 0 with ``allow_zero``), below :data:`MAX_COUNT`."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise RunsError(f"{name} must be a whole number, got {value!r}") from None
    low = "0 or more" if allow_zero else "above 0"
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise RunsError(f"{name} must be a whole number {low}, got {value!r}")
    if abs(number - round(number)) > 1e-9 * max(1.0, number):
        raise RunsError(f"{name} must be a whole number, got {value!r}")
    if number >= MAX_COUNT:
        raise RunsError(f"{name} is {number:.3g}, more than this package accepts ({MAX_COUNT:.0e}); check the units")
    return int(round(number))


def _bools(df: pd.DataFrame, col: str, where: str) -> pd.Series:
    truthy = {"true", "1", "yes", "t", "y", "1.0"}
    falsy = {"false", "0", "no", "f", "n", "0.0"}
    out = []
    for i, raw in enumerate(df[col]):
        if isinstance(raw, (bool, np.bool_)):
            out.append(bool(raw))
            continue
        text = str(raw).strip().lower()
        if text in truthy:
            out.append(True)
        elif text in falsy:
            out.append(False)
        else:
            raise RunsError(f"{where}: {_row_name(df, i)}, column '{col}': {raw!r} is not true/false")
    return pd.Series(out, index=df.index, dtype=bool)


def parse_schedules(df: pd.DataFrame, where: str, column: str = "schedule") -> list[Schedule]:
    """Parse every row's schedule JSON, reporting the row and the problem."""
    out = []
    for i, raw in enumerate(df[column]):
        if isinstance(raw, dict):  # a DataFrame built in Python may hold the spec itself
            raw = json.dumps(raw)
        if raw is not None and not isinstance(raw, str) and not pd.isna(raw):
            raise RunsError(f"{where}: {_row_name(df, i)}, column '{column}': {raw!r} is not a schedule; give a "
                            'JSON schedule such as {"family": "linear", "peak_lr": 3e-3, "warmup": 100, '
                            '"total": 2000}')
        if not isinstance(raw, str) or not raw.strip():
            raise RunsError(f"{where}: {_row_name(df, i)}, column '{column}': empty; give a JSON schedule such as "
                            '{"family": "linear", "peak_lr": 3e-3, "warmup": 100, "total": 2000}')
        try:
            out.append(Schedule.from_spec(raw))
        except ScheduleError as exc:
            raise RunsError(f"{where}: {_row_name(df, i)}, column '{column}': {exc}") from None
    return out


def _unique_names(values: pd.Series, column: str, where: str, why: str) -> pd.Series:
    """Non-empty, unique identifiers as strings, or a RunsError naming the row and the fix."""
    names = values.astype("string")
    for i, n in enumerate(names):
        if pd.isna(n) or not str(n).strip():
            raise RunsError(f"{where}: row {i + 2}, column '{column}': empty; {why}")
    dup = names[names.duplicated()]
    if len(dup):
        raise RunsError(f"{where}: column '{column}': {dup.iloc[0]!r} appears more than once; {why}")
    return names.astype(str)


def validate_runs(df: pd.DataFrame, where: str = "runs table") -> pd.DataFrame:
    """Return a typed copy of a runs table, or raise :class:`RunsError` at the first bad row/field."""
    return checked_runs(df, where)[0]


def checked_runs(df: pd.DataFrame, where: str = "runs table") -> tuple[pd.DataFrame, list[Schedule]]:
    """:func:`validate_runs` and the schedules it parsed on the way, one per row (what a
    :class:`~bayes_optlaws.runset.RunSet` keeps)."""
    _check_columns(df, REQUIRED_COLUMNS, OPTIONAL_COLUMNS, where, "runs table")
    out = df.copy()
    out["run_id"] = _unique_names(out["run_id"], "run_id", where, "every run needs a unique id")
    for col in ("model_params", "tokens", "tokens_per_step"):
        out[col] = _numeric(out, col, where, integer=True, positive=True)
    out["diverged"] = _bools(out, "diverged", where)
    out["final_loss"] = _numeric(out, "final_loss", where, integer=False, positive=True, allow_nan=True)
    for i in range(len(out)):
        loss, div = out["final_loss"].iloc[i], out["diverged"].iloc[i]
        if not div and not math.isfinite(loss):
            raise RunsError(f"{where}: {_row_name(out, i)}, column 'final_loss': missing or non-finite for a run "
                            "that did not diverge; give the loss, or set diverged=true")
        if not div and loss > MAX_LOSS_NATS:
            raise RunsError(f"{where}: {_row_name(out, i)}, column 'final_loss': {loss:.4g} is not a plausible "
                            f"cross-entropy in nats (above {MAX_LOSS_NATS:g}; a language model starts near log of "
                            "its vocabulary, about 10); if it is a perplexity, give its log; if the run blew up, "
                            "set diverged=true")
    schedules = parse_schedules(out, where)
    _check_tokens_match(out, schedules, where)
    if "parent_run_id" in out.columns:
        parents = out["parent_run_id"].astype("string")
        known = set(out["run_id"])
        for i, p in enumerate(parents):
            if pd.isna(p) or not str(p).strip():
                continue
            if str(p) not in known:
                raise RunsError(f"{where}: {_row_name(out, i)}, column 'parent_run_id': {p!r} is not a run_id in "
                                "this table; add the parent run or clear the field")
            if str(p) == out["run_id"].iloc[i]:
                raise RunsError(f"{where}: {_row_name(out, i)}, column 'parent_run_id': a run cannot be its own parent")
        out["parent_run_id"] = [str(p) if isinstance(p, str) and p.strip() else None
                                for p in parents.astype(object).where(parents.notna(), None)]
        _check_no_cycles(out, where)
    if "seed" in out.columns:
        out["seed"] = _seeds(out, where)
    return out.reset_index(drop=True), schedules


def _check_no_cycles(df: pd.DataFrame, where: str) -> None:
    parent = dict(zip(df["run_id"], df["parent_run_id"]))
    for rid in parent:
        seen = {rid}
        p = parent.get(rid)
        while isinstance(p, str) and p:
            if p in seen:
                raise RunsError(f"{where}: run_id {rid!r}: its parent_run_id chain loops back on itself")
            seen.add(p)
            p = parent.get(p)


def history_of(df: pd.DataFrame, run_id: str) -> list[pd.Series]:
    """Earlier stages of ``run_id``, oldest first (its parent, the parent's parent, ...), as runs-table rows."""
    by_id = df.set_index("run_id", drop=False)
    if run_id not in by_id.index:
        raise RunsError(f"run_id {run_id!r} is not in the runs table")
    chain = []
    p = by_id.loc[run_id].get("parent_run_id") if "parent_run_id" in by_id.columns else None
    while isinstance(p, str) and p:
        if p not in by_id.index:
            raise RunsError(f"run_id {p!r}, an earlier stage of {run_id!r}, is not in the runs table; add it")
        row = by_id.loc[p]
        chain.append(row)
        p = row.get("parent_run_id")
    return chain[::-1]


def validate_candidates(df: pd.DataFrame, where: str = "candidates") -> pd.DataFrame:
    """Check a candidate list (``name, schedule`` and optional target columns); names must be unique."""
    return checked_candidates(df, where)[0]


def _check_tokens_match(df: pd.DataFrame, schedules: list[Schedule], where: str) -> None:
    """Each row's ``tokens`` must be its schedule's length × ``tokens_per_step``, to within one step or 0.1 % (logs
    round the budget); a row with either blank is skipped (a candidate's target fills it in)."""
    if "tokens" not in df.columns or "tokens_per_step" not in df.columns:
        return
    for i, (sched, tokens, tps) in enumerate(zip(schedules, df["tokens"], df["tokens_per_step"])):
        if pd.isna(tokens) or pd.isna(tps):
            continue
        tokens, tps = int(tokens), int(tps)
        if abs(sched.total * tps - tokens) > max(tps, 1e-3 * tokens):
            raise RunsError(f"{where}: {_row_name(df, i)}, column 'tokens': tokens {tokens} does not match its "
                            f"schedule ({sched.total} steps × tokens_per_step {tps} = {sched.total * tps} tokens); "
                            "make them agree (a candidate may leave 'tokens' out: it follows from the schedule)")


def checked_candidates(df: pd.DataFrame, where: str = "candidates") -> tuple[pd.DataFrame, list[Schedule]]:
    """:func:`validate_candidates` and the schedules it parsed on the way, one per row."""
    _check_columns(df, CANDIDATE_REQUIRED, CANDIDATE_OPTIONAL, where, "candidate list")
    out = df.copy()
    out["name"] = _unique_names(out["name"], "name", where, "every candidate needs a unique name")
    schedules = parse_schedules(out, where)
    for col in ("model_params", "tokens", "tokens_per_step"):
        if col in out.columns and out[col].notna().any():
            # blanks are allowed: the target (--params / --tokens-per-step) fills them
            out[col] = _numeric(out, col, where, integer=True, positive=True, allow_nan=True).astype("Int64")
    _check_tokens_match(out, schedules, where)
    return out, schedules


def read_toml(path: str | os.PathLike, what: str = "file") -> dict:
    """Parse a TOML file; a missing file or bad TOML is a RunsError naming the path."""
    import tomllib

    path = Path(path)
    if not path.exists():
        raise RunsError(f"{path}: no such {what}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RunsError(f"{path}: not valid TOML ({exc})") from None


def read_candidates(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a candidate list from CSV (``name,schedule,...``) or TOML (``[[candidate]]`` tables)."""
    return validate_candidates(read_candidate_table(path), where=str(path))


def read_candidate_table(path: str | os.PathLike) -> pd.DataFrame:
    """A candidate list as read from CSV or TOML, not yet validated (a TOML schedule table becomes JSON text)."""
    path = Path(path)
    if path.suffix.lower() == ".toml":
        data = read_toml(path)
        rows = data.get("candidate") or data.get("candidates")
        if not isinstance(rows, list) or not rows:
            raise RunsError(f"{path}: expected one or more [[candidate]] tables with 'name' and 'schedule'")
        records = []
        for i, r in enumerate(rows, start=1):
            if not isinstance(r, dict):
                raise RunsError(f"{path}: candidate {i} is {r!r}, not a table; write each candidate as a "
                                "[[candidate]] table with 'name' and 'schedule'")
            r = dict(r)
            if isinstance(r.get("schedule"), dict):
                r["schedule"] = json.dumps(r["schedule"])
            records.append(r)
        return pd.DataFrame(records)
    if path.suffix.lower() == ".json":
        raise RunsError(f"{path}: a candidate list is a CSV (name,schedule,...) or TOML ([[candidate]] tables) file, "
                        "not JSON; write the JSON schedules into the 'schedule' column of a CSV")
    return read_table(path)


# ---------------------------------------------------------------------------- writing
def file_in_the_way(path: Path) -> Path | None:
    """The first parent folder of ``path`` that exists as a file (nothing can be written below it), or ``None``."""
    return next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)


def ensure_writable(path: str | os.PathLike, force: bool, companions: tuple[str, ...] = ()) -> Path:
    """The file ``path``, checked before anything is computed: refuse to overwrite an existing file unless
    ``force`` (and so each ``companions`` suffix, e.g. ``".meta.json"``, a file written beside it), and refuse a
    directory, or a parent that is a file, always.  Creates missing parent folders."""
    path = Path(path)
    blocker = file_in_the_way(path)
    if blocker is not None:
        raise RunsError(f"cannot write {path}: {blocker} is a file, not a directory; choose another path")
    for target in (path, *(Path(str(path) + suffix) for suffix in companions)):
        if target.is_dir():
            raise RunsError(f"cannot write {target}: it is a directory; give the path of a file (inside it or "
                            "elsewhere)")
        if target.exists() and not force:
            raise RunsError(f"{target} already exists; choose another path or pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never a half-written file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_runs(df: pd.DataFrame, path: str | os.PathLike, metadata: dict[str, Any] | None = None, *,
               force: bool = False) -> Path:
    """Validate and write a runs table as CSV (plus ``<path>.meta.json`` when ``metadata`` is given)."""
    path = ensure_writable(path, force, (".meta.json",) if metadata is not None else ())
    clean = validate_runs(df, where=str(path))
    atomic_write_text(path, clean.to_csv(index=False))
    if metadata is not None:
        atomic_write_text(Path(str(path) + ".meta.json"), json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return path
