"""Publishing over MQTT (QoS 1) with back-pressure, so a fast run drops nothing.

Shared by the simulators and the recorder's replay (services import the core, never each other).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from wipwatch.errors import ServiceError
from wipwatch.events import Event, encode_event, topic_for

log = logging.getLogger(__name__)


class MqttPublisher:
    """A paho client that caps unacknowledged publishes at ``max_outstanding`` by waiting for PUBACKs."""

    def __init__(
        self, host: str, port: int, client_id: str, qos: int = 1, max_outstanding: int = 5000
    ) -> None:
        if max_outstanding < 1:
            raise ValueError(f"max_outstanding must be >= 1, got {max_outstanding}")
        self.qos = qos
        self._max = max_outstanding
        self._outstanding = 0
        self._cond = threading.Condition()
        self.published = 0
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self._client.max_inflight_messages_set(min(1000, max_outstanding))
        self._client.max_queued_messages_set(0)
        self._client.on_publish = self._on_publish
        self._connected = threading.Event()
        self._client.on_connect = lambda *_a: self._connected.set()
        self._client.reconnect_delay_set(1, 30)
        try:
            self._client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise ServiceError(f"MQTT broker at {host}:{port} not reachable: {exc}") from None
        self._client.loop_start()
        if not self._connected.wait(30):
            raise ServiceError(f"MQTT broker at {host}:{port} did not accept the connection")

    def _on_publish(self, *_args: Any) -> None:
        with self._cond:
            self._outstanding -= 1
            self._cond.notify_all()

    def __call__(self, event: Event) -> None:
        self.publish(topic_for(event), encode_event(event))

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        with self._cond:
            while self._outstanding >= self._max:
                self._cond.wait(1.0)
            self._outstanding += 1
        if self.qos == 0:
            self._on_publish()
        self._client.publish(topic, payload, qos=self.qos, retain=retain)
        self.published += 1

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until the broker acknowledged everything published; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._outstanding > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
        return True

    def close(self) -> None:
        self.drain()
        self._client.disconnect()
        self._client.loop_stop()
