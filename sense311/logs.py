"""Logging set-up: human text or one JSON object per line, secrets never included.

URLs pass through ``redact_url`` before they are logged; as a second line of defence the
formatter masks anything that looks like ``scheme://user:password@`` in a message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

__all__ = ["setup_logging"]

_CREDENTIALS = re.compile(r"(\w+://[^/\s:@]*:)[^@\s/]+@")


def _mask(text: str) -> str:
    return _CREDENTIALS.sub(r"\1***@", text)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _mask(super().format(record))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _mask(record.getMessage()),
            "process": record.process,
        }
        if record.exc_info:
            entry["exception"] = _mask(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # paho and psycopg_pool log every reconnect attempt at INFO/DEBUG; ours say it once.
    logging.getLogger("psycopg.pool").setLevel(max(logging.WARNING, root.level))
