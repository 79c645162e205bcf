"""An MQTT broker for the tests: one per session, a topic prefix per test.

``SENSE311_TEST_MQTT_URL`` (``mqtt://[user:password@]host[:port]``) names the
broker to use; it is checked with one connection at the start, and an
unreachable one ends the run with one message. Unset, an embedded broker
(sense311.embedded: Mosquitto if on PATH, else amqtt) runs for the session.

Tests that pause or restart a broker get their own Mosquitto
(``mosquitto_private``) so the shared one keeps serving the other tests. Tests
that need MQTT v5 shared subscriptions carry ``@pytest.mark.mqtt5`` or ask for
``mqtt_supports_shared``; both skip, saying why, on a broker without them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
import pytest

from sense311.embedded import EmbeddedBroker, start_mqtt_broker

__all__ = [
    "MQTT_URL_ENV",
    "MqttBroker",
    "mosquitto_private",
    "mqtt_broker",
    "mqtt_supports_shared",
    "mqtt_url",
    "parse_mqtt_url",
    "topic_prefix",
]

MQTT_URL_ENV = "SENSE311_TEST_MQTT_URL"
DEFAULT_MQTT_PORT = 1883
#: Bound, in seconds, of each step of the warm-up and capability probes.
PROBE_TIMEOUT = 5.0
SHIPPED_MOSQUITTO_CONF = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto.conf"


@dataclass(frozen=True)
class MqttBroker:
    """The session's broker and what it can do."""

    url: str
    host: str
    port: int
    username: str | None
    password: str | None
    #: "mosquitto" or "amqtt" when embedded; "external" for SENSE311_TEST_MQTT_URL.
    kind: str
    supports_mqtt5: bool
    supports_shared_subscriptions: bool


def parse_mqtt_url(url: str) -> tuple[str, int, str | None, str | None]:
    """(host, port, username, password) of an ``mqtt://`` URL; ValueError names what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError(f"expected mqtt://[user:password@]host[:port], got {url!r}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, parts.port or DEFAULT_MQTT_PORT, username, password


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MqttBroker]:
    """The session's broker (session scope): from SENSE311_TEST_MQTT_URL, else embedded."""
    url = os.environ.get(MQTT_URL_ENV)
    if url:
        yield _external_broker(url)
        return
    with start_mqtt_broker(tmp_path_factory.mktemp("mqtt")) as broker:
        yield MqttBroker(
            url=broker.url,
            host=broker.host,
            port=broker.port,
            username=None,
            password=None,
            kind=broker.kind,
            supports_mqtt5=broker.supports_mqtt5,
            supports_shared_subscriptions=broker.supports_shared_subscriptions,
        )


@pytest.fixture(scope="session")
def mqtt_url(mqtt_broker: MqttBroker) -> str:
    """URL of the session's broker, ``mqtt://host:port`` (session scope)."""
    return mqtt_broker.url


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix no other test uses, ``t/<12 hex digits>/``."""
    return f"t/{secrets.token_hex(6)}/"


@pytest.fixture
def mosquitto_private(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A Mosquitto of this test's own with the settings of deploy/mosquitto.conf, on a free port.

    Free to pause(), resume() and restart(): persistent sessions survive a
    restart. Skips when mosquitto is not on PATH.
    """
    if shutil.which("mosquitto") is None:
        pytest.skip("needs a private Mosquitto to pause or restart, and mosquitto is not on PATH")
    with start_mqtt_broker(tmp_path / "mosquitto", SHIPPED_MOSQUITTO_CONF) as broker:
        yield broker


@pytest.fixture
def mqtt_supports_shared(mqtt_broker: MqttBroker) -> MqttBroker:
    """The session's broker, or a skip if it lacks shared subscriptions ($share/<group>/…)."""
    if not mqtt_broker.supports_shared_subscriptions:
        pytest.skip(_lacks("shared subscriptions", mqtt_broker))
    return mqtt_broker


