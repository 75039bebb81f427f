"""The line engine's guards (docs/metrics.md, "Clock guards"): hand-made streams with one bad event each."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import get_args

import pytest

from tests.unit.test_line_state import SITE, at, into, out, state, ts, wip
from wipwatch.events import PartIn
from wipwatch.processors.metrics.line_state import EngineConfig, LineEngine, QualityReason
from wipwatch.settings import REPO_ROOT

pytestmark = pytest.mark.unit

GOOD = [into("1", "q", "p1", 0), into("2", "q", "p2", 10), out("3", "q", "p1", 20), into("4", "m", "p1", 20)]


def engine() -> LineEngine:
    return LineEngine(SITE.lines[0], "s", EngineConfig(lateness_s=0, dedup_horizon_s=3600, max_ahead_s=300))


def run(bad: PartIn, received_at: float | None = None) -> LineEngine:
    """The good stream with ``bad`` in the middle of its one record."""
    e = engine()
    e.offer([*GOOD[:2], bad, *GOOD[2:]], partition=0, offset=0, received_at=received_at)
    e.release(everything=True)
    e.dump()
    return e


def assert_untouched(e: LineEngine) -> None:
    assert wip(e) == {"q": 1, "m": 1, "fg": 0}
    assert (e.state.started, e.state.released, e.state.watermark) == (ts(0), ts(20), ts(20))


def test_qty_beyond_the_limit_is_out_of_range_and_the_state_still_dumps() -> None:
    e = run(PartIn(v=1, id="x", time=at(15), site="s", line="l", location="q", part="big", qty=10**30))
    assert_untouched(e)
    assert e.state.quality == {"out of range": 1}
    assert LineEngine.load(SITE.lines[0], "s", e.config, e.dump()).state.quality == {"out of range": 1}


@pytest.mark.parametrize("year", [1970, 2999])
def test_a_time_outside_the_range_never_moves_the_clock(year: int) -> None:
    when = datetime(year, 1, 1, tzinfo=UTC)
    e = run(PartIn(v=1, id="x", time=when, site="s", line="l", location="q", part="bad"))
    assert_untouched(e)
    assert e.state.quality == {"out of range": 1}
    assert all(i.time == ts(10) for i in e.changes.issues), "counted at the line's clock"


def test_an_event_ahead_of_its_record_timestamp_is_refused() -> None:
    received = ts(30)
    e = run(into("x", "q", "bad", 30 + 301), received_at=received)
    assert_untouched(e)
    assert e.state.quality == {"ahead": 1}
    within = run(into("x", "q", "ok", 30 + 299), received_at=received)
    assert within.state.quality == {} and wip(within)["q"] == 2


def test_an_event_older_than_the_horizon_is_too_old_and_a_resend_is_not_counted_twice() -> None:
    e = engine()
    e.offer(GOOD, partition=0, offset=0)
    e.offer([into("5", "q", "p3", 4000)], partition=0, offset=1)
    e.release(everything=True)
    assert wip(e)["q"] == 2
    e.offer([into("2", "q", "p2", 10), into("x", "q", "old", 399)], partition=0, offset=2)
    e.release(everything=True)
    assert wip(e)["q"] == 2
    assert e.state.quality == {"too old": 2}
    assert e.state.started == ts(0)


def test_a_departure_with_another_qty_leaves_as_it_arrived() -> None:
    e = engine()
    e.offer(
        [
            PartIn(v=1, id="1", time=at(0), site="s", line="l", location="m", part="p1", qty=2),
            out("2", "m", "p1", 5),
            into("3", "m", "p2", 6),
            into("4", "m", "p2", 7),
            state("5", "working", 8),
        ],
        partition=0,
        offset=0,
    )
    e.release(everything=True)
    assert wip(e)["m"] == 1, "p1 left with its 2 units; p2 arrived twice but is one unit"
    assert e.state.quality == {"quantity mismatch": 1, "arrival of a present part": 1}


def test_an_undecodable_record_is_counted_once() -> None:
    e = engine()
    e.offer(GOOD, partition=0, offset=0)
    assert e.skip(0, 1, "undecodable", received_at=ts(100))
    assert not e.skip(0, 1, "undecodable")
    assert e.state.quality == {"undecodable": 1}
    assert e.state.offset == 1


def test_every_quality_reason_is_documented_and_every_documented_one_exists() -> None:
    text = (REPO_ROOT / "docs" / "metrics.md").read_text()
    table = text[
        text.index("### Data quality: counted, never silently fixed") : text.index("Each finding is")
    ]
    documented = set(re.findall(r"^\| `([a-z -]+)`", table, flags=re.MULTILINE))
    documented |= set(re.findall(r"^\| `[a-z -]+`, `([a-z -]+)`", table, flags=re.MULTILINE))
    assert documented == set(get_args(QualityReason))
