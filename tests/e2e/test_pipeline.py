"""The walking skeleton end to end: simulator → MQTT → ingest → Kafka → Faust → InfluxDB, real servers;
every metric family compared with the simulator's ground truth (tests/truth_figures.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from tests.conftest import EXAMPLE_SITE, stack_env, stack_settings
from tests.pipeline_rig import last_point_times, settled_state
from tests.polling import eventually
from tests.truth_figures import influx_figures, influx_is_truth, mismatches, truth_figures
from wipwatch.events import Event
from wipwatch.influx import InfluxTarget
from wipwatch.ingest import read_status, wait_subscribed
from wipwatch.mqtt import MqttPublisher
from wipwatch.services import ChildProcess, NativeStack, python_module_argv, spawn
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site
from wipwatch.views import wip_snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BAD_TOPIC = "wipwatch/demo-plant/line1/b-cut/in"
BAD_PAYLOAD = b'{"v":1,"kind":"in","id":"broken-1","site":"demo-plant"'


@pytest.fixture
def workers(stack: NativeStack, tmp_path: Path) -> Iterator[list[ChildProcess]]:
    env = stack_env(stack, tmp_path / "run")
    children = [
        spawn("ingest", python_module_argv("ingest"), tmp_path / "logs", env),
        spawn("processors", python_module_argv("process"), tmp_path / "logs", env),
    ]
    try:
        wait_subscribed(children[0], tmp_path / "run", "wipwatch-ingest-1")
        yield children
    finally:
        for child in children:
            child.stop()


async def _deadletters(bootstrap: str, topic: str, want: int, timeout: float) -> list[dict]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[dict] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < want and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                found += [json.loads(r.value) for r in records]
    finally:
        await consumer.stop()
    return found


def test_wip_in_influx_equals_simulator_truth(
    stack: NativeStack, workers: list[ChildProcess], tmp_path: Path
) -> None:
    settings = stack_settings(stack, tmp_path / "run")
    site = load_site(EXAMPLE_SITE)
    publisher = MqttPublisher(settings.mqtt_host, settings.mqtt_port, "e2e-sim")
    published = {"n": 0}
    events: list[Event] = []

    def emit(event: Event) -> None:
        events.append(event)
        publisher(event)
        published["n"] += 1
        if published["n"] == 400:  # a malformed message in the middle of the run
            publisher.publish(BAD_TOPIC, BAD_PAYLOAD)

    start = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
    truth = simulate_site(site, emit, seed=7, duration=4 * 3600, speed=None, start=start)
    publisher.close()
    assert published["n"] > 400, "the scenario must be long enough to put the bad message in the middle"
    assert truth.events == published["n"]
    expected = {key: n for key, n in truth.wip.items()}
    assert any(n > 0 for n in expected.values()), "a run that ends with an empty line proves little"

    def wip_now() -> dict[str, int]:
        for child in workers:
            assert child.alive(), f"{child.name} died: {child.log_tail(30)}"
        snapshot = wip_snapshot(settings)
        return {f"{loc['line']}/{loc['location']}": loc["wip"] for loc in snapshot["locations"]}

    expected_all = {
        f"{line.id}/{loc.id}": expected.get(f"{line.id}/{loc.id}", 0) for line, loc in site.iter_locations()
    }
    logs = lambda: "\n".join(f"--- {c.name}\n{c.log_tail(30)}" for c in workers)  # noqa: E731
    try:
        eventually(wip_now, lambda got: got == expected_all, timeout=120, what=f"WIP {expected_all}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs()}") from None
    for child in workers:
        assert child.alive(), f"{child.name} died: {child.log_tail()}"

    counts = eventually(
        lambda: read_status(tmp_path / "run", "wipwatch-ingest-1") or {},
        lambda status: status.get("accepted") == truth.events,
        timeout=30,
        what="ingest status",
    )
    assert counts["rejected"] == 1
    letters = asyncio.run(_deadletters(settings.kafka_bootstrap, settings.deadletter_topic, 1, 30))
    assert len(letters) == 1
    assert letters[0]["topic"] == BAD_TOPIC
    assert letters[0]["payload"] == BAD_PAYLOAD.decode()
    assert letters[0]["reason"].startswith("not JSON")

    # every metric family, not only WIP, equals the ground truth (tests/truth_figures.py)
    at = last_point_times(events)
    done = influx_is_truth(site, truth, start, at)
    state = settled_state(InfluxTarget.from_settings(settings), workers, done, 60)
    problems = mismatches(influx_figures(site, state), truth_figures(truth, site, start, at))
    assert problems == [], "\n".join(problems[:30])
