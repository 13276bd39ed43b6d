"""Importer for LossCast-Bench run directories (``config.json`` + ``losses.json`` per run).

LossCast-Bench (dangxingyu/losscast-bench, MIT) collects three families of runs, told apart by the run id:
StepLaw (``ncpl_steplaw_*``: AdamW, OpenWebText, GPT-2 tokenizer, smoothed training loss), Marin
(``ncpl_marin_*``: 11 optimizers, Dolma, eval loss on C4) and nanochat (``nanochat_*``: Muon+AdamW, FineWeb-Edu,
training loss).  One runs-table row per run directory:

* ``run_id``: the **directory name** (the benchmark's id); ``config.run_id``, when present, must be the same.
* ``model_params``: ``n_params`` from the config when it is there (StepLaw: exact counts; Marin: the nominal
  sizes 130e6 / 300e6), else :func:`params_from_architecture` (nanochat).  ``params_from="architecture"`` uses
  the formula for every run.  ``x_params_from_arch`` always holds the formula's count.
* ``schedule``: from the config's ``schedule`` section, as a family spec :meth:`Schedule.from_spec` understands
  (see :func:`schedule_spec`): ``cosine`` / ``linear`` -> the ``cosine`` / ``linear`` family (linear warmup from 0
  over ``warmup_steps``, decay to ``final_lr_ratio`` × peak at ``total_steps``); ``warmup_stable_warmdown`` ->
  ``wsd`` with a linear cooldown of ``cooldown_steps`` (or ``round(warmdown_ratio × total_steps)``) steps to
  ``final_lr_ratio`` × peak.  Peak LR = ``optimizer.lr`` (nanochat: the Muon matrix LR; every LR of the run
  follows the same multiplier).
* ``tokens_per_step`` = ``data.batch_tokens``; ``tokens`` = schedule steps × tokens per step.  ``data.tokens_total``
  must agree with ``total_steps × batch_tokens`` within one step's tokens, otherwise the run is **bad** (the recipe
  contradicts itself and we cannot tell which number is right); every run of the public train split agrees.
* ``final_loss``: the entry of ``losses.json`` with the largest numeric step (nats per token of the family's
  tokenizer).  When the curve ends before ``total_steps`` (1,160 Marin runs: the last evaluation):

  - by at most ``end_tolerance`` × ``total_steps`` (default 1 %): the row keeps the planned schedule; over that
    last stretch the LR is below 1 % of the peak (linear) or 0.03 % (cosine), so the loss hardly moves;
  - by more (171 Marin runs, up to 90 % of the run): ``incomplete="truncate"`` (default) cuts the schedule at the
    last evaluated step (:func:`truncated_spec`), so the row says exactly what was measured: the loss after that
    many steps of that LR history (``tokens`` counts those steps only); ``incomplete="skip"`` leaves such runs out
    (listed in the metadata).

  ``x_planned_total_steps``, ``x_last_eval_step`` and ``x_curve_truncated`` record which case a row is.
* ``diverged``: the benchmark filtered diverged and prematurely stopped runs out upstream, so there is no
  divergence label to import; a run is marked diverged only when its final loss is above ``ln(model.vocab_size)``
  (the loss of uniform predictions: it did not train; :func:`above_uniform`), with a warning.  None of the public
  train split is.
* ``group``: one per corpus, so losses on different data or tokenizers never share a block: ``steplaw``,
  ``marin``, ``nanochat`` for the family's own corpus (:data:`FAMILY_CORPUS`); a run whose ``data.dataset`` /
  ``eval_dataset`` / ``tokenizer`` differ from its family's gets ``<family>:<dataset>:<eval_dataset>:<tokenizer>``,
  and a run of no known family ``<dataset>:<eval_dataset>:<tokenizer>``.  ``source`` = ``"losscast"``.
* ``x_*`` columns: ``x_family``, ``x_optimizer`` (string), ``x_peak_lr``, ``x_weight_decay``, ``x_beta1``,
  ``x_beta2``, ``x_eps``, ``x_grad_clip`` (floats; an empty cell = not given or ``null``, e.g. Lion-style
  optimizers without β2, nanochat without clipping), every other scalar of ``optimizer`` and of
  ``optimizer.extra`` (``x_adam_lr``, ``x_matrix_lr``, ...; a list of scalars becomes ``x_<key>_0``, ``_1``...),
  the schedule fields, the architecture, the data fields and scalars of the config's top-level ``extra``
  (nanochat's ``x_val_bpb``, an outcome, not a hyper-parameter).

A malformed directory (missing or unreadable file, bad JSON, empty or non-numeric curve, missing or impossible
field, unknown ``lr_schedule``) is a :class:`RunsError` naming the directory, file and field.  By default the first
one aborts the import; ``skip_bad=True`` (CLI ``--skip-bad``) leaves bad directories out and lists each with its
reason in the metadata (``skipped``), the CLI prints them.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..runs import RunsError
from ..schedules import Schedule
from . import IMPORTER_VERSION
from .lr_scheduling import _find_root, read_source_txt

SOURCE = "losscast"
#: run-id prefix -> family (and group) label
FAMILY_PREFIXES = {"ncpl_steplaw_": "steplaw", "ncpl_marin_": "marin", "nanochat_": "nanochat"}
#: the corpus of each family: (data.dataset, data.eval_dataset, data.tokenizer) -> the group is the family label
FAMILY_CORPUS = {
    "steplaw": ("openwebtext", "train", "gpt2"),
    "marin": ("dolma", "c4_en", "EleutherAI/gpt-neox-20b"),
    "nanochat": ("fineweb_edu", "train", "autoresearch_bpe_8k"),
}
FAMILY_LOSS_KIND = {
    "steplaw": "smoothed training loss on OpenWebText (nats per GPT-2 token)",
    "marin": "evaluation loss on C4 (en) of runs trained on Dolma (nats per GPT-NeoX-20B token)",
    "nanochat": "training loss on FineWeb-Edu (nats per token of the 8k autoresearch BPE)",
}
LR_SCHEDULES = ("cosine", "linear", "warmup_stable_warmdown")
INCOMPLETE_CHOICES = ("truncate", "skip")
PARAMS_FROM_CHOICES = ("config", "architecture")
#: a curve ending at most this fraction of total_steps early keeps the planned schedule
END_TOLERANCE = 0.01
#: linear pieces per curved (cosine) piece of a truncated schedule; LR error <= pi^2 / (16 n^2) × peak (1e-5 × peak)
TRUNCATION_PIECES = 256
#: MLP weight matrices per layer: gated activations (SwiGLU, GeGLU, ...) have 3, plain ones 2
PLAIN_ACTIVATIONS = {"gelu", "gelu_new", "gelu_tanh", "relu", "relu2", "relu_squared", "squared_relu", "silu",
                     "swish", "tanh"}
#: learnable vectors of width d_model per normalisation layer
NORM_VECTORS = {"layernorm": 2, "rmsnorm": 1, "none": 0}

__all__ = ["import_losscast", "params_from_architecture", "schedule_spec", "truncated_spec", "find_run_dirs",
           "FAMILY_PREFIXES", "FAMILY_CORPUS"]


# ---------------------------------------------------------------------------- finding run directories
def _is_run_dir(path: Path) -> bool:
    return (path / "config.json").exists() or (path / "losses.json").exists()


def find_run_dirs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Run directories named by ``paths``: each path is a run directory (it holds ``config.json`` or
    ``losses.json``; a path to one of those files stands for its folder) or a folder whose sub-folders are all run
    directories (e.g. ``losscast/train``; hidden sub-folders ignored).  Sorted by name within a folder; a
    directory given twice is kept once."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise RunsError(f"{p}: no such file or folder; give LossCast run directories (config.json + "
                            "losses.json) or a folder of them")
        if p.is_file():
            if p.name not in ("config.json", "losses.json"):
                raise RunsError(f"{p}: not a LossCast run directory; give the folder holding config.json and "
                                "losses.json, or a folder of such folders")
            p = p.parent
        if _is_run_dir(p):
            found.append(p)
            continue
        subdirs = sorted((Path(e.path) for e in os.scandir(p) if e.is_dir() and not e.name.startswith(".")),
                         key=lambda q: q.name)  # hidden folders (.ipynb_checkpoints, ...) are not runs
        if not subdirs:
            raise RunsError(f"{p}: no run directories here (no config.json, no sub-folders); give LossCast run "
                            "directories or a folder of them")
        found.extend(subdirs)
    seen: set[Path] = set()
    unique = []
    for d in found:
        key = Path(os.path.abspath(d))
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


# ---------------------------------------------------------------------------- reading one directory
def _read_json(path: Path, run_dir: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        hint = (" (this folder holds run directories itself: pass it, not its parent)"
                if any(_is_run_dir(Path(e.path)) for e in os.scandir(run_dir) if e.is_dir()) else "")
        raise RunsError(f"run {run_dir.name} ({run_dir}): {path.name} is missing; every run directory needs "
                        f"config.json and losses.json{hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunsError(f"run {run_dir.name}: {path} cannot be read ({exc})") from None
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(pairs, path, run_dir))
    except json.JSONDecodeError as exc:
        raise RunsError(f"run {run_dir.name}: {path} is not valid JSON ({exc.msg}, line {exc.lineno}, column "
                        f"{exc.colno}); fix or re-download the file") from None


def _unique_keys(pairs: list[tuple[str, Any]], path: Path, run_dir: Path) -> dict:
    """A JSON object whose keys are unique (``json`` would keep the last of two equal keys, e.g. two losses
    logged for one step, without a word)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise RunsError(f"run {run_dir.name}: {path} has the key {key!r} twice (values {out[key]!r} and "
                            f"{value!r}); keep one and re-import")
        out[key] = value
    return out


