"""A token bucket per client, in process: enough to keep one client from starving the others.

Several API processes each keep their own buckets, so the limit a client sees is per process;
a deployment that needs one global limit puts it in its reverse proxy.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_CLIENTS", "RateLimiter"]

#: Buckets kept at most. Past it the least recently seen client's bucket is dropped: that client
#: starts again with a full bucket, which errs on the lenient side and bounds memory whatever
#: the number of addresses hitting the API.
MAX_CLIENTS = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``take(key)`` returns 0.0 when the request may go ahead, else the seconds until it may.

    ``per_minute`` = 0 disables limiting. ``clock`` is monotonic seconds, injectable for tests.
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str) -> float:
        if not self.enabled:
            return 0.0
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = _Bucket(self.burst, now)
                self._buckets[key] = bucket
                if len(self._buckets) > self._max_clients:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate
