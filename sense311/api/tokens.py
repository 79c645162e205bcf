"""API tokens: created once, shown once, stored only as a hash (table ``api_tokens``, 0007_api.sql).

A token reads ``s311_<id>_<secret>``: ``id`` is 8 lowercase characters that find the row, the
secret is 32 random bytes (base64url). The row keeps SHA-256 of the whole token; a presented
token is hashed and compared with ``hmac.compare_digest``, so neither a leaked table nor timing
gives a usable token away. A plain hash is enough here, unlike for passwords: 256 random bits
cannot be guessed, so a slow hash would add cost and no safety.

Scopes are ordered: ``read`` < ``write`` < ``admin``; a token grants its scope and those below.

::

    new = create_token(conn, scope="write", name="gateway import", now=now)
    print(new.token)                       # the only time the secret is seen
    revoke_token(conn, new.info.id, now=now)

Connections may be in a transaction or autocommit; each function makes one change. Times are
aware UTC datetimes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from sense311.db.errors import translate
from sense311.errors import ConfigError, Sense311Error

__all__ = [
    "SCOPES",
    "NewToken",
    "Scope",
    "TokenError",
    "TokenInfo",
    "create_token",
    "has_scope",
    "list_tokens",
    "revoke_token",
    "verify_token",
]

Scope = Literal["read", "write", "admin"]
#: Lowest first: a token grants its own scope and every one before it.
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")

TOKEN_PREFIX = "s311_"
#: Random bytes in a token's secret: 256 bits, beyond guessing.
SECRET_BYTES = 32
ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ID_LENGTH = 8
#: A token's last use is written at most this often: reads do not each cost a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_SHAPE = re.compile(rf"^{TOKEN_PREFIX}(?P<id>[a-z0-9]{{{ID_LENGTH}}})_(?P<secret>[A-Za-z0-9_-]{{43}})$")
_COLUMNS = "id, prefix, name, scope, created_at, expires_at, last_used_at, revoked_at"


class TokenError(Sense311Error):
    """A token operation named a token that does not exist (or is already revoked)."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token's row without its hash. ``prefix`` is the public id (``s311_<prefix>_…``)."""

    id: int
    prefix: str
    name: str
    scope: Scope
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token just created: ``token`` is the secret to hand over, never stored or shown again."""

    token: str
    info: TokenInfo


def has_scope(granted: str, needed: str) -> bool:
    """True when a token of scope ``granted`` may do what needs ``needed``."""
    return SCOPES.index(granted) >= SCOPES.index(needed)  # type: ignore[arg-type]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _info(row: dict[str, Any]) -> TokenInfo:
    return TokenInfo(**row)


def create_token(
    conn: psycopg.Connection[Any],
    *,
    scope: str,
    now: datetime,
    name: str = "",
    expires_in: timedelta | None = None,
) -> NewToken:
    """A new token of ``scope``; ``expires_in`` None means it lasts until revoked."""
    if scope not in SCOPES:
        raise ConfigError(f"unknown token scope {scope!r}; expected one of: {', '.join(SCOPES)}")
    if expires_in is not None and expires_in <= timedelta(0):
        raise ConfigError(f"a token's lifetime must be positive, got {expires_in}")
    secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).rstrip(b"=").decode("ascii")
    expires_at = now + expires_in if expires_in is not None else None
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            # The id is random, not a sequence, so it says nothing about how many tokens exist;
            # a collision (one in 36^8 per pair) takes the next draw.
            while True:
                prefix = "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))
                token = f"{TOKEN_PREFIX}{prefix}_{secret}"
                row = cur.execute(
                    f"""INSERT INTO api_tokens (prefix, token_hash, name, scope, created_at, expires_at)
                        VALUES (%s, %s, %s, %s, %s, %s)
                        ON CONFLICT (prefix) DO NOTHING
                        RETURNING {_COLUMNS}""",
                    (prefix, _hash(token), name, scope, now, expires_at),
                ).fetchone()
                if row is not None:
                    return NewToken(token, _info(row))
    except psycopg.Error as exc:
        raise translate(exc, "cannot create an API token") from exc


def list_tokens(conn: psycopg.Connection[Any], *, include_revoked: bool = False) -> list[TokenInfo]:
    """Tokens, oldest first (revoked ones only when asked)."""
    where = "" if include_revoked else "WHERE revoked_at IS NULL"
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(f"SELECT {_COLUMNS} FROM api_tokens {where} ORDER BY id").fetchall()
    except psycopg.Error as exc:
        raise translate(exc, "cannot list API tokens") from exc
    return [_info(r) for r in rows]


def revoke_token(conn: psycopg.Connection[Any], token: int | str, *, now: datetime) -> TokenInfo:
    """Revoke a token named by its numeric id, its prefix or the whole token; returns its row."""
    if isinstance(token, int):
        where, key = "id = %s", token
    else:
        shape = _SHAPE.match(token)
        where, key = "prefix = %s", shape["id"] if shape else token
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"UPDATE api_tokens SET revoked_at = %s WHERE {where} AND revoked_at IS NULL "
                f"RETURNING {_COLUMNS}",
                (now, key),
            ).fetchone()
    except psycopg.Error as exc:
        raise translate(exc, "cannot revoke the API token") from exc
    if row is None:
        raise TokenError(f"no active API token {token!r}; list them with 'sense311 api token list'")
    return _info(row)


def verify_token(conn: psycopg.Connection[Any], presented: str, *, now: datetime) -> TokenInfo | None:
    """The token's row when ``presented`` is a known, unrevoked, unexpired token; else None."""
    shape = _SHAPE.match(presented)
    if shape is None:
        return None
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"SELECT {_COLUMNS}, token_hash FROM api_tokens WHERE prefix = %s", (shape["id"],)
            ).fetchone()
            if row is None:
                return None
            stored = row.pop("token_hash")
            if not hmac.compare_digest(stored, _hash(presented)):
                return None
            info = _info(row)
            if not info.active(now):
                return None
            if info.last_used_at is None or now - info.last_used_at >= LAST_USED_RESOLUTION:
                cur.execute("UPDATE api_tokens SET last_used_at = %s WHERE id = %s", (now, info.id))
    except psycopg.Error as exc:
        raise translate(exc, "cannot check the API token") from exc
    return info
