"""The time series is a function of event time only: the same shift fed in any batch sizes and release
rhythms writes the same InfluxDB series (processors/points.py, docs/metrics.md "When points are written").

InfluxDB is modelled by what it does with a write: a point with the measurement, tag set and time of an
earlier one overwrites that one's fields.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import pytest

from wipwatch.events import Event, PartIn, PartOut
from wipwatch.processors.metrics.line_state import EngineConfig, LineEngine, period_end
from wipwatch.processors.points import collect_points, line_points
from wipwatch.settings import REPO_ROOT
from wipwatch.simulators.line import simulate_site
from wipwatch.site import Site, load_site, parse_site

pytestmark = pytest.mark.unit

START = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # a whole second: events at exactly a period's end
MULTI_LINE = REPO_ROOT / "examples" / "multi-line-site.yaml"
Series = dict[tuple[str, int], dict[str, str]]
_UNESCAPED_SPACE = re.compile(r"(?<!\\) ")
_FIELD = re.compile(r'([^=,]+)=("(?:[^"\\]|\\.)*"|[^,]*)')


def write(database: Series, lines: list[str]) -> None:
    """InfluxDB's write: fields of a point with an existing series key and time replace that point's."""
    for text in lines:
        key, fields, t = _UNESCAPED_SPACE.split(text)
        database.setdefault((key, int(t)), {}).update(_FIELD.findall(fields))


def run(site: Site, events: list[Event], record_sizes: list[int], idle_every: int, seed: int) -> Series:
    """Feed every line's events in records of the given sizes (cycled); every ``idle_every`` records the
    line goes quiet and the idle timer releases everything, as at a slow pace; points after each batch."""
    rng = random.Random(seed)
    config = EngineConfig(lateness_s=5)
    database: Series = {}
    for line in site.lines:
        engine = LineEngine(line, site.site, config, on_snapshot=collect_points)
        mine = [e for e in events if e.line == line.id]
        index = offset = 0
        while index < len(mine):
            size = record_sizes[offset % len(record_sizes)] or rng.randint(1, 500)
            engine.offer(mine[index : index + size], 0, offset)
            engine.release(everything=idle_every > 0 and offset % idle_every == 0)
            write(database, line_points(engine))
            engine.changes.clear()
            index += size
            offset += 1
        engine.release(everything=True)
        write(database, line_points(engine))
        engine.changes.clear()
    return database


@pytest.mark.parametrize("site_file", [MULTI_LINE, REPO_ROOT / "examples" / "mass-production.yaml"])
def test_any_pace_and_batch_size_writes_the_same_series(site_file: object) -> None:
    site = load_site(site_file)  # type: ignore[arg-type]
    events: list[Event] = []
    simulate_site(site, events.append, seed=8, duration=3600, start=START)
    one_by_one = run(site, events, [1], idle_every=1, seed=0)  # 1x: every event alone, the line quiet
    paced_240x = run(site, events, [3, 7, 12], idle_every=5, seed=0)
    at_max = run(site, events, [500], idle_every=0, seed=0)
    random_sizes = run(site, events, [0], idle_every=0, seed=4)
    assert one_by_one == paced_240x == at_max == random_sizes

    # dense in event time: a point per period with events, every period of the shift covered
    interval = EngineConfig().point_interval_s
    wip_times = sorted({t for (key, t) in at_max if key.startswith("wip,")})
    want = sorted({round(period_end(e.timestamp, interval) * 1e6) for e in events})
    assert wip_times == want
    assert len(wip_times) >= 3600 / interval - 1


def test_a_period_closes_with_the_state_at_its_end() -> None:
    site = load_site(MULTI_LINE)
    line = site.lines[0]
    events: list[Event] = []
    simulate_site(site, events.append, seed=2, duration=3600, start=START)
    mine = [e for e in events if e.line == line.id]
    closed: list[tuple[float, float | None]] = []

    def snapshot(e: LineEngine, end: float, locations: frozenset[str] | None) -> None:
        if locations is None:
            closed.append((end, e.now))

    engine = LineEngine(line, site.site, EngineConfig(lateness_s=0), on_snapshot=snapshot)
    engine.offer(mine, 0, 0)
    engine.release(everything=True)
    assert closed, "an hour of events closes periods"
    for end, clock in closed:
        assert end % 60 == 0
        assert clock is not None and clock <= end
        # the state as of the end: every event at or before it applied, none after
        assert clock == max(e.timestamp for e in mine if e.timestamp <= end)


def test_a_queue_that_shrank_gets_a_point_at_that_instant_once_the_instant_is_over() -> None:
    site = parse_site(
        {
            "site": "s",
            "lines": [
                {"id": "l", "locations": [{"id": "q", "kind": "buffer"}, {"id": "fg", "kind": "store"}]}
            ],
        }
    )
    calls: list[tuple[float, frozenset[str] | None, float]] = []

    def snapshot(e: LineEngine, at: float, locations: frozenset[str] | None) -> None:
        calls.append((at - START.timestamp(), locations, e.state.locations["q"].growth.since_shrink_s(at)))

    engine = LineEngine(site.lines[0], "s", EngineConfig(lateness_s=0), on_snapshot=snapshot)
    stream = [
        move(PartIn, "1", "q", "p1", 0),
        move(PartIn, "2", "q", "p2", 5),
        move(PartOut, "3", "q", "p1", 10),  # 2 -> 1: a shrink at 10 s
        move(PartIn, "4", "fg", "p1", 10),
        move(PartOut, "5", "q", "p2", 20),  # 1 -> 0 -> 1 within 20 s: settles where it was, no shrink
        move(PartIn, "6", "q", "p3", 20),
        move(PartIn, "7", "fg", "p2", 25),
        move(PartOut, "8", "q", "p3", 30),  # 1 -> 0: a shrink, but the instant is still open at the end
    ]
    for offset, event in enumerate(stream):  # one by one: the 10 s shrink is judged only at 20 s
        engine.offer([event], 0, offset)
        engine.release(everything=True)
    shrinks = [(at, locations, since) for at, locations, since in calls if locations is not None]
    assert shrinks == [(10.0, frozenset({"q"}), 0.0)]
    assert engine.state.shrunk == ["q"], "the 30 s shrink waits for its instant to be over"
    assert [at for at, locations, _ in calls if locations is None] == [0.0], "the period ending at 06:00"

    # the same stream in one record gives the same snapshots
    again: list[tuple[float, frozenset[str] | None]] = []
    whole = LineEngine(
        site.lines[0],
        "s",
        EngineConfig(lateness_s=0),
        on_snapshot=lambda e, at, locs: again.append((at, locs)),
    )
    whole.offer(stream, 0, 0)
    whole.release(everything=True)
    assert again == [(START.timestamp() + at, locations) for at, locations, _ in calls]


def move(kind: type[PartIn] | type[PartOut], eid: str, location: str, part: str, second: float) -> Event:
    return kind(
        v=1, id=eid, time=START + timedelta(seconds=second), site="s", line="l", location=location, part=part
    )
