"""The alerts as the floor sees them: the retained MQTT state under ``wipwatch/alerts/`` read back.

Used by ``wipwatch alerts``: the retained messages are the active alerts (a resolved alert's topic is
cleared), and a live subscription shows each change. Payload schema: docs/alerts.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from wipwatch.alert_rules import AlertMessage
from wipwatch.errors import ServiceError
from wipwatch.events import ALERTS_TOPIC_ROOT

_decoder = msgspec.json.Decoder(AlertMessage)


@dataclass(frozen=True)
class AlertUpdate:
    """A message on an alert topic: the alert's state, or None when the topic was cleared (resolved)."""

    topic: str
    alert: AlertMessage | None
    retained: bool
    problem: str | None = None


def alert_filter(site: str | None) -> str:
    return f"{ALERTS_TOPIC_ROOT}/{site}/#" if site else f"{ALERTS_TOPIC_ROOT}/#"


def decode_update(topic: str, payload: bytes, retained: bool) -> AlertUpdate:
    """Decode one alert message; a payload that is not a v1 alert comes back with ``problem`` set."""
    if not payload:
        return AlertUpdate(topic, None, retained)
    try:
        return AlertUpdate(topic, _decoder.decode(payload), retained)
    except msgspec.DecodeError as exc:
        return AlertUpdate(topic, None, retained, f"not a wipwatch alert: {exc}")


class AlertFeed:
    """Subscribes to the alert topics of one site (or all) and hands each update to ``on_update``."""

    def __init__(
        self, host: str, port: int, site: str | None, on_update: Callable[[AlertUpdate], None]
    ) -> None:
        self._on_update = on_update
        self.last_message = time.monotonic()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self._client.on_connect = lambda client, *_: client.subscribe(alert_filter(site), qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._message
        try:
            self._client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise ServiceError(f"MQTT broker at {host}:{port} not reachable: {exc}") from None
        self._client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise ServiceError(f"MQTT broker at {host}:{port} did not confirm the subscription")

    def _message(self, _client: object, _userdata: object, message: mqtt.MQTTMessage) -> None:
        self.last_message = time.monotonic()
        self._on_update(decode_update(message.topic, bytes(message.payload), bool(message.retain)))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def active_alerts(host: str, port: int, site: str | None = None, settle: float = 0.5) -> list[AlertUpdate]:
    """The retained alert states: read until no message came for ``settle`` seconds after subscribing."""
    found: dict[str, AlertUpdate] = {}
    lock = threading.Lock()

    def keep(update: AlertUpdate) -> None:
        with lock:
            if update.alert is None and update.problem is None:
                found.pop(update.topic, None)
            else:
                found[update.topic] = update

    feed = AlertFeed(host, port, site, keep)
    try:
        start = time.monotonic()
        feed.last_message = start
        while time.monotonic() - feed.last_message < settle and time.monotonic() - start < 30:
            time.sleep(0.05)
    finally:
        feed.close()
    with lock:
        return [found[topic] for topic in sorted(found)]
