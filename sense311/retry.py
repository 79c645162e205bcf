"""The one backoff helper: exponential with full jitter, a cap and an overall deadline.

Everything that retries in sense311 (database reconnects, batch commits, broker reconnects,
Open311 posts) goes through ``Backoff`` so the policy is tuned in one place.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sense311.errors import RetryError

__all__ = ["Backoff", "retry_call"]

T = TypeVar("T")


@dataclass(slots=True)
class Backoff:
    """Delays for successive attempts: ``base · 2^n`` capped at ``cap``, with full jitter.

    ``deadline`` (seconds from the first attempt, ``None`` = forever) bounds the total time.
    ``rng`` is injectable so tests get repeatable delays.
    """

    base: float = 0.1
    cap: float = 30.0
    deadline: float | None = None
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0
    started: float = field(default_factory=time.monotonic)

    def next_delay(self, minimum: float = 0.0) -> float:
        """The delay before the next attempt; at least ``minimum`` (e.g. a server's Retry-After)."""
        ceiling = min(self.cap, self.base * (2**self.attempts))
        self.attempts += 1
        return max(minimum, self.rng.uniform(ceiling / 2, ceiling))

    def expired(self, now: float | None = None) -> bool:
        if self.deadline is None:
            return False
        return ((now if now is not None else time.monotonic()) - self.started) >= self.deadline

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def reset(self) -> None:
        self.attempts = 0
        self.started = time.monotonic()


def retry_call(
    func: Callable[[], T],
    *,
    is_transient: Callable[[BaseException], bool],
    backoff: Backoff | None = None,
    what: str = "operation",
    on_retry: Callable[[BaseException, float], None] | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Call ``func`` until it succeeds, a permanent error occurs or the deadline passes.

    Permanent errors propagate unchanged; when the deadline passes, ``RetryError`` says how
    many attempts were made over how long, chained to the last error.
    """
    backoff = backoff or Backoff()
    while True:
        try:
            return func()
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = backoff.next_delay()
            if backoff.deadline is not None and backoff.elapsed() + delay > backoff.deadline:
                raise RetryError(
                    f"{what} failed after {backoff.attempts} attempts in {backoff.elapsed():.1f} s: {exc}",
                    attempts=backoff.attempts,
                    elapsed=backoff.elapsed(),
                ) from exc
            if on_retry is not None:
                on_retry(exc, delay)
            sleep(delay)
