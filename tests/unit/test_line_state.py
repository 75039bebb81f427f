"""One line's processor state: event-time order, exactly-once offsets, de-duplication, data quality.

Hand-made streams on a three-location line, and the simulator's ground truth for exact WIP at every
sampled minute and exact station times.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import EXAMPLE_SITE
from wipwatch.events import Event, PartIn, PartOut, StationState
from wipwatch.processors.metrics.line_state import UNKNOWN_LOCATION, EngineConfig, LineEngine
from wipwatch.simulators.line import simulate_site
from wipwatch.site import Site, load_site, parse_site

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
SITE: Site = parse_site(
    {
        "site": "s",
        "lines": [
            {
                "id": "l",
                "locations": [
                    {"id": "q", "kind": "buffer", "unit_value": 10.0, "holding_cost_per_hour": 3.6},
                    {"id": "m", "kind": "station", "process_time": {"mean": 10, "dist": "deterministic"}},
                    {"id": "fg", "kind": "store"},
                ],
            }
        ],
    }
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ts(seconds: float) -> float:
    return at(seconds).timestamp()


def into(eid: str, location: str, part: str, second: float) -> PartIn:
    return PartIn(v=1, id=eid, time=at(second), site="s", line="l", location=location, part=part)


def out(eid: str, location: str, part: str, second: float) -> PartOut:
    return PartOut(v=1, id=eid, time=at(second), site="s", line="l", location=location, part=part)


def state(eid: str, value: str, second: float, location: str = "m") -> StationState:
    return StationState(v=1, id=eid, time=at(second), site="s", line="l", location=location, state=value)  # type: ignore[arg-type]


def engine(**config: float) -> LineEngine:
    return LineEngine(SITE.lines[0], "s", EngineConfig(**config))  # type: ignore[arg-type]


def wip(e: LineEngine) -> dict[str, int]:
    return {key: loc.wip for key, loc in e.state.locations.items()}


def test_events_out_of_order_within_the_lateness_are_put_in_their_place() -> None:
    e = engine(lateness_s=5)
    # the departure from q at 12 s arrives before the arrival at 10 s; in order the dwell is 2 s
    assert e.offer([out("b", "q", "p1", 12), into("a", "q", "p1", 10)], partition=0, offset=0)
    assert e.release() == 0, "nothing is older than the watermark (12 s) minus 5 s yet"
    e.offer([into("c", "q", "p2", 20)], partition=0, offset=1)
    assert e.release() == 2
    assert wip(e)["q"] == 0
    assert e.state.locations["q"].dwell.mean() == pytest.approx(2.0)
    assert e.state.quality == {}
    assert e.release(everything=True) == 1
    assert wip(e)["q"] == 1


def test_a_live_line_waits_for_the_lateness_in_wall_time_a_replayed_one_for_its_watermark() -> None:
    """Release policy (docs/metrics.md): no later event is needed to apply a live line's events."""
    t0 = T0.timestamp()
    stream = [into("a", "q", "p1", 10), out("b", "q", "p1", 12), into("c", "q", "p2", 13)]
    live = engine(lateness_s=2)
    live.offer(stream, partition=0, offset=0)
    assert live.release() == 1, "the watermark (13 s) minus 2 s: 10 s"
    assert live.release(wall_now=t0 + 13.9) == 0, "wall 13.9 s minus 2 s: 12 s waits"
    assert live.release(wall_now=t0 + 14.5) == 1, "the wall clock is 2 s past 12 s; no later event came"
    assert wip(live)["q"] == 0
    assert live.release(wall_now=t0 + 14.9) == 0, "13 s waits until 15 s"
    assert live.release(wall_now=t0 + 15.0) == 1
    # the same events a minute later (a replay of the past, a backlog): the watermark decides, as without
    # a clock, so what is applied does not depend on when or how fast the events come
    replayed = engine(lateness_s=2)
    replayed.offer(stream, partition=0, offset=0)
    assert replayed.release(wall_now=t0 + 75) == 1
    assert replayed.state.released == t0 + 10
    # a burst's end: nothing comes after 13 s; within the live window the wall clock still applies it
    ended = engine(lateness_s=2, live_window_s=4)
    ended.offer(stream, partition=0, offset=0)
    assert ended.release(wall_now=t0 + 17.5) == 1, "13 s is 4.5 s old: not live, the watermark's 10 s only"
    assert ended.release(wall_now=t0 + 16.5) == 2, "13 s is 3.5 s old: live, the wall clock is past 13 + 2"
    # an event that comes after its place was passed in wall time is late, as beyond the lateness
    live.offer([into("d", "q", "p3", 12.5)], partition=0, offset=1)
    assert live.state.quality == {"late": 1}


