"""Where the embedded data and the shipped default model live.

Two layouts, one set of names:

* **installed package** (``pip install .``, a wheel): the build step in ``setup.py`` copies the repository's
  ``data/`` and ``models/default/`` into the package as ``bayes_optlaws/_shipped/``, found here through
  :mod:`importlib.resources`;
* **source checkout / editable install** (``pip install -e .``): nothing is copied; the repository's own
  top-level ``data/`` and ``models/`` are used, so a refitted default model is picked up at once.

``SHIPPED_ROOT`` is the folder holding ``data/`` and ``models/`` in whichever layout is in use.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: repository root when running from a source checkout (``…/bayes_optlaws/paths.py`` -> ``…``)
REPO_ROOT = Path(__file__).resolve().parents[1]
#: name of the package-data folder the build step creates inside the installed package
PACKAGED_DIR = "_shipped"


def _packaged_root() -> Path | None:
    """``bayes_optlaws/_shipped/`` of an installed package, or ``None`` in a source checkout."""
    root = resources.files("bayes_optlaws") / PACKAGED_DIR
    if not root.is_dir():
        return None
    # wheels are installed unpacked, so the resource is a real folder; a zipped package is not supported
    return Path(str(root))


def shipped_root() -> Path:
    """The folder that holds ``data/`` and ``models/``: inside the installed package, else the repository."""
    return _packaged_root() or REPO_ROOT


SHIPPED_ROOT = shipped_root()
#: the embedded data: ``grid/`` (runs table, curves, manifest), ``examples/`` (candidates), ``specs/`` (sweeps)
DATA = SHIPPED_ROOT / "data"
DEFAULT_RUNS = DATA / "grid" / "runs.csv"
DEFAULT_CANDIDATES = DATA / "examples" / "candidates.csv"
DEFAULT_MODEL = SHIPPED_ROOT / "models" / "default"
