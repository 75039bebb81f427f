"""Kafka topics wipwatch owns: created up front with the configured partition count."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any, Protocol

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from wipwatch.errors import ServiceError
from wipwatch.events import parse_line_key
from wipwatch.settings import Settings
from wipwatch.site import Site

log = logging.getLogger(__name__)


def retention_configs(hours: float, bytes_per_partition: int) -> dict[str, str]:
    """Topic configs that bound an append-only topic by age and by size per partition (docs/operations.md)."""
    if hours <= 0:
        raise ValueError(f"hours must be > 0, got {hours}")
    if bytes_per_partition < 1:
        raise ValueError(f"bytes_per_partition must be >= 1, got {bytes_per_partition}")
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(int(hours * 3_600_000)),
        "retention.bytes": str(bytes_per_partition),
        # segments are the unit retention deletes: keep several per partition within the size bound
        "segment.bytes": str(max(1024 * 1024, min(64 * 1024 * 1024, bytes_per_partition // 4))),
    }


async def ensure_topics(
    bootstrap: str,
    names: list[str],
    partitions: int,
    timeout: float = 30.0,
    configs: dict[str, str] | None = None,
) -> None:
    """Create ``names`` with ``partitions`` partitions and ``configs`` where missing; wait for the broker.

    Raises:
        ServiceError: the broker cannot be reached in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [n for n in names if n not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(
                        [
                            NewTopic(
                                n,
                                num_partitions=partitions,
                                replication_factor=1,
                                topic_configs=configs or {},
                            )
                            for n in missing
                        ]
                    )
                log.info("created topics=%s partitions=%d", ",".join(missing), partitions)
            return
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            if time.monotonic() > deadline:
                raise ServiceError(f"Kafka at {bootstrap} not reachable: {exc}") from None
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


async def ensure_event_topics(settings: Settings) -> None:
    """The events and dead-letter topics, with the configured partitions and retention."""
    configs = retention_configs(settings.kafka_retention_hours, settings.kafka_retention_bytes)
    topics = [settings.events_topic, settings.deadletter_topic]
    await ensure_topics(settings.kafka_bootstrap, topics, settings.kafka_partitions, configs=configs)


def line_partition(site: Site, line_id: str, partitions: int) -> int | None:
    """The events-topic partition of a line: lines in site-file order, round robin over the partitions.

    A hash of the key would do, but with a handful of lines it often puts several on one partition (the
    three lines of examples/multi-line-site.yaml all hash to partition 0 of 2, 3 or 6), leaving workers
    idle. None for a line the site file does not have: the producer then partitions by key.
    """
    for index, line in enumerate(site.lines):
        if line.id == line_id:
            return index % partitions
    return None


class RecordProducer(Protocol):
    """What wipwatch uses of a Kafka producer: aiokafka's ``AIOKafkaProducer`` (which has no type hints)."""

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int | None = None
    ) -> asyncio.Future[Any]: ...

    async def partitions_for(self, topic: str) -> set[int]: ...


async def send_line_record(
    producer: RecordProducer,
    site: Site | None,
    topic: str,
    key: bytes,
    value: bytes,
    partitions: int | None = None,
) -> asyncio.Future[Any]:
    """Produce one events-topic record of a line, keyed ``site/line`` (``line_key``), on the line's partition.

    The partition comes from ``line_partition`` when ``site`` describes the key's site; otherwise (no site
    file, another site, a line it does not have) the producer partitions by key. ``partitions`` is the
    topic's partition count, asked of the producer when not given. Returns the delivery future.

    Raises:
        EventError: ``key`` is not ``site/line``.
    """
    partition = None
    site_id, line_id = parse_line_key(key)
    if site is not None and site_id == site.site:
        if partitions is None:
            partitions = len(await producer.partitions_for(topic))
        partition = line_partition(site, line_id, partitions)
    return await producer.send(topic, value, key=key, partition=partition)


async def send_line_records(
    producer: RecordProducer,
    site: Site | None,
    topic: str,
    records: Iterable[tuple[bytes, bytes]],
    partitions: int,
) -> None:
    """Produce ``(key, value)`` records as ``send_line_record`` does, in order; wait until all are acked."""
    sends = [await send_line_record(producer, site, topic, key, value, partitions) for key, value in records]
    await asyncio.gather(*sends)
