"""Kafka topics wipwatch owns: created up front with the configured partition count."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from wipwatch.errors import ServiceError
from wipwatch.site import Site

log = logging.getLogger(__name__)


async def ensure_topics(bootstrap: str, names: list[str], partitions: int, timeout: float = 30.0) -> None:
    """Create ``names`` with ``partitions`` partitions where missing; wait for the broker up to ``timeout``.

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
                        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in missing]
                    )
                log.info("created topics=%s partitions=%d", ",".join(missing), partitions)
            return
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            if time.monotonic() > deadline:
                raise ServiceError(f"Kafka at {bootstrap} not reachable: {exc}") from None
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


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


_patched = {"cap": 0.0}


def hold_empty_fetches(cap_seconds: float) -> None:
    """Make empty fetches wait as a Kafka broker would (up to ``fetch_max_wait_ms``, at most ``cap_seconds``).

    The local noida-db broker answers a fetch at once even when it has no records, ignoring the consumer's
    ``fetch_max_wait_ms``; aiokafka then re-fetches in a tight loop and an idle Faust worker burns a whole
    core (measured: ~0.85 CPU-s per idle second). Waiting out the remainder of the max wait on the client
    restores Kafka's semantics. Against Apache Kafka an empty fetch already took the full wait, so this never
    sleeps there. Idempotent; the latest cap wins.
    """
    from aiokafka.consumer import fetcher

    if cap_seconds < 0:
        raise ValueError(f"cap_seconds must be >= 0, got {cap_seconds}")
    first = _patched["cap"] == 0.0 and not hasattr(fetcher.Fetcher, "_wipwatch_original")
    _patched["cap"] = cap_seconds
    if not first:
        return
    original = fetcher.Fetcher._proc_fetch_request
    fetcher.Fetcher._wipwatch_original = original

    async def proc_fetch_request(self: Any, assignment: Any, node_id: Any, request: Any) -> Any:
        started = time.monotonic()
        got_records = await original(self, assignment, node_id, request)
        if not got_records:
            remaining = min(self._fetch_max_wait_ms / 1000.0, _patched["cap"]) - (time.monotonic() - started)
            if remaining > 0:
                # aiokafka cancels and awaits pending fetch tasks on close and expects them to return
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(remaining)
        return got_records

    fetcher.Fetcher._proc_fetch_request = proc_fetch_request
