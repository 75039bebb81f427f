"""The time series is a function of event time only: the same shift fed in any batch sizes and release
rhythms writes the same InfluxDB series (processors/points.py, docs/metrics.md "When points are written").

InfluxDB is modelled by what it does with a write: a point with the measurement, tag set and time of an
earlier one overwrites that one's fields.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime

import pytest

from wipwatch.events import Event
from wipwatch.processors.metrics.line_state import EngineConfig, LineEngine, period_end
from wipwatch.processors.points import line_points, period_points
from wipwatch.settings import REPO_ROOT
from wipwatch.simulators.line import simulate_site
from wipwatch.site import Site, load_site

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
        engine = LineEngine(line, site.site, config, on_period_end=period_points)
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
    engine = LineEngine(
        line, site.site, EngineConfig(lateness_s=0), on_period_end=lambda e, end: closed.append((end, e.now))
    )
    engine.offer(mine, 0, 0)
    engine.release(everything=True)
    assert closed, "an hour of events closes periods"
    for end, clock in closed:
        assert end % 60 == 0
        assert clock is not None and clock <= end
        # the state as of the end: every event at or before it applied, none after
        assert clock == max(e.timestamp for e in mine if e.timestamp <= end)
