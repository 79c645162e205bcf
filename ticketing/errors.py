"""Ticketing errors.

::

    Sense311Error
     └── TicketingError
          ├── TicketingConfigError     bad ticketing settings: unknown sink, bad mapping (exit code 2)
          ├── MappingError             a ticket cannot become a request: no service for the problem, a
          │                            required attribute without a value (the outbox row is dead-lettered)
          ├── OutboxError              an operator action on an outbox row that its state does not allow
          ├── Open311Error             an HTTP delivery failed (Open311 and the webhook sink alike)
          │    ├── RateLimited         429, 503 with Retry-After, or our own per-endpoint limit: retry later
          │    ├── TransientError      network failure before the request was sent, 5xx on a read
          │    │    └── ResponseError  a body that is not the XML or JSON the spec describes
          │    ├── AmbiguousError      timeout or 5xx after a POST was sent: it may have been created
          │    └── PermanentError      400, 403, 404…: retrying would fail the same way
          └── RequestRejected          the Open311 server refuses a request (spec error code and status)

``Open311Error`` keeps the method, URL, HTTP status, the server's own ``description`` and our
reference marker as attributes, so the outbox and reconciliation never parse message text.
httpx exceptions are translated in one adapter (``ticketing/open311/http.py``), chained with ``from``.
"""

from __future__ import annotations

from sense311.errors import ConfigError, Sense311Error

__all__ = [
    "AmbiguousError",
    "MappingError",
    "Open311Error",
    "OutboxError",
    "PermanentError",
    "RateLimited",
    "RequestRejected",
    "ResponseError",
    "TicketingConfigError",
    "TicketingError",
    "TransientError",
]


class TicketingError(Sense311Error):
    """Base of the ticketing package's errors."""


class TicketingConfigError(TicketingError, ConfigError):
    """A ticketing setting is unusable (names the setting, the value and the choices)."""


class MappingError(TicketingError):
    """A ticket cannot be turned into a request for its sink; permanent until the settings change."""


class OutboxError(TicketingError):
    """An outbox row does not exist or its state forbids the requested action."""


class Open311Error(TicketingError):
    """An HTTP call to a ticket sink failed.

    ``status`` is None when no response arrived; ``description`` is what the server said (its
    ``errors[].description`` or the start of the body); ``reference`` is the marker of the ticket
    being sent, if any; ``retry_after`` the seconds the server (or our own limiter) asked us to wait.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str,
        url: str,
        status: int | None = None,
        description: str | None = None,
        reference: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.status = status
        self.description = description
        self.reference = reference
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:  # keyword-only attributes survive pickling
        return (_rebuild, (type(self), str(self), self.__dict__))


def _rebuild(cls: type[Open311Error], message: str, state: dict[str, object]) -> Open311Error:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class RateLimited(Open311Error):
    """The server (429, 503 + Retry-After) or our per-endpoint limiter says: not now."""


class TransientError(Open311Error):
    """Worth retrying, and nothing was created: connection refused, DNS failure, 5xx on a GET."""


class ResponseError(TransientError):
    """The body is neither the XML nor the JSON the spec describes (names the element or field)."""


class AmbiguousError(Open311Error):
    """A POST was sent but its outcome is unknown (timeout, 5xx): reconcile before posting again."""


class PermanentError(Open311Error):
    """The server refused the request for good (400, 403, 404, …); retrying cannot help."""


class RequestRejected(TicketingError):
    """Raised inside the Open311 server: answered as the spec's error list with ``status``."""

    def __init__(self, status: int, description: str, code: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.code = code if code is not None else status
        self.description = description
