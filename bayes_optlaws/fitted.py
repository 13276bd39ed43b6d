"""A fitted model on disk: a directory with posteriors (netCDF DataTrees via h5netcdf) and JSON settings.

Layout of ``DIR/``::

    settings.json            feature spec (exponents, lr_ref, blocks), standardisation, size groups, priors,
                             sampler settings, diagnostics, noise floor, package version, data hash, model id
    loss_posterior.nc        DataTree of the loss model (posterior, sample_stats, log_likelihood)
    divergence_posterior.nc  DataTree of the divergence / instability model (absent when no run diverged); its
                             settings (config, centres, sizes, unstable_excess) are settings.json's
                             ``divergence_model``
    stage_posterior.nc       DataTree of the continual-training stage model (absent without stage runs)
    stage_runs.csv           the continual-training stages it was fitted on
    train_runs.csv           the runs the model was fitted on (provenance)
    history_runs.csv         the whole runs table it came from, when larger (parents for continual training)

Loading checks the format version and the model id (a hash of the settings) and refuses a directory written by an
incompatible version; predictions of a loaded model equal the original's exactly (same draws, same seeds).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import __version__
from . import continual as ct
from . import divergence as div
from .features import FeatureSpec
from .jsonsafe import json_safe
from .loss_law import LossLawFit
from .size_scaling import SizeStep
from .runs import RunsError, atomic_write_text, file_in_the_way, shown_names
from .runset import RunSet

FORMAT_VERSION = 1
SETTINGS = "settings.json"
LOSS_FILE = "loss_posterior.nc"
DIV_FILE = "divergence_posterior.nc"
RUNS_FILE = "train_runs.csv"
HISTORY_FILE = "history_runs.csv"
STAGE_FILE = "stage_posterior.nc"
STAGE_RUNS_FILE = "stage_runs.csv"


@dataclass(frozen=True)
class StoredComponent:
    """How one fitted component of a law is stored: the law's attribute that holds it, the netCDF file of its
    posterior (the DataTree groups kept, minus per-run deterministics that predictions recompute), where its
    settings go in settings.json (``None``: at the top level, as the loss law's have been since the first format),
    how it is rebuilt from them and its posterior, and whether settings.json says it was saved (then its posterior
    file must be there: a missing one is an error, never a model silently without that component)."""

    attribute: str
    posterior_file: str
    settings_key: str | None
    groups: tuple[str, ...]
    drop: tuple[str, ...]
    rebuild: Callable[[dict, dict, object], object]  # (its settings, the whole settings.json, posterior) -> component
    saved: Callable[[dict], bool]                    # settings.json -> was the component saved?


#: the components with a posterior, in the order they are fitted; a missing one (no divergence model, no stage
#: model) is ``None`` on the law and has no file
COMPONENTS = (
    StoredComponent("loss_fit_", LOSS_FILE, None, ("posterior", "sample_stats", "log_likelihood", "observed_data"),
                    ("mu",), lambda own, _all, idata: LossLawFit.from_settings(own, idata), lambda s: True),
    # a directory saved before the outcome model has a posterior but no "divergence_model" settings: it loads as
    # the five-parameter area_logistic boundary it was fitted with
    StoredComponent("div_fit_", DIV_FILE, "divergence_model", ("posterior", "sample_stats"),
                    ("p_diverge", "p_unstable"),
                    lambda own, all_, idata: (div.legacy_fit(all_, idata) if own is None
                                              else div.DivergenceFit.from_settings(own, idata)),
                    lambda s: bool(s.get("has_divergence_model"))),
    StoredComponent("stage_fit_", STAGE_FILE, "stage_model", ("posterior", "sample_stats"), (),
                    lambda own, _all, idata: ct.StageFit.from_settings(own, idata),
                    lambda s: bool(s.get("stage_model"))),
)

#: the tables a law keeps, as CSV files: (attribute, file); the history is written only when it holds more than
#: the training runs and the stage runs only with a stage model
TABLES = (("train_set_", RUNS_FILE), ("history_set_", HISTORY_FILE), ("stage_runs_", STAGE_RUNS_FILE))

#: the rest of a BayesOptLaw's fitted state, set by fit() and by load_model() alike
OWN_ATTRIBUTES = (
    "model_config_", "sampler_config_", "divergence_config_", "stage_config_", "spec_", "exponent_search_",
    "noise_floor_", "diverged_loss_", "log_N_center_", "log_D_center_", "excluded_unstable_", "size_step_",
    "fit_seconds_", "data_hash_", "settings_",
)

#: the fitted state of a BayesOptLaw: what fit() sets, save_model() writes and load_model() restores (the
#: completeness guard: a fitted and a loaded model have exactly these, tested)
FITTED_ATTRIBUTES = (tuple(c.attribute for c in COMPONENTS) + ("train_set_", "history_set_") + OWN_ATTRIBUTES)


class ModelFormatError(RunsError):
    """A model directory that cannot be loaded (missing files, other version, tampered settings)."""


def missing_fitted_attributes(law) -> list[str]:
    """The :data:`FITTED_ATTRIBUTES` a law lacks (plus ``stage_runs_`` when it has a stage model)."""
    names = FITTED_ATTRIBUTES + (("stage_runs_",) if getattr(law, "stage_fit_", None) is not None else ())
    return [name for name in names if not hasattr(law, name)]


def model_settings(law) -> dict:
    """Everything of a fitted law that settings.json records, with its model id (a hash of the rest)."""
    s = {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "feature_spec": law.spec_.to_dict(),
        "feature_names": law.spec_.feature_names,
        "model_config": law.model_config_,
        "sampler_config": law.sampler_config_,
        "random_seed": law.random_seed,
        "noise_floor": None if not np.isfinite(law.noise_floor_) else law.noise_floor_,
        "diverged_loss": law.diverged_loss_,
        "log_N_center": law.log_N_center_, "log_D_center": law.log_D_center_,
        # the divergence model's, also in its own settings: kept at the top level for models saved before it
        "div_log_c_center": law.div_log_c_center_,
        "has_divergence_model": law.div_fit_ is not None,
        "divergence_diagnostics": law.div_diagnostics_,
        "divergence_config": law.divergence_config_,
        "excluded_unstable": list(law.excluded_unstable_),
        "data_hash": law.data_hash_,
        "n_train_runs": int(len(law.train_runs_)),
        "fit_seconds": law.fit_seconds_,
        "exponent_search": (None if law.exponent_search_ is None
                            else json_safe(law.exponent_search_.to_dict(orient="split", index=False))),
        "size_step": law.size_step_.to_dict() if law.size_step_ is not None else None,
    }
    for comp in COMPONENTS:
        fitted = getattr(law, comp.attribute)
        if comp.settings_key is None:
            s.update(fitted.settings())
        else:
            s[comp.settings_key] = fitted.settings() if fitted is not None else None
    s["id"] = model_id(s)
    return s


#: every file a saved model may hold; ``save(..., force=True)`` replaces these and nothing else
MODEL_FILES = (SETTINGS, LOSS_FILE, DIV_FILE, RUNS_FILE, HISTORY_FILE, STAGE_FILE, STAGE_RUNS_FILE)


def writable_model_dir(path, force: bool) -> Path:
    """``path`` as a directory a model may be written to: new, or (with ``force``) a model directory holding
    nothing but a model's own files (:data:`MODEL_FILES`).  Raises :class:`~bayes_optlaws.runs.RunsError` for an
    existing path without ``force``, a file, a parent that is a file, or a directory with other files in it (they
    would be lost).  Cheap: call it before a fit, so a bad ``--out`` fails before minutes of sampling."""
    path = Path(path)
    blocker = file_in_the_way(path)
    if blocker is not None:
        raise RunsError(f"cannot write a model to {path}: {blocker} is a file, not a directory; choose another path")
    if not path.exists():
        return path
    if not path.is_dir():
        raise RunsError(f"cannot write a model to {path}: it is a file (a model is a directory); choose another "
                        "path")
    if not force:
        raise RunsError(f"{path} already exists; choose another directory or pass --force to overwrite it")
    if not any(path.iterdir()):
        return path
    if not (path / SETTINGS).exists():
        raise RunsError(f"{path} exists and is not a bayes_optlaws model directory; refusing to overwrite it")
    foreign = sorted(p.name for p in path.iterdir() if p.name not in MODEL_FILES)
    if foreign:
        raise RunsError(f"{path} holds files that are not part of a saved model ({shown_names(foreign, limit=5)}); "
                        "--force replaces a model's own files only: move them or choose another directory")
    return path


def save_model(law, path, force: bool = False) -> Path:
    """Write a fitted :class:`~bayes_optlaws.optlaw.BayesOptLaw` to directory ``path``."""
    law._check_fitted()
    missing = missing_fitted_attributes(law)
    if missing:
        raise RuntimeError(f"cannot save this BayesOptLaw: its fitted state lacks {', '.join(missing)} (set by "
                           "fit() or load_model()); refit it before saving")
    path = writable_model_dir(path, force)
    for old in MODEL_FILES:  # --force: only a model's own files are replaced (writable_model_dir checked that)
        (path / old).unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    settings = model_settings(law)
    for comp in COMPONENTS:
        fitted = getattr(law, comp.attribute)
        if fitted is not None:
            keep = [g for g in comp.groups if g in fitted.idata.children]
            _write(_subset(fitted.idata, keep, drop=comp.drop), path / comp.posterior_file)
    for attribute, file in TABLES:
        if _table_is_stored(law, attribute):
            table = getattr(law, attribute)
            (table.table if isinstance(table, RunSet) else table).to_csv(path / file, index=False)
    atomic_write_text(path / SETTINGS, json.dumps(settings, indent=2, sort_keys=True) + "\n")
    return path


def _table_is_stored(law, attribute: str) -> bool:
    """Whether :data:`TABLES`' ``attribute`` is written: the history only when larger than the training table,
    the stage runs only with a stage model."""
    if attribute == "history_set_":
        return len(law.history_runs_) != len(law.train_runs_)
    if attribute == "stage_runs_":
        return law.stage_fit_ is not None
    return True


def _subset(tree, groups, drop=()):
    """The named groups of a DataTree, without per-run deterministics (``mu``, ``p_diverge``) that predictions
    recompute from the parameters (they would make a shipped model 10× larger)."""
    import xarray as xr

    out = xr.DataTree()
    for g in groups:
        ds = tree[g].to_dataset()
        if g == "posterior":
            ds = ds.drop_vars([v for v in drop if v in ds.data_vars])
        out[g] = xr.DataTree(ds)
    out.attrs = dict(tree.attrs)
    return out


def _write(tree, path: Path) -> None:
    """netCDF via h5netcdf with zlib compression of every numeric variable."""
    encoding = {}
    for node in tree.subtree:
        enc = {name: {"zlib": True, "complevel": 4} for name, var in node.data_vars.items()
               if var.dtype.kind in "fiub"}
        if enc:
            encoding[node.path] = enc
    tree.to_netcdf(path, engine="h5netcdf", encoding=encoding)


def _open(path: Path):
    import xarray as xr

    if not path.exists():
        raise ModelFormatError(f"{path}: missing from the model directory (its settings.json says it was saved); "
                               "restore the file or refit the model")
    try:
        return xr.open_datatree(path, engine="h5netcdf").load()
    except Exception as exc:  # unreadable or truncated file
        raise ModelFormatError(f"{path}: cannot be read as a netCDF posterior ({exc})") from None


def load_model(path):
    """Load a model directory written by :func:`save_model`; refuses incompatible or altered directories."""
    from .optlaw import BayesOptLaw  # the estimator imports this module; load needs the class at call time

    path = Path(path)
    if not (path / SETTINGS).exists():
        raise ModelFormatError(f"{path}: not a bayes_optlaws model directory (no {SETTINGS}); fit one with "
                               "`bayes-optlaws fit --out DIR`")
    try:
        s = json.loads((path / SETTINGS).read_text())
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path / SETTINGS}: not valid JSON ({exc.msg})") from None
    if not isinstance(s, dict):
        raise ModelFormatError(f"{path / SETTINGS}: holds a JSON {type(s).__name__}, not a model's settings "
                               "object; refit the model with `bayes-optlaws fit`")
    if s.get("format_version") != FORMAT_VERSION:
        raise ModelFormatError(f"{path}: model format version {s.get('format_version')} written by bayes_optlaws "
                               f"{s.get('package_version')}; this is version {__version__} (format "
                               f"{FORMAT_VERSION}). Refit the model with `bayes-optlaws fit`.")
    if _major_minor(s.get("package_version", "")) != _major_minor(__version__):
        raise ModelFormatError(f"{path}: written by bayes_optlaws {s.get('package_version')}, incompatible with "
                               f"{__version__}; refit it with `bayes-optlaws fit`.")
    if model_id(s) != s.get("id"):
        raise ModelFormatError(f"{path}: settings.json does not match its recorded model id (edited by hand?); "
                               "refit the model.")
    law = BayesOptLaw(FeatureSpec.from_dict(s["feature_spec"]), model_config=s["model_config"],
                      sampler_config=s["sampler_config"], random_seed=s["random_seed"],
                      divergence_config=s.get("divergence_config"))
    law._resolve_configs(check_priors=False)
    for comp in COMPONENTS:  # the loss law always has its posterior; the others only when they were fitted
        own = s if comp.settings_key is None else s.get(comp.settings_key)
        fitted = comp.rebuild(own, s, _open(path / comp.posterior_file)) if comp.saved(s) else None
        setattr(law, comp.attribute, fitted)
    law.spec_ = FeatureSpec.from_dict(s["feature_spec"])
    law.noise_floor_ = float("nan") if s["noise_floor"] is None else s["noise_floor"]
    law.diverged_loss_ = s["diverged_loss"]
    law.log_N_center_, law.log_D_center_ = s["log_N_center"], s["log_D_center"]
    law.data_hash_ = s["data_hash"]
    law.fit_seconds_ = s.get("fit_seconds")
    search = s.get("exponent_search")  # {"columns": [...], "data": [[...], ...]}, or None (fixed exponents)
    law.exponent_search_ = None if search is None else pd.DataFrame(search["data"], columns=search["columns"])
    law.settings_ = s
    law.excluded_unstable_ = list(s.get("excluded_unstable") or [])
    law.size_step_ = SizeStep.from_dict(s["size_step"]) if s.get("size_step") is not None else None
    law.train_set_ = _read_runs(path / RUNS_FILE)
    law.history_set_ = _read_runs(path / HISTORY_FILE) if (path / HISTORY_FILE).exists() else law.train_set_
    if law.stage_fit_ is not None:
        if not (path / STAGE_RUNS_FILE).exists():
            raise ModelFormatError(f"{path / STAGE_RUNS_FILE}: missing from the model directory (the model has a "
                                   "stage model, fitted on these runs); restore the file or refit the model")
        law.stage_runs_ = pd.read_csv(path / STAGE_RUNS_FILE, dtype=CSV_TYPES)
    if data_hash(law.train_runs_) != law.data_hash_:
        raise ModelFormatError(f"{path / RUNS_FILE}: training data does not match the model's data hash; refit.")
    return law


#: the text columns of a saved runs table (read as strings, never as numbers)
CSV_TYPES = {"run_id": str, "parent_run_id": str, "schedule": str}


def _read_runs(path: Path) -> RunSet:
    """A runs table of a model directory as a run set (a missing file is a ModelFormatError)."""
    if not path.exists():
        raise ModelFormatError(f"{path}: missing from the model directory; refit the model")
    return RunSet.of_runs(pd.read_csv(path, dtype=CSV_TYPES), where=str(path))


def data_hash(runs: pd.DataFrame) -> str:
    """sha256 of the training table's defining columns (first 16 hex digits)."""
    cols = ["run_id", "model_params", "tokens", "tokens_per_step", "schedule", "final_loss", "diverged"]
    text = runs[cols].to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_id(settings: dict) -> str:
    """Identity of a fitted model: sha256 of its settings (minus the id itself), first 16 hex digits."""
    payload = {k: v for k, v in settings.items() if k != "id"}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])
