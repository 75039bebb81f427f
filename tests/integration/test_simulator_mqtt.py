"""The simulator over a real mosquitto: as fast as possible with back-pressure, nothing dropped or changed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import EXAMPLE_SITE
from tests.polling import eventually
from wipwatch.events import EVENT_TOPIC_FILTER, Event, encode_event, topic_for
from wipwatch.mqtt import MqttPublisher
from wipwatch.services import ChildProcess, free_port, start_mosquitto
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[ChildProcess, int]]:
    port = free_port()
    child = start_mosquitto(tmp_path, port)
    try:
        yield child, port
    finally:
        child.stop()


class _Collector:
    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="sim-test-sub", protocol=mqtt.MQTTv311
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_connect = lambda client, *_a: client.subscribe(EVENT_TOPIC_FILTER, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload))

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_max_speed_run_arrives_complete_and_identical(broker: tuple[ChildProcess, int]) -> None:
    _, port = broker
    site = load_site(EXAMPLE_SITE)
    expected: list[tuple[str, bytes]] = []
    simulate_site(site, lambda e: expected.append((topic_for(e), encode_event(e))), 9, 4 * 3600, None, START)
    collector = _Collector(port)
    # a small window forces the publisher to wait for PUBACKs many times over
    publisher = MqttPublisher("127.0.0.1", port, "sim-test-pub", max_outstanding=50)
    try:

        def emit(event: Event) -> None:
            publisher(event)

        truth = simulate_site(site, emit, 9, 4 * 3600, None, START)
        assert publisher.drain(60)
    finally:
        publisher.close()
    try:
        eventually(collector.count, lambda n: n >= truth.events, timeout=60, what=f"{truth.events} messages")
    finally:
        collector.close()
    assert truth.events == len(expected) > 1000
    assert collector.messages == expected, "same seed: the same events, in order, byte for byte"
