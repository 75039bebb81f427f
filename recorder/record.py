"""Record MQTT traffic to a file: every message with its receive time, topic, QoS and payload.

The subscriber (:class:`wipwatch.mqtt_subscriber.MqttSubscriber`, the same client as ingest) runs in an
asyncio loop on a thread of its own and hands over the messages of each socket read as one batch; the
caller's thread encodes and writes them, and flushes the file at least every ``flush_seconds`` so a
recording stopped by Ctrl-C or killed stays readable up to the last flush. A message is acknowledged to
the broker only once it is flushed to the file (and the file is flushed early when half the Receive
Maximum waits for that): a recorder killed between receiving and flushing gets the message again on its
next run with the same client id, within the session expiry. Subscription is QoS 1 on a persistent
session (fixed client id, MQTT v5 session that outlives a reconnect), like ingest.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

from wipwatch.errors import ServiceError
from wipwatch.events import EVENT_TOPIC_FILTER
from wipwatch.mqtt import MqttSecurity
from wipwatch.mqtt_subscriber import InboundMessage, MqttSubscriber
from wipwatch.recorder.formats import Message, RecordingWriter

log = logging.getLogger(__name__)

#: Unacknowledged QoS 1 messages the broker may send at once (MQTT v5 Receive Maximum).
RECEIVE_MAXIMUM: Final = 65_535
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
        self.payload_bytes = 0
        self._client_id = client_id
        self._security = security or MqttSecurity()
        self._security.ssl_context()  # bad TLS files fail here, in the caller's thread
        self._queue: queue.SimpleQueue[list[InboundMessage] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscriber: MqttSubscriber | None = None
        self._closed: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started: concurrent.futures.Future[None] = concurrent.futures.Future()
        # written to the file, waiting for the next flush to be acknowledged
        self._unflushed: list[InboundMessage] = []
        # run() may still be writing in its thread when close() is called from another
        self._file_lock = threading.Lock()
        self._file_closed = False

    @property
    def received(self) -> int:
        return int(self.writer.messages)

    def start(self, timeout: float = 30.0) -> None:
        """Connect and subscribe in the subscriber's thread; returns once the broker granted the topics.

        Raises:
            ServiceError: the broker cannot be reached, or refuses the connection or the subscription.
        """
        self._thread = threading.Thread(target=self._serve, name="mqtt-recorder", daemon=True)
        self._thread.start()
        try:
            self._started.result(timeout + 5)
        except concurrent.futures.TimeoutError:
            raise ServiceError(
                f"MQTT broker at {self.host}:{self.port} did not answer within {timeout:.0f}s"
            ) from None
        self._subscribed.set()

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
                batch = self._queue.get(timeout=max(wait, 0.001))
            except queue.Empty:
                batch = None
            while batch is not None:
                self._write(batch)
                try:
                    batch = self._queue.get_nowait()
                except queue.Empty:
                    batch = None
            if time.monotonic() >= next_flush or len(self._unflushed) >= RECEIVE_MAXIMUM // 2:
                self._flush()
                next_flush = time.monotonic() + self.flush_seconds
                if on_flush is not None:
                    on_flush(self)

    def close(self) -> None:
        """Write what already arrived, flush, acknowledge, disconnect and close the file."""
        self._stop.set()
        while True:
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                break
            if batch is not None:
                self._write(batch)
        self._flush()
        with self._file_lock:
            self._file_closed = True
        loop, closed = self._loop, self._closed
        if loop is not None and closed is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(closed.set)
        if self._thread is not None:
            self._thread.join(10)
        self.writer.close()
        log.info("recording closed path=%s messages=%d", self.writer.path, self.writer.messages)

    def _write(self, batch: list[InboundMessage]) -> None:
        write = self.writer.write
        with self._file_lock:
            if self._file_closed:
                return  # not acknowledged: the broker sends it to the next session
            for message in batch:
                self.payload_bytes += len(message.payload)
                topic = message.raw_topic.decode("utf-8", "replace")  # mosquitto passes only UTF-8
                write(Message(topic, message.payload, message.qos, message.retain, message.received_at))
            self._unflushed.extend(batch)

    def _flush(self) -> None:
        """Flush the file, then acknowledge everything it now holds."""
        with self._file_lock:
            if self._file_closed:
                return
            self.writer.flush()
            done, self._unflushed = self._unflushed, []
        loop, subscriber = self._loop, self._subscriber
        if done and loop is not None and subscriber is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended: the broker sends them again
                loop.call_soon_threadsafe(subscriber.ack, done)

    # the subscriber's thread: receive and hand over whole batches
    def _serve(self) -> None:
        try:
            asyncio.run(self._receive())
        except BaseException as exc:  # reported to start(); nothing else may end this thread silently
            if not self._started.done():
                self._started.set_exception(exc)
            else:
                log.exception("mqtt recorder thread ended")

    async def _receive(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._closed = asyncio.Event()
        subscriber = MqttSubscriber(
            self.host,
            self.port,
            self._client_id,
            self.topics,
            self.qos,
            session_expiry_s=_SESSION_EXPIRY_SECONDS,
            receive_maximum=RECEIVE_MAXIMUM,
            security=self._security,
        )
        await subscriber.start()
        self._subscriber = subscriber
        self._started.set_result(None)
        try:
            while not self._closed.is_set():
                batch = await subscriber.receive(timeout=0.2)
                if batch:
                    self._queue.put(batch)
        finally:  # the caller's last acknowledgements ran on this loop before ``closed`` was set
            await subscriber.close()
