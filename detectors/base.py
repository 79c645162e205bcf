"""The contract every detector keeps.

**High score = anomalous.** Every score is a float in [0, 1]: 0 means "nothing unusual" (and
is what a detector says while warming up), values near 1 mean the observation is as unusual as
the detector can tell. What counts as "too high" is a rule's threshold, never the detector's:
scores are written to ``detector_scores`` and rules read them as ``metric: detector.<name>``.

A detector is a small stateful object fed one series in time order:

* ``update_one(t, x)`` scores observation ``x`` at ``t`` against everything seen before, then
  learns from it — unless its score reached ``protect`` (a flagged point never moves the
  baseline) or the caller passed ``learn=False`` (e.g. a labelled fault episode in training);
* ``score_one(t, x)`` is the same score without changing the detector;
* ``learn_one(t, x)`` is ``update_one`` without the score;
* ``score_series(timestamps, values)`` is ``update_one`` over a whole series, vectorised with
  numpy. It gives exactly the scores the one-by-one loop gives, so the score at index ``i``
  depends only on observations ``0..i``: appending data never changes earlier scores.

``t`` is seconds since the Unix epoch (UTC, a float); ``x`` is one float, or for detectors whose
``inputs`` is ``"peers"`` a row ``[own value, neighbour 1, neighbour 2, …]`` (NaN where a
neighbour has no value). Each score comes with its evidence: named numbers (the expectation,
the scale, the run length, …) that say why, in the series' own units.

Warm-up is ``grace_period``: the score is 0 for the first ``grace_period`` observations a
detector sees. State is plain numpy and Python objects, so a detector pickles: that is how
trained models are stored.
"""

from __future__ import annotations

import copy
import inspect
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from detectors.timebase import as_seconds
from sense311.errors import ConfigError

__all__ = ["Detector", "Scored", "Scores", "squash"]

#: Default protection: an observation scored at or above this is not learned. Half-way up the
#: scale, because a point the detector already finds odd should not teach it what normal is.
DEFAULT_PROTECT = 0.5


def squash(measure: np.ndarray | float, half: float) -> np.ndarray:
    """Map a non-negative measure of surprise onto [0, 1): ``m / (m + half)``.

    ``half`` is the measure that scores 0.5; nine times it scores 0.9. NaN and negative measures
    score 0.
    """
    m = np.asarray(measure, dtype=np.float64)
    m = np.where(np.isfinite(m) & (m > 0), m, 0.0)
    return m / (m + half)


@dataclass(frozen=True, slots=True)
class Scored:
    """One observation's score in [0, 1] and the evidence behind it."""

    score: float
    evidence: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Scores:
    """The scores of a series: ``score[i]`` for observation ``i`` at ``time[i]`` (UTC seconds).

    ``evidence`` holds one array per evidence name, aligned with ``score``.
    """

    time: np.ndarray
    score: np.ndarray
    evidence: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.score)

    def at(self, i: int) -> Scored:
        """Observation ``i``'s score and evidence (NaN evidence is left out)."""
        ev = {}
        for key, column in self.evidence.items():
            value = float(column[i])
            if not math.isnan(value):
                ev[key] = value
        return Scored(float(self.score[i]), ev)


