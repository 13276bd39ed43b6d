"""Priors as objects: a PyMC distribution by name and parameters, serialisable to and from a dict.

    Prior("HalfNormal", sigma=0.05)                      # the loss law's sigma_slope, tighter than the default
    Prior("HalfNormal", sigma=0.05).to_dict()            # {"dist": "HalfNormal", "kwargs": {"sigma": 0.05}}
    Prior.from_dict({"dist": "StudentT", "kwargs": {"nu": 4, "mu": 0, "sigma": 1}})

The dict has the shape of ``pymc_extras.prior.Prior.to_dict`` (the convention of pymc-marketing and CausalPy), so
a settings file reads the same; pymc-extras itself is not a dependency (its 0.15 release pins pymc < 6.4, this
package needs PyMC 6.4).  A model's components keep their defaults in ``DEFAULT_..._PRIORS`` (name -> Prior) and
record the priors they were fitted with, as dicts, in their saved settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pymc as pm

from .runs import RunsError

#: the parameter a component multiplies by its own scale factor (e.g. the slopes' SVD scale), per distribution
SCALE_PARAMETER = {"Normal": "sigma", "HalfNormal": "sigma", "StudentT": "sigma", "HalfStudentT": "sigma",
                   "Cauchy": "beta", "HalfCauchy": "beta", "Laplace": "b", "Logistic": "s"}
#: distributions whose support is the positive reals (for scale parameters such as sigma_size)
POSITIVE = ("HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential", "Gamma", "InverseGamma", "LogNormal",
            "Weibull")


class PriorError(RunsError):
    """A prior that cannot be built (unknown distribution, bad parameters, wrong support for its role); a
    ``RunsError`` so the command line reports it as a plain message."""


@dataclass(frozen=True)
class Prior:
    """One prior: ``dist`` is a PyMC distribution's class name, ``kwargs`` its parameters (plain numbers)."""

    dist: str
    kwargs: dict[str, float] = field(default_factory=dict)

    def __init__(self, dist: str, **kwargs: Any) -> None:
        distribution = getattr(pm, str(dist), None)
        if not (isinstance(distribution, type) and issubclass(distribution, pm.Distribution)):
            raise PriorError(f"prior distribution {dist!r} is not a PyMC distribution (e.g. 'Normal', "
                             "'HalfNormal', 'StudentT')")
        values = {}
        for key, value in kwargs.items():
            number = np.asarray(value, dtype=float)
            if number.ndim != 0 or not np.isfinite(number):
                raise PriorError(f"{dist} prior: parameter {key}={value!r} must be one finite number")
            values[str(key)] = float(number)
        object.__setattr__(self, "dist", str(dist))
        object.__setattr__(self, "kwargs", values)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v:g}" for k, v in self.kwargs.items())
        return f'Prior("{self.dist}"{", " if params else ""}{params})'

    def to_dict(self) -> dict:
        """``{"dist": name, "kwargs": {parameter: value}}`` (JSON-ready)."""
        return {"dist": self.dist, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Prior":
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or "dist" not in data:
            raise PriorError(f"a prior dict needs a 'dist' entry and optional 'kwargs', got {data!r}")
        return cls(data["dist"], **dict(data.get("kwargs") or {}))

    def scaled(self, factor) -> dict:
        """The parameters with the scale parameter multiplied by ``factor`` (a number or an array)."""
        name = SCALE_PARAMETER.get(self.dist)
        if name is None:
            raise PriorError(f"a {self.dist} prior has no scale parameter to rescale; use one of "
                             f"{', '.join(sorted(SCALE_PARAMETER))}")
        kwargs = dict(self.kwargs)
        kwargs[name] = kwargs.get(name, 1.0) * np.asarray(factor, dtype=float)
        return kwargs

    @property
    def scale(self) -> float:
        """The value of the scale parameter (1 when left at PyMC's default); see :data:`SCALE_PARAMETER`."""
        return float(self.scaled(1.0)[SCALE_PARAMETER[self.dist]])

    def create_variable(self, name: str, *, scale=None, **dims_or_shape):
        """The PyMC random variable ``name`` in the current model.  ``scale`` multiplies the scale parameter
        (:meth:`scaled`, e.g. by the slopes' per-component SVD scale); ``dims`` / ``shape`` pass through."""
        kwargs = self.scaled(scale) if scale is not None else dict(self.kwargs)
        try:
            return getattr(pm, self.dist)(name, **kwargs, **dims_or_shape)
        except (TypeError, ValueError) as exc:
            raise PriorError(f"prior of {name}: {self!r} cannot be built ({exc})") from None


def as_prior(value, role: str) -> Prior:
    """A :class:`Prior` from a Prior or its dict (a settings file), with ``role`` named in the error."""
    if isinstance(value, Prior):
        return value
    try:
        return Prior.from_dict(value)
    except PriorError as exc:
        raise PriorError(f"prior {role!r}: {exc}") from None


def resolve_priors(defaults: Mapping[str, Prior], overrides: Mapping | None, *, positive: tuple[str, ...] = (),
                   scaled: tuple[str, ...] = (), where: str = "priors") -> dict[str, Prior]:
    """``defaults`` with ``overrides`` (name -> Prior or dict) applied, checked: every name known, the
    ``positive`` ones on the positive reals, the ``scaled`` ones with a scale parameter."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise PriorError(f"{where}: unknown prior(s) {', '.join(unknown)}; this model's priors are "
                         f"{', '.join(defaults)}")
    out = {name: as_prior(overrides.get(name, prior), name) for name, prior in defaults.items()}
    for name in positive:
        if out[name].dist not in POSITIVE:
            raise PriorError(f"{where}: {name} is a scale and needs a positive distribution ({', '.join(POSITIVE)}),"
                             f" got {out[name]!r}")
    for name in scaled:
        if out[name].dist not in SCALE_PARAMETER:
            raise PriorError(f"{where}: {name} is rescaled per term and needs a distribution with a scale "
                             f"parameter ({', '.join(sorted(SCALE_PARAMETER))}), got {out[name]!r}")
    return out


def shorthand_priors(config: Mapping, shorthands: Mapping[str, tuple[str, str]]) -> dict[str, Prior]:
    """Priors from a config's number shorthands: ``{"prior_slope_sd": 0.5}`` with ``shorthands`` entry
    ``"prior_slope_sd": ("slope", "Normal")`` gives ``{"slope": Prior("Normal", mu=0, sigma=0.5)}`` (the spelling
    of earlier versions and of the models they saved; ``HalfNormal`` shorthands set ``sigma`` alone)."""
    out = {}
    for key, (name, dist) in shorthands.items():
        if config.get(key) is not None:
            params = {"mu": 0.0} if dist == "Normal" else {}
            out[name] = Prior(dist, **params, sigma=float(config[key]))
    return out


def configured_priors(config: Mapping | None, defaults: Mapping[str, Prior],
                      shorthands: Mapping[str, tuple[str, str]], **checks) -> dict[str, Prior]:
    """A component's priors from its ``config``: ``defaults``, then the number ``shorthands`` it contains, then
    its ``priors`` entries (Prior objects or dicts), checked by :func:`resolve_priors` (``checks``: its
    ``positive`` / ``scaled`` / ``where``)."""
    config = config or {}
    overrides = {**shorthand_priors(config, shorthands), **(config.get("priors") or {})}
    return resolve_priors(defaults, overrides, **checks)


def recorded_config(config: Mapping | None, default_config: Mapping, shorthands: Mapping,
                    priors: Mapping[str, Prior]) -> dict:
    """``config`` over ``default_config``, with the number shorthands dropped and ``priors`` (as resolved from
    it) written out in full as dicts: what a fitted component records."""
    cfg = {key: value for key, value in {**default_config, **(config or {})}.items() if key not in shorthands}
    cfg["priors"] = priors_to_dict(priors)
    return cfg


def priors_to_dict(priors: Mapping[str, Prior]) -> dict[str, dict]:
    """name -> :meth:`Prior.to_dict` (what settings files store)."""
    return {name: prior.to_dict() for name, prior in priors.items()}
