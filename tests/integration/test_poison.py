"""Poison on real servers: a known valid stream with bad messages in the middle, nothing may stop or skew it.

Per class of poison (issue #10): messages ingest must dead-letter (malformed, oversized, too deep,
out of range, duplicate keys, clocks ahead, bad topics), and records only a producer other than ingest can
write straight to Kafka (undecodable, wrong clocks), which the processors must count and skip. Each
test checks: no process exits, WIP equals the hand-computed truth of the valid events, the bad ones are
in the dead-letter topic or in data quality with their reason, and InfluxDB holds nothing from them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_SITE, stack_env, stack_settings
from tests.e2e.test_pipeline import _deadletters
from tests.polling import eventually
from tests.processors_rig import Rig, produce
from wipwatch.events import Event, PartIn, PartOut, encode_event, line_key, pack_events, topic_for
from wipwatch.influx import InfluxTarget, query, rows
from wipwatch.ingest import read_status, wait_subscribed
from wipwatch.mqtt import MqttPublisher
from wipwatch.services import ChildProcess, NativeStack, python_module_argv, spawn
from wipwatch.site import load_site

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE = load_site(EXAMPLE_SITE)
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
KNOWN_LOCATIONS = {loc.id for _, loc in SITE.iter_locations()} | {"_line", "_unknown"}


def move(kind: type[PartIn] | type[PartOut], eid: str, location: str, part: str, second: float) -> Event:
    return kind(
        v=1,
        id=eid,
        time=T0 + timedelta(seconds=second),
        site=SITE.site,
        line="line1",
        location=location,
        part=part,
    )


#: The valid stream and its WIP, by hand: p1 goes raw → cut → b-cut; p2 and p3 wait in raw.
VALID: list[Event] = [
    move(PartIn, "v1", "raw", "p1", 0),
    move(PartIn, "v2", "raw", "p2", 10),
    move(PartOut, "v3", "raw", "p1", 20),
    move(PartIn, "v4", "cut", "p1", 20),
    move(PartIn, "v5", "raw", "p3", 30),
    move(PartOut, "v6", "cut", "p1", 60),
    move(PartIn, "v7", "b-cut", "p1", 60),
    move(PartIn, "v8", "raw", "p4", 70),
    move(PartOut, "v9", "raw", "p4", 80),
    move(PartIn, "v10", "cut", "p4", 80),
]
LAST_VALID = T0 + timedelta(seconds=80)
EXPECTED_WIP = {f"line1/{loc.id}": 0 for _, loc in SITE.iter_locations()} | {
    "line1/raw": 2,
    "line1/cut": 1,
    "line1/b-cut": 1,
}


def fields(event: Event, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(encode_event(event))
    data.update(changes)
    return data


def assert_influx_holds_nothing_bad(target: InfluxTarget, quality_expected: bool) -> None:
    """Every point lies within the valid stream's times; every location tag is one of the site's."""
    measurements = {v[0] for s in query(target, "SHOW MEASUREMENTS") for v in s["values"]}
    assert ("data_quality" in measurements) is quality_expected, measurements
    for name in measurements:
        (first,) = rows(query(target, f'SELECT * FROM "{name}" ORDER BY time ASC LIMIT 1'))
        (last,) = rows(query(target, f'SELECT * FROM "{name}" ORDER BY time DESC LIMIT 1'))
        assert first["time"] >= T0.timestamp() * 1e6, f"{name}: a point before the stream"
        # a line's snapshot is stamped at the end of the event-time period holding its last event
        # (WIPWATCH_PROCESSOR_POINT_INTERVAL_S, 60 s; docs/metrics.md), never later
        period_end = math.ceil(LAST_VALID.timestamp() / 60) * 60
        assert last["time"] <= period_end * 1e6, f"{name}: a point after the stream's last period"
    locations = {
        v[1] for s in query(target, 'SHOW TAG VALUES WITH KEY = "location"') for v in s.get("values", [])
    }
    assert locations <= KNOWN_LOCATIONS, locations - KNOWN_LOCATIONS


def quality(target: InfluxTarget) -> dict[str, int]:
    found = rows(query(target, 'SELECT sum("count") AS n FROM "data_quality" GROUP BY "reason"'))
    return {r["reason"]: int(r["n"]) for r in found}


# ---------------------------------------------------------------- through ingest


@pytest.fixture
def workers(stack: NativeStack, tmp_path: Path) -> Iterator[list[ChildProcess]]:
    """ingest and one processors worker as child processes, ingest subscribed."""
    env = stack_env(stack, tmp_path / "run")
    children = [
        spawn(name, python_module_argv(name), tmp_path / "logs", env) for name in ("ingest", "process")
    ]
    try:
        wait_subscribed(children[0], tmp_path / "run", "wipwatch-ingest-1")
        yield children
    finally:
        for child in children:
            child.stop()


def test_ingest_dead_letters_every_poison_and_the_valid_stream_flows_on(
    stack: NativeStack, workers: list[ChildProcess], tmp_path: Path
) -> None:
    settings = stack_settings(stack, tmp_path / "run")
    topic = topic_for(VALID[0])
    template = fields(VALID[0], id="bad", part="bad")
    oversized = b'{"kind":"in","pad":"' + b"x" * 1_100_000 + b'"}'
    deep = b'{"x":' + b"[" * 8000 + b"]" * 8000 + b',"kind":"in"}'
    ahead = datetime.now(UTC) + timedelta(hours=1)
    poison: list[tuple[str, bytes, str]] = [
        (topic, deep, "too_deep"),
        (topic, oversized, "too_large"),
        (topic, json.dumps({**template, "qty": 10**30}).encode(), "schema"),
        (topic, json.dumps(template).encode()[:-1] + b', "qty": 5}', "duplicate_key"),
        (topic, json.dumps({**template, "time": "2999-01-01T00:00:00Z"}).encode(), "out_of_range"),
        (topic, json.dumps({**template, "time": "1970-01-01T00:00:00Z"}).encode(), "out_of_range"),
        (topic, json.dumps({**template, "time": ahead.isoformat()}).encode(), "ahead"),
    ]
    bad_topics = [(f"wipwatch/nosuch{i}/x/y/in{i}", b"{}", "topic") for i in range(30)]
    publisher = MqttPublisher(settings.mqtt_host, settings.mqtt_port, "poison-test")
    try:
        for i, event in enumerate(VALID):
            publisher(event)
            if i == 2:
                for bad_topic, payload, _ in poison:
                    publisher.publish(bad_topic, payload)
            if i == 5:
                for bad_topic, payload, _ in bad_topics:
                    publisher.publish(bad_topic, payload)
        assert publisher.drain()
    finally:
        publisher.close()

    rig_wip = Rig(stack, tmp_path, EXAMPLE_SITE)
    rig_wip.workers = workers
    rig_wip.wait_wip(EXPECTED_WIP, timeout=90)
    want = len(poison) + len(bad_topics)
    letters = asyncio.run(_deadletters(settings.kafka_bootstrap, settings.deadletter_topic, want, 30))
    kinds = sorted(letter["kind"] for letter in letters)
    assert kinds == sorted(kind for *_, kind in [*poison, *bad_topics])
    (big,) = [letter for letter in letters if letter["kind"] == "too_large"]
    assert (big["truncated"], big["size"]) == (True, len(oversized))
    assert big["sha256"] == hashlib.sha256(oversized).hexdigest()
    assert len(big["payload"]) == 4096
    status = eventually(
        lambda: read_status(tmp_path / "run", "wipwatch-ingest-1") or {},
        lambda s: s.get("rejected") == want,
        timeout=10,
        what="ingest status",
    )
    assert status["accepted"] == len(VALID)
    assert set(status["reasons"]) == {kind for *_, kind in [*poison, *bad_topics]}, "keys: a fixed set"
    for child in workers:
        assert child.alive(), child.log_tail()
    assert_influx_holds_nothing_bad(rig_wip.target(), quality_expected=False)


# ---------------------------------------------------------------- straight to Kafka


@pytest.fixture
def rig(stack: NativeStack, tmp_path: Path) -> Iterator[Rig]:
    made = Rig(stack, tmp_path, EXAMPLE_SITE)
    yield made
    made.stop()


def test_processors_count_and_skip_what_they_cannot_apply_and_keep_their_clock(rig: Rig) -> None:
    key = line_key(SITE.site, "line1")

    def record(*events: dict[str, Any]) -> tuple[bytes, bytes]:
        return key, pack_events([json.dumps(e).encode() for e in events])

    template = fields(VALID[0], id="bad", part="bad")
    records = [
        record(*(fields(e) for e in VALID[:3])),
        record({**template, "qty": 10**30}),  # beyond the schema: the whole record is undecodable
        (key, b'{"x":' + b"[" * 20_000 + b"]" * 20_000 + b"}"),  # too deep to decode
        (key, b"\xff not json"),
        record({**template, "id": "b1", "time": "1970-01-01T00:00:00Z"}),  # out of range
        record({**template, "id": "b2", "time": "2999-01-01T00:00:00Z"}),  # out of range
        record(
            {**template, "id": "b3", "time": (datetime.now(UTC) + timedelta(days=1)).isoformat()}
        ),  # ahead
        record(*(fields(e) for e in VALID[3:7])),
        record({**template, "id": "b4", "time": "2001-01-01T00:00:00Z"}),  # too old for the line
        record(*(fields(e) for e in VALID[7:])),
        record(fields(VALID[0])),  # a re-sent event: a duplicate, counted once
    ]
    produce(rig.stack, records, SITE)
    worker = rig.start_worker("worker")
    rig.wait_wip(EXPECTED_WIP, timeout=120)
    target = rig.target()
    expected_quality = {"undecodable": 3, "out of range": 2, "ahead": 1, "too old": 1, "duplicate": 1}
    eventually(lambda: quality(target), lambda q: q == expected_quality, timeout=30, what="data quality")
    assert worker.alive(), worker.log_tail()
    assert_influx_holds_nothing_bad(target, quality_expected=True)