def test_a_record_at_or_below_the_stored_offset_is_skipped_whole() -> None:
    e = engine(lateness_s=0)
    assert e.offer([into("a", "q", "p1", 1)], partition=3, offset=7)
    assert not e.offer([into("a", "q", "p1", 1)], partition=3, offset=7)
    assert not e.offer([into("x", "q", "p9", 2)], partition=3, offset=6)
    e.release(everything=True)
    assert wip(e)["q"] == 1
    assert e.state.quality == {}, "a redelivered record is not a duplicate event: it was never accepted twice"


def test_duplicate_ids_in_later_records_are_ignored_and_counted() -> None:
    e = engine(lateness_s=0)
    e.offer([into("a", "q", "p1", 1), into("b", "q", "p2", 2)], partition=0, offset=0)
    e.offer([into("b", "q", "p2", 2), into("c", "q", "p3", 3)], partition=0, offset=1)
    e.release(everything=True)
    assert wip(e)["q"] == 3
    assert e.state.quality == {"duplicate": 1}
    assert [(i.location, i.reason) for i in e.changes.issues] == [("q", "duplicate")]


def test_de_duplication_forgets_ids_past_the_horizon_or_the_limit() -> None:
    e = engine(lateness_s=0, dedup_horizon_s=100, dedup_max_ids=1000)
    e.offer([into(f"id{i}", "q", f"p{i}", i) for i in range(500)], partition=0, offset=0)
    # the watermark is 499 s: ids older than 399 s may be forgotten, ids of the last 100 s must not be
    assert "id499" in e._ids and "id400" in e._ids
    assert "id0" not in e._ids
    assert len(e.state.recent_ids) == len(e._ids) <= 500
    small = engine(lateness_s=0, dedup_horizon_s=1e9, dedup_max_ids=10)
    small.offer([into(f"id{i}", "q", f"p{i}", i) for i in range(2000)], partition=0, offset=0)
    assert len(small._ids) <= 10 + 256 + 1, "trimmed in chunks, never far past the limit"
    assert "id1999" in small._ids


def test_a_late_event_is_applied_at_the_line_clock_and_counted() -> None:
    e = engine(lateness_s=5)
    e.offer([into("a", "q", "p1", 100)], partition=0, offset=0)
    e.release(everything=True)
    e.offer([into("b", "q", "p2", 50)], partition=0, offset=1)  # 50 s behind what was already applied
    assert e.state.quality == {"late": 1}
    assert wip(e)["q"] == 2
    assert e.now == ts(100)
    assert e.state.locations["q"].residents.oldest_age_s(ts(100)) == 0.0, "placed at 100 s, not in the past"


def test_departure_without_arrival_changes_nothing_and_is_counted() -> None:
    e = engine(lateness_s=0)
    e.offer(
        [into("a", "q", "p1", 1), out("b", "q", "ghost", 2), out("c", "m", "p1", 3)], partition=0, offset=0
    )
    e.release(everything=True)
    assert wip(e) == {"q": 1, "m": 0, "fg": 0}, "never clamped, never negative"
    assert e.state.quality == {"departure without arrival": 2}


def test_unknown_locations_and_states_of_non_stations_are_counted() -> None:
    e = engine(lateness_s=0)
    e.offer([into("a", "nowhere", "p1", 1), state("b", "working", 2, location="q")], partition=0, offset=0)
    e.release(everything=True)
    assert sum(wip(e).values()) == 0
    assert e.state.quality == {"unknown location": 1, "state of a non-station": 1}
    assert {i.location for i in e.changes.issues} == {UNKNOWN_LOCATION, "q"}, "no unbounded tag values"


