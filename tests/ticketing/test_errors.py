"""The error tree: every ticketing error is a sense311 error, carries its context and pickles."""

from __future__ import annotations

import pickle

from sense311.errors import ConfigError, Sense311Error
from ticketing.errors import (
    AmbiguousError,
    MappingError,
    Open311Error,
    OutboxError,
    PermanentError,
    RateLimited,
    RequestRejected,
    ResponseError,
    TicketingConfigError,
    TicketingError,
    TransientError,
)


def test_the_tree() -> None:
    for cls in (TicketingConfigError, MappingError, OutboxError, Open311Error, RequestRejected):
        assert issubclass(cls, TicketingError) and issubclass(cls, Sense311Error)
    for cls in (RateLimited, TransientError, AmbiguousError, PermanentError):
        assert issubclass(cls, Open311Error)
    assert issubclass(ResponseError, TransientError)
    assert issubclass(TicketingConfigError, ConfigError) and TicketingConfigError("x").exit_code == 2
    assert MappingError("x").exit_code == 1


def test_context_survives_pickling() -> None:
    error = RateLimited(
        "POST http://x/requests.json → 429: slow down [ref S311-1]",
        method="POST",
        url="http://x/requests.json",
        status=429,
        description="slow down",
        reference="S311-1",
        retry_after=12.0,
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is RateLimited and str(copy) == str(error)
    assert (copy.method, copy.url, copy.status, copy.description, copy.reference, copy.retry_after) == (
        "POST",
        "http://x/requests.json",
        429,
        "slow down",
        "S311-1",
        12.0,
    )
    rejected = RequestRejected(404, "service_code 'x' was not found")
    assert (rejected.status, rejected.code, rejected.description) == (
        404,
        404,
        "service_code 'x' was not found",
    )
