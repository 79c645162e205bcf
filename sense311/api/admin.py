"""/api/v1/tokens: API tokens managed over the API itself, with an ``admin`` token.

The same functions back the CLI (``sense311 api token …``); the first admin token has to come
from there.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, Field, field_validator

from sense311.api.auth import require
from sense311.api.context import AppContext, get_context, get_db
from sense311.api.errors import ERROR_RESPONSES, NotFound
from sense311.api.models import Strict, Text
from sense311.api.tokens import Scope, TokenError, TokenInfo, create_token, list_tokens, revoke_token
from sense311.durations import format_duration, parse_duration

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1", tags=["tokens"], responses=ERROR_RESPONSES, dependencies=[Depends(require("admin"))]
)
Db = Annotated[psycopg.Connection[Any], Depends(get_db)]
Ctx = Annotated[AppContext, Depends(get_context)]


class Token(BaseModel):
    id: int
    prefix: str
    name: str
    scope: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


#: The longest lifetime a token may be given: tokens that must outlive this are better revocable ones.
MAX_LIFETIME = timedelta(days=3650)


class NewTokenRequest(Strict):
    scope: Scope
    name: Annotated[Text, Field(max_length=200)] = ""
    expires_in: Annotated[str | None, Field(description="A duration such as '90d'; none: until revoked.")] = (
        None
    )

    @field_validator("expires_in")
    @classmethod
    def _lifetime(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            lifetime = parse_duration(value)
        except (ValueError, OverflowError):
            raise ValueError(f"expected a duration like '90d', got {value!r}") from None
        if not timedelta(0) < lifetime <= MAX_LIFETIME:
            raise ValueError(
                f"expected a lifetime above 0 and at most {format_duration(MAX_LIFETIME)}, got {value!r}"
            )
        return value


class NewToken(Token):
    #: The token itself: shown in this answer only, never stored.
    token: str


def _token(info: TokenInfo) -> Token:
    return Token(**{f: getattr(info, f) for f in Token.model_fields})


@router.get("/tokens", summary="List API tokens")
def get_tokens(db: Db, include_revoked: bool = False) -> list[Token]:
    return [_token(t) for t in list_tokens(db, include_revoked=include_revoked)]


@router.post("/tokens", status_code=201, summary="Create an API token")
def post_token(ctx: Ctx, db: Db, body: NewTokenRequest) -> NewToken:
    """Create a token; its secret is in this answer and nowhere else."""
    with db.transaction():
        lifetime = parse_duration(body.expires_in) if body.expires_in else None
        new = create_token(db, scope=body.scope, name=body.name, now=ctx.clock(), expires_in=lifetime)
    return NewToken(**_token(new.info).model_dump(), token=new.token)


@router.delete("/tokens/{prefix}", status_code=204, summary="Revoke an API token")
def delete_token(ctx: Ctx, db: Db, prefix: Annotated[str, Path(pattern=r"^[a-z0-9]{8}$")]) -> Response:
    try:
        with db.transaction():
            revoke_token(db, prefix, now=ctx.clock())
    except TokenError as exc:
        raise NotFound(str(exc)) from None
    return Response(status_code=204)
