"""Publishing through a real broker: every message arrives, byte for byte, under the prefix."""

from __future__ import annotations

import threading
import uuid
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest

from simulators import Simulation, build_fleet, get_encoder, parse_options, run_simulation
from simulators.errors import PublishError
from simulators.publisher import MqttPublisher, parse_mqtt_url
from tests.util import wait_for

OPTIONS = {
    "bins": 3,
    "lights": 3,
    "parking": 2,
    "air": 2,
    "seed": 9,
    "start": "2024-03-04T17:00Z",
    "duration": "30m",
    "step": "1m",
    "format": "chirpstack_v4",
    "faults": "default",
    "fault_rates": {"duplicate": 30.0, "malformed": 30.0},
}


class Collector:
    def __init__(self, url: str, topic_filter: str) -> None:
        parts = urlsplit(url)
        self.received: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-test-{uuid.uuid4().hex[:8]}"
        )
        if parts.username:
            self.client.username_pw_set(parts.username, parts.password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.loop_start()
        self.client.subscribe(topic_filter, qos=1)
        assert subscribed.wait(10), "no SUBACK"

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.received.append((message.topic, bytes(message.payload)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_every_message_reaches_the_broker(mqtt_url: str, topic_prefix: str) -> None:
    opts = parse_options(**OPTIONS, mqtt_url=mqtt_url, topic_prefix=topic_prefix, max_inflight=5)
    fleet = build_fleet(opts.seed, opts.counts())
    encoder = get_encoder(opts.format, fleet, topic_prefix)
    sim = Simulation(fleet, opts.rates(), opts.start, opts.start + opts.duration, opts.step)
    expected = [pair for m in sim.messages() for pair in encoder.encode(m)]
    collector = Collector(mqtt_url, encoder.topic_filter)
    try:
        report = run_simulation(opts)
        assert report.sent == len(expected)
        wait_for(lambda: len(collector.received) >= len(expected), timeout=30, what="all messages delivered")
        assert sorted(collector.received) == sorted(expected)
    finally:
        collector.close()


def test_an_unreachable_broker_is_one_clear_error() -> None:
    message = r"^could not connect to mqtt://127\.0\.0\.1:1: connection refused; is the broker running\?$"
    with pytest.raises(PublishError, match=message), MqttPublisher("mqtt://127.0.0.1:1", connect_timeout=2):
        pass


def test_credentials_stay_out_of_messages() -> None:
    address = parse_mqtt_url("mqtt://user:s3cret@broker.example:1884")
    assert (address.host, address.port, address.username, address.password) == (
        "broker.example",
        1884,
        "user",
        "s3cret",
    )
    assert "s3cret" not in str(address)