@pytest.fixture(autouse=True)
def _skip_without_mqtt5(request: pytest.FixtureRequest) -> None:
    """Skip tests marked ``mqtt5`` when the broker lacks MQTT v5 or shared subscriptions."""
    if request.node.get_closest_marker("mqtt5") is None:
        return
    broker: MqttBroker = request.getfixturevalue("mqtt_broker")
    if not broker.supports_mqtt5:
        pytest.skip(_lacks("MQTT v5", broker))
    request.getfixturevalue("mqtt_supports_shared")


def _lacks(feature: str, broker: MqttBroker) -> str:
    if broker.kind == "amqtt":
        return (
            f"needs {feature}; the embedded broker is amqtt (MQTT 3.1.1 only, no $share): "
            f"install mosquitto or set {MQTT_URL_ENV}"
        )
    return f"needs {feature}; the {broker.kind} broker at {broker.url} has none"


# --------------------------------------------------------------------------
# Probing a broker named by SENSE311_TEST_MQTT_URL
# --------------------------------------------------------------------------


def _external_broker(url: str) -> MqttBroker:
    try:
        host, port, username, password = parse_mqtt_url(url)
    except ValueError as exc:
        pytest.exit(f"{MQTT_URL_ENV}: {exc}")
    probe = _Probe(host, port, username, password)
    error = probe.connect(mqtt.MQTTv311)
    if error is not None:
        pytest.exit(f"{MQTT_URL_ENV}: cannot connect to {host}:{port}: {error}")
    return MqttBroker(
        url=url,
        host=host,
        port=port,
        username=username,
        password=password,
        kind="external",
        supports_mqtt5=probe.connect(mqtt.MQTTv5) is None,
        supports_shared_subscriptions=probe.shared_subscription_delivers(),
    )


class _Probe:
    """Short-lived paho clients that find out what a broker accepts; every wait is bounded."""

    def __init__(self, host: str, port: int, username: str | None, password: str | None) -> None:
        self.host, self.port = host, port
        self.username, self.password = username, password

    def _client(self, protocol: mqtt.MQTTProtocolVersion) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"sense311-test-probe-{secrets.token_hex(4)}",
            protocol=protocol,
        )
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        return client

    def connect(self, protocol: mqtt.MQTTProtocolVersion) -> str | None:
        """None if a client of ``protocol`` is accepted, else why not."""
        client = self._client(protocol)
        done = threading.Event()
        outcome: list[str | None] = []

        def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            outcome.append(None if not reason.is_failure else str(reason))
            done.set()

        client.on_connect = on_connect
        try:
            client.connect(self.host, self.port, keepalive=10)
        except OSError as exc:
            return str(exc)
        client.loop_start()
        try:
            if not done.wait(PROBE_TIMEOUT):
                return f"no CONNACK within {PROBE_TIMEOUT} s"
            return outcome[0]
        finally:
            client.disconnect()
            client.loop_stop()

    def shared_subscription_delivers(self) -> bool:
        """Whether a message reaches a ``$share/<group>/<topic>`` subscriber within the timeout."""
        topic = f"sense311-probe/{secrets.token_hex(6)}"
        client = self._client(mqtt.MQTTv311)
        subscribed, received = threading.Event(), threading.Event()
        granted: list[bool] = []

        def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
            granted.append(not any(reason.is_failure for reason in reasons))
            subscribed.set()

        client.on_subscribe = on_subscribe
        client.on_message = lambda *args: received.set()
        try:
            client.connect(self.host, self.port, keepalive=10)
        except OSError:
            return False
        client.loop_start()
        try:
            client.subscribe(f"$share/probe/{topic}", qos=1)
            if not subscribed.wait(PROBE_TIMEOUT) or not granted[0]:
                return False
            client.publish(topic, b"probe", qos=1)
            return received.wait(PROBE_TIMEOUT)
        finally:
            client.disconnect()
            client.loop_stop()
