"""sense311.embedded and the service fixtures: real servers, real clients, bounded waits."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sense311.embedded import (
    FALLBACK_MOSQUITTO_SETTINGS,
    EmbeddedBroker,
    EmbeddedServiceError,
    mosquitto_settings,
    mqtt_handshake,
    start_mqtt_broker,
    start_postgres,
)
from tests.fix_db import KEPT_ENVIRON, schema_name, with_search_path
from tests.fix_mqtt import SHIPPED_MOSQUITTO_CONF, MqttBroker, parse_mqtt_url
from tests.fix_proxy import TcpProxy

#: Bound of every wait for a network event in these tests, in seconds.
WAIT = 10.0
#: How long a paused broker must stay silent to count as paused, in seconds.
SILENCE = 0.5


def _group_alive(pgid: int) -> bool:
    """Whether any process of a process group is left (servers run in a group of their own)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _refuses(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=WAIT):
            return False
    except ConnectionRefusedError:
        return True


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


def test_postgres_serves_tcp_and_stops_without_leftovers(tmp_path: Path) -> None:
    server = start_postgres(tmp_path)
    pid = server.pid
    assert pid is not None
    assert server.url == f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
    with psycopg.connect(server.url, connect_timeout=5) as conn:
        row = conn.execute("SELECT host(inet_server_addr()), inet_server_port(), current_user").fetchone()
    assert row == ("127.0.0.1", server.port, "postgres")

    server.stop()

    assert not _group_alive(pid), "a PostgreSQL process outlived stop()"
    assert _refuses(server.host, server.port)
    assert not server.data_dir.exists()
    assert "database system is shut down" in server.log_path.read_text()
    server.stop()  # idempotent


def test_postgres_start_failure_quotes_the_log(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedServiceError, match=r"exited with code \d+ while starting.*shared_buffers"):
        start_postgres(tmp_path, settings={"shared_buffers": "plenty"})
    assert not list(tmp_path.glob("postgres-*/data"))


# --------------------------------------------------------------------------
# MQTT
# --------------------------------------------------------------------------


class _Client:
    """A paho client on its own network thread, with events a test can wait for."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str | None = None,
        protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311,
        persistent: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.protocol, self.persistent = protocol, persistent
        self.paho = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{secrets.token_hex(4)}",
            protocol=protocol,
            # MQTT v5 says clean_start at connect() instead.
            clean_session=None if protocol == mqtt.MQTTv5 else not persistent,
        )
        self.connected, self.subscribed, self.disconnected = (threading.Event() for _ in range(3))
        self.session_present: bool | None = None
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.paho.on_connect = self._on_connect
        self.paho.on_subscribe = lambda *args: self.subscribed.set()
        self.paho.on_message = lambda client, userdata, message: self.messages.put(message)
        self.paho.on_disconnect = lambda *args: self.disconnected.set()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        assert not reason.is_failure, f"broker refused the connection: {reason}"
        self.session_present = flags.session_present
        self.connected.set()

    def connect(self) -> None:
        options: dict[str, Any] = {}
        if self.protocol == mqtt.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)
            if self.persistent:
                properties.SessionExpiryInterval = 3600
            options = {"clean_start": not self.persistent, "properties": properties}
        self.paho.connect(self.host, self.port, keepalive=10, **options)
        self.paho.loop_start()
        assert self.connected.wait(WAIT), f"no CONNACK from {self.host}:{self.port} within {WAIT} s"

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.paho.subscribe(topic, qos=1)
        assert self.subscribed.wait(WAIT), f"no SUBACK for {topic} within {WAIT} s"

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        return self.paho.publish(topic, payload, qos=1)

    def receive(self, count: int) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + WAIT
        received: list[mqtt.MQTTMessage] = []
        while len(received) < count:
            remaining = deadline - time.monotonic()
            try:
                received.append(self.messages.get(timeout=max(0.0, remaining)))
            except queue.Empty:
                pytest.fail(f"received {len(received)} of {count} messages within {WAIT} s")
        return received

    def close(self) -> None:
        self.paho.disconnect()
        self.disconnected.wait(WAIT)
        self.paho.loop_stop()


def _published(info: mqtt.MQTTMessageInfo, timeout: float = WAIT) -> bool:
    info.wait_for_publish(timeout)
    return info.is_published()


@pytest.fixture(params=["mosquitto", "amqtt"])
def embedded_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedBroker]:
    if request.param == "mosquitto" and shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not on PATH")
    with start_mqtt_broker(tmp_path, prefer=request.param) as broker:
        yield broker


def test_embedded_broker_delivers_qos1(embedded_broker: EmbeddedBroker) -> None:
    broker = embedded_broker
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
    is_mosquitto = broker.kind == "mosquitto"
    assert (broker.supports_mqtt5, broker.supports_shared_subscriptions) == (is_mosquitto, is_mosquitto)
    subscriber, publisher = _Client(broker.host, broker.port), _Client(broker.host, broker.port)
    subscriber.connect()
    subscriber.subscribe("sensors/#")
    publisher.connect()

    assert _published(publisher.publish("sensors/bin-7/fill", b"0.82"))

    [message] = subscriber.receive(1)
    assert (message.topic, message.payload, message.qos) == ("sensors/bin-7/fill", b"0.82", 1)
    subscriber.close()
    publisher.close()
    pid = broker.pid
    assert pid is not None
    broker.stop()
    assert not _group_alive(pid)
    assert _refuses(broker.host, broker.port)


def test_session_broker_delivers_qos1(mqtt_broker: MqttBroker, mqtt_url: str, topic_prefix: str) -> None:
    host, port, _, _ = parse_mqtt_url(mqtt_url)
    subscriber, publisher = _Client(host, port), _Client(host, port)
    for client in (subscriber, publisher):
        if mqtt_broker.username is not None:
            client.paho.username_pw_set(mqtt_broker.username, mqtt_broker.password)
        client.connect()
    subscriber.subscribe(f"{topic_prefix}#")

    assert _published(publisher.publish(f"{topic_prefix}a", b"1"))

    assert [m.payload for m in subscriber.receive(1)] == [b"1"]
    subscriber.close()
    publisher.close()


@pytest.mark.mqtt5
def test_shared_subscription_delivers_each_message_once(mqtt_broker: MqttBroker, topic_prefix: str) -> None:
    members = [_Client(mqtt_broker.host, mqtt_broker.port, protocol=mqtt.MQTTv5) for _ in range(2)]
    publisher = _Client(mqtt_broker.host, mqtt_broker.port)
    for client in [*members, publisher]:
        if mqtt_broker.username is not None:
            client.paho.username_pw_set(mqtt_broker.username, mqtt_broker.password)
        client.connect()
    group = f"ingest-{secrets.token_hex(4)}"
    for member in members:
        member.subscribe(f"$share/{group}/{topic_prefix}#")
    payloads = [str(n).encode() for n in range(10)]

    for payload in payloads:
        assert _published(publisher.publish(f"{topic_prefix}up", payload))

    received: list[bytes] = []
    deadline = time.monotonic() + WAIT
    while len(received) < len(payloads) and time.monotonic() < deadline:
        for member in members:
            with contextlib.suppress(queue.Empty):
                received.append(member.messages.get(timeout=0.05).payload)
    assert sorted(received) == sorted(payloads)
    for client in [*members, publisher]:
        client.close()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])
def test_restart_keeps_queued_messages_of_persistent_session(
    mosquitto_private: EmbeddedBroker, protocol: mqtt.MQTTProtocolVersion
) -> None:
    broker = mosquitto_private
    client_id = f"ingest-{secrets.token_hex(4)}"
    subscriber = _Client(broker.host, broker.port, client_id=client_id, protocol=protocol, persistent=True)
    subscriber.connect()
    subscriber.subscribe("gateways/#")
    subscriber.close()
    publisher = _Client(broker.host, broker.port)
    publisher.connect()
    payloads = [f"reading {n}".encode() for n in range(20)]
    infos = [publisher.publish("gateways/gw-1/up", payload) for payload in payloads]
    assert all(_published(info) for info in infos), "broker did not acknowledge every QoS 1 publish"
    publisher.close()

    broker.restart()

    subscriber = _Client(broker.host, broker.port, client_id=client_id, protocol=protocol, persistent=True)
    subscriber.connect()
    assert subscriber.session_present, "the persistent session did not survive the restart"
    assert [m.payload for m in subscriber.receive(len(payloads))] == payloads
    subscriber.close()


def test_pause_withholds_acks_until_resume(mosquitto_private: EmbeddedBroker) -> None:
    broker = mosquitto_private
    publisher = _Client(broker.host, broker.port)
    publisher.connect()

    broker.pause()
    info = publisher.publish("gateways/gw-1/up", b"during pause")
    assert not _published(info, timeout=SILENCE), "a paused broker acknowledged a publish"
    assert not mqtt_handshake(broker.host, broker.port, timeout=SILENCE)

    broker.resume()
    assert _published(info)
    assert mqtt_handshake(broker.host, broker.port, timeout=WAIT)
    publisher.close()


def test_stop_of_paused_broker_ends_it(mosquitto_private: EmbeddedBroker) -> None:
    pid = mosquitto_private.pid
    assert pid is not None
    mosquitto_private.pause()
    mosquitto_private.stop()
    assert not _group_alive(pid)


def test_mosquitto_runs_with_shipped_settings(mosquitto_private: EmbeddedBroker) -> None:
    assert mosquitto_private.config_path is not None
    config = mosquitto_private.config_path.read_text()
    for name, value in mosquitto_settings(SHIPPED_MOSQUITTO_CONF):
        assert f"\n{name} {value}\n" in config
    assert config.endswith(f"listener {mosquitto_private.port} 127.0.0.1\n")


def test_fallback_settings_match_shipped_config() -> None:
    # An installed package has no deploy/ and falls back on the constant.
    assert mosquitto_settings(SHIPPED_MOSQUITTO_CONF) == list(FALLBACK_MOSQUITTO_SETTINGS)


def test_mosquitto_settings_stop_at_first_listener(tmp_path: Path) -> None:
    config = tmp_path / "m.conf"
    config.write_text(
        "# comment\npersistence true\nuser mosquitto\nallow_anonymous false\n"
        "password_file /etc/pw\nmax_queued_messages 5\nlistener 8883\ncertfile /x.pem\n"
    )
    assert mosquitto_settings(config) == [("persistence", "true"), ("max_queued_messages", "5")]


# --------------------------------------------------------------------------
# Fixtures: schema per test, environment, proxy
# --------------------------------------------------------------------------


def test_db_conn_works_in_its_own_schema(db_conn: psycopg.Connection[Any], db_schema: str) -> None:
    db_conn.execute("CREATE TABLE reading (value float8)")
    row = db_conn.execute(
        "SELECT current_schema(), relnamespace::regnamespace::text"
        " FROM pg_class WHERE oid = 'reading'::regclass"
    ).fetchone()
    assert row == (db_schema, db_schema)


def test_schema_name_is_a_short_safe_identifier() -> None:
    name = schema_name("test_" + "long_name_" * 20 + "[ÄÖ-param 1]")
    assert len(name.encode()) <= 63
    assert re.fullmatch(r"t_[a-z0-9_]+_[0-9a-f]{8}", name)
    assert schema_name("test_x") != schema_name("test_x")


@pytest.mark.parametrize(
    ("conninfo", "options"),
    [
        ("postgresql://postgres@127.0.0.1:5432/test", "-csearch_path=t_s,public"),
        ("postgresql://u@h/db?options=-cwork_mem%3D64MB", "-cwork_mem=64MB -csearch_path=t_s,public"),
        ("host=127.0.0.1 port=5432 dbname=test", "-csearch_path=t_s,public"),
    ],
)
def test_with_search_path_keeps_form_and_options(conninfo: str, options: str) -> None:
    result = with_search_path(conninfo, "t_s")
    assert result.startswith("postgresql://") == conninfo.startswith("postgresql://")
    assert conninfo_to_dict(result)["options"] == options


def test_clean_environ_leaves_only_test_urls() -> None:
    assert {name for name in os.environ if name.startswith("SENSE311_")} <= KEPT_ENVIRON


def test_proxy_stop_breaks_and_start_restores_connection(tcp_proxy: Any, database_url: str) -> None:
    params = conninfo_to_dict(database_url)
    host = str(params.get("host") or "localhost")
    if host.startswith("/"):
        pytest.skip(f"the test database is on a unix socket ({host}); the TCP proxy needs a host and port")
    proxy: TcpProxy = tcp_proxy(host, int(params.get("port") or 5432))
    url = make_conninfo(database_url, host=proxy.host, port=proxy.port)
    conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
    assert conn.execute("SELECT 1").fetchone() == (1,)
    assert proxy.live_connections == 1

    proxy.stop()

    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    assert conn.closed
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)

    port = proxy.port
    proxy.start()

    assert proxy.port == port
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as again:
        assert again.execute("SELECT 1").fetchone() == (1,)


def test_proxy_cuts_mqtt_clients(tcp_proxy: Any, mosquitto_private: EmbeddedBroker) -> None:
    proxy: TcpProxy = tcp_proxy(mosquitto_private.host, mosquitto_private.port)
    client = _Client(proxy.host, proxy.port)
    client.connect()

    proxy.stop()

    assert client.disconnected.wait(WAIT), f"client not disconnected within {WAIT} s of the proxy stop"
    client.paho.loop_stop()


def test_stop_after_the_server_died(tmp_path: Path) -> None:
    broker = start_mqtt_broker(tmp_path)
    pid = broker.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the server died on its own: stop() must still succeed
    broker.stop()
    assert not _group_alive(pid)
