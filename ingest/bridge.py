"""The ingest bridge: one MQTT subscriber (QoS 1, persistent session) feeding one Kafka producer.

Delivery: a message is acknowledged to mosquitto only after Kafka has confirmed the record built from it,
so a crash re-delivers instead of losing; the processors drop the duplicates by event id. Several
instances share the subscription (``$share/<group>/...``) and split the load. The subscriber
(:class:`wipwatch.mqtt_subscriber.MqttSubscriber`) runs in the bridge's asyncio loop: each socket read is
parsed in bulk, the bridge takes the messages in batches, validates and produces them, and a batch's
acknowledgements go out in one write once Kafka confirmed all of its records. Batches overlap: the next
one is validated while Kafka confirms the previous ones, and acknowledgements leave in batch order.
Mosquitto has at most ``ingest_receive_maximum`` messages unacknowledged in flight to one instance, which
is the bridge's back-pressure.

A stopped instance's persistent session keeps its share of the subscription: mosquitto goes on queueing
that instance's share of the messages for it until it comes back or its session expires
(``ingest_session_expiry_s``, never by default), and drops what it queued at expiry (docs/operations.md).

No message can stop the bridge: whatever ``validate_message`` refuses (checked by
:class:`wipwatch.events.IngestValidator`, which gives its verdicts faster), a topic that is not UTF-8, and
anything unexpected while checking one message (reason ``internal``), goes to the dead-letter topic with
its reason, cut to ``DEADLETTER_PAYLOAD_BYTES`` with its size and sha256, and the messages after it flow
on. Were a message to crash the loop instead, mosquitto would deliver it again to the restarted bridge,
forever. A protocol error from the broker makes the subscriber reconnect, not the bridge stop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from aiokafka import AIOKafkaProducer  # untyped: used through wipwatch.kafka.RecordProducer

from wipwatch import status
from wipwatch.errors import EventError, Rejection
from wipwatch.events import ALERTS_TOPIC_ROOT, EVENT_TOPIC_FILTER, IngestValidator, line_key, pack_events
from wipwatch.kafka import RecordProducer, ensure_event_topics, send_line_record
from wipwatch.mqtt import MqttSecurity
from wipwatch.mqtt_subscriber import InboundMessage, MqttSubscriber
from wipwatch.settings import Settings
from wipwatch.site import Site

if TYPE_CHECKING:
    from wipwatch.services import ChildProcess

log = logging.getLogger(__name__)

_ALERTS_PREFIX = ALERTS_TOPIC_ROOT + "/"
#: Messages validated and produced as one batch, acknowledged together once Kafka confirmed them.
_BATCH = 5000
#: Seconds the subscriber waits after a short read (fewer, larger reads), at most the linger.
_READ_PAUSE_S = 0.005
#: Batches whose Kafka confirmation may be pending at once (the rest wait: back-pressure from Kafka).
_BATCHES_IN_FLIGHT = 8
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
    #: Batches taken from the subscriber and records sent to the events topic (events per record, per batch).
    batches: int = 0
    records: int = 0
    subscribed: bool = False
    #: Rejections per ``Rejection`` kind: a fixed set of keys, whatever the messages say.
    reasons: dict[str, int] = field(default_factory=dict)


def status_name(client_id: str) -> str:
    """The name of an ingest instance's status file (subscribed, counts; ``wipwatch.status``)."""
    return f"ingest-{client_id}"


def status_path(run_dir: Path, client_id: str) -> Path:
    return status.status_file(run_dir, status_name(client_id))


def read_status(run_dir: Path, client_id: str) -> dict[str, Any] | None:
    return status.read_status(run_dir, status_name(client_id))


