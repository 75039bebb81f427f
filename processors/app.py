"""The Faust app: the single entry point of the stream processors.

``track_wip`` reads raw v1 events from the events topic in batches (``take_events``), keeps WIP per
location in a changelog-backed table and writes WIP points to InfluxDB. A table key is written once per
batch, not once per event: changelog traffic, not decoding, is what limits a naive Faust agent (INFRA.md).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import faust

from wipwatch.errors import EventError
from wipwatch.events import Event, PartIn, PartOut, decode_event
from wipwatch.influx import InfluxTarget, InfluxWriter
from wipwatch.kafka import hold_empty_fetches
from wipwatch.processors.metrics.wip import apply_movements, location_key
from wipwatch.processors.points import data_quality_lines, wip_lines
from wipwatch.processors.tables import BatchWrites
from wipwatch.settings import Settings
from wipwatch.site import Site, load_site

log = logging.getLogger(__name__)

#: Event ids remembered for de-duplication per worker (bounded LRU).
_SEEN_IDS = 200_000


def create_app(settings: Settings, site: Site | None = None, writer: InfluxWriter | None = None) -> faust.App:
    """Build the Faust app for ``settings``; ``writer`` defaults to one for the configured InfluxDB."""
    site = site or load_site(settings.site_file)
    datadir = Path(settings.run_dir) / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
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
        consumer_auto_offset_reset="earliest",
    )
    events_topic = app.topic(
        settings.events_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.kafka_partitions,
    )
    wip_table = app.Table("wip", default=int, partitions=settings.kafka_partitions)
    seen: OrderedDict[str, None] = OrderedDict()
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

    def decode_batch(batch: list[Any]) -> tuple[list[Event], dict[str, int]]:
        """Decode and de-duplicate; also the source partition of each location key."""
        events: list[Event] = []
        partitions: dict[str, int] = {}
        for record in batch:
            try:
                event = decode_event(record.value)
            except EventError as exc:  # ingest validated it; only a foreign producer gets here
                log.error("undecodable record on events topic reason=%s", exc.reason)
                continue
            if event.id in seen:
                continue
            seen[event.id] = None
            if len(seen) > _SEEN_IDS:
                seen.popitem(last=False)
            events.append(event)
            partitions[location_key(event.line, event.location)] = record.message.partition
        return events, partitions

    @app.agent(events_topic)
    async def track_wip(stream: Any) -> Any:
        writes = BatchWrites(wip_table)
        async for batch in stream.take_events(
            settings.processor_batch_size, within=settings.processor_batch_seconds
        ):
            events, partitions = decode_batch(batch)
            changed, issues = apply_movements(wip_table, events)
            for key, parts in changed.items():
                writes.set(partitions[key], key, parts)
            writes.flush()
            last_time: dict[str, int] = {}
            for event in events:
                if isinstance(event, PartIn | PartOut):
                    last_time[location_key(event.line, event.location)] = int(event.timestamp * 1_000_000)
            lines = wip_lines(site, changed, last_time)
            lines += data_quality_lines(site, issues, events)
            if lines:
                influx().write(lines)

    @app.on_before_shutdown.connect
    def _flush(_app: Any, /, *_args: Any, signal: Any, **_kwargs: Any) -> None:
        if state["writer"] is not None:
            state["writer"].close()

    return app


def run_worker(settings: Settings) -> None:
    """Run one Faust worker in the foreground until SIGINT/SIGTERM."""
    hold_empty_fetches(settings.kafka_empty_fetch_wait_ms / 1000.0)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
