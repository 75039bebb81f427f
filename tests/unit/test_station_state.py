"""Starved / blocked / off-shift time per station: hand-drawn timelines and the simulator's ground truth."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from wipwatch.events import STATION_CATEGORIES, Event, PartIn, PartOut, StationState
from wipwatch.processors.metrics.station_state import CATEGORIES, StationClock
from wipwatch.simulators.line import simulate_site
from wipwatch.simulators.truth import StationTruth
from wipwatch.site import parse_site

pytestmark = pytest.mark.unit
START = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def test_processors_and_ground_truth_share_one_vocabulary() -> None:
    expected = ("working", "changeover", "down", "blocked", "starved", "off_shift")
    assert CATEGORIES == STATION_CATEGORIES == expected
    assert tuple(StationTruth().seconds) == expected


def test_a_timeline_by_hand() -> None:
    # t:      0    5         25        40        50     60
    # state:  idle working.......... idle ............ down...
    # wip:    0    1 ................... 0 (at 40)
    # cat:    starv|working  ...|blocked  |starved  |down  |
    clock = StationClock()
    clock.set_state(0, "idle")
    assert clock.category == "starved"
    clock.set_wip(5, 1)
    clock.set_state(5, "working")
    clock.set_state(25, "idle")
    assert clock.category == "blocked"  # idle holding a finished part
    clock.set_wip(40, 0)
    assert clock.category == "starved"
    clock.set_state(50, "down")
    assert clock.totals(60) == {
        "working": 20.0,  # 25 - 5
        "changeover": 0.0,
        "down": 10.0,  # 60 - 50, still running
        "blocked": 15.0,  # 40 - 25
        "starved": 15.0,  # (5 - 0) + (50 - 40); the blocked instant at 5 took no time
        "off_shift": 0.0,
    }
    assert clock.totals(60) == clock.totals(60), "totals must not change the clock"


def test_changes_at_one_instant_give_transient_categories_no_time() -> None:
    clock = StationClock()
    clock.set_wip(0, 1)
    clock.set_state(0, "working")
    # at 20 the part leaves, the station idles, the next part arrives and work starts: all one instant
    clock.set_wip(20, 0)
    clock.set_state(20, "idle")
    assert clock.category == "starved"
    clock.set_wip(20, 1)
    assert clock.category == "blocked"
    clock.set_state(20, "working")
    totals = clock.totals(30)
    assert totals["working"] == 30.0  # 0 -> 30 without a break
    assert totals["starved"] == totals["blocked"] == 0.0


def test_idle_off_shift_is_off_shift_unless_holding_parts() -> None:
    # t:     0        100       130       150       170
    # shift: on ....... off ...... on ...... off .......
    # wip:   0 ......................... 2 (at 150)
    clock = StationClock()
    clock.set_state(0, "idle")
    clock.set_on_shift(100, False)
    assert clock.category == "off_shift"
    clock.set_on_shift(130, True)
    clock.set_on_shift(150, False)
    clock.set_wip(150, 2)
    assert clock.category == "blocked"  # blocking wins over the calendar
    totals = clock.totals(170)
    assert totals["starved"] == 120.0  # (100 - 0) + (150 - 130)
    assert totals["off_shift"] == 30.0  # 130 - 100
    assert totals["blocked"] == 20.0  # 170 - 150
    clock.set_state(170, "changeover")
    assert clock.category == "changeover"  # a reported state wins over everything


def test_no_calls_no_time() -> None:
    clock = StationClock()
    assert clock.category == "starved"
    assert clock.totals(1000) == dict.fromkeys(CATEGORIES, 0.0)


def test_bad_arguments_name_the_parameter() -> None:
    clock = StationClock()
    with pytest.raises(ValueError, match="state"):
        clock.set_state(0, "blocked")  # derived, never reported
    with pytest.raises(ValueError, match="wip"):
        clock.set_wip(0, -1)
    with pytest.raises(ValueError, match="state"):
        StationClock(state="sleeping")
    clock.set_state(10, "working")
    with pytest.raises(ValueError, match="t=9"):
        clock.set_wip(9, 1)
    with pytest.raises(ValueError, match="now=9"):
        clock.totals(9)


def test_round_trip_gives_an_equal_object_that_behaves_the_same() -> None:
    clock = StationClock()
    clock.set_state(0, "working")
    clock.set_wip(0, 1)
    clock.set_state(12.5, "idle")
    restored = msgspec.msgpack.decode(msgspec.msgpack.encode(clock), type=StationClock)
    assert restored == clock
    assert restored.category == "blocked"
    for c in (clock, restored):
        c.set_wip(20, 0)
    assert restored == clock
    assert restored.totals(30) == clock.totals(30)
    assert restored.totals(30)["blocked"] == 7.5  # 20 - 12.5


def _site_with_blocking_and_breaks() -> dict[str, object]:
    def station(loc_id: str, mean: float) -> dict[str, object]:
        return {"id": loc_id, "kind": "station", "process_time": {"mean": mean, "dist": "exponential"}}

    line = {
        "id": "l1",
        "release": {"policy": "kanban"},
        "supply": {"interval": 5, "lot_size": 1, "dist": "exponential"},
        "locations": [
            {"id": "raw", "kind": "store"},
            station("s1", 3),
            {"id": "b1", "kind": "buffer", "cap": 2},
            station("s2", 5),
            {"id": "b2", "kind": "buffer", "cap": 2},
            station("s3", 4),
            {"id": "fg", "kind": "store"},
        ],
    }
    shift = {"hours": 2, "breaks": [{"at_hour": 1, "minutes": 30}]}
    return {"site": "st", "lines": [line], "shift": shift}


def test_clocks_fed_from_events_match_the_simulators_ground_truth() -> None:
    events: list[Event] = []
    duration = 3 * 3600
    truth = simulate_site(
        parse_site(_site_with_blocking_and_breaks()), events.append, duration=duration, start=START
    )
    t0 = START.timestamp()
    # shift of 2 h from the start with a 30 min break after 1 h: off at 1 h, on at 1.5 h, off at 2 h
    shift_edges = [(3600.0, False), (5400.0, True), (7200.0, False)]
    clocks = {s: StationClock() for s in ("s1", "s2", "s3")}
    wip: dict[str, int] = {}
    for event in events:
        now = event.timestamp - t0
        while shift_edges and shift_edges[0][0] <= now:
            at, on = shift_edges.pop(0)
            for clock in clocks.values():
                clock.set_on_shift(at, on)
        if isinstance(event, PartIn | PartOut):
            wip[event.location] = wip.get(event.location, 0) + (
                event.qty if isinstance(event, PartIn) else -event.qty
            )
            if event.location in clocks:
                clocks[event.location].set_wip(now, wip[event.location])
        elif isinstance(event, StationState):
            clocks[event.location].set_state(now, event.state)
    # event times carry whole microseconds: each interval edge may be off by up to 0.5 us
    tolerance = 1e-6 * len(events)
    for name, clock in clocks.items():
        expected = truth.stations[f"l1/{name}"].totals(truth.duration)
        got = clock.totals(truth.duration)
        assert got == pytest.approx(expected, abs=tolerance), name
    seen = {c: max(truth.stations[f"l1/{s}"].totals(truth.duration)[c] for s in clocks) for c in CATEGORIES}
    assert all(seen[c] > 60 for c in ("working", "blocked", "starved", "off_shift")), (
        f"scenario too tame: {seen}"
    )
