"""Publish to an MQTT broker with QoS 1, a bounded number of unacknowledged messages, and a
final wait until the broker has acknowledged every one.

``publish`` blocks while ``max_inflight`` messages await their PUBACK, so memory stays bounded
however fast the simulator runs; ``flush`` waits for the last acknowledgements. paho-mqtt
errors and timeouts become ``PublishError`` here, once.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from sense311.errors import ConfigError
from simulators.errors import PublishError

__all__ = ["DEFAULT_MAX_INFLIGHT", "BrokerAddress", "MqttPublisher", "parse_mqtt_url"]

DEFAULT_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883}
#: Seconds between keep-alive pings; the broker drops us after 1.5× this without traffic.
KEEPALIVE_S = 60
#: Messages awaiting PUBACK. paho rescans its in-flight table on every acknowledgement, so a
#: wider window costs more than it gains: on a local Mosquitto 20–200 all publish ~6,000 msg/s
#: of 1.2 kB, 1,000 about half that and 10,000 a tenth (bench/simulate.py, same machine).
DEFAULT_MAX_INFLIGHT = 100


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is; ``password`` never appears in ``str()``."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def parse_mqtt_url(url: str) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` (also ``mqtts://``, ``tcp://``, ``ssl://``)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(f"--mqtt-url must look like mqtt://host:1883 or mqtts://host:8883, got {url!r}")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise ConfigError(f"--mqtt-url has a bad port: {url!r}") from exc
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        tls=scheme in ("mqtts", "ssl"),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class MqttPublisher:
    """A QoS 1 publisher with at most ``max_inflight`` messages awaiting PUBACK.

    Use as a context manager: entering connects (or raises ``PublishError`` within
    ``connect_timeout`` seconds); leaving without an exception waits up to ``ack_timeout``
    seconds for the outstanding acknowledgements, then disconnects.
    """

    def __init__(
        self,
        url: str,
        *,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        connect_timeout: float = 10.0,
        ack_timeout: float = 30.0,
        client_id: str | None = None,
        qos: int = 1,
    ) -> None:
        self.address = parse_mqtt_url(url)
        self.max_inflight = max_inflight
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self.qos = qos
        self.published = 0
        self.acked = 0
        self._slots = threading.Semaphore(max_inflight)
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"sense311-sim-{os.getpid()}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        # The semaphore is the bound. paho's own window stays unlimited (0): with a limit set,
        # paho re-scans every outstanding message on each PUBACK, which made publishing cost
        # O(window) per message.
        self._client.max_inflight_messages_set(0)
        self._client.max_queued_messages_set(0)
        self._client.connect_timeout = connect_timeout
        if self.address.username:
            self._client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            self._client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self._client.on_connect = self._on_connect
        self._client.on_publish = self._on_publish
        self._client.on_disconnect = self._on_disconnect

    # paho callbacks (network thread) ---------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._connect_error = f"broker refused the connection: {reason_code}"
        self._connected.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self._connected.clear()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._cond:
            self.acked += 1
            self._cond.notify_all()
        self._slots.release()

    # public API ------------------------------------------------------------------------------------

    def connect(self) -> None:
        try:
            self._client.connect(self.address.host, self.address.port, KEEPALIVE_S)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            reason = reason[:1].lower() + reason[1:]
            raise PublishError(
                f"could not connect to {self.address}: {reason}; is the broker running?"
            ) from exc
        self._client.loop_start()
        if not self._connected.wait(self.connect_timeout):
            self.close(flush=False)
            raise PublishError(f"no answer from {self.address} after {self.connect_timeout:.1f} s")
        if self._connect_error:
            self.close(flush=False)
            raise PublishError(f"{self._connect_error} ({self.address})")

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue one message; blocks while ``max_inflight`` messages are unacknowledged."""
        if not self._slots.acquire(timeout=self.ack_timeout):
            raise PublishError(
                f"{self.max_inflight} messages to {self.address} unacknowledged after "
                f"{self.ack_timeout:.1f} s ({self.acked} of {self.published} acknowledged); "
                "is the broker alive?"
            )
        info = self._client.publish(topic, payload, qos=self.qos)
        # NO_CONN: paho keeps QoS 1 messages and sends them after it reconnects.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._slots.release()
            raise PublishError(
                f"could not publish to {topic!r} on {self.address}: {mqtt.error_string(info.rc)}"
            )
        self.published += 1

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the broker has acknowledged every published message."""
        limit = self.ack_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._cond:
            while self.acked < self.published:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PublishError(
                        f"{self.published - self.acked} of {self.published} messages not acknowledged by "
                        f"{self.address} after {limit:.1f} s"
                    )
                self._cond.wait(left)

    def close(self, flush: bool = True) -> None:
        try:
            if flush:
                self.flush()
        finally:
            self._client.disconnect()
            self._client.loop_stop()

    def __enter__(self) -> MqttPublisher:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(flush=exc_type is None)
