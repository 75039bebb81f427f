"""Property: simulate → write a recording (any format) → read it back → the pure engine equals ground truth.

This is the path of ``simulate --dry-run`` / ``record`` followed by ``replay``, without the servers: the
same writer, the same reader, the same validation as ingest, the same engine as the processors. Random
sites from examples/, seeds, start times (whole seconds included: the old dry run lost every event on a
whole second) and record sizes; every metric family is compared (tests/truth_figures.py).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.truth_figures import engine_figures, mismatches, truth_figures
from wipwatch.events import Event, validate_message
from wipwatch.processors.metrics.line_state import EngineConfig, LineEngine
from wipwatch.recorder.formats import WRITE_FORMATS, RecordingWriter, read_recording
from wipwatch.settings import REPO_ROOT
from wipwatch.simulators.line import simulate_site
from wipwatch.site import Site, load_site

pytestmark = pytest.mark.unit

SITES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
MASS_PRODUCTION = REPO_ROOT / "examples" / "mass-production.yaml"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def replay_through_engines(site: Site, events: list[Event], seed: int) -> dict[str, LineEngine]:
    """Feed each line's events in records of random size, releasing after each, as the processors do."""
    rng = random.Random(seed)
    config = EngineConfig(lateness_s=5)
    engines = {line.id: LineEngine(line, site.site, config) for line in site.lines}
    by_line: dict[str, list[Event]] = {}
    for event in events:
        by_line.setdefault(event.line, []).append(event)
    for line_id, mine in by_line.items():
        engine = engines[line_id]
        index = offset = 0
        while index < len(mine):
            size = rng.randint(1, 300)
            engine.offer(mine[index : index + size], 0, offset)
            engine.release()
            index += size
            offset += 1
        engine.release(everything=True)
    return engines


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# the probe's case, always tried: a start on a whole second, where the old dry run lost events
@example(site_file=MASS_PRODUCTION, seed=1, start_s=0, micros=0, minutes=60, fmt="jsonl")
@example(site_file=MASS_PRODUCTION, seed=2, start_s=0, micros=0, minutes=60, fmt="csv")
@example(site_file=MASS_PRODUCTION, seed=3, start_s=0, micros=0, minutes=60, fmt="native")
@given(
    site_file=st.sampled_from(SITES),
    seed=st.integers(0, 10_000),
    start_s=st.integers(0, 300 * 86_400),
    micros=st.one_of(st.just(0), st.integers(1, 999_999)),
    minutes=st.integers(20, 90),
    fmt=st.sampled_from(WRITE_FORMATS),
)
def test_any_recording_format_replays_to_ground_truth(
    tmp_path_factory: pytest.TempPathFactory,
    site_file: Path,
    seed: int,
    start_s: int,
    micros: int,
    minutes: int,
    fmt: str,
) -> None:
    site = load_site(site_file)
    start = EPOCH + timedelta(seconds=start_s, microseconds=micros)
    path = tmp_path_factory.mktemp("rec") / f"shift.{fmt}"
    with RecordingWriter(path, fmt) as writer:  # what `simulate --dry-run FILE --format FMT` does
        truth = simulate_site(site, writer, seed=seed, duration=minutes * 60, start=start)

    reader = read_recording(path)
    messages = list(reader)
    assert reader.skipped == []
    assert reader.format == fmt
    assert len(messages) == truth.events
    events = [validate_message(m.topic, m.payload, site) for m in messages]  # ingest's check
    for message, event in zip(messages, events, strict=True):
        assert message.time is not None and abs(message.time - event.timestamp) < 1e-6

    engines = replay_through_engines(site, events, seed)
    end = (start + timedelta(seconds=truth.duration)).timestamp()
    at = {line.id: end for line in site.lines}
    assert all(e.state.quality == {} for e in engines.values()), [e.state.quality for e in engines.values()]
    problems = mismatches(engine_figures(site, engines, at), truth_figures(truth, site, start, at))
    assert problems == [], "\n".join(problems[:20])
