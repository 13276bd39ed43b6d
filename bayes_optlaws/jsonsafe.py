"""One JSON sanitiser for the whole package: :func:`json_safe`.

Everything the package writes as JSON (rankings, evaluation results, reports) goes through it, so a missing
number is always ``null`` (never ``NaN`` / ``Infinity``, which strict JSON readers reject) and numpy or pandas
values never reach :func:`json.dumps`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

__all__ = ["json_safe"]


def json_safe(obj: Any) -> Any:
    """A copy of ``obj`` that :func:`json.dumps` accepts and that holds no NaN or infinity.

    * mappings -> ``dict`` with ``str`` keys; lists, tuples, :class:`pandas.Series` and numpy arrays -> lists;
    * :class:`pandas.DataFrame` -> a list of row records (``{column: value}``);
    * numpy booleans / integers / floats -> Python ``bool`` / ``int`` / ``float``;
    * NaN, +inf and -inf (Python or numpy floats) -> ``None`` (JSON ``null``);
    * anything else (``str``, ``None``, ...) is returned as it is.

    Containers are converted recursively; the input is not modified.
    """
    if isinstance(obj, Mapping):
        return {str(key): json_safe(value) for key, value in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return json_safe(obj.to_dict(orient="records"))
    if isinstance(obj, (np.ndarray, pd.Series)):
        return json_safe(obj.tolist())  # a 0-d array gives its one number
    if isinstance(obj, (list, tuple)):
        return [json_safe(value) for value in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj
