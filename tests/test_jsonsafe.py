"""The package's one JSON sanitiser: NaN/inf -> null, numpy -> Python, DataFrames -> records."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bayes_optlaws.jsonsafe import json_safe


def test_non_finite_numbers_become_null():
    out = json_safe({"nan": float("nan"), "inf": np.inf, "ninf": np.float32(-np.inf), "ok": np.float64(0.25)})
    assert out == {"nan": None, "inf": None, "ninf": None, "ok": 0.25}
    assert type(out["ok"]) is float


def test_numpy_values_become_python_values():
    out = json_safe({1: np.int64(7), "flag": np.bool_(True), "arr": np.array([[1.0, np.nan], [2.0, 3.0]]),
                     "scalar_array": np.array(2.5), "tup": (np.int32(1), "a", None)})
    assert out == {"1": 7, "flag": True, "arr": [[1.0, None], [2.0, 3.0]], "scalar_array": 2.5,
                   "tup": [1, "a", None]}
    assert type(out["1"]) is int and type(out["flag"]) is bool
    json.dumps(out, allow_nan=False)  # strict JSON: raises on any NaN left


def test_dataframes_become_records_and_series_lists():
    frame = pd.DataFrame({"name": ["a", "b"], "p": [0.5, np.nan], "n": np.array([3, 4], dtype=np.int64)})
    assert json_safe(frame) == [{"name": "a", "p": 0.5, "n": 3}, {"name": "b", "p": None, "n": 4}]
    assert json_safe(frame["p"]) == [0.5, None]


def test_input_is_not_modified():
    data = {"x": [float("nan"), 1.0]}
    json_safe(data)
    assert np.isnan(data["x"][0])
