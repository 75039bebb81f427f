"""The Faust app: the single entry point of the stream processors.

One agent, ``process_lines``, reads the events topic in batches (records are packed by ingest, several
events of one line per record; a partition may carry any number of lines). Per line it keeps one
``LineEngine`` (processors/metrics/line_state.py) whose state lives in the changelog-backed table ``lines``.
Per batch, in this order:

1. ask ``ExactlyOnce`` (processors/exactly_once.py) about each record: apply it, skip it (its effect is
   already stored), or seek back (records were committed whose effect never was);
2. decode, de-duplicate, put in event-time order and apply (the engine);
3. write the lines' points to InfluxDB and wait until InfluxDB has them (an outage stalls here, loses none);
4. store each line's state, with its offset, then one checkpoint per partition, in the changelog.

A crash at any point either replays records the stored state has not seen or skips records it has: every
accepted event counts exactly once (docs/metrics.md). A timer applies events still waiting for the
lateness when no new record brings them out: a live line's once the wall clock has passed them by the
lateness, any line's once it has been quiet for the idle release. The worker's partitions and lines go
to its status file (processors/status.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from aiokafka.errors import IllegalStateError
from faust.types import TP

from wipwatch.alert_rules import expand_rules
from wipwatch.errors import EventError
from wipwatch.events import decode_record, parse_line_key
from wipwatch.influx import InfluxTarget, InfluxWriter
from wipwatch.kafka import ensure_event_topics
from wipwatch.processors.alert_delivery import delivery_from_settings
from wipwatch.processors.consumer import PromptApp
from wipwatch.processors.exactly_once import Decision, ExactlyOnce, checkpoint_key, encode_checkpoint
from wipwatch.processors.metrics.line_state import EngineConfig, LineEngine
from wipwatch.processors.points import collect_points, line_points, quality_points
from wipwatch.processors.status import WorkerStatus
from wipwatch.services import KAFKA_MAX_MESSAGE_BYTES
from wipwatch.settings import Settings
from wipwatch.site import Site, load_site

log = logging.getLogger(__name__)

#: How often waiting events are looked at between batches (``release_waiting_lines``), in seconds.
RELEASE_TICK_S = 0.25
#: Largest changelog record (one line's whole state); the embedded broker and compose's allow as much.
MAX_STATE_BYTES = KAFKA_MAX_MESSAGE_BYTES
#: The changelog is rewritten with each line's whole state every batch: compaction keeps the latest per
#: key, but only in closed segments, so segments roll at 16 MiB or 10 minutes (Kafka's default 1 GiB would
#: let each partition grow to 1 GiB before any compaction; measured in bench/soak.py).
CHANGELOG_CONFIGS = {
    "max.message.bytes": str(MAX_STATE_BYTES),
    "cleanup.policy": "compact",
    "segment.bytes": str(max(16 * 1024 * 1024, 2 * MAX_STATE_BYTES)),
    "segment.ms": str(10 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.2",
}


@dataclass
class _Cached:
    engine: LineEngine
    blob: bytes | None
    last_seen: float


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        lateness_s=settings.processor_lateness_s,
        throughput_window_s=settings.processor_throughput_window_s,
        growth_window_s=settings.processor_growth_window_s,
        dedup_horizon_s=settings.processor_dedup_horizon_s,
        dedup_max_ids=settings.processor_dedup_max_ids,
        point_interval_s=settings.processor_point_interval_s,
        max_ahead_s=settings.max_clock_ahead_s,
        live_window_s=settings.processor_lateness_s + settings.processor_idle_release_s,
    )


def create_app(settings: Settings, site: Site | None = None, writer: InfluxWriter | None = None) -> faust.App:
    """Build the Faust app for ``settings``; ``writer`` defaults to one for the configured InfluxDB."""
    site = site or load_site(settings.site_file)
    config = engine_config(settings)
    # alerts (docs/alerts.md): the site's rules evaluated by each line's engine, delivered after storing state
    config = dataclasses.replace(config, alert_every_s=site.alerts.evaluate_every, wall_clock_silence=True)
    rules = expand_rules(site)
    alerts = delivery_from_settings(settings)
    started = time.time()  # a line's silence counts from here at the earliest (records may wait in Kafka)
    datadir = Path(settings.run_dir) / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    app = PromptApp(
        settings.processor_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(datadir),
        topic_partitions=settings.kafka_partitions,
        web_enabled=settings.processor_web,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=settings.processor_web_port,
        producer_linger_ms=5,
        producer_max_request_size=MAX_STATE_BYTES,
        consumer_max_fetch_size=MAX_STATE_BYTES,
        consumer_auto_offset_reset="earliest",
        # records are packs of up to 500 events: Faust's default buffer of 4096 records would hold ~0.5 GB
        stream_buffer_maxsize=2 * settings.processor_batch_size,
        broker_session_timeout=settings.processor_session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.processor_session_timeout_s / 10),
    )
    events_topic = app.topic(
        settings.events_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.kafka_partitions,
    )
    table = app.Table(
        "lines",
        key_type=bytes,
        value_type=bytes,
        partitions=settings.kafka_partitions,
        extra_topic_configs=CHANGELOG_CONFIGS,
    )
    cache: dict[bytes, _Cached] = {}
    progress = ExactlyOnce(table.data)
    worker_status = WorkerStatus(settings.run_dir, settings.processor_id)
    seen: set[int] = set()  # partitions with a record since the last assignment (for the log)
    dq_times: dict[str, int] = {}
    lock = asyncio.Lock()
    state: dict[str, Any] = {"writer": writer}

    def influx() -> InfluxWriter:
        if state["writer"] is None:
            state["writer"] = InfluxWriter(
                InfluxTarget.from_settings(settings),
                batch_size=settings.influx_batch_size,
                flush_seconds=settings.influx_flush_seconds,
            )
        w: InfluxWriter = state["writer"]
        return w

    def assigned_partitions() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == settings.events_topic}

    def engine_for(key: bytes) -> LineEngine | None:
        """The line's engine, rebuilt from the table when the table holds other bytes than we last wrote."""
        blob = table.data.get(key)
        cached = cache.get(key)
        if cached is not None and cached.blob is blob:
            return cached.engine
        try:
            site_id, line_id = parse_line_key(key)
        except EventError:
            return None
        if site_id != site.site or not any(line.id == line_id for line in site.lines):
            return None
        line = site.line(line_id)
        log.info("owns line=%s loaded=%s", line_id, blob is not None)
        engine = (
            LineEngine.load(line, site.site, config, blob, rules=rules, on_snapshot=collect_points)
            if blob
            else LineEngine(line, site.site, config, rules=rules, on_snapshot=collect_points)
        )
        cache[key] = _Cached(engine, blob, time.monotonic())
        return engine

    async def seek(targets: dict[int, int]) -> None:
        """Move the consumer to each partition's target, or to the oldest record retention left.

        A partition taken away meanwhile (a rebalance while we waited) is left alone: its next assignment
        sets its position again (``ExactlyOnce.assigned``).
        """
        tps = {p: TP(settings.events_topic, p) for p in targets}
        try:
            earliest = await app.consumer.earliest_offsets(*tps.values())
            positions: dict[TP, int] = {}
            for partition, target in targets.items():
                tp = tps[partition]
                moved = progress.retarget(partition, earliest.get(tp, 0))
                if moved is None or tp not in app.consumer.assignment():
                    continue  # reassigned while we waited
                if moved != target:
                    log.error(
                        "records lost to retention partition=%d wanted=%d earliest=%d",
                        partition,
                        target,
                        moved,
                    )
                positions[tp] = moved
            # seek_wait runs in Faust's consumer thread, where aiokafka lives: Consumer.seek would call
            # aiokafka from this thread and race its fetcher (seen: KeyError in the fetcher)
            if positions:
                await app.consumer.seek_wait(positions)
        except IllegalStateError as exc:
            log.warning("seek skipped, partitions moved partitions=%s reason=%s", sorted(targets), exc)

    async def admit(partition: int, offset: int) -> bool:
        """True for a record to apply now; seeks the consumer back when ``ExactlyOnce`` says so."""
        first = partition not in seen
        decision, target = progress.admit(partition, offset)
        if first:
            seen.add(partition)
            log.info(
                "partition=%d first record offset=%d checkpoint=%d decision=%s",
                partition,
                offset,
                progress.checkpoint(partition),
                decision.value,
            )
        if decision is Decision.SEEK:
            log.warning("gap partition=%d got=%d: reading again from %d", partition, offset, target)
            await seek({partition: target})
        return decision is Decision.APPLY

    @app.timer(interval=0.5)  # type: ignore[untyped-decorator]
    async def start_partitions() -> None:
        """After each assignment and table recovery: read every partition from its checkpoint on."""
        if app.rebalancing or not progress.unchecked():
            return
        async with lock:
            owned = assigned_partitions()
            targets = {p: progress.start(p) for p in progress.unchecked() if p in owned}
            if targets:
                log.info("reading from checkpoints offsets=%s", targets)
                await seek(targets)

    async def publish(touched: dict[bytes, LineEngine], checkpoints: dict[int, int]) -> None:
        """Points to InfluxDB (and wait for them), then each line's state, then the checkpoints."""
        lines: list[str] = []
        mine = assigned_partitions()
        for engine in touched.values():
            # the open period's point is rewritten in place: a worker that lost the line must not write
            # it, or it could overwrite the new owner's newer one (docs/metrics.md)
            lines += line_points(engine, open_period=engine.state.partition in mine, wall_now=time.time())
            lines += quality_points(engine, dq_times)
            engine.changes.clear()
        if lines:
            writer = influx()
            writer.write(lines)
            await asyncio.to_thread(writer.flush)
        owned = assigned_partitions()
        stored = []
        lost: set[int] = set()
        for key, engine in touched.items():
            if engine.state.partition not in owned:
                # a rebalance took the line away while we waited for InfluxDB: its new owner recomputes
                # from the partition's checkpoint; storing our state now would race the new owner's
                log.warning("line moved during a batch key=%r: state not stored", key)
                lost.add(engine.state.partition)
                cache.pop(key, None)
                continue
            blob = engine.dump()
            table.data[key] = blob
            table.send_changelog(engine.state.partition, key, blob)
            cache[key].blob = blob
            stored.append(engine)
        # after the states, on the same changelog partitions: the log keeps this order
        for partition, offset in checkpoints.items():
            if partition in owned and partition not in lost:
                key, blob = checkpoint_key(partition), encode_checkpoint(offset)
                table.data[key] = blob
                table.send_changelog(partition, key, blob)
        # alerts hook: deliver the stored lines' alert transitions (idempotent by identity and seq)
        if alerts is not None and stored:
            alerts.submit(stored)

    @app.agent(events_topic)
    async def process_lines(stream: Any) -> Any:
        async for batch in stream.take_events(
            settings.processor_batch_size, within=settings.processor_batch_seconds
        ):
            async with lock:
                touched: dict[bytes, LineEngine] = {}
                for record in batch:
                    message = record.message
                    partition, offset = message.partition, message.offset
                    if not await admit(partition, offset):
                        continue
                    key = record.key or b""
                    engine = engine_for(key)
                    if engine is None:
                        log.error("record for a line the site file does not have key=%r: skipped", key)
                    else:
                        worker_status.owns(engine.line.id, partition)
                        # the producer's clock when it sent the record (ingest: the receipt time)
                        stamp = message.timestamp
                        received_at = stamp if stamp and stamp > 0 else None
                        try:
                            events = decode_record(record.value)
                        except EventError as exc:  # ingest validated it; only a foreign producer gets here
                            log.error("undecodable record key=%r reason=%.300s", key, exc.reason)
                            if engine.skip(partition, offset, "undecodable", received_at):
                                touched[key] = engine
                        else:
                            if engine.offer(events, partition, offset, received_at):
                                touched[key] = engine
                                cache[key].last_seen = time.monotonic()
                                engine.heard(time.time())  # alerts: line_silent is judged on the wall clock
                    progress.handled(partition, offset)
                wall_now = time.time()
                for engine in touched.values():
                    engine.release(wall_now=wall_now)
                await publish(touched, progress.take_checkpoints())

    tick = max(0.05, min(RELEASE_TICK_S, settings.processor_idle_release_s / 2))

    @app.timer(interval=tick)  # type: ignore[untyped-decorator]
    async def release_waiting_lines() -> None:
        """Apply what waits for the lateness when no new record of the line brings it out.

        A line with no record for a tick: a live line's events once the wall clock is the lateness past
        them (``LineEngine.release``); any line's once it has been quiet for ``processor_idle_release_s``.
        Lines with records are served by their batches.
        """
        now = time.monotonic()
        quiet_since = now - settings.processor_idle_release_s
        wall_now = time.time()
        async with lock:
            assigned = assigned_partitions()
            touched = {}
            for key, cached in cache.items():
                engine = cached.engine
                if (
                    not engine.state.pending
                    or cached.last_seen >= now - tick
                    or engine.state.partition not in assigned
                    or cached.blob is not table.data.get(key)  # the table moved on (rebalance)
                ):
                    continue
                waiting = len(engine.state.pending)
                engine.release(everything=cached.last_seen < quiet_since, wall_now=wall_now)
                if len(engine.state.pending) < waiting:
                    touched[key] = engine
            if touched:
                await publish(touched, {})

    @app.timer(interval=settings.alerts_check_s)  # type: ignore[untyped-decorator]
    async def alert_clock() -> None:
        """Alerts on the wall clock: silent lines, and the periodic re-post to Alertmanager."""
        async with lock:
            assigned = assigned_partitions()
            owned = {
                key: cached.engine
                for key, cached in cache.items()
                if cached.engine.state.partition in assigned and cached.blob is table.data.get(key)
            }
            now = time.time()
            for engine in owned.values():
                engine.check_silence(now, not_before=started)
            silent = {key: engine for key, engine in owned.items() if engine.changes.alerts}
            if silent:
                await publish(silent, {})
            if alerts is not None:
                alerts.submit(owned.values(), complete=True)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(_app: Any, /, assigned: set[Any], **_kwargs: Any) -> None:
        mine = sorted(tp.partition for tp in assigned if tp.topic == settings.events_topic)
        progress.assigned(mine)
        worker_status.assigned(mine)
        seen.clear()
        log.info("assigned topic=%s partitions=%s", settings.events_topic, mine)

    @app.on_before_shutdown.connect
    def _flush(_app: Any, /, *_args: Any, signal: Any, **_kwargs: Any) -> None:
        if state["writer"] is not None:
            state["writer"].close()
        if alerts is not None:
            alerts.close()

    return app


def run_worker(settings: Settings) -> None:
    """Run one Faust worker in the foreground until SIGINT/SIGTERM."""
    # before Faust asks for metadata: a broker that creates topics on demand would give it one partition
    asyncio.run(ensure_event_topics(settings))
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
