"""The API served by uvicorn in a background thread: for the service runner, the demo and tests.

``port=0`` takes a free port; ``url`` is known once ``start()`` returns, which is when the socket
accepts connections (or start-up failed, which raises). uvicorn leaves signal handling to the
main thread when it runs in another one, so the runner's own handlers stay in charge.
"""

from __future__ import annotations

from fastapi import FastAPI

from sense311.serving import STARTUP_TIMEOUT, ServerThread

__all__ = ["STARTUP_TIMEOUT", "ApiServer"]


class ApiServer(ServerThread):
    """The sense311 API served by uvicorn in a daemon thread."""

    label = "the API server"

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(app, host, port, name="sense311-api")
