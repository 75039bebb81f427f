"""Faults on real Apache Kafka: killed workers, a killed broker and rebalances under load.

Each run is compared field by field, series by series, with an uninterrupted run over the same records,
on a 3-line site and a 12-line site with 4 partitions, so several lines share a partition.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.conftest import stack_topics
from tests.polling import eventually
from tests.processors_rig import START, Rig, assert_same_metrics, packed, produce
from wipwatch.events import Event, PartIn, PartOut, decode_record
from wipwatch.kafka import ensure_topics, send_line_record
from wipwatch.services import NativeStack
from wipwatch.settings import REPO_ROOT
from wipwatch.simulators.line import simulate_site
from wipwatch.site import Site, load_site

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MULTI_LINE_SITE = REPO_ROOT / "examples" / "multi-line-site.yaml"


def twelve_line_site(tmp: Path) -> Path:
    """The three lines of the multi-line example, four times over under other ids: 12 lines, 4 partitions."""
    doc = yaml.safe_load(MULTI_LINE_SITE.read_text())
    doc.pop("scenarios", None)
    doc["lines"] = [
        {**line, "id": f"{line['id']}-{copy}", "name": f"{line['name']} #{copy}"}
        for copy in range(1, 5)
        for line in doc["lines"]
    ]
    path = tmp / "twelve-lines.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(params=["3-lines", "12-lines"])
def site_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return MULTI_LINE_SITE if request.param == "3-lines" else twelve_line_site(tmp_path)


def simulate(site: Site, hours: float, seed: int) -> list[Event]:
    events: list[Event] = []
    simulate_site(site, events.append, seed=seed, duration=hours * 3600, start=START)
    return events


@pytest.fixture
def rig(stack: NativeStack, tmp_path: Path, site_file: Path) -> Iterator[Rig]:
    r = Rig(stack, tmp_path, site_file)
    try:
        yield r
    finally:
        r.stop()


def final_wip(site: Site, events: list[Event]) -> dict[str, int]:
    wip = {f"{line.id}/{loc.id}": 0 for line, loc in site.iter_locations()}
    for e in events:
        key = f"{e.line}/{e.location}"
        if isinstance(e, PartIn):
            wip[key] += e.qty
        elif isinstance(e, PartOut):
            wip[key] -= e.qty
    return wip


def test_worker_sigkilled_mid_run_equals_an_uninterrupted_run(rig: Rig, site_file: Path) -> None:
    site = load_site(site_file)
    events = simulate(site, hours=2, seed=5)
    expected = final_wip(site, events)
    produce(rig.stack, packed(events, per_record=20), site)
    rig.create_database("reference")
    rig.start_worker("reference", group="reference", database="reference")
    rig.wait_wip(expected, database="reference", timeout=180)

    rig.create_database("killed")
    small = {"processor_batch_size": "3"}
    victim = rig.start_worker("victim", group="killed", database="killed", **small)
    eventually(lambda: rig.wip("killed"), lambda got: bool(got), 60, "first points of the victim")
    victim.kill()
    assert rig.wip("killed") != expected, "the kill must land in the middle of the run"
    rig.start_worker("restarted", group="killed", database="killed", **small)
    rig.wait_wip(expected, database="killed", timeout=180)
    assert_same_metrics(rig.metrics("reference"), rig.metrics("killed"))


def test_three_workers_one_killed_one_added_under_load_equal_one_worker(rig: Rig, site_file: Path) -> None:
    if "twelve" not in site_file.name:
        pytest.skip("the rebalance case runs on the 12-line site")
    site = load_site(site_file)
    events = simulate(site, hours=2, seed=8)
    expected = final_wip(site, events)
    records = packed(events, per_record=10)
    half = len(records) // 2
    rig.create_database("one")
    rig.create_database("three")
    rig.start_worker("single", group="one", database="one")
    small = {"processor_batch_size": "3"}
    trio = [rig.start_worker(f"trio-{i}", group="three", database="three", **small) for i in (1, 2, 3)]
    produce(rig.stack, records[:half], site)
    eventually(lambda: rig.wip("three"), lambda got: bool(got), 90, "the trio at work")
    trio[0].kill()
    rig.start_worker("trio-4", group="three", database="three", **small)
    produce(rig.stack, records[half:], site)
    rig.wait_wip(expected, database="one", timeout=240)
    rig.wait_wip(expected, database="three", timeout=240)
    assert_same_metrics(rig.metrics("one"), rig.metrics("three"))


# ------------------------------------------------------------------ the broker itself


async def _produce_counting(
    bootstrap: str, topic: str, site: Site, records: list[tuple[bytes, bytes]], acked: list[bytes]
) -> None:
    """Produce as ingest does (acks=all, idempotent); ``acked`` gets each record the broker confirmed."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        request_timeout_ms=60_000,
        max_request_size=1 << 24,
    )
    await producer.start()
    try:
        for key, value in records:
            future = await send_line_record(producer, site, topic, key, value, 4)
            future.add_done_callback(lambda f, v=value: acked.append(v) if not f.exception() else None)
            await asyncio.sleep(0)
        await producer.flush()
    finally:
        await producer.stop()


async def _read_topic(bootstrap: str, topic: str, expected: int, timeout: float) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[bytes] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(found) < expected and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            found += [m.value for msgs in batch.values() for m in msgs if m.value is not None]
        return found
    finally:
        await consumer.stop()


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_broker_stopped_mid_run_loses_no_acknowledged_event(own_stack: NativeStack, how: str) -> None:
    """200,000+ events produced as ingest produces them; the broker dies halfway and comes back."""
    stack = own_stack
    site = load_site(MULTI_LINE_SITE)
    events: list[Event] = []
    seed = 1
    while len(events) < 200_000:
        events += simulate(site, hours=8, seed=seed)
        seed += 1
    records = packed(events, per_record=50)
    topic = stack_topics(stack)["events_topic"]
    asyncio.run(ensure_topics(stack.kafka_bootstrap, [topic], 4))
    acked: list[bytes] = []

    # the producer runs in a thread of its own; the broker is restarted from this (the main) thread, since
    # a child started from a thread that ends gets its parent-death signal then (services.spawn)
    producing = threading.Thread(
        target=lambda: asyncio.run(_produce_counting(stack.kafka_bootstrap, topic, site, records, acked))
    )
    producing.start()
    eventually(lambda: len(acked), lambda n: n >= len(records) // 2, 120, "half the records acknowledged")
    kafka = stack.children["kafka"]
    if how == "sigkill":
        kafka.kill()
    else:
        kafka.stop()
    stack.restart("kafka")
    producing.join(300)
    assert len(acked) == len(records), "the idempotent producer retries through the restart"
    stored = asyncio.run(_read_topic(stack.kafka_bootstrap, topic, len(records), 120))
    stored_ids = [e.id for value in stored for e in decode_record(value)]
    acked_ids = [e.id for value in acked for e in decode_record(value)]
    assert len(acked_ids) >= 200_000
    assert sorted(stored_ids) == sorted(acked_ids), "every acknowledged event once, none twice"
    assert len(stored) == len(records)