class Detector(ABC):
    """Base class of every detector: the contract is in the module docstring.

    Subclasses set ``name`` (how rules and settings call it), ``evidence_keys`` and implement
    ``_run(t, x, learn)``: score and learn a chunk of observations in order, continuing from the
    current state, and return ``(scores, evidence)``. Every ``__init__`` parameter is stored
    under its own name so ``params()`` and ``clone()`` can rebuild the detector.
    """

    name: ClassVar[str]
    #: ``"value"``: one float per observation; ``"peers"``: own value then the neighbours'.
    inputs: ClassVar[str] = "value"
    evidence_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, grace_period: int = 0, protect: float = DEFAULT_PROTECT, seed: int = 0) -> None:
        if grace_period < 0:
            raise ConfigError(
                f"detector {self.name!r}: grace_period must be >= 0 observations, got {grace_period}"
            )
        if not 0.0 < protect <= 1.0:
            raise ConfigError(f"detector {self.name!r}: protect must be in (0, 1], got {protect}")
        self.grace_period = int(grace_period)
        self.protect = float(protect)
        self.seed = int(seed)
        #: Observations seen so far (warm-up counts these).
        self.n_seen = 0
        #: Time of the last observation (UTC seconds); observations must not go back in time.
        self.last_time = -math.inf

    # -- the public API ------------------------------------------------------------------------

    def update_one(self, t: float, x: float | np.ndarray, learn: bool = True) -> Scored:
        """Score ``x`` at ``t``, then learn it unless it is flagged or ``learn`` is false."""
        row = np.asarray(x, dtype=np.float64).reshape(1, -1) if self.inputs == "peers" else [x]
        return self.score_series([t], row, learn=[learn]).at(0)

    def score_one(self, t: float, x: float | np.ndarray) -> Scored:
        """The score ``update_one`` would give, leaving the detector unchanged."""
        return copy.deepcopy(self).update_one(t, x)

    def learn_one(self, t: float, x: float | np.ndarray) -> None:
        """Learn ``x`` at ``t`` (unless the detector flags it)."""
        self.update_one(t, x)

    def score_series(self, timestamps: Any, values: Any, learn: Any = None) -> Scores:
        """Scores of a whole series, continuing from the detector's state.

        ``timestamps``: UTC seconds (or ``datetime64`` / aware datetimes), non-decreasing and
        not before the last observation already seen. ``values``: floats (NaN = no value),
        or for ``inputs == "peers"`` a 2-D array, one row per timestamp. ``learn``: optional
        booleans; false means "score but never learn" (labelled fault episodes in training).
        """
        t = as_seconds(timestamps)
        x = np.asarray(values, dtype=np.float64)
        if self.inputs == "peers":
            if x.ndim == 1:
                x = x.reshape(-1, 1)
            if x.ndim != 2:
                raise ConfigError(
                    f"detector {self.name!r}: values must be rows [own, peers…], got shape {x.shape}"
                )
        elif x.ndim != 1:
            raise ConfigError(f"detector {self.name!r}: values must be one-dimensional, got shape {x.shape}")
        if len(x) != len(t):
            raise ConfigError(f"detector {self.name!r}: {len(t)} timestamps but {len(x)} values")
        mask = np.ones(len(t), dtype=bool) if learn is None else np.asarray(learn, dtype=bool)
        if len(mask) != len(t):
            raise ConfigError(f"detector {self.name!r}: {len(t)} timestamps but {len(mask)} learn flags")
        if len(t) and (np.any(np.diff(t) < 0) or t[0] < self.last_time):
            raise ConfigError(
                f"detector {self.name!r}: timestamps must not go back in time "
                f"(last seen {self.last_time:.3f} s, got {float(t.min()):.3f} s)"
            )
        if not len(t):
            return Scores(t, np.zeros(0), {k: np.zeros(0) for k in self.evidence_keys})
        scores, evidence = self._run(t, x, mask)
        self.last_time = float(t[-1])
        return Scores(t, scores, evidence)

    def score_idle(self, t: float) -> Scored | None:
        """A score at ``t`` when the sensor sent nothing new, or None (most detectors only
        score observations; the silent-sensor detector overrides this)."""
        del t
        return None

    def params(self) -> dict[str, Any]:
        """The constructor parameters, enough to rebuild an untrained twin."""
        names = [
            p.name
            for klass in type(self).__mro__
            if klass is not object and "__init__" in vars(klass)
            for p in inspect.signature(klass.__init__).parameters.values()
            if p.name != "self" and p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        return {name: copy.deepcopy(getattr(self, name)) for name in dict.fromkeys(names)}

    def clone(self) -> Detector:
        """A fresh detector with the same parameters and no state."""
        return type(self)(**self.params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    # -- for subclasses ------------------------------------------------------------------------

    @abstractmethod
    def _run(
        self, t: np.ndarray, x: np.ndarray, learn: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Score then learn the chunk in order; return the scores and evidence arrays."""

    def _warming(self, n: int) -> np.ndarray:
        """Which of the next ``n`` observations fall in the warm-up; advances ``n_seen``."""
        position = self.n_seen + np.arange(n)
        self.n_seen += n
        return position < self.grace_period

    def _nan_evidence(self, n: int) -> dict[str, np.ndarray]:
        return {k: np.full(n, np.nan) for k in self.evidence_keys}
