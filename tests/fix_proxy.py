"""A TCP proxy that tests switch off and on, to simulate a server going away.

Point a client at the proxy instead of the server; ``stop()`` closes the
listening socket and cuts every live connection (the client sees the server
vanish, and new connections are refused), ``start()`` listens again on the same
port. The real server, possibly shared with other tests, never notices::

    def test_survives_outage(tcp_proxy, database_url):
        params = conninfo_to_dict(database_url)
        proxy = tcp_proxy(params["host"], int(params["port"]))
        url = make_conninfo(database_url, host=proxy.host, port=proxy.port)
        ...
        proxy.stop()   # database "down"
        proxy.start()  # database back

Threads, not asyncio, so the test's own code may block freely.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Self

import pytest

__all__ = ["TcpProxy", "tcp_proxy"]

LISTEN_HOST = "127.0.0.1"
#: Seconds to wait for the target to accept a proxied connection.
CONNECT_TIMEOUT = 5.0
#: How often the accept loop looks for a stop request, in seconds: the
#: longest a stop() waits for the listener to close.
ACCEPT_POLL = 0.05
#: Seconds to wait for a proxy thread to end after its sockets were closed.
JOIN_TIMEOUT = 5.0
BUFFER_SIZE = 65536


class _Link:
    """One proxied connection: a client socket, an upstream socket and two pumping threads."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True),
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(BUFFER_SIZE):
                sink.sendall(data)
        except OSError:
            pass  # the other side, or stop(), closed the connection
        finally:
            self.close()

    def close(self) -> None:
        """Cut both sides; the blocked recv() of the other thread returns at the shutdown."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            for sock in (self.client, self.upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join(timeout)


class TcpProxy:
    """Forwards ``LISTEN_HOST:port`` to ``target_host:target_port`` until stopped.

    The port is picked at the first start() and kept across stop()/start().
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = LISTEN_HOST
        self.port = 0
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._accept_thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._accept_thread is not None

    @property
    def live_connections(self) -> int:
        """Proxied connections open right now."""
        with self._lock:
            return sum(not link.closed for link in self._links)

    def start(self) -> None:
        """Listen (again, on the same port after a stop). Does nothing if already listening."""
        if self._accept_thread is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Connections cut by stop() linger in TIME_WAIT on this port; without
        # SO_REUSEADDR the bind of the restart would fail.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
        except OSError as exc:
            listener.close()
            raise OSError(f"proxy cannot listen on {self.host}:{self.port} again: {exc}") from exc
        listener.listen()
        listener.settimeout(ACCEPT_POLL)
        self.port = listener.getsockname()[1]
        self._stopping.clear()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name=f"tcp-proxy-{self.port}", daemon=True
        )
        self._accept_thread.start()

    def stop(self) -> None:
        """Stop listening and cut every live connection; returns when both are done."""
        thread, self._accept_thread = self._accept_thread, None
        if thread is not None:
            self._stopping.set()
            thread.join(JOIN_TIMEOUT)  # the loop closes the listener on its way out
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()
        for link in links:
            link.join(JOIN_TIMEOUT)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "listening" if self.running else "stopped"
        return f"<TcpProxy {self.host}:{self.port} -> {self.target[0]}:{self.target[1]} {state}>"

    def _accept_loop(self, listener: socket.socket) -> None:
        with listener:
            while not self._stopping.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        client.settimeout(None)
        try:
            upstream = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT)
        except OSError:
            client.close()  # target down: the client sees its connection closed
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            # Small protocol messages (PostgreSQL, MQTT) must not wait for Nagle.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._links = [link for link in self._links if not link.closed]
            self._links.append(_Link(client, upstream))


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[str, int], TcpProxy]]:
    """Factory: ``tcp_proxy(target_host, target_port)`` returns a started :class:`TcpProxy`.

    Every proxy made is stopped at the end of the test.
    """
    proxies: list[TcpProxy] = []

    def make(target_host: str, target_port: int) -> TcpProxy:
        proxy = TcpProxy(target_host, target_port)
        proxy.start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()
