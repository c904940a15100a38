"""Shape statistics of load curves (docs/science.md#load-curve-and-shape)."""

import numpy as np
import pandas as pd
import pytest

from dnn_spring import load_shape


def _curve_from_loads(loads, start=3.0):
    return np.concatenate([[start], start - np.cumsum(loads)])


def test_definitions_against_hand_computation():
    loads = np.array([0.1, 0.2, 0.4, 0.8])
    shape = load_shape(_curve_from_loads(loads))
    np.testing.assert_allclose(shape.loads, loads)
    assert shape.v == pytest.approx(np.std(loads))
    assert shape.c == pytest.approx(0.1 - 0.8)
    # c is also the telescoping sum of successive load differences.
    assert shape.c == pytest.approx(np.sum(loads[:-1] - loads[1:]))
    assert shape.regime == "concave"


def test_regimes():
    assert load_shape(_curve_from_loads([1, 1, 1, 1])).regime == "linear"
    assert load_shape(_curve_from_loads([1, 1, 1, 1])).c == pytest.approx(0)
    assert load_shape(_curve_from_loads([0.9, 1.0, 1.1, 1.05])).regime == "linear"
    assert load_shape(_curve_from_loads([2.0, 1.0, 0.5, 0.2])).regime == "convex"
    assert load_shape(_curve_from_loads([0.1, 0.2, 0.5, 2.0])).regime == "concave"


def test_linear_fit():
    values = 5.0 - 0.7 * np.arange(6)
    shape = load_shape(values)
    assert shape.slope == pytest.approx(-0.7)
    assert shape.intercept == pytest.approx(5.0)
    assert shape.r2 == pytest.approx(1.0)


def test_logits_point_dropped_from_dataframe_and_by_index():
    values = list(_curve_from_loads([1, 1, 1])) + [-10.0]
    frame = pd.DataFrame({"layer": list("abcde"), "log_d": values,
                          "is_logits": [False] * 4 + [True]})
    assert load_shape(frame).regime == "linear"
    assert load_shape(values, logits=-1).regime == "linear"
    assert load_shape(frame, logits="e").regime == "linear"
    assert load_shape(values, logits=None).regime == "concave"


def test_errors():
    with pytest.raises(ValueError, match="at least 3 points"):
        load_shape([1.0, 0.5])
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_shape([1.0, np.nan, 0.2])
    with pytest.raises(ValueError, match="'log_d' column"):
        load_shape(pd.DataFrame({"x": [1, 2, 3]}))
    with pytest.raises(ValueError, match="not in the curve"):
        load_shape(pd.DataFrame({"layer": list("abc"), "log_d": [3, 2, 1]}), logits="z")
    with pytest.raises(ValueError, match="linear_tol"):
        load_shape([3, 2, 1], linear_tol=-1)


def test_as_dict_is_json_ready():
    import json

    out = load_shape([3.0, 2.0, 1.5, 1.2]).as_dict()
    assert json.loads(json.dumps(out))["regime"] == out["regime"] == "convex"
