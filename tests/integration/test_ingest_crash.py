"""Ingest SIGKILLed mid-stream and restarted, real mosquitto and Kafka: no event lost.

Ingest acknowledges a message only after Kafka confirmed its record. To put the kill inside that window
for certain, the Kafka broker is paused (SIGSTOP) while ingest receives the second part of the stream:
ingest holds those events, sent but unconfirmed, when it is killed. The restarted ingest gets them again
from mosquitto (an ingest that acknowledged on receipt would have lost them). Ground truth: the
simulator's events; duplicates are allowed (the processors drop them by event id), a missing one is not.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_SITE, stack_env, stack_settings
from tests.integration.test_ingest_scale_out import _accepted, _event_ids
from tests.polling import eventually
from wipwatch.events import Event, encode_event, topic_for
from wipwatch.ingest import wait_subscribed
from wipwatch.mqtt import MqttPublisher
from wipwatch.services import ChildProcess, NativeStack, python_module_argv, spawn
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

pytestmark = pytest.mark.integration

CLIENT_ID = "ingest-crash"


def test_ingest_sigkilled_with_events_unconfirmed_by_kafka_loses_nothing(
    own_stack: NativeStack, tmp_path: Path
) -> None:
    stack, run = own_stack, tmp_path / "run"
    settings = stack_settings(stack, run)
    env = {**stack_env(stack, run), "WIPWATCH_INGEST_CLIENT_ID": CLIENT_ID}
    events: list[Event] = []
    start_at = datetime(2026, 11, 25, 6, tzinfo=UTC)
    simulate_site(load_site(EXAMPLE_SITE), events.append, 3, 8 * 3600, None, start_at)
    first, second = events[:2000], events[2000:]
    assert len(second) > 2000

    def start() -> ChildProcess:
        child = spawn(CLIENT_ID, python_module_argv("ingest"), tmp_path / "logs", env)
        wait_subscribed(child, run, CLIENT_ID)
        return child

    kafka = stack.children["kafka"].process
    child = start()
    publisher = MqttPublisher(settings.mqtt_host, settings.mqtt_port, "crash-pub")
    try:
        for event in first:
            publisher.publish(topic_for(event), encode_event(event))
        eventually(lambda: _accepted(run, CLIENT_ID), lambda n: n == len(first), 60, "the first events")
        eventually(
            lambda: len(asyncio.run(_event_ids(settings, 1.0))), lambda n: n == len(first), 60, "in Kafka"
        )

        kafka.send_signal(signal.SIGSTOP)
        for event in second:
            publisher.publish(topic_for(event), encode_event(event))
        assert publisher.drain(60)
        # ingest takes what it can until its producer waits for the stopped broker (one batch per
        # partition: seen from 36 to thousands of events, depending on how its batches fell); every message
        # mosquitto delivered beyond those, up to the Receive Maximum, is held unacknowledged too
        held = eventually(
            lambda: _accepted(run, CLIENT_ID), lambda n: n > len(first), 60, "ingest taking the second part"
        )
        child.process.kill()  # SIGKILL while Kafka has confirmed none of the second part
        child.process.wait(30)
        kafka.send_signal(signal.SIGCONT)

        child = start()
        eventually(
            lambda: len(asyncio.run(_event_ids(settings, 1.0))),
            lambda n: n >= len(events),
            timeout=120,
            what=f"all {len(events)} events in Kafka after the restart",
        )
        seen = asyncio.run(_event_ids(settings, 1.0))
    finally:
        kafka.send_signal(signal.SIGCONT)
        publisher.close()
        child.stop()
    assert set(seen) == {e.id for e in events}, f"no event lost ({held - len(first)} were in the window)"
