"""Property tests of alert evaluation on hostile streams: any order, duplicates, bursts, unknown locations.

Whatever the stream, each alert's transitions alternate firing / resolved with ``seq`` 1, 2, 3, ... at
non-decreasing tick times, and, as long as events arrive out of order by less than the lateness, the
timeline does not depend on how the events were batched. (An event later than that is applied at the
line's clock, docs/metrics.md; where that clock stood depends on the batches, for every metric.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wipwatch.events import Event, PartIn, PartOut, StationState
from wipwatch.processors.alert_backtest import run_backtest
from wipwatch.processors.metrics.line_state import EngineConfig
from wipwatch.site import parse_site

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
LATENESS = 2.0
SITE = parse_site(
    {
        "site": "s",
        "alerts": {
            "evaluate_every": 1,
            "rules": [
                {"id": "cap", "condition": "wip_over_cap", "for": 3, "clear_for": 2},
                {"id": "old", "condition": "oldest_part_age", "threshold": 20},
                {"id": "grow", "condition": "queue_growth", "threshold": 600, "for": 5},
                {"id": "down", "condition": "station_down", "for": 4},
                {"id": "blocked", "condition": "station_blocked", "for": 4},
                {"id": "quiet", "condition": "line_silent", "threshold": 15},
                {"id": "dq", "condition": "data_quality", "threshold": 0.05, "window": 60},
            ],
        },
        "lines": [
            {
                "id": "l",
                "demand_per_hour": 360,
                "locations": [
                    {"id": "q", "kind": "buffer", "cap": 2},
                    {"id": "m", "kind": "station", "process_time": {"mean": 5}},
                    {"id": "m2", "kind": "station", "process_time": {"mean": 3}},
                    {"id": "fg", "kind": "store", "cap": 3},
                ],
            }
        ],
    }
)

_event = st.tuples(
    st.sampled_from(["in", "out", "state"]),
    st.sampled_from(["q", "m", "m2", "fg", "nowhere"]),
    st.integers(0, 6),  # part
    st.floats(0, 5, allow_nan=False),  # seconds the stream advances
    st.floats(0, LATENESS - 0.1, allow_nan=False),  # seconds this event is behind, within the lateness
    st.sampled_from(["working", "down", "idle", "changeover"]),
)


def build(raw: list[tuple[str, str, int, float, float, str]]) -> list[Event]:
    out: list[Event] = []
    base = 0.0
    for i, (kind, location, part, step, behind, value) in enumerate(raw):
        base += step
        common: dict[str, Any] = {
            "v": 1,
            "id": f"e{i % 40}",  # ids repeat: duplicates
            "time": T0 + timedelta(seconds=max(0.0, base - behind)),
            "site": "s",
            "line": "l",
            "location": location,
        }
        if kind == "in":
            out.append(PartIn(**common, part=f"p{part}"))
        elif kind == "out":
            out.append(PartOut(**common, part=f"p{part}"))
        else:
            out.append(StationState(**common, state=value))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(_event, max_size=120), st.integers(1, 50))
def test_transitions_alternate_and_do_not_depend_on_batching(
    raw: list[tuple[str, str, int, float, float, str]], per_record: int
) -> None:
    events = build(raw)
    config = EngineConfig(alert_every_s=1, lateness_s=LATENESS, throughput_window_s=60, growth_window_s=30)
    one = run_backtest(SITE, events, config, per_record=1)
    other = run_backtest(SITE, events, config, per_record=per_record)
    key = [(tr.identity, tr.state, tr.at, tr.seq) for tr in one.transitions]
    assert key == [(tr.identity, tr.state, tr.at, tr.seq) for tr in other.transitions]
    by_identity: dict[str, list[Any]] = {}
    for tr in one.transitions:
        by_identity.setdefault(tr.identity, []).append(tr)
    for transitions in by_identity.values():
        assert [tr.seq for tr in transitions] == list(range(1, len(transitions) + 1))
        assert [tr.state for tr in transitions] == ["firing", "resolved"] * (len(transitions) // 2) + (
            ["firing"] if len(transitions) % 2 else []
        )
        times = [tr.at for tr in transitions]
        assert times == sorted(times) and all(t == int(t) for t in times)
        for fired, resolved in zip(transitions[::2], transitions[1::2], strict=False):
            assert resolved.since == fired.at