def read_losses(path: Path, run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """``losses.json`` (``{"step": loss}``) as step and loss arrays sorted by numeric step.

    Steps must be whole numbers >= 0 (each once), losses finite numbers > 0 (nats)."""
    data = _read_json(path, run_dir)
    where = f"run {run_dir.name}: {path}"
    if not isinstance(data, dict):
        raise RunsError(f"{where}: expected an object {{\"step\": loss, ...}}, found {type(data).__name__}")
    if not data:
        raise RunsError(f"{where}: the loss curve is empty; it needs at least the final {{\"step\": loss}} entry")
    values = list(data.values())
    ok = set(map(type, values)) <= {int, float}  # no bools, strings or nulls (numpy would convert them)
    if ok:
        try:  # fast path: numpy parses the keys; one vectorised check of every entry
            s = np.array(list(data), dtype=float)
            y = np.array(values, dtype=float)
            ok = bool(np.all(np.isfinite(s) & (s >= 0) & (s == np.round(s)) & np.isfinite(y) & (y > 0)))
        except ValueError:
            ok = False
    if not ok:
        _first_bad_entry(data, where)
    s = s.astype(np.int64)
    if len(np.unique(s)) != len(s):
        values, counts = np.unique(s, return_counts=True)
        raise RunsError(f"{where}: step {int(values[counts > 1][0])} appears more than once (e.g. '100' and "
                        "'100.0'); keep one entry")
    order = np.argsort(s, kind="stable")
    return s[order], y[order]


def _first_bad_entry(data: dict, where: str) -> None:
    """Raise the RunsError for the first entry of a loss curve that is not ``whole step >= 0: finite loss > 0``."""
    for key, value in data.items():
        try:
            step = float(key)
        except ValueError:
            step = float("nan")
        if not math.isfinite(step) or step < 0 or step != round(step):
            raise RunsError(f"{where}: key {key!r} is not a whole step number >= 0; keys are optimizer steps")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RunsError(f"{where}: step {key}: loss {value!r} is not a number; write the loss in nats, "
                            "e.g. 3.21")
        if not math.isfinite(value) or value <= 0:
            raise RunsError(f"{where}: step {key}: loss {value!r} must be a finite number > 0 (LossCast-Bench "
                            "has no runs whose loss blew up; a run that ends above ln(vocab_size) is imported as "
                            "diverged, one with a non-finite loss is not: leave it out, e.g. with --skip-bad)")
    raise AssertionError("no bad entry found")  # pragma: no cover - only called after a failed check


class _Config:
    """Field access to one ``config.json`` with errors that name the run, file and dotted field."""

    def __init__(self, data: Any, path: Path, run_dir: Path):
        if not isinstance(data, dict):
            raise RunsError(f"run {run_dir.name}: {path}: expected a JSON object, found {type(data).__name__}")
        self.data, self.path, self.run = data, path, run_dir.name

    def error(self, field: str, problem: str, fix: str = "") -> RunsError:
        return RunsError(f"run {self.run}: {self.path}: field '{field}' {problem}" + (f"; {fix}" if fix else ""))

    def get(self, field: str, default: Any = None, *, required: bool = False) -> Any:
        node: Any = self.data
        for part in field.split("."):
            if not isinstance(node, dict) or part not in node:
                if required:
                    raise self.error(field, "is missing", "LossCast configs give it (see the dataset README)")
                return default
            node = node[part]
        if node is None and required:
            raise self.error(field, "is null", "give a value")
        return node

    def section(self, name: str) -> dict:
        value = self.get(name, required=True)
        if not isinstance(value, dict):
            raise self.error(name, f"must be an object, found {type(value).__name__}")
        return value

    def number(self, field: str, *, required: bool = True, minimum: float | None = 0.0, positive: bool = False,
               whole: bool = False) -> float | None:
        value = self.get(field, required=required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(field, f"is {value!r}, not a number", "write a plain JSON number")
        v = float(value)
        if not math.isfinite(v):
            raise self.error(field, f"must be finite, got {value!r}")
        if positive and v <= 0:
            raise self.error(field, f"must be > 0, got {value!r}")
        if minimum is not None and v < minimum:
            raise self.error(field, f"must be >= {minimum:g}, got {value!r}")
        if whole and abs(v - round(v)) > 1e-9 * max(1.0, abs(v)):
            raise self.error(field, f"must be a whole number, got {value!r}")
        return v

    def whole(self, field: str, *, required: bool = True, positive: bool = False) -> int | None:
        v = self.number(field, required=required, positive=positive, whole=True)
        return None if v is None else int(round(v))

    def text(self, field: str, *, required: bool = True) -> str | None:
        value = self.get(field, required=required)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(field, f"must be a non-empty string, got {value!r}")
        return value.strip()


# ---------------------------------------------------------------------------- model size
def params_from_architecture(cfg: _Config) -> int:
    """Parameter count of a pre-norm decoder-only transformer from ``config.model`` (raw count).

    ``embeddings + n_layers × (attention + MLP + 2 norms) + final norm``, with d = ``d_model``:

    * embeddings: ``vocab_size × d`` (input embedding, tied with the output layer: counted once), × 2 when
      ``tied_embeddings`` is false (separate output layer);
    * attention: ``2 · d · head_dim · (n_heads + n_kv_heads)`` (Q and O, K and V; ``head_dim`` defaults to
      d / n_heads, ``n_kv_heads`` to ``n_heads``), i.e. ``4·d²`` for ordinary multi-head attention;
    * MLP: ``m · d · d_ff`` with m = 3 for gated activations (``swiglu``, ``geglu``, anything ``*glu``/gated: up,
      gate, down) and m = 2 for plain ones (``gelu``, ``relu``, ``relu2``, ``silu``, ...);
    * norms: ``d`` per RMSNorm, ``2·d`` per LayerNorm (weight + bias), 0 for ``"none"`` (missing: RMSNorm).

    Biases and position embeddings are not counted.  On the public train split this reproduces StepLaw's
    ``n_params`` up to the norm vectors, which StepLaw's count leaves out (difference ``(4·L + 2)·d``, < 0.03 %);
    Marin's ``n_params`` are nominal sizes (130M, 300M) the formula gives 117.1M and 251.1M for.  Not counted
    either: anything model.py adds beyond this template (nanochat variants' value embeddings or per-layer scalars
    if present; model.py is not part of the dataset).
    """
    d = cfg.whole("model.d_model", positive=True)
    layers = cfg.whole("model.n_layers", positive=True)
    d_ff = cfg.whole("model.d_ff", positive=True)
    vocab = cfg.whole("model.vocab_size", positive=True)
    heads = cfg.whole("model.n_heads", positive=True)
    kv_heads = cfg.whole("model.n_kv_heads", required=False, positive=True) or heads
    head_dim = cfg.whole("model.head_dim", required=False, positive=True)
    if head_dim is None:
        if d % heads:
            raise cfg.error("model.n_heads", f"({heads}) does not divide d_model ({d})", "give model.head_dim")
        head_dim = d // heads
    activation = (cfg.text("model.activation") or "").lower()
    if "glu" in activation or "gated" in activation:
        mlp_matrices = 3
    elif activation in PLAIN_ACTIVATIONS:
        mlp_matrices = 2
    else:
        raise cfg.error("model.activation", f"is {activation!r}: unknown, so the MLP size is unknown",
                        f"use a gated (*glu) or plain ({', '.join(sorted(PLAIN_ACTIVATIONS))}) activation, or "
                        "give n_params")
    norm = (cfg.text("model.norm_type", required=False) or "rmsnorm").lower()
    if norm not in NORM_VECTORS:
        raise cfg.error("model.norm_type", f"is {norm!r}", f"use one of {', '.join(NORM_VECTORS)}")
    tied = cfg.get("model.tied_embeddings", True)
    if not isinstance(tied, bool):
        raise cfg.error("model.tied_embeddings", f"must be true or false, got {tied!r}")
    embeddings = vocab * d * (1 if tied else 2)
    attention = 2 * d * head_dim * (heads + kv_heads)
    mlp = mlp_matrices * d * d_ff
    norm_vec = NORM_VECTORS[norm] * d
    return int(embeddings + layers * (attention + mlp + 2 * norm_vec) + norm_vec)


def _model_params(cfg: _Config, params_from: str) -> tuple[int, int | None, str]:
    """(model_params, formula count or None, rule used) of one run."""
    given = cfg.get("n_params")
    try:
        formula = params_from_architecture(cfg)
    except RunsError:
        if given is None or params_from == "architecture":
            raise
        formula = None
    if params_from == "architecture" or given is None:
        return int(formula), formula, "architecture"
    n = cfg.number("n_params", positive=True, whole=True)
    return int(round(n)), formula, "n_params"


# ---------------------------------------------------------------------------- schedule
def schedule_spec(cfg: _Config) -> dict:
    """The run's planned schedule as a family spec (``cosine`` / ``linear`` / ``wsd``) over ``total_steps``.

    Raises :class:`RunsError` naming the field for a missing, impossible or unknown schedule setting."""
    kind = cfg.text("schedule.lr_schedule")
    if kind not in LR_SCHEDULES:
        raise cfg.error("schedule.lr_schedule", f"is {kind!r}: not a schedule this importer knows",
                        f"use one of {', '.join(LR_SCHEDULES)}")
    peak = cfg.number("optimizer.lr", positive=True)
    total = cfg.whole("schedule.total_steps", positive=True)
    warmup = cfg.whole("schedule.warmup_steps")
    ratio = cfg.number("schedule.final_lr_ratio")
    if ratio > 1:
        raise cfg.error("schedule.final_lr_ratio", f"is {ratio:g}, above 1", "give final LR / peak LR (0..1)")
    cooldown = cfg.whole("schedule.cooldown_steps", required=False) or 0
    spec: dict[str, Any] = {"peak_lr": peak, "warmup": warmup, "total": total}
    if kind in ("cosine", "linear"):
        if cooldown:
            raise cfg.error("schedule.cooldown_steps", f"is {cooldown} for a {kind} schedule: its meaning (an "
                            "extra cooldown after the decay?) is not defined by LossCast", "expected 0")
        spec = {"family": kind, **spec}
    else:
        steps_from_ratio = None
        if cfg.get("schedule.warmdown_ratio") is not None or not cooldown:
            wr = cfg.number("schedule.warmdown_ratio")
            if not 0 < wr <= 1:
                raise cfg.error("schedule.warmdown_ratio", f"is {wr:g}", "give the cooldown fraction (0, 1]")
            steps_from_ratio = int(round(wr * total))
        if cooldown and steps_from_ratio is not None and abs(cooldown - steps_from_ratio) > 1:
            raise cfg.error("schedule.cooldown_steps", f"({cooldown}) disagrees with warmdown_ratio × total_steps "
                            f"({steps_from_ratio})", "give one of them, or make them agree")
        spec = {"family": "wsd", **spec, "cooldown": cooldown or steps_from_ratio, "cooldown_shape": "linear"}
    spec["final_lr"] = peak * ratio
    _check_phases(cfg, spec)
    return spec


def _check_phases(cfg: _Config, spec: dict) -> None:
    """Warmup (and cooldown) must fit in the run, leaving steps for the decay (what ``Schedule`` requires)."""
    warmup, total, cooldown = spec["warmup"], spec["total"], spec.get("cooldown")
    if cooldown is None and warmup >= total:
        raise cfg.error("schedule.warmup_steps", f"({warmup}) is not shorter than total_steps ({total})",
                        "the warmup must leave steps for the decay")
    if cooldown is not None:
        if cooldown < 1:
            raise cfg.error("schedule.warmdown_ratio", f"gives a cooldown of {cooldown} steps",
                            "a warmup_stable_warmdown schedule needs at least one warmdown step")
        if warmup + cooldown > total:
            raise cfg.error("schedule.warmup_steps", f"+ the warmdown ({warmup} + {cooldown} steps) exceed "
                            f"total_steps ({total})", "shorten one of them")


def truncated_spec(spec: dict, stop: int, pieces: int = TRUNCATION_PIECES) -> dict:
    """The first ``stop`` steps of a schedule, as knots ending at step ``stop`` (for a curve that ended early).

    Linear pieces are kept exactly; a curved (cosine, 1-sqrt) piece becomes ``pieces`` straight segments over
    its full length (cut at ``stop``), LRs taken from the schedule at whole steps, so the LR is off by at most
    ``pi^2 / (16 pieces^2)`` × peak (1e-5 × peak for 256) between knots."""
    sched = Schedule.from_spec(spec)
    if not 0 < stop <= sched.total:
        raise ValueError(f"stop must be in 1..{sched.total}, got {stop}")
    canon = sched.to_spec()
    knots, shapes = canon["knots"], canon["shapes"]
    points = {0, int(stop)}
    for (s0, _), (s1, _), shape in zip(knots[:-1], knots[1:], shapes):
        if s0 >= stop:
            break
        points.add(int(round(min(s1, stop))))
        if shape != "linear":
            grid = np.round(np.linspace(s0, s1, pieces + 1)).astype(int)
            points.update(int(g) for g in grid if g < stop)
    steps = sorted(points)
    lrs = sched.lr_at(np.asarray(steps, dtype=float))
    return {"knots": [[s, float(lr)] for s, lr in zip(steps, lrs)]}


# ---------------------------------------------------------------------------- optimizer and other x_ columns
def _slug(key: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", str(key)).strip("_").lower()


def _scalar_columns(mapping: dict, prefix: str = "x_") -> dict[str, Any]:
    """``x_<key>`` for every scalar (number, string, bool, null) of a mapping; lists of scalars -> ``x_<key>_<i>``.
    Nested objects are left out."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = prefix + _slug(key)
        if value is None or isinstance(value, (bool, int, float, str)):
            out[name] = _cell(value)
        elif isinstance(value, list) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
            for i, v in enumerate(value):
                out[f"{name}_{i}"] = _cell(v)
    return out


def _cell(value: Any) -> Any:
    """A config scalar as a table cell: numbers as float (NaN for null), strings and bools as they are."""
    if value is None:
        return float("nan")
    if isinstance(value, bool) or isinstance(value, str):
        return value
    return float(value)


def optimizer_columns(cfg: _Config) -> dict[str, Any]:
    """``x_optimizer`` (name), ``x_peak_lr``, ``x_weight_decay``, ``x_beta1``, ``x_beta2``, ``x_eps``,
    ``x_grad_clip`` (NaN when null or absent) and every other scalar of ``optimizer`` and ``optimizer.extra``."""
    opt = cfg.section("optimizer")
    cols: dict[str, Any] = {"x_optimizer": cfg.text("optimizer.name"),
                            "x_peak_lr": cfg.number("optimizer.lr", positive=True)}
    for key in ("weight_decay", "beta1", "beta2", "eps", "grad_clip"):
        v = cfg.number(f"optimizer.{key}", required=False)
        cols[f"x_{key}"] = float("nan") if v is None else v
    rest = {k: v for k, v in opt.items() if k not in ("name", "lr", "weight_decay", "beta1", "beta2", "eps",
                                                      "grad_clip", "extra")}
    cols.update(_scalar_columns(rest))
    extra = opt.get("extra") or {}
    if not isinstance(extra, dict):
        raise cfg.error("optimizer.extra", f"must be an object, found {type(extra).__name__}")
    for name, value in _scalar_columns(extra).items():
        cols[name if name not in cols else "x_extra_" + name[2:]] = value
    return cols


def _group(family: str, corpus: tuple[str, str, str]) -> str:
    if FAMILY_CORPUS.get(family) == corpus:
        return family
    label = ":".join(corpus)
    return label if family == "other" else f"{family}:{label}"


def _family(run_id: str) -> str:
    for prefix, family in FAMILY_PREFIXES.items():
        if run_id.startswith(prefix):
            return family
    return "other"


# ---------------------------------------------------------------------------- one run -> one row
def run_row(run_dir: Path, *, end_tolerance: float = END_TOLERANCE, incomplete: str = "truncate",
            params_from: str = "config") -> dict[str, Any] | None:
    """The runs-table row of one run directory (None: an incomplete curve with ``incomplete="skip"``)."""
    cfg_path = run_dir / "config.json"
    cfg = _Config(_read_json(cfg_path, run_dir), cfg_path, run_dir)
    steps, losses = read_losses(run_dir / "losses.json", run_dir)
    run_id = run_dir.name
    cfg_id = cfg.get("run_id")
    if cfg_id is not None and cfg_id != run_id:
        raise cfg.error("run_id", f"is {cfg_id!r} but the directory is {run_id!r}",
                        "rename the directory or fix the config (the directory name is the run id)")
    family = _family(run_id)
    params, formula, rule = _model_params(cfg, params_from)
    spec = schedule_spec(cfg)
    total = spec["total"]
    tps = cfg.whole("data.batch_tokens", positive=True)
    tokens_total = cfg.whole("data.tokens_total", required=False, positive=True)
    if tokens_total is not None and abs(tokens_total - total * tps) > tps:
        raise cfg.error("data.tokens_total", f"({tokens_total}) disagrees with schedule.total_steps × "
                        f"data.batch_tokens ({total} × {tps} = {total * tps})",
                        "the recipe contradicts itself; fix one of the three numbers")
    last = int(steps[-1])
    if last > total:
        raise RunsError(f"run {run_id}: {run_dir / 'losses.json'}: last step {last} is after "
                        f"schedule.total_steps ({total}) of config.json; the curve and the config disagree")
    if last == 0:
        raise RunsError(f"run {run_id}: {run_dir / 'losses.json'}: the only evaluation is at step 0 (before "
                        "training); no final loss")
    truncated = (total - last) > end_tolerance * total
    if truncated and incomplete == "skip":
        return None
    schedule = truncated_spec(spec, last) if truncated else spec
    steps_run = last if truncated else total
    corpus = (cfg.text("data.dataset"), cfg.text("data.eval_dataset"), cfg.text("data.tokenizer"))
    row: dict[str, Any] = {
        "run_id": run_id,
        "model_params": params,
        "tokens": steps_run * tps,
        "tokens_per_step": tps,
        "schedule": json.dumps(schedule, separators=(",", ":")),
        "final_loss": float(losses[-1]),
        "diverged": False,
        "group": _group(family, corpus),
        "source": SOURCE,
        "x_family": family,
        "x_params_rule": rule,
        "x_params_from_arch": formula if formula is not None else pd.NA,
        "x_n_params_config": cfg.number("n_params", required=False, positive=True),
        "x_lr_schedule": cfg.text("schedule.lr_schedule"),
        "x_warmup_steps": spec["warmup"],
        "x_cooldown_steps": spec.get("cooldown", 0),
        "x_final_lr_ratio": cfg.number("schedule.final_lr_ratio"),
        "x_warmdown_ratio": cfg.number("schedule.warmdown_ratio", required=False),
        "x_planned_total_steps": total,
        "x_last_eval_step": last,
        "x_curve_truncated": bool(truncated),
        "x_n_evals": int(len(steps)),
        "x_dataset": corpus[0],
        "x_eval_dataset": corpus[1],
        "x_tokenizer": corpus[2],
        "x_seq_len": cfg.whole("data.seq_len", required=False, positive=True),
        "x_planned_tokens": total * tps,
    }
    for key in ("n_layers", "d_model", "d_ff", "n_heads", "vocab_size"):
        row[f"x_{key}"] = cfg.whole(f"model.{key}", required=False, positive=True)
    if row["x_vocab_size"] is not None and row["x_vocab_size"] < 2:
        raise RunsError(f"run {run_id}: config.json model.vocab_size is {row['x_vocab_size']}; a vocabulary has at "
                        "least 2 tokens (fix the config)")
    row["diverged"] = above_uniform(row["final_loss"], row["x_vocab_size"])
    row["x_activation"] = cfg.text("model.activation", required=False)
    for name, value in optimizer_columns(cfg).items():  # an optimizer key never overwrites a column above
        row[name if name not in row else "x_optimizer_" + name[2:]] = value
    top_extra = cfg.get("extra")
    if isinstance(top_extra, dict):
        row.update({k: v for k, v in _scalar_columns(top_extra).items() if k not in row})
    return row


def above_uniform(final_loss: float, vocab_size) -> bool:
    """Whether a final loss (nats per token) is above ``ln(vocab_size)``, the loss of a model that predicts every
    token uniformly: a run that ends there did not train (it diverged), whatever the upstream filter kept.
    ``False`` when the vocabulary size is not known."""
    if vocab_size is None or pd.isna(vocab_size):
        return False
    return bool(final_loss > math.log(float(vocab_size)))


# ---------------------------------------------------------------------------- entry point
_INT_COLUMNS = ("x_params_from_arch", "x_warmup_steps", "x_cooldown_steps", "x_planned_total_steps",
                "x_last_eval_step", "x_n_evals", "x_seq_len", "x_planned_tokens", "x_n_layers", "x_d_model",
                "x_d_ff", "x_n_heads", "x_vocab_size")


def import_losscast(paths: list[str], *, skip_bad: bool = False, incomplete: str = "truncate",
                    end_tolerance: float = END_TOLERANCE, params_from: str = "config") -> tuple[pd.DataFrame, dict]:
    """Import LossCast-Bench run directories (or folders of them) as a runs table and its metadata.

    ``skip_bad``: leave malformed directories out (listed in ``meta["skipped"]`` with the reason) instead of
    stopping at the first.  ``incomplete``: ``"truncate"`` (default) or ``"skip"`` for curves ending more than
    ``end_tolerance`` × total_steps early.  ``params_from``: ``"config"`` (``n_params``, the formula when absent)
    or ``"architecture"`` (the formula for every run)."""
    if incomplete not in INCOMPLETE_CHOICES:
        raise RunsError(f"losscast: incomplete must be one of {', '.join(INCOMPLETE_CHOICES)}, got {incomplete!r}")
    if params_from not in PARAMS_FROM_CHOICES:
        raise RunsError(f"losscast: params_from must be one of {', '.join(PARAMS_FROM_CHOICES)}, got "
                        f"{params_from!r}")
    if not (isinstance(end_tolerance, (int, float)) and 0 <= end_tolerance < 1):
        raise RunsError(f"losscast: end_tolerance must be a fraction in [0, 1), got {end_tolerance!r}")
    dirs = find_run_dirs(paths)
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    incomplete_skipped: list[str] = []
    where_of: dict[str, Path] = {}
    for run_dir in dirs:
        try:
            if run_dir.name in where_of:
                raise RunsError(f"run {run_dir.name}: {run_dir} has the same name (run id) as "
                                f"{where_of[run_dir.name]}; import one of them")
            row = run_row(run_dir, end_tolerance=end_tolerance, incomplete=incomplete, params_from=params_from)
        except RunsError as exc:
            if not skip_bad:
                raise
            skipped.append({"run": run_dir.name, "path": str(run_dir), "reason": str(exc)})
            continue
        where_of[run_dir.name] = run_dir
        if row is None:
            incomplete_skipped.append(run_dir.name)
        else:
            rows.append(row)
    if not rows:
        why = f"; first skipped: {skipped[0]['reason']}" if skipped else ""
        raise RunsError(f"losscast: no run could be imported from {', '.join(map(str, paths))} "
                        f"({len(skipped)} bad, {len(incomplete_skipped)} incomplete curves skipped){why}")
    df = pd.DataFrame(rows)
    for col in _INT_COLUMNS:
        if col in df.columns:
            df[col] = pd.array(df[col].where(df[col].notna(), None), dtype="Int64")
    return df, _metadata(df, paths, skipped, incomplete_skipped, incomplete, end_tolerance, params_from)


def _paths_summary(paths: list[str], limit: int = 20) -> dict:
    """The input paths for the metadata: all of them when few, else their count and common folder."""
    if len(paths) <= limit:
        return {"paths": [str(p) for p in paths]}
    return {"n_paths": len(paths), "paths_under": os.path.commonpath([os.path.abspath(p) for p in paths])}


def _metadata(df: pd.DataFrame, paths: list[str], skipped: list[dict], incomplete_skipped: list[str],
              incomplete: str, end_tolerance: float, params_from: str) -> dict:
    root = _find_root([Path(p).resolve() for p in paths])
    src = read_source_txt(root)
    licence = None
    if root is not None and (root / "LICENSE").exists():
        licence = (root / "LICENSE").read_text().strip().splitlines()[0]
    n_trunc = int(df["x_curve_truncated"].sum())
    groups = {}
    for g, sub in df.groupby("group"):
        fam = str(sub["x_family"].iloc[0])
        groups[str(g)] = {"runs": int(len(sub)), "loss_kind": FAMILY_LOSS_KIND.get(fam, "as logged"),
                          "model_params": sorted(int(v) for v in sub["model_params"].unique())}
    return {
        "format": "losscast",
        "importer": "bayes_optlaws.importers.losscast",
        "importer_version": IMPORTER_VERSION,
        "source": {"dataset": "LossCast-Bench (public train split: NCPL's Marin + StepLaw runs, plus nanochat)",
                   "repo": src.get("repository"), "folder": str(root) if root else None,
                   **_paths_summary(paths)},
        "licence": licence or src.get("licence") or "MIT (LossCast-Bench); LICENSE not found beside the data",
        "parameter_rule": ("config n_params when given (StepLaw: exact, embeddings counted once, norms left out; "
                           "Marin: nominal 130e6 / 300e6), else the architecture formula (nanochat: untied "
                           "embeddings counted twice); x_params_from_arch holds the formula for every run"
                           if params_from == "config" else
                           "architecture formula for every run (params_from_architecture)"),
        "loss_kind": "last entry (largest step) of losses.json, per group: "
                     + "; ".join(f"{g}: {v['loss_kind']}" for g, v in groups.items()),
        "divergence_rule": "LossCast-Bench filtered diverged and prematurely stopped runs out upstream, so a run "
                           "is diverged only when its final loss is above ln(model.vocab_size), the loss of "
                           "uniform predictions (none of the public train split is)",
        "tokens_per_step_rule": "data.batch_tokens; tokens = schedule steps × tokens_per_step; data.tokens_total "
                                "must equal total_steps × batch_tokens (within one step), else the run is bad",
        "schedule_rule": "schedule.lr_schedule cosine/linear -> family cosine/linear (linear warmup from 0 over "
                         "warmup_steps, decay to final_lr_ratio × optimizer.lr at total_steps); "
                         "warmup_stable_warmdown -> wsd with a linear cooldown of cooldown_steps or "
                         "round(warmdown_ratio × total_steps) steps to final_lr_ratio × peak; a curve ending more "
                         f"than {end_tolerance:g} × total_steps early is "
                         + ("cut at its last evaluated step (knots; cosine pieces as 256 linear segments)"
                            if incomplete == "truncate" else "left out"),
        "groups": groups,
        "n_curves_truncated": n_trunc,
        "n_curves_short_kept": int(((df["x_last_eval_step"] < df["x_planned_total_steps"])
                                    & ~df["x_curve_truncated"]).sum()),
        "incomplete_skipped": incomplete_skipped,
        "skipped": skipped,
        "warnings": [f"skipped {s['run']}: {s['reason']}" for s in skipped]
                    + [f"{r.run_id}: final loss {r.final_loss:.4g} nats is above ln(vocab_size {r.x_vocab_size}) = "
                       f"{math.log(r.x_vocab_size):.4g}, the loss of uniform predictions: imported as diverged"
                       for r in (df[df["diverged"]] if len(df) else df).itertuples()],
    }
