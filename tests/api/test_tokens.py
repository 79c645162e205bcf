"""Tokens: hashed at rest, scopes enforced, revocation and expiry effective at once."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from sense311.api import TokenError, create_token, list_tokens, revoke_token, verify_token
from sense311.errors import ConfigError
from tests.api.conftest import Api

SENSOR = {"id": "bin-1", "kind": "bin"}


def test_writes_need_a_token_of_the_write_scope(api: Api) -> None:
    missing = api.http.post("/api/v1/sensors", json=SENSOR)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.json() == {"error": "this operation needs an API token with the 'write' scope"}

    unknown = api.http.post("/api/v1/sensors", json=SENSOR, headers={"Authorization": "Bearer s311_nope"})
    assert unknown.status_code == 401 and "unknown, expired or revoked" in unknown.json()["error"]

    basic = api.http.post("/api/v1/sensors", json=SENSOR, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401 and "Bearer" in basic.json()["error"]

    reader = api.http.post("/api/v1/sensors", json=SENSOR, headers=api.auth("read"))
    assert reader.status_code == 403
    assert reader.json() == {"error": "this operation needs the 'write' scope; the token has 'read'"}

    assert api.http.post("/api/v1/sensors", json=SENSOR, headers=api.auth("write")).status_code == 201
    # admin includes write
    second = {**SENSOR, "id": "bin-2"}
    assert api.http.post("/api/v1/sensors", json=second, headers=api.auth("admin")).status_code == 201
    # Token management needs admin.
    assert api.http.get("/api/v1/tokens", headers=api.auth("write")).status_code == 403


def test_auth_comes_before_validation(api: Api) -> None:
    # A client without a token learns nothing about what the body should look like.
    response = api.http.post("/api/v1/sensors", json={"nonsense": True})
    assert response.status_code == 401


def test_revoked_and_expired_tokens_are_refused(api: Api) -> None:
    now = datetime.now(UTC)
    with api.db.transaction():
        new = create_token(api.db, scope="write", name="short-lived", now=now)
        expiring = create_token(
            api.db, scope="write", now=now - timedelta(hours=2), expires_in=timedelta(hours=1)
        )
    headers = {"Authorization": f"Bearer {new.token}"}
    assert api.http.post("/api/v1/sensors", json=SENSOR, headers=headers).status_code == 201

    revoked = revoke_token(api.db, new.info.prefix, now=now)
    assert revoked.revoked_at is not None
    refused = api.http.put("/api/v1/sensors/bin-1", json={"kind": "bin"}, headers=headers)
    assert refused.status_code == 401
    # Also on an open read: a revoked token never passes silently.
    assert api.http.get("/api/v1/sensors", headers=headers).status_code == 401

    old = api.http.put(
        "/api/v1/sensors/bin-1", json={"kind": "bin"}, headers={"Authorization": f"Bearer {expiring.token}"}
    )
    assert old.status_code == 401

    with pytest.raises(TokenError, match="no active API token"):
        revoke_token(api.db, new.info.prefix, now=now)


def test_tokens_are_hashed_at_rest(api: Api) -> None:
    now = datetime.now(UTC)
    with api.db.transaction():
        new = create_token(api.db, scope="read", name="dashboard", now=now)
    assert new.token.startswith(f"s311_{new.info.prefix}_") and len(new.token) == 5 + 8 + 1 + 43
    rows = api.db.execute("SELECT prefix, token_hash FROM api_tokens").fetchall()
    dump = repr(rows)
    for token in [new.token, *api.tokens.values()]:
        secret = token.rsplit("_", 1)[1]
        assert secret not in dump
    assert (new.info.prefix, hashlib.sha256(new.token.encode()).hexdigest()) in rows

    assert verify_token(api.db, new.token, now=now) == new.info
    tampered = new.token[:-1] + ("A" if new.token[-1] != "A" else "B")
    assert verify_token(api.db, tampered, now=now) is None
    assert verify_token(api.db, "not a token", now=now) is None
    assert [t.name for t in list_tokens(api.db)][-1] == "dashboard"
    with pytest.raises(ConfigError, match="unknown token scope 'root'"):
        create_token(api.db, scope="root", now=now)


def test_reads_may_require_a_token(api_server: Callable[..., Api]) -> None:
    api = api_server(read_requires_token=True)
    assert api.http.get("/api/v1/sensors").status_code == 401
    assert api.http.get("/api/v1/sensors", headers=api.auth("read")).status_code == 200
    # Health and metrics stay open for orchestrators and Prometheus.
    assert api.http.get("/healthz").status_code == 200
    assert api.http.get("/metrics").status_code == 200


def test_admin_manages_tokens_over_the_api(api: Api) -> None:
    admin = api.auth("admin")
    created = api.http.post(
        "/api/v1/tokens", json={"scope": "write", "name": "importer", "expires_in": "90d"}, headers=admin
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["token"].startswith("s311_") and body["expires_at"] is not None
    listed = api.http.get("/api/v1/tokens", headers=admin).json()
    assert "token" not in listed[-1] and listed[-1]["name"] == "importer"

    headers = {"Authorization": f"Bearer {body['token']}"}
    assert api.http.post("/api/v1/sensors", json=SENSOR, headers=headers).status_code == 201
    assert api.http.delete(f"/api/v1/tokens/{body['prefix']}", headers=admin).status_code == 204
    assert api.http.post("/api/v1/sensors", json={**SENSOR, "id": "b2"}, headers=headers).status_code == 401
    assert api.http.delete(f"/api/v1/tokens/{body['prefix']}", headers=admin).status_code == 404
    bad = api.http.post("/api/v1/tokens", json={"scope": "write", "expires_in": "0s"}, headers=admin)
    assert bad.status_code == 422 and "lifetime" in bad.json()["error"]