def test_flow_through_the_line_hand_computed() -> None:
    e = engine(lateness_s=0)
    stream: list[Event] = [
        into("1", "q", "p1", 0),
        into("2", "q", "p2", 5),
        out("3", "q", "p1", 10),
        into("4", "m", "p1", 10),
        state("5", "working", 10),
        state("6", "idle", 30),  # holds p1 (blocked) until 40
        out("7", "m", "p1", 40),
        into("8", "fg", "p1", 40),
        out("9", "fg", "p1", 100),  # shipped: lead time 100 s
    ]
    e.offer(stream, partition=0, offset=0)
    e.release(everything=True)
    assert wip(e) == {"q": 1, "m": 0, "fg": 0}
    assert e.state.locations["m"].dwell.mean() == pytest.approx(30.0)
    assert e.state.flow.mean() == pytest.approx(100.0)
    assert e.state.shipped.total == 1
    totals = e.state.locations["m"].clock.totals(ts(100))  # type: ignore[union-attr]
    assert totals["working"] == pytest.approx(20.0)
    assert totals["blocked"] == pytest.approx(10.0)
    assert totals["starved"] == pytest.approx(60.0 + 0.0)
    # p2 has waited in q since 5 s; holding cost of q: 1 part 0-5, 2 parts 5-10, 1 part 10-100 s
    assert e.state.locations["q"].residents.oldest_age_s(ts(100)) == pytest.approx(95.0)
    part_seconds = 1 * 5 + 2 * 5 + 1 * 90
    assert e.state.locations["q"].cost.accrued(ts(100)) == pytest.approx(part_seconds * 3.6 / 3600)
    assert e.state.locations["q"].cost.tied_up() == pytest.approx(10.0)


def test_state_survives_dump_and_load_and_goes_on_identically() -> None:
    events: list[Event] = []
    truth = simulate_site(load_site(EXAMPLE_SITE), events.append, seed=3, duration=3 * 3600, start=T0)
    site = load_site(EXAMPLE_SITE)
    config = EngineConfig(lateness_s=5)
    straight = LineEngine(site.lines[0], site.site, config)
    restarted = LineEngine(site.lines[0], site.site, config)
    half = len(events) // 2
    for offset, start in enumerate(range(0, len(events), 50)):
        chunk = events[start : start + 50]
        straight.offer(chunk, 0, offset)
        straight.release()
        restarted.offer(chunk, 0, offset)
        restarted.release()
        if start <= half < start + 50:
            restarted = LineEngine.load(site.lines[0], site.site, config, restarted.dump())
            assert not restarted.offer(chunk, 0, offset), "the offset travels with the state"
    straight.release(everything=True)
    restarted.release(everything=True)
    assert straight.dump() == restarted.dump()
    assert wip(straight) == {k.split("/", 1)[1]: n for k, n in truth.wip.items()}


def test_wip_equals_ground_truth_at_every_sampled_minute_whatever_the_record_sizes() -> None:
    events: list[Event] = []
    site = load_site(EXAMPLE_SITE)
    truth = simulate_site(site, events.append, seed=17, duration=4 * 3600, start=T0)
    e = LineEngine(site.lines[0], site.site, EngineConfig(lateness_s=5))
    rng = random.Random(1)
    index, offset = 0, 0
    for sample, t in enumerate(truth.sample_times):
        until = T0 + timedelta(seconds=t)
        while index < len(events) and events[index].time <= until:
            size = rng.randint(1, 40)
            chunk = [ev for ev in events[index : index + size] if ev.time <= until]
            e.offer(chunk, 0, offset)
            e.release()
            index += len(chunk)
            offset += 1
        e.release(everything=True)
        got = {f"{site.lines[0].id}/{k}": v for k, v in wip(e).items()}
        want = {k: v[sample] for k, v in truth.samples.items()}
        assert got == {k: want.get(k, 0) for k in got}, f"minute {t / 60:.0f}"
    e.offer(events[index:], 0, offset)  # after the last sampled minute
    e.release(everything=True)
    assert e.state.quality == {}
    # station times from the events alone equal the simulator's own accounting (except starving before
    # the first event, which the processors cannot see)
    truth_all = truth.as_dict()
    for loc in site.lines[0].locations:
        clock = e.state.locations[loc.id].clock
        if clock is None:
            continue
        got_totals = clock.totals((T0 + timedelta(seconds=truth.duration)).timestamp())
        for category in ("working", "changeover", "down", "blocked"):
            want = truth_all["stations"][f"{site.lines[0].id}/{loc.id}"][category]
            assert math.isclose(got_totals[category], want, abs_tol=0.01), (loc.id, category)
