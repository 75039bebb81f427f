"""The ingest bridge: one MQTT subscriber (QoS 1, persistent session) feeding one Kafka producer.

Delivery: paho acknowledges a message to mosquitto only after Kafka has confirmed the record built from it
(``manual_ack``), so a crash re-delivers instead of losing; the processors drop the duplicates by event id.
Several instances share the subscription (``$share/<group>/...``) and split the load. The paho callback
only appends the message to a deque and wakes the asyncio loop when the deque was idle (one thread hop per
burst, not per message); validation and producing run in the loop, in batches.

A stopped instance's persistent session keeps its share of the subscription: mosquitto goes on queueing
that instance's share of the messages for it until it comes back or its session expires
(``ingest_session_expiry_s``, never by default), and drops what it queued at expiry (docs/operations.md).

No message can stop the bridge: whatever ``validate_message`` refuses, and anything unexpected while
checking one message (reason ``internal``), goes to the dead-letter topic with its reason, cut to
``DEADLETTER_PAYLOAD_BYTES`` with its size and sha256, and the messages after it flow on. Were a message
to crash the loop instead, mosquitto would deliver it again to the restarted bridge, forever.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaProducer  # untyped: used through wipwatch.kafka.RecordProducer
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from wipwatch.errors import EventError, Rejection
from wipwatch.events import ALERTS_TOPIC_ROOT, EVENT_TOPIC_FILTER, line_key, pack_events, validate_message
from wipwatch.kafka import RecordProducer, ensure_event_topics, send_line_record
from wipwatch.mqtt import MqttSecurity, refusal_hint
from wipwatch.services import ChildProcess, wait_until
from wipwatch.settings import Settings
from wipwatch.site import Site

log = logging.getLogger(__name__)

#: How many unacknowledged QoS 1 messages mosquitto may send us at once (MQTT v5 Receive Maximum).
RECEIVE_MAXIMUM = 1000
_BATCH = 1000
#: How much of a rejected payload (and topic) a dead-letter record keeps; the record says the full size.
DEADLETTER_PAYLOAD_BYTES = 4096
DEADLETTER_TOPIC_CHARS = 1024
#: Bytes of events packed into one Kafka record at most (the producer's request limit is 1 MiB).
_MAX_PACK_BYTES = 512 * 1024


@dataclass
class IngestStats:
    accepted: int = 0
    rejected: int = 0
    skipped: int = 0
    subscribed: bool = False
    #: Rejections per ``Rejection`` kind: a fixed set of keys, whatever the messages say.
    reasons: dict[str, int] = field(default_factory=dict)


def status_path(run_dir: Path, client_id: str) -> Path:
    """Where an ingest instance reports that it is subscribed, and its counts (JSON, rewritten atomically)."""
    return run_dir / "status" / f"ingest-{client_id}.json"


def wait_subscribed(child: ChildProcess, run_dir: Path, client_id: str, timeout: float = 60.0) -> None:
    """Wait until the ingest process ``child`` is subscribed: start producers only after this.

    Raises:
        ServiceError: the process exited or did not subscribe in time.
    """

    def subscribed() -> bool:
        status = read_status(run_dir, client_id)
        return bool(status and status.get("pid") == child.pid and status.get("subscribed"))

    wait_until(child, subscribed, timeout)


def read_status(run_dir: Path, client_id: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(status_path(run_dir, client_id).read_text())
        return data
    except (OSError, ValueError):
        return None


def deadletter_record(
    topic: str,
    payload: bytes,
    reason: str,
    received_at: float,
    source: str,
    kind: Rejection = Rejection.SCHEMA,
) -> bytes:
    """The JSON value of a dead-letter record: why, where from, and the raw payload.

    A payload longer than ``DEADLETTER_PAYLOAD_BYTES`` is cut there (``truncated``); ``size`` and ``sha256``
    always describe the whole payload, so the original can be matched.
    """
    kept = payload[:DEADLETTER_PAYLOAD_BYTES]
    try:
        text, encoding = kept.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(kept).decode(), "base64"
    return msgspec.json.encode(
        {
            "reason": reason,
            "kind": kind.value,
            "topic": topic[:DEADLETTER_TOPIC_CHARS],
            "payload": text,
            "payload_encoding": encoding,
            "truncated": len(kept) < len(payload),
            "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "received_at": received_at,
            "source": source,
        }
    )


class IngestBridge:
    """Subscribe to every event topic and produce valid events to Kafka, invalid ones to the dead letters."""

    def __init__(self, settings: Settings, site: Site | None) -> None:
        self.settings = settings
        self.site = site
        self.stats = IngestStats()
        # paho's thread appends, the loop pops: deque appends and pops are atomic, no lock needed.
        self._pending: collections.deque[mqtt.MQTTMessage] = collections.deque()
        self._wake = asyncio.Event()
        self._woken = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Bridge until ``stop`` is set; then finish the messages in hand and disconnect."""
        self._loop = asyncio.get_running_loop()
        s = self.settings
        await ensure_event_topics(s)
        producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=256 * 1024,
        )
        await producer.start()
        client = self._start_mqtt()
        report_at = time.monotonic() + 1
        try:
            while not stop.is_set():
                if not self._pending:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=0.5)
                self._wake.clear()
                # cleared before popping: a message appended from now on wakes the loop again
                self._woken = False
                while self._pending:
                    pending = self._pending
                    batch = [pending.popleft() for _ in range(min(_BATCH, len(pending)))]
                    await self._forward(producer, client, batch)
                if time.monotonic() > report_at:
                    self.write_status()
                    report_at = time.monotonic() + 1
        finally:
            self.stats.subscribed = False
            self.write_status()
            client.disconnect()
            client.loop_stop()
            await producer.stop()
            log.info("ingest stopped accepted=%d rejected=%d", self.stats.accepted, self.stats.rejected)

    def _start_mqtt(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.ingest_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.max_inflight_messages_set(RECEIVE_MAXIMUM)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        MqttSecurity.from_settings(s).apply(client)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.ingest_session_expiry_s
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        client.connect_async(s.mqtt_host, s.mqtt_port, keepalive=30, clean_start=False, properties=props)
        client.loop_start()
        self._client = client
        return client

    async def _dead_letter(
        self,
        producer: RecordProducer,
        message: mqtt.MQTTMessage,
        payload: bytes,
        reason: str,
        kind: Rejection,
        now: float,
    ) -> asyncio.Future[Any]:
        self.stats.rejected += 1
        self.stats.reasons[kind.value] = self.stats.reasons.get(kind.value, 0) + 1
        try:
            topic = message.topic
        except UnicodeDecodeError:  # paho decodes the topic on access; MQTT requires UTF-8
            topic = message._topic.decode("utf-8", "replace")
        log.warning("dead-letter kind=%s topic=%.200s reason=%.500s", kind.value, topic, reason)
        s = self.settings
        record = deadletter_record(topic, payload, reason, now, s.ingest_client_id, kind)
        key = topic[:DEADLETTER_TOPIC_CHARS].encode()
        future: asyncio.Future[Any] = await producer.send(s.deadletter_topic, record, key=key)
        return future

    async def _send_pack(
        self, producer: RecordProducer, where: tuple[str, str], pack: list[bytes]
    ) -> asyncio.Future[Any]:
        """Send one record of a line's events: key ``site/line``, partition from the site file."""
        topic = self.settings.events_topic
        return await send_line_record(producer, self.site, topic, line_key(*where), pack_events(pack))

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.error("mqtt connect refused reason=%s", refusal_hint(reason))
            return
        topic = f"$share/{self.settings.ingest_share_group}/{EVENT_TOPIC_FILTER}"
        client.subscribe(topic, qos=self.settings.mqtt_qos)
        log.info(
            "mqtt connected host=%s port=%d subscribing=%s",
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            topic,
        )

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        if any(r.is_failure for r in reasons):
            log.error("mqtt subscribe refused reasons=%s", reasons)
            return
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._mark_subscribed)

    def _mark_subscribed(self) -> None:
        self.stats.subscribed = True
        self.write_status()

    def write_status(self) -> None:
        """Report subscription state and counts in the run directory (read by ``up``, tests and ops)."""
        path = status_path(self.settings.run_dir, self.settings.ingest_client_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "time": time.time(), **self.stats.__dict__}))
        tmp.replace(path)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        log.warning("mqtt disconnected reason=%s (paho reconnects with backoff)", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        # paho's network thread: hand over and return at once; wake the loop once per burst.
        self._pending.append(message)
        if not self._woken:
            self._woken = True
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _forward(
        self, producer: RecordProducer, client: mqtt.Client, batch: list[mqtt.MQTTMessage]
    ) -> None:
        s = self.settings
        sends = []
        packs: dict[tuple[str, str], list[bytes]] = {}
        pack_bytes: dict[tuple[str, str], int] = {}
        now = time.time()
        for message in batch:
            payload = bytes(message.payload)
            try:
                topic = message.topic
                if topic.startswith(ALERTS_TOPIC_ROOT + "/"):
                    self.stats.skipped += 1
                    continue
                event = validate_message(topic, payload, self.site, now, s.max_clock_ahead_s)
            except EventError as exc:
                sends.append(await self._dead_letter(producer, message, payload, exc.reason, exc.kind, now))
                continue
            except Exception:  # a message must never stop the bridge (see the module docstring)
                log.exception("unexpected error validating a message: dead-lettered as internal")
                reason = "internal: unexpected error while validating (see the ingest log)"
                sends.append(
                    await self._dead_letter(producer, message, payload, reason, Rejection.INTERNAL, now)
                )
                continue
            self.stats.accepted += 1
            where = (event.site, event.line)
            pack = packs.setdefault(where, [])
            if pack and pack_bytes[where] + len(payload) > _MAX_PACK_BYTES:
                sends.append(await self._send_pack(producer, where, pack))
                pack.clear()
            if not pack:
                pack_bytes[where] = 0
            pack.append(payload)
            pack_bytes[where] += len(payload) + 1
            if len(pack) >= s.ingest_events_per_record:
                sends.append(await self._send_pack(producer, where, pack))
                pack.clear()
        for where, pack in packs.items():
            if pack:
                sends.append(await self._send_pack(producer, where, pack))
        if sends:
            await asyncio.gather(*sends)
        for message in batch:
            if message.qos > 0:
                client.ack(message.mid, message.qos)
