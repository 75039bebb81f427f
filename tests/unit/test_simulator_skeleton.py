"""The simulator is reproducible by seed and its ground truth agrees with the events it emits."""

from datetime import UTC, datetime

import pytest

from tests.conftest import EXAMPLE_SITE
from wipwatch.events import Event, PartIn, PartOut, encode_event
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

pytestmark = pytest.mark.unit
START = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def _run(seed: int) -> tuple[list[Event], dict[str, int]]:
    events: list[Event] = []
    truth = simulate_site(load_site(EXAMPLE_SITE), events.append, seed=seed, duration=3600, start=START)
    return events, truth.wip


def test_same_seed_same_events_other_seed_other_events() -> None:
    first, _ = _run(3)
    again, _ = _run(3)
    other, _ = _run(4)
    assert [encode_event(e) for e in first] == [encode_event(e) for e in again]
    assert [encode_event(e) for e in first] != [encode_event(e) for e in other]
    assert len({e.id for e in first}) == len(first), "event ids are unique"


def test_ground_truth_wip_is_arrivals_minus_departures_of_the_emitted_events() -> None:
    events, wip = _run(5)
    counted: dict[str, int] = {}
    for e in events:
        if isinstance(e, PartIn | PartOut):
            key = f"{e.line}/{e.location}"
            counted[key] = counted.get(key, 0) + (e.qty if isinstance(e, PartIn) else -e.qty)
    assert counted == wip
    assert all(n >= 0 for n in wip.values())
    assert all(START.timestamp() <= e.timestamp <= START.timestamp() + 3600 for e in events)
