"""The MQTT side of ingest: a persistent QoS 1 session with acknowledgements after commit.

paho-mqtt ≥ 2 with ``manual_ack=True``: a message is acknowledged only when the batch holding
it has been committed. Until then the broker keeps it, and redelivers it after a crash or a
reconnect. Memory is bounded by withholding acknowledgements, never by dropping: with MQTT 5
the session's *receive maximum* (``ingest.max_unacked``) stops the broker from sending more
than that many unacknowledged messages; on MQTT 3.1.1 the broker's ``max_inflight_messages``
does the same (see deploy/mosquitto.conf).

Acknowledgement handles carry the connection generation: after a reconnect, the packet ids of
the old connection mean nothing (or, worse, something else), so stale handles are not acked —
the broker redelivers those messages and the unique key makes the second write a no-op.

paho's network thread (``loop_start``) reconnects by itself with its own capped backoff; it
is the well-kept implementation of exactly that loop, so it is not rewritten here.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.pipeline import Message
from sense311.errors import ConfigError, Sense311Error
from sense311.settings import MqttSettings, redact_url

__all__ = ["AckToken", "BrokerAddress", "MqttConsumer", "MqttError", "parse_mqtt_url"]

log = logging.getLogger(__name__)

#: paho's reconnect backoff (seconds): first retry soon, then at most every 30 s.
RECONNECT_MIN_DELAY = 1
RECONNECT_MAX_DELAY = 30


class MqttError(Sense311Error):
    """The broker refused us or could not be reached."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    def __repr__(self) -> str:  # never show the password
        return f"BrokerAddress({self.host!r}, {self.port}, tls={self.tls}, username={self.username!r})"


def parse_mqtt_url(url: str) -> BrokerAddress:
    """``mqtt://user:pass@host:1883`` or ``mqtts://host:8883`` (the default ports when omitted)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(
            f"invalid MQTT URL {redact_url(url)}: expected mqtt://host:port or mqtts://host:port"
        )
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ConfigError(f"invalid MQTT URL {redact_url(url)}: the port is not a number") from None
    return BrokerAddress(
        parts.hostname,
        port,
        tls,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


@dataclass(frozen=True, slots=True)
class AckToken:
    generation: int
    mid: int
    qos: int


def make_client(
    address: BrokerAddress, settings: MqttSettings, client_id: str, *, manual_ack: bool, persistent: bool
) -> mqtt.Client:
    v5 = settings.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        clean_session=None if v5 else not persistent,
        manual_ack=manual_ack,
    )
    if address.username:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        context = ssl.create_default_context(cafile=str(settings.tls_ca) if settings.tls_ca else None)
        if settings.tls_cert:
            context.load_cert_chain(
                str(settings.tls_cert), str(settings.tls_key) if settings.tls_key else None
            )
        if settings.tls_insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        client.tls_set_context(context)
    client.reconnect_delay_set(RECONNECT_MIN_DELAY, RECONNECT_MAX_DELAY)
    return client


class MqttConsumer:
    """Subscribes ``filters`` at QoS 1 and hands each message to ``on_message``.

    ``on_message`` runs on paho's network thread and must only enqueue.
    """

    def __init__(
        self,
        url: str,
        settings: MqttSettings,
        filters: Iterable[str],
        on_message: Callable[[Message], None],
        *,
        client_id: str,
        receive_maximum: int,
        shared_group: str | None = None,
    ) -> None:
        self.address = parse_mqtt_url(url)
        self.settings = settings
        prefix = f"$share/{shared_group}/" if shared_group else ""
        self.filters = [prefix + f for f in filters]
        self._on_message = on_message
        self._generation = 0
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.last_error: str | None = None
        self._v5 = settings.protocol == "5"
        self._receive_maximum = receive_maximum
        self._client = make_client(self.address, settings, client_id, manual_ack=True, persistent=True)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.on_subscribe = self._handle_subscribe
        self._pending_sub: int | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        props = None
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = int(self.settings.session_expiry.total_seconds())
            props.ReceiveMaximum = self._receive_maximum
        try:
            self._client.connect_async(
                self.address.host,
                self.address.port,
                keepalive=self.settings.keepalive,
                clean_start=False if self._v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                properties=props,
            )
        except (OSError, ValueError) as exc:
            raise MqttError(
                f"cannot connect to MQTT broker {self.address.host}:{self.address.port}: {exc}"
            ) from exc
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> None:
        if not self.subscribed.wait(timeout):
            detail = f": {self.last_error}" if self.last_error else ""
            raise MqttError(
                f"not subscribed to MQTT broker {self.address.host}:{self.address.port} "
                f"within {timeout:.1f} s{detail}"
            )

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # -- acks -----------------------------------------------------------------------------

    def ack(self, tokens: Iterable[AckToken]) -> int:
        """Acknowledge messages of the current connection; returns how many were acked."""
        generation = self._generation
        client = self._client
        count = 0
        for token in tokens:
            if token.generation == generation and token.qos > 0:
                client.ack(token.mid, token.qos)
                count += 1
        return count

    # -- paho callbacks (network thread) --------------------------------------------------

    def _handle_connect(self, client: mqtt.Client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"connection refused: {reason_code}"
            log.error(
                "MQTT broker %s:%s refused the connection: %s",
                self.address.host,
                self.address.port,
                reason_code,
            )
            return
        with self._lock:
            self._generation += 1
        self.last_error = None
        self.connected.set()
        if self._v5:
            subs = [(f, SubscribeOptions(qos=1)) for f in self.filters]
        else:
            subs = [(f, 1) for f in self.filters]
        _result, mid = client.subscribe(subs)
        self._pending_sub = mid
        log.info(
            "connected to MQTT %s:%s (session present: %s), subscribing %d filters",
            self.address.host,
            self.address.port,
            flags.session_present,
            len(subs),
        )

    def _handle_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            self.last_error = f"subscription refused: {', '.join(failed)}"
            log.error("MQTT subscription refused for some filters: %s", ", ".join(failed))
            return
        self.subscribed.set()

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if reason_code != 0:
            self.last_error = f"disconnected: {reason_code}"
            log.warning("MQTT connection lost (%s); reconnecting", reason_code)

    def _handle_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            # MQTT forbids it and brokers refuse it, but an exception here would end paho's network
            # thread: keep the message (it will be dead-lettered under its mangled topic).
            topic = bytes(message._topic).decode("utf-8", "replace")
        self._on_message(
            Message(
                topic,
                message.payload,
                time.time(),
                AckToken(self._generation, message.mid, message.qos),
            )
        )
