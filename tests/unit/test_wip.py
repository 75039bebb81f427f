from datetime import UTC, datetime

import pytest

from wipwatch.events import PartIn, PartOut, StationState
from wipwatch.processors.metrics.wip import apply_movements

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def move(cls: type, eid: str, location: str, qty: int = 1) -> PartIn | PartOut:
    return cls(v=1, id=eid, time=T0, site="s", line="l", location=location, part=eid, qty=qty)


def test_arrivals_minus_departures_with_quantities() -> None:
    counts = {"l/b1": 2}
    events = [move(PartIn, "a", "b1", 3), move(PartOut, "b", "b1"), move(PartIn, "c", "b2")]
    changed, issues = apply_movements(counts, events)
    assert changed == {"l/b1": 4, "l/b2": 1}
    assert issues == []
    assert counts == {"l/b1": 2}, "apply_movements must not write; the caller stages table writes"


def test_departure_without_arrival_is_reported_not_clamped() -> None:
    events = [move(PartOut, "x", "b1"), move(PartIn, "y", "b1"), move(PartOut, "z", "b1", qty=2)]
    changed, issues = apply_movements({}, events)
    assert changed == {"l/b1": 1}
    assert [(i.event_id, i.reason) for i in issues] == [
        ("x", "departure without arrival"),
        ("z", "departure without arrival"),
    ]


def test_state_events_do_not_change_wip() -> None:
    state = StationState(v=1, id="s", time=T0, site="s", line="l", location="m1", state="working")
    assert apply_movements({}, [state]) == ({}, [])
