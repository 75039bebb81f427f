"""Record MQTT traffic to a file: every message with its receive time, topic, QoS and payload.

The paho callback only stamps the receive time and appends to a queue (a fast publisher overruns a slow
Python subscriber, INFRA.md); the caller's thread encodes and writes, and flushes the file at least every
``flush_seconds`` so a recording stopped by Ctrl-C or killed stays readable up to the last flush.
Subscription is QoS 1 on a persistent session (fixed client id, MQTT v5 session that outlives a
reconnect) with a large Receive Maximum, like ingest.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from wipwatch.errors import ServiceError
from wipwatch.events import EVENT_TOPIC_FILTER
from wipwatch.mqtt import MqttSecurity, refusal_hint
from wipwatch.recorder.formats import Message, RecordingWriter

log = logging.getLogger(__name__)

#: Unacknowledged QoS 1 messages the broker may send at once (MQTT v5 Receive Maximum).
RECEIVE_MAXIMUM: Final = 1000
_SESSION_EXPIRY_SECONDS: Final = 3600
DEFAULT_TOPICS: Final = (EVENT_TOPIC_FILTER,)


class Recorder:
    """Subscribe to ``topics`` and append every message to ``writer`` until :meth:`stop`.

    Use: ``start()``, ``wait_subscribed()``, then ``run()`` in the thread that owns the writer (it returns
    after ``stop()`` or ``duration`` seconds), then ``close()``.
    """

    def __init__(
        self,
        writer: RecordingWriter,
        host: str,
        port: int,
        topics: Sequence[str] = DEFAULT_TOPICS,
        client_id: str = "wipwatch-recorder",
        qos: int = 1,
        flush_seconds: float = 1.0,
        security: MqttSecurity | None = None,
    ) -> None:
        if not topics:
            raise ValueError("topics must name at least one topic filter")
        if flush_seconds <= 0:
            raise ValueError(f"flush_seconds must be > 0, got {flush_seconds}")
        self.writer = writer
        self.host, self.port = host, port
        self.topics = list(topics)
        self.qos = qos
        self.flush_seconds = flush_seconds
        self._queue: queue.SimpleQueue[tuple[float, mqtt.MQTTMessage] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self.payload_bytes = 0
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self._client.max_inflight_messages_set(RECEIVE_MAXIMUM)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        (security or MqttSecurity()).apply(self._client)

    @property
    def received(self) -> int:
        return int(self.writer.messages)

    def start(self) -> None:
        """Connect and subscribe in paho's network thread.

        Raises:
            ServiceError: the broker cannot be reached.
        """
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = _SESSION_EXPIRY_SECONDS
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        try:
            self._client.connect(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        except OSError as exc:
            raise ServiceError(
                f"MQTT broker at {self.host}:{self.port} not reachable: {exc}; is it running?"
            ) from None
        self._client.loop_start()

    def wait_subscribed(self, timeout: float = 30.0) -> None:
        """Block until every topic filter is subscribed: start publishers only after this.

        Raises:
            ServiceError: not subscribed within ``timeout`` seconds.
        """
        if not self._subscribed.wait(timeout):
            raise ServiceError(
                f"MQTT broker at {self.host}:{self.port} did not confirm the subscription to "
                f"{', '.join(self.topics)} within {timeout:.0f}s"
            )

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from a signal handler or another thread)."""
        self._stop.set()
        self._queue.put(None)

    def run(self, duration: float | None = None, on_flush: Callable[[Recorder], None] | None = None) -> None:
        """Write messages as they arrive until :meth:`stop` or ``duration`` seconds; flush regularly."""
        deadline = None if duration is None else time.monotonic() + duration
        next_flush = time.monotonic() + self.flush_seconds
        while not self._stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            wait = min(next_flush, deadline or next_flush) - now
            try:
                item = self._queue.get(timeout=max(wait, 0.001))
            except queue.Empty:
                item = None
            while item is not None:
                self._write(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            if time.monotonic() >= next_flush:
                self.writer.flush()
                next_flush = time.monotonic() + self.flush_seconds
                if on_flush is not None:
                    on_flush(self)

    def close(self) -> None:
        """Unsubscribe, write what already arrived, flush and close the file."""
        self._client.disconnect()
        self._client.loop_stop()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._write(item)
        self.writer.close()
        log.info("recording closed path=%s messages=%d", self.writer.path, self.writer.messages)

    def _write(self, item: tuple[float, mqtt.MQTTMessage]) -> None:
        received, message = item
        payload = bytes(message.payload)  # paho types it bytes | bytearray; bytes(bytes) is no copy
        self.payload_bytes += len(payload)
        self.writer.write(Message(message.topic, payload, message.qos, bool(message.retain), received))

    # paho's network thread: stamp and hand over, nothing else
    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._queue.put((time.time(), message))

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("mqtt connect refused reason=%s", refusal_hint(reason))
            return
        client.subscribe([(topic, self.qos) for topic in self.topics])
        log.info("mqtt connected host=%s port=%d subscribing=%s", self.host, self.port, self.topics)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        if any(r.is_failure for r in reasons):
            log.error("mqtt subscribe refused reasons=%s", reasons)
            return
        log.info("mqtt subscribed topics=%s qos=%d", ",".join(self.topics), self.qos)
        self._subscribed.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not self._stop.is_set():
            log.warning("mqtt disconnected reason=%s (paho reconnects with backoff)", reason)
