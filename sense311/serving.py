"""A FastAPI app served by uvicorn in a background thread: the API, the Open311 server, tests, bench.

``port=0`` takes a free port; ``url`` is known once ``start()`` returns, which is when the socket
accepts connections (or start-up failed, which raises). uvicorn leaves signal handling to the
main thread when it runs in another one, so the caller's own handlers stay in charge.
"""

from __future__ import annotations

import threading
from typing import Any, Self

import uvicorn
from fastapi import FastAPI

from sense311.errors import ConfigError

__all__ = ["STARTUP_TIMEOUT", "ServerThread"]

#: Seconds start() waits for the socket to accept connections, and stop() for the thread to end.
STARTUP_TIMEOUT = 30.0
#: Seconds requests in flight may take to finish at shutdown.
GRACEFUL_SHUTDOWN = 5


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


class ServerThread:
    """uvicorn serving ``app`` in a daemon thread; a context manager (start on enter, stop on exit)."""

    #: What start-up errors call the server.
    label = "the HTTP server"

    def __init__(
        self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, name: str = "sense311-http"
    ) -> None:
        self.app = app
        self._ready = threading.Event()
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        )
        self._server = _Server(config, self._ready)
        self._thread = threading.Thread(target=self._server.run, name=name, daemon=True)
        self.url = ""

    def start(self) -> Self:
        self._thread.start()
        if not self._ready.wait(STARTUP_TIMEOUT) or not self._server.started:
            self.stop()
            raise ConfigError(
                f"{self.label} did not start within {STARTUP_TIMEOUT:.0f} s "
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
