"""Conditions on an aggregate value, parsed without ``eval``.

Written as text::

    "> 0.9"   ">= 5"   "< 5"   "<= 0"   "== 0"   "!= 1"
    "between 0.2 0.4"   "between 0.2 and 0.4"   "outside 10 20"

or structured: ``{op: ">", value: 0.9}``, ``{op: between, value: [0.2, 0.4]}``. ``between`` and
``outside`` bounds are inclusive for ``between`` (so ``outside`` is their exact complement).
A value that is not a number (an undefined aggregate) satisfies no condition.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["OPERATORS", "Condition", "parse_condition"]

#: Operators and how many bounds they take.
OPERATORS: dict[str, int] = {
    ">": 1,
    ">=": 1,
    "<": 1,
    "<=": 1,
    "==": 1,
    "!=": 1,
    "between": 2,
    "outside": 2,
}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_COMPARE = re.compile(rf"^\s*(>=|<=|==|!=|>|<|=)\s*({_NUMBER})\s*$")
_RANGE = re.compile(rf"^\s*(between|outside)\s+({_NUMBER})\s*(?:,|\s+and\s+|\s+)\s*({_NUMBER})\s*$", re.I)
_EXAMPLES = "'> 0.9', '<= 5', 'between 0.2 0.4' or {op: '>', value: 0.9}"


@dataclass(frozen=True, slots=True)
class Condition:
    """``value op bound`` (or ``low <= value <= high`` for ``between``)."""

    op: str
    bounds: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"unknown operator {self.op!r}; expected one of {', '.join(OPERATORS)}")
        if len(self.bounds) != OPERATORS[self.op]:
            raise ValueError(f"{self.op!r} takes {OPERATORS[self.op]} bound(s), got {len(self.bounds)}")
        if any(not math.isfinite(b) for b in self.bounds):
            raise ValueError(f"condition bounds must be finite numbers, got {list(self.bounds)}")
        if self.op in ("between", "outside") and self.bounds[0] > self.bounds[1]:
            low, high = self.bounds
            raise ValueError(f"{self.op} needs low <= high, got {low:g} > {high:g}")

    def test(self, values: np.ndarray) -> np.ndarray:
        """Element-wise truth for an array of float values; NaN is never true."""
        v = np.asarray(values, dtype=np.float64)
        b = self.bounds
        with np.errstate(invalid="ignore"):
            match self.op:
                case ">":
                    return v > b[0]
                case ">=":
                    return v >= b[0]
                case "<":
                    return v < b[0]
                case "<=":
                    return v <= b[0]
                case "==":
                    return v == b[0]
                case "!=":
                    return (v != b[0]) & ~np.isnan(v)
                case "between":
                    return (v >= b[0]) & (v <= b[1])
                case _:  # outside
                    return (v < b[0]) | (v > b[1])

    def holds(self, value: float | None) -> bool:
        """Truth for one value (None and NaN are never true)."""
        if value is None:
            return False
        return bool(self.test(np.array([value]))[0])

    @property
    def threshold(self) -> tuple[float, ...]:
        """The bound(s), for reports that draw them."""
        return self.bounds

    def __str__(self) -> str:
        if len(self.bounds) == 2:
            return f"{self.op} {self.bounds[0]:g} {self.bounds[1]:g}"
        return f"{self.op} {self.bounds[0]:g}"


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)


def parse_condition(value: Any) -> Condition:
    """A ``Condition`` from text or ``{op, value}``; ``ValueError`` with an example otherwise."""
    if isinstance(value, Condition):
        return value
    if isinstance(value, str):
        match = _COMPARE.match(value)
        if match:
            op = "==" if match[1] == "=" else match[1]
            return Condition(op, (float(match[2]),))
        match = _RANGE.match(value)
        if match:
            return Condition(match[1].lower(), (float(match[2]), float(match[3])))
        raise ValueError(f"expected a condition like {_EXAMPLES}, got {value!r}")
    if isinstance(value, dict):
        unknown = set(value) - {"op", "value"}
        if unknown or "op" not in value or "value" not in value:
            raise ValueError(f"expected {{op, value}}, got keys {sorted(value)}")
        op = str(value["op"]).strip().lower()
        op = "==" if op == "=" else op
        if op not in OPERATORS:
            raise ValueError(f"unknown operator {value['op']!r}; expected one of {', '.join(OPERATORS)}")
        bound = value["value"]
        if OPERATORS[op] == 2:
            if not isinstance(bound, list | tuple) or len(bound) != 2:
                raise ValueError(f"{op!r} needs value: [low, high], got {bound!r}")
            return Condition(op, (_number(bound[0], "low"), _number(bound[1], "high")))
        return Condition(op, (_number(bound, "value"),))
    raise ValueError(f"expected a condition like {_EXAMPLES}, got {value!r}")
