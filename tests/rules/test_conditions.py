"""Conditions are parsed, never evaluated as code."""

from __future__ import annotations

import numpy as np
import pytest

from rules.conditions import Condition, parse_condition


@pytest.mark.parametrize(
    ("text", "op", "bounds"),
    [
        ("> 0.9", ">", (0.9,)),
        (">=5", ">=", (5.0,)),
        ("< -3.5", "<", (-3.5,)),
        ("<= 1e3", "<=", (1000.0,)),
        ("= 0", "==", (0.0,)),
        ("!= 1", "!=", (1.0,)),
        ("between 0.2 0.4", "between", (0.2, 0.4)),
        ("between 0.2 and 0.4", "between", (0.2, 0.4)),
        ("outside 10, 20", "outside", (10.0, 20.0)),
    ],
)
def test_text_forms(text: str, op: str, bounds: tuple[float, ...]) -> None:
    assert parse_condition(text) == Condition(op, bounds)


def test_structured_forms() -> None:
    assert parse_condition({"op": ">", "value": 0.9}) == Condition(">", (0.9,))
    assert parse_condition({"op": "between", "value": [1, 2]}) == Condition("between", (1.0, 2.0))


@pytest.mark.parametrize(
    "bad",
    ["__import__('os')", "> x", "between 3 1", ">> 1", {"op": "~", "value": 1}, {"op": ">"}, 5, None],
)
def test_anything_else_is_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_condition(bad)


def test_truth_and_nan() -> None:
    values = np.array([0.1, 0.3, 0.5, np.nan])
    assert parse_condition("between 0.2 0.4").test(values).tolist() == [False, True, False, False]
    assert parse_condition("outside 0.2 0.4").test(values).tolist() == [True, False, True, False]
    assert parse_condition("!= 0.3").test(values).tolist() == [True, False, True, False]
    assert not parse_condition("< 1").holds(None)
