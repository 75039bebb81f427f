"""Live time tells the truth: after the warm-up, event times follow the wall clock and never run ahead.

Ground truth: the warm-up changes when events go out, never which events there are; a run with the same
site, seed and start at full speed gives the same events, ids included.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wipwatch.cli.main import app
from wipwatch.cli.stack import grafana_shift_link, recording_event_range
from wipwatch.events import Event, encode_event, topic_for
from wipwatch.recorder.formats import Message, RecordingWriter
from wipwatch.settings import DEFAULT_SITE_FILE
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

pytestmark = pytest.mark.unit

WARMUP = 2 * 3600.0
LIVE = 4.0
#: Wall seconds the warm-up is paced to take.
WARMUP_WALL = 1.0


def test_warmup_fills_the_past_then_event_times_follow_the_wall_clock() -> None:
    site = load_site(DEFAULT_SITE_FILE)
    sent: list[tuple[float, Event]] = []
    began = time.time()
    emit = lambda e: sent.append((time.time(), e))  # noqa: E731
    simulate_site(site, emit, 3, WARMUP + LIVE, 1.0, warmup=WARMUP, warmup_speed=WARMUP / WARMUP_WALL)
    ended = time.time()
    start = datetime.fromtimestamp(began, UTC).replace(microsecond=0) - timedelta(seconds=WARMUP)
    assert sent[0][1].time == start  # every station announces itself at simulated second 0
    ahead = max(e.time.timestamp() - wall for wall, e in sent)
    assert ahead <= 0.05, f"an event went out {ahead:.3f}s before its event time"
    # the past hours went out paced at the warm-up speed: event time minus start over wall time since began
    past = [
        (wall - began, (e.time - start).total_seconds()) for wall, e in sent if e.time.timestamp() < began
    ]
    assert len(past) > 1000
    assert all(wall >= sim / WARMUP * WARMUP_WALL - 0.05 for wall, sim in past), (
        "warm-up ran ahead of its pace"
    )
    assert past[-1][0] < WARMUP_WALL + 0.5
    # then real time, simulated second WARMUP pinned to the wall time start + WARMUP: the run ends when
    # the wall clock reaches the end's event time (the warm-up's own second was caught up, not added)
    assert abs(ended - (start.timestamp() + WARMUP + LIVE)) < 0.5

    fast: list[Event] = []
    simulate_site(site, fast.append, 3, WARMUP + LIVE, None, start)
    assert [e.id for _, e in sent] == [e.id for e in fast]


def test_live_commands_refuse_to_run_ahead_of_the_wall_clock() -> None:
    result = CliRunner().invoke(app, ["up", "--speed", "60"])
    assert result.exit_code != 0 and "--speed is for --replay" in result.output


def test_replay_stack_link_spans_the_recorded_shift(tmp_path: Path) -> None:
    recording = tmp_path / "shift.jsonl.gz"
    start = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
    events: list[Event] = []
    simulate_site(load_site(DEFAULT_SITE_FILE), events.append, 1, 3600.0, None, start)
    with RecordingWriter(recording, "native") as writer:
        for n, event in enumerate(events):
            writer.write(Message(topic_for(event), encode_event(event), 1, False, 1e9 + n))
        writer.write(Message("wipwatch/alerts/x", b"not an event", 1, True, 2e9))
    first, last = recording_event_range(recording) or (None, None)
    assert first == start and last == max(e.time for e in events)
    link = grafana_shift_link("http://grafana:3000/", first, last)
    assert link == (
        "http://grafana:3000/d/wipwatch-shift-review"
        f"?from={int(start.timestamp()) * 1000}&to={int(last.timestamp() * 1000) + 1000}"
    )
