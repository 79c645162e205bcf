"""Per-endpoint token buckets: we slow ourselves down before the city has to answer 429."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ticketing.settings import RateLimit

__all__ = ["RateLimiter"]


@dataclass(slots=True)
class _Bucket:
    rate: float  # tokens per second
    burst: float
    tokens: float
    updated: float


class RateLimiter:
    """One bucket per endpoint name; endpoints without their own limit share ``default``'s settings.

    ``reserve(endpoint, max_wait)`` returns the seconds to wait before calling (0 when a token is
    there), or None when that would exceed ``max_wait`` — then nothing is reserved and the caller
    reschedules instead of blocking. ``clock`` is monotonic seconds, injectable for tests.
    """

    def __init__(self, limits: dict[str, RateLimit], clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, endpoint: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(endpoint)
        if bucket is None:
            limit = self._limits.get(endpoint) or self._limits.get("default")
            if limit is None:
                return None
            bucket = _Bucket(limit.per_minute / 60.0, float(limit.burst), float(limit.burst), now)
            self._buckets[endpoint] = bucket
        return bucket

    def reserve(self, endpoint: str, max_wait: float) -> float | None:
        with self._lock:
            now = self._clock()
            bucket = self._bucket(endpoint, now)
            if bucket is None:
                return 0.0
            bucket.tokens = min(bucket.burst, bucket.tokens + (now - bucket.updated) * bucket.rate)
            bucket.updated = now
            wait = 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / bucket.rate
            if wait > max_wait:
                return None
            bucket.tokens -= 1
            return wait

    def limit_of(self, endpoint: str) -> RateLimit | None:
        return self._limits.get(endpoint) or self._limits.get("default")
