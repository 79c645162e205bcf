"""Ingest errors. Every rejection carries the dead-letter ``reason`` it is stored under.

::

    Sense311Error
     └── IngestError
          ├── DecodeError         payload is not what the decoder expects   (reason: decode_error, …)
          ├── RejectedMessage     decoded, but refused by validation        (reason: unknown_sensor, …)
          └── WriteError          the batch could not be committed (transient: retried, not dead-lettered)
"""

from __future__ import annotations

from sense311.errors import Sense311Error

__all__ = ["DecodeError", "IngestError", "RejectedMessage", "WriteError"]


class IngestError(Sense311Error):
    """Base of ingest errors; ``reason`` is the dead-letter reason code."""

    reason = "ingest_error"

    def __init__(self, message: str, *, reason: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.detail = detail if detail is not None else message


class DecodeError(IngestError):
    """The payload could not be decoded (bad JSON, wrong shape, no readings …)."""

    reason = "decode_error"


class RejectedMessage(IngestError):
    """The message decoded but validation refused it."""

    reason = "rejected"


class WriteError(IngestError):
    """A batch could not be written."""

    reason = "write_error"
