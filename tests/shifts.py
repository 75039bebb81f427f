"""Recorded shifts for the benchmark and what-if tests: a simulated shift written as a recording file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from wipwatch.events import Event, encode_event, topic_for
from wipwatch.recorder.formats import Message, RecordingWriter
from wipwatch.simulators.line import simulate_site
from wipwatch.simulators.truth import GroundTruth
from wipwatch.site import Site

START = datetime(2026, 11, 25, 6, tzinfo=UTC)


def record_shift(site: Site, seed: int, path: Path, duration: float = 8 * 3600.0) -> GroundTruth:
    """Simulate ``site`` and write its events as a native recording (event time as receive time)."""
    with RecordingWriter(path, "native") as writer:

        def sink(event: Event) -> None:
            writer.write(Message(topic_for(event), encode_event(event), qos=1, time=event.timestamp))

        return simulate_site(site, sink, seed, duration, start=START)