def wait_subscribed(child: ChildProcess, run_dir: Path, client_id: str, timeout: float = 60.0) -> None:
    """Wait until the ingest process ``child`` is subscribed: start producers only after this."""
    status.wait_subscribed(child, run_dir, status_name(client_id), timeout)


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
        self._validator = IngestValidator(site, settings.max_clock_ahead_s)

    async def run(self, stop: asyncio.Event) -> None:
        """Bridge until ``stop`` is set; then finish the messages in hand and disconnect.

        Raises:
            ServiceError: the broker refuses the connection (credentials) or the subscription (ACL).
        """
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
        subscriber = MqttSubscriber(
            s.mqtt_host,
            s.mqtt_port,
            s.ingest_client_id,
            [f"$share/{s.ingest_share_group}/{EVENT_TOPIC_FILTER}"],
            s.mqtt_qos,
            session_expiry_s=s.ingest_session_expiry_s,
            receive_maximum=s.ingest_receive_maximum,
            security=MqttSecurity.from_settings(s),
            read_pause=min(_READ_PAUSE_S, s.ingest_linger_s),
        )
        in_flight: list[asyncio.Task[None]] = []
        reporter: asyncio.Task[None] | None = None
        try:
            if not await self._start(subscriber, stop):
                return
            self.stats.subscribed = True
            self.write_status()
            reporter = asyncio.create_task(self._report(subscriber))
            while not stop.is_set():
                batch = await subscriber.receive(_BATCH, timeout=0.5, linger=s.ingest_linger_s)
                if batch:
                    self.stats.batches += 1
                    sends = await self._forward(producer, batch)
                    previous = in_flight[-1] if in_flight else None
                    in_flight.append(asyncio.create_task(self._confirm(subscriber, sends, batch, previous)))
                in_flight = self._settled(in_flight)
                while len(in_flight) >= _BATCHES_IN_FLIGHT:  # Kafka is slow: wait for it
                    await asyncio.wait(in_flight[:1])
                    in_flight = self._settled(in_flight)
            if in_flight:
                await asyncio.gather(*in_flight)
        finally:
            for task in [*in_flight, *([reporter] if reporter is not None else [])]:
                task.cancel()
            self.stats.subscribed = False
            self.write_status()
            await subscriber.close()
            await producer.stop()
            log.info("ingest stopped accepted=%d rejected=%d", self.stats.accepted, self.stats.rejected)

    async def _report(self, subscriber: MqttSubscriber) -> None:
        """Rewrite the status file every second, also while Kafka holds the bridge back."""
        while True:
            await asyncio.sleep(1.0)
            self.stats.subscribed = subscriber.subscribed
            self.write_status()

    @staticmethod
    async def _start(subscriber: MqttSubscriber, stop: asyncio.Event) -> bool:
        """Connect and subscribe, waiting for the broker as long as it takes; False if stopped first."""
        starting = asyncio.ensure_future(subscriber.start(patient=True))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return False
        starting.result()
        return True

    @staticmethod
    def _settled(in_flight: list[asyncio.Task[None]]) -> list[asyncio.Task[None]]:
        """The tasks still pending; a failed confirmation (Kafka refused a record) ends the bridge."""
        for task in in_flight:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [task for task in in_flight if not task.done()]

    @staticmethod
    async def _confirm(
        subscriber: MqttSubscriber,
        sends: list[asyncio.Future[Any]],
        batch: list[InboundMessage],
        previous: asyncio.Task[None] | None,
    ) -> None:
        """Acknowledge ``batch`` once Kafka confirmed each of its records, after the batch before it."""
        if sends:
            await asyncio.gather(*sends)
        if previous is not None:
            with contextlib.suppress(Exception):  # its failure is raised by _settled
                await previous
        subscriber.ack(batch)

    async def _dead_letter(
        self,
        producer: RecordProducer,
        topic: str,
        payload: bytes,
        reason: str,
        kind: Rejection,
        now: float,
    ) -> asyncio.Future[Any]:
        self.stats.rejected += 1
        self.stats.reasons[kind.value] = self.stats.reasons.get(kind.value, 0) + 1
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
        self.stats.records += 1
        return await send_line_record(producer, self.site, topic, line_key(*where), pack_events(pack))

    def write_status(self) -> None:
        """Report subscription state and counts in the run directory (read by ``up``, tests and ops)."""
        status.write_status(
            self.settings.run_dir, status_name(self.settings.ingest_client_id), self.stats.__dict__
        )

    async def _forward(
        self, producer: RecordProducer, batch: list[InboundMessage]
    ) -> list[asyncio.Future[Any]]:
        """Validate ``batch``, send its records; returns the futures of Kafka's confirmations."""
        sends = []
        packs: dict[tuple[str, str], list[bytes]] = {}
        pack_bytes: dict[tuple[str, str], int] = {}
        per_record = self.settings.ingest_events_per_record
        line_of = self._validator.line_of
        accepted = 0
        now = time.time()
        for message in batch:
            payload = message.payload
            try:
                topic = message.raw_topic.decode()
            except UnicodeDecodeError:
                # mosquitto refuses such topics from publishers; a bridge behind another broker may not
                topic = message.raw_topic.decode("utf-8", "replace")
                reason = f"topic {topic[:200]!r} is not valid UTF-8"
                sends.append(await self._dead_letter(producer, topic, payload, reason, Rejection.TOPIC, now))
                continue
            try:
                if topic.startswith(_ALERTS_PREFIX):
                    self.stats.skipped += 1
                    continue
                where = line_of(topic, payload, now)
            except EventError as exc:
                sends.append(await self._dead_letter(producer, topic, payload, exc.reason, exc.kind, now))
                continue
            except Exception:  # a message must never stop the bridge (see the module docstring)
                log.exception("unexpected error validating a message: dead-lettered as internal")
                reason = "internal: unexpected error while validating (see the ingest log)"
                sends.append(
                    await self._dead_letter(producer, topic, payload, reason, Rejection.INTERNAL, now)
                )
                continue
            accepted += 1
            pack = packs.get(where)
            if pack is None:
                pack = packs[where] = []
                pack_bytes[where] = 0
            elif pack and pack_bytes[where] + len(payload) > _MAX_PACK_BYTES:
                sends.append(await self._send_pack(producer, where, pack))
                pack = packs[where] = []
                pack_bytes[where] = 0
            pack.append(payload)
            pack_bytes[where] += len(payload) + 1
            if len(pack) >= per_record:
                sends.append(await self._send_pack(producer, where, pack))
                pack = packs[where] = []
                pack_bytes[where] = 0
        self.stats.accepted += accepted
        for where, pack in packs.items():
            if pack:
                sends.append(await self._send_pack(producer, where, pack))
        return sends
