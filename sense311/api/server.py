"""The API served by uvicorn in a background thread: for the service runner, the demo and tests.

``port=0`` takes a free port; ``url`` is known once ``start()`` returns, which is when the socket
accepts connections (or start-up failed, which raises). uvicorn leaves signal handling to the
main thread when it runs in another one, so the runner's own handlers stay in charge.
"""

from __future__ import annotations

import threading
from typing import Any

import uvicorn
from fastapi import FastAPI

from sense311.errors import ConfigError

__all__ = ["STARTUP_TIMEOUT", "ApiServer"]

#: Seconds start() waits for the socket to accept connections, and stop() for the thread to end.
STARTUP_TIMEOUT = 30.0


class _Server(uvicorn.Server):
    """Signals the waiting thread once the socket accepts connections (or start-up failed)."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: Any = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self._ready.set()


class ApiServer:
    """uvicorn serving ``app`` in a daemon thread; a context manager (start on enter, stop on exit)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._ready = threading.Event()
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="on",
            access_log=False,
            # Finish requests in flight at shutdown, but not forever.
            timeout_graceful_shutdown=5,
        )
        self._server = _Server(config, self._ready)
        self._thread = threading.Thread(target=self._server.run, name="sense311-api", daemon=True)
        self.url = ""

    def start(self) -> ApiServer:
        self._thread.start()
        if not self._ready.wait(STARTUP_TIMEOUT) or not self._server.started:
            self.stop()
            raise ConfigError(
                f"the API server did not start within {STARTUP_TIMEOUT:.0f} s "
                f"(is {self._server.config.host}:{self._server.config.port} free? see the log)"
            )
        sock = self._server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(STARTUP_TIMEOUT)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
