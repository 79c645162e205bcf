"""The HTTP API and dashboard: FastAPI over the sense311 tables.

::

    from sense311.api import ApiServer, ApiSettings, create_app

    app = create_app(settings, api=ApiSettings(port=8311), broker_ready=lambda: True)
    with ApiServer(app, port=8311) as server:   # uvicorn in a thread
        print(server.url)

Tokens are managed with ``create_token`` / ``list_tokens`` / ``revoke_token``.
"""

from sense311.api.app import create_app
from sense311.api.server import ApiServer
from sense311.api.settings import ApiSettings
from sense311.api.tokens import (
    NewToken,
    TokenError,
    TokenInfo,
    create_token,
    list_tokens,
    revoke_token,
    verify_token,
)

__all__ = [
    "ApiServer",
    "ApiSettings",
    "NewToken",
    "TokenError",
    "TokenInfo",
    "create_app",
    "create_token",
    "list_tokens",
    "revoke_token",
    "verify_token",
]
