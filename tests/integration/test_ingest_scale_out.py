"""Two ingest processes on one MQTT shared subscription, real mosquitto and Kafka: split, no loss, no doubles.

Also pins down what mosquitto does with a stopped instance's share (docs/operations.md): it keeps queueing
that instance's share of the messages on its persistent session, so they reach Kafka only when the
instance comes back (or are dropped when its session expires).
"""

from __future__ import annotations

import asyncio
import collections
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from tests.conftest import EXAMPLE_SITE, stack_env, stack_settings
from tests.polling import eventually
from wipwatch.events import Event, decode_record, encode_event, topic_for
from wipwatch.ingest import read_status, wait_subscribed
from wipwatch.mqtt import MqttPublisher
from wipwatch.services import ChildProcess, NativeStack, python_module_argv, spawn
from wipwatch.settings import Settings
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

pytestmark = pytest.mark.integration

IDS = ("ingest-a", "ingest-b")


async def _event_ids(settings: Settings, seconds: float = 3.0) -> collections.Counter[str]:
    """Every event id in the events topic, with how many times it is there."""
    consumer = AIOKafkaConsumer(
        settings.events_topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: collections.Counter[str] = collections.Counter()
    try:
        loop = asyncio.get_running_loop()
        quiet_until = loop.time() + seconds
        while loop.time() < quiet_until:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                quiet_until = loop.time() + seconds
                for record in records:
                    assert record.value is not None
                    seen.update(e.id for e in decode_record(record.value))
    finally:
        await consumer.stop()
    return seen


def _accepted(run: Path, client_id: str) -> int:
    return int((read_status(run, client_id) or {}).get("accepted", 0))


def test_two_instances_split_the_load_with_no_loss_and_no_doubles(stack: NativeStack, tmp_path: Path) -> None:
    run = tmp_path / "run"
    settings = stack_settings(stack, run)
    env = {**stack_env(stack, run), "WIPWATCH_INGEST_SESSION_EXPIRY_S": "120"}
    site = load_site(EXAMPLE_SITE)
    events: list[Event] = []
    simulate_site(site, events.append, 11, 8 * 3600, None, datetime(2026, 11, 25, 6, tzinfo=UTC))
    first, second = events[: len(events) // 2], events[len(events) // 2 :]
    assert len(first) > 2000

    def start(client_id: str) -> ChildProcess:
        child = spawn(
            client_id,
            python_module_argv("ingest"),
            tmp_path / "logs",
            {**env, "WIPWATCH_INGEST_CLIENT_ID": client_id},
        )
        wait_subscribed(child, run, client_id)
        return child

    children = [start(cid) for cid in IDS]
    publisher = MqttPublisher(settings.mqtt_host, settings.mqtt_port, "scale-out-pub")
    try:
        for event in first:
            publisher.publish(topic_for(event), encode_event(event))
        assert publisher.drain(60)
        eventually(
            lambda: [_accepted(run, cid) for cid in IDS],
            lambda counts: sum(counts) == len(first),
            timeout=60,
            what=f"{len(first)} events accepted by the two instances",
        )
        split = [_accepted(run, cid) for cid in IDS]
        assert min(split) > len(first) // 4, f"round robin should share the load roughly evenly: {split}"

        # b stops cleanly; its persistent session keeps its share of what comes next
        children[1].stop()
        for event in second:
            publisher.publish(topic_for(event), encode_event(event))
        assert publisher.drain(60)
        held = asyncio.run(_event_ids(settings))
        missing_while_b_down = len(events) - len(held)
        assert missing_while_b_down > len(second) // 4, "mosquitto queues b's share for b while b is away"

        children[1] = start(IDS[1])
        seen = eventually(
            lambda: asyncio.run(_event_ids(settings, 1.0)),
            lambda ids: len(ids) >= len(events),
            timeout=90,
            what="the held share delivered after b came back",
        )
    finally:
        publisher.close()
        for child in children:
            child.stop()
    assert set(seen) == {e.id for e in events}, "every published event reached Kafka"
    doubles = {k: n for k, n in seen.items() if n > 1}
    assert not doubles, f"{len(doubles)} events were produced twice by the two instances"
