"""Ways the Open311 server can be told to misbehave like real 311 back ends, deterministically.

Each fault is armed for the next N matching calls ("fail the next 2 POSTs with 500 after
creating the request"), so a test knows exactly which attempt fails and needs no sleeps or
randomness. Counters of what the server received let tests assert "zero duplicates".

From the command line: ``--misbehave "xml_only,token_only,fail_after_create=2,rate_limit=3:1.5"``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

from sense311.errors import ConfigError

__all__ = ["Fault", "Misbehaviour"]

Scope = Literal["any", "post", "get"]


@dataclass(slots=True)
class Fault:
    remaining: int
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    scope: Scope = "any"


@dataclass
class Misbehaviour:
    """Faults to inject; thread-safe, changeable while the server runs.

    ``xml_only``: ``.json`` paths answer 404 and discovery lists XML only.
    ``token_only``: every POST answers a token; ``token_lookups_before_ready`` token lookups answer
    without an id before the id appears.
    """

    xml_only: bool = False
    token_only: bool = False
    token_lookups_before_ready: int = 0
    posts_received: int = 0
    requests_created: int = 0
    _faults: dict[str, list[Fault]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _arm(self, name: str, fault: Fault) -> None:
        with self._lock:
            self._faults.setdefault(name, []).append(fault)

    def fail_after_create(self, n: int = 1, status: int = 500) -> None:
        """The next ``n`` POSTs create the request, then answer ``status`` (the ambiguous case)."""
        self._arm("after_create", Fault(n, status=status, scope="post"))

    def fail_before_create(self, n: int = 1, status: int = 503, retry_after: float | None = None) -> None:
        """The next ``n`` POSTs answer ``status`` (with Retry-After when given) and create nothing."""
        self._arm("before_create", Fault(n, status=status, retry_after=retry_after, scope="post"))

    def rate_limit(self, n: int = 1, retry_after: float = 1.0, scope: Scope = "any") -> None:
        """The next ``n`` calls in ``scope`` answer 429 with Retry-After."""
        self._arm("rate_limit", Fault(n, status=429, retry_after=retry_after, scope=scope))

    def delay_after_create(self, n: int = 1, seconds: float = 2.0) -> None:
        """The next ``n`` POSTs create the request, then wait ``seconds`` before answering."""
        self._arm("delay", Fault(n, seconds=seconds, scope="post"))

    def garbage(self, n: int = 1, scope: Scope = "any") -> None:
        """The next ``n`` successful answers in ``scope`` are cut short (malformed JSON or XML)."""
        self._arm("garbage", Fault(n, scope=scope))

    def take(self, name: str, method: str) -> Fault | None:
        """Consume one armed fault ``name`` that applies to ``method``; None when none is armed."""
        kind = "post" if method.upper() == "POST" else "get"
        with self._lock:
            for fault in self._faults.get(name, []):
                if fault.remaining > 0 and fault.scope in ("any", kind):
                    fault.remaining -= 1
                    return fault
        return None

    def count(self, what: Literal["posts_received", "requests_created"]) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def armed(self) -> dict[str, int]:
        with self._lock:
            return {name: sum(f.remaining for f in faults) for name, faults in self._faults.items()}

    @classmethod
    def parse(cls, spec: str) -> Misbehaviour:
        """``xml_only,token_only,fail_after_create=N[:status],fail_before_create=N[:status[:retry_after]],
        rate_limit=N[:retry_after],delay_after_create=N[:seconds],garbage=N,token_lookups_before_ready=N``."""
        m = cls()
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            name, _, value = part.partition("=")
            args = value.split(":") if value else []
            try:
                if name in ("xml_only", "token_only") and not value:
                    setattr(m, name, True)
                elif name == "token_lookups_before_ready":
                    m.token_lookups_before_ready = int(args[0])
                elif name == "fail_after_create":
                    m.fail_after_create(int(args[0]) if args else 1, *(int(a) for a in args[1:2]))
                elif name == "fail_before_create":
                    status = int(args[1]) if len(args) > 1 else 503
                    retry = float(args[2]) if len(args) > 2 else None
                    m.fail_before_create(int(args[0]) if args else 1, status, retry)
                elif name == "rate_limit":
                    m.rate_limit(int(args[0]) if args else 1, float(args[1]) if len(args) > 1 else 1.0)
                elif name == "delay_after_create":
                    m.delay_after_create(
                        int(args[0]) if args else 1, float(args[1]) if len(args) > 1 else 2.0
                    )
                elif name == "garbage":
                    m.garbage(int(args[0]) if args else 1)
                else:
                    raise ConfigError(
                        f"--misbehave: unknown fault {name!r}; known: xml_only, token_only, "
                        "fail_after_create, fail_before_create, rate_limit, delay_after_create, garbage, "
                        "token_lookups_before_ready"
                    )
            except (ValueError, IndexError) as exc:
                raise ConfigError(
                    f"--misbehave: {part!r}: expected numbers after '=' separated by ':'"
                ) from exc
        return m
