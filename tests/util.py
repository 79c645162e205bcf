"""Small helpers the tests share: publishing, waiting on a condition with a deadline."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import TypeVar
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition", poll: float = 0.05
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(poll)
    raise AssertionError(f"{what} not reached within {timeout:.0f} s (last value: {last!r})")


def publish_all(url: str, messages: Iterable[tuple[str, bytes]], qos: int = 1, timeout: float = 60.0) -> int:
    """Publish and wait until the broker acknowledged every message; returns the count."""
    parts = urlsplit(url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"test-pub-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv311,
    )
    if parts.username:
        client.username_pw_set(parts.username, parts.password)
    client.max_inflight_messages_set(0)  # unlimited: with a limit paho re-scans its queue per PUBACK
    client.max_queued_messages_set(0)
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "the broker did not acknowledge a message in time"
        return len(infos)
    finally:
        client.disconnect()
        client.loop_stop()
