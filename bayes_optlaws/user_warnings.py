"""Warnings attributed to the caller's own code.

A warning raised deep inside a prediction (an extrapolation, draws held at a bound, a sampler diagnostic) is
reported at the first frame outside this package: the user's script line or notebook cell, whichever internal path
raised it (Python 3.12's ``skip_file_prefixes``), rather than at a line of this package that means nothing to them.
"""

from __future__ import annotations

import os
import warnings

#: frames whose file lies under this folder are skipped when a warning is attributed
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` attributed to the first caller outside the package."""
    warnings.warn(message, category, skip_file_prefixes=(PACKAGE_DIR,))
