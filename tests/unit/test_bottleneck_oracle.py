"""Bottleneck shares against an independent implementation of Roser's method, and name independence.

The oracle is the ``active-period-method`` package (Fraunhofer IPA / iFAKT, 0.9.0). Its data is adapted
so both answer the same question (docs/metrics.md, "Bottleneck: checked against a reference"):

- it rejects two state changes of one station at one instant, so each station's last state at each
  instant is given, as the processors settle an instant before judging it;
- it ignores a period still running at the end of the data, so every station is made inactive at the
  end, and given one more change a second later so that its walk runs up to the end;
- it divides by each station's own observed time, so its credited seconds are compared, divided by the
  same observed time as the processors' (first event to end);
- with a single bottleneck period in the whole data it credits nothing (only pairs are visited), so the
  random timelines below skip that case.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import combinations
from typing import Any

import active_period_method as oracle
import msgspec
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wipwatch.events import ACTIVE_STATES, Event, StationState
from wipwatch.processors.metrics.bottleneck import ActivePeriods, Shares, method_shares
from wipwatch.processors.metrics.line_state import EngineConfig, LineEngine
from wipwatch.settings import REPO_ROOT
from wipwatch.simulators.line import simulate_site
from wipwatch.site import Line, Site, parse_site

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
Call = tuple[float, str, bool]


def _oracle_seconds(calls: list[Call], end: float) -> tuple[dict[str, tuple[float, float]], int]:
    """(sole, shifting) seconds per station by the package, and how many bottleneck periods it found."""
    last: dict[tuple[str, float], bool] = {}
    for t, station, active in calls:
        last[(station, t)] = active  # the state a station ends an instant in
    rows = [(station, t, active) for (station, t), active in last.items()]
    stations = sorted({station for station, _, _ in rows})
    for station in stations:
        rows += [(station, end, False), (station, end + 1, True)]
    frame = pd.DataFrame(rows, columns=["station", "t", "status"])
    frame["timestamp"] = pd.to_datetime((frame.t * 1_000_000).round().astype("int64"), unit="us")
    method = oracle.ActivePeriodMethod(frame[["station", "timestamp", "status"]])
    if len(method.station_states_df) > len(stations):  # it needs one closed period at least
        method.calculate_momentary_bottlenecks()
    out: dict[str, tuple[float, float]] = {}
    for station in stations:
        seconds = {"sole": 0.0, "shifting": 0.0}
        for kind, spans in (
            ("sole", method.momentary_sole_bottlenecks),
            ("shifting", method.momentary_shifting_bottlenecks),
        ):
            seconds[kind] = sum(p.duration.total_seconds() for p in spans if p.key == station)
        out[station] = (seconds["sole"], seconds["shifting"])
    return out, len(method.raw_bottlenecks)


def _assert_like_oracle(
    ours: dict[str, Shares], reference: dict[str, tuple[float, float]], observed: float
) -> None:
    expected = {
        s: ((sole + shifting) / observed, sole / observed, shifting / observed)
        for s, (sole, shifting) in reference.items()
    }
    assert set(ours) == set(expected)
    for station, (share, sole, shifting) in expected.items():
        assert ours[station] == pytest.approx((share, sole, shifting), abs=1e-6), station
    for a, b in combinations(expected, 2):  # same ranking wherever the reference tells them apart
        if abs(expected[a][0] - expected[b][0]) > 1e-6:
            assert (ours[a][0] > ours[b][0]) == (expected[a][0] > expected[b][0]), (a, b)


# ---------------------------------------------------------------- generated scenarios (simulator)

BALANCED: dict[str, Any] = {
    "site": "balanced",
    "lines": [
        {
            "id": line_id,
            "supply": {"interval": 50, "lot_size": 1, "dist": "exponential"},
            "locations": [
                {"id": "raw", "kind": "store"},
                *[
                    loc
                    for i in range(5)
                    for loc in (
                        {"id": f"st{i}", "kind": "station", "process_time": time},
                        {"id": f"b{i}", "kind": "buffer", "cap": 3},
                    )
                ],
            ],
        }
        for line_id, time in (
            ("gamma", {"mean": 48, "dist": "gamma", "cv": 0.5}),
            ("takt", {"mean": 48, "dist": "deterministic"}),  # equal periods everywhere: ties
        )
    ],
}


def _site(name: str) -> Site:
    if name == "balanced":
        return parse_site(BALANCED)
    return parse_site(yaml.safe_load((REPO_ROOT / "examples" / name).read_text()), name)


def _closing(line: Line, site: Site, end: datetime) -> list[Event]:
    """Every station of the line made idle at ``end``: the periods still running end there."""
    return [
        StationState(
            v=1, id=f"close-{loc.id}", time=end, site=site.site, line=line.id, location=loc.id, state="idle"
        )
        for loc in line.locations
        if loc.process_time is not None
    ]


def _engine_shares(
    site: Site, line: Line, events: list[Event], end: datetime
) -> tuple[LineEngine, dict[str, Shares]]:
    engine = LineEngine(line, site.site, EngineConfig())
    engine.offer(
        [*(e for e in events if e.line == line.id), *_closing(line, site, end)], partition=0, offset=0
    )
    engine.release(everything=True)
    return engine, engine.state.bottleneck.shares(end.timestamp())


SCENARIOS = [
    (name, seed)
    for name in (
        "mass-production.yaml",
        "lean-pull.yaml",
        "lean-line.yaml",
        "multi-line-site.yaml",
        "balanced",
    )
    for seed in (1, 2, 3)
]


@pytest.mark.parametrize(("name", "seed"), SCENARIOS)
def test_shares_equal_the_reference_on_simulated_lines(name: str, seed: int) -> None:
    site = _site(name)
    events: list[Event] = []
    hours = 8
    simulate_site(site, events.append, seed=seed, duration=hours * 3600, start=T0)
    end = T0 + timedelta(hours=hours)
    for line in site.lines:
        engine, ours = _engine_shares(site, line, events, end)
        calls = [
            (e.timestamp, e.location, e.state in ACTIVE_STATES)
            for e in events
            if isinstance(e, StationState) and e.line == line.id
        ]
        reference, found = _oracle_seconds(calls, end.timestamp())
        assert found > 2, "a line with a bottleneck moving around"
        observed = end.timestamp() - T0.timestamp()
        assert engine.state.bottleneck.first == T0.timestamp()
        _assert_like_oracle(ours, reference, observed)


@pytest.mark.parametrize(("name", "seed"), [("mass-production.yaml", 4), ("multi-line-site.yaml", 5)])
def test_shares_from_events_equal_the_ground_truth_s(name: str, seed: int) -> None:
    """The processors' shares (periods still running cut at the end) against the simulator's own periods."""
    site = _site(name)
    events: list[Event] = []
    truth = simulate_site(site, events.append, seed=seed, duration=6 * 3600, start=T0)
    end = (T0 + timedelta(hours=6)).timestamp()
    for line in site.lines:
        engine = LineEngine(line, site.site, EngineConfig())
        engine.offer([e for e in events if e.line == line.id], partition=0, offset=0)
        engine.release(everything=True)
        ours = engine.state.bottleneck.shares(end)
        expected = method_shares(truth.active_periods(line.id), 0.0, truth.duration)
        assert set(expected) <= set(ours)
        for station, share in ours.items():
            assert share == pytest.approx(expected.get(station, (0.0, 0.0, 0.0)), abs=1e-6), station
        assert max(share for share, _, _ in ours.values()) > 0.3


def test_renaming_a_station_changes_nothing_on_a_simulated_line() -> None:
    """The finding of issue #14: "press" renamed "apress" moved its share from 14.3 % to 19.7 %."""
    data = yaml.safe_load((REPO_ROOT / "examples" / "mass-production.yaml").read_text())
    site = parse_site(data)
    for loc in data["lines"][0]["locations"]:
        if loc["id"] == "press":
            loc["id"] = "apress"
    renamed_site = parse_site(data)
    events: list[Event] = []
    simulate_site(site, events.append, seed=1, duration=8 * 3600, start=T0)
    renamed = [msgspec.structs.replace(e, location="apress") if e.location == "press" else e for e in events]
    end = T0 + timedelta(hours=8)
    _, before = _engine_shares(site, site.lines[0], events, end)
    _, after = _engine_shares(renamed_site, renamed_site.lines[0], renamed, end)
    assert after.pop("apress") == before.pop("press")
    assert after == before
    assert max(before.values())[0] < 0.9  # not a trivial line


# ---------------------------------------------------------------- random timelines (Hypothesis)


@st.composite
def timelines(draw: st.DrawFn) -> list[Call]:
    """2 to 5 stations, all inactive at 0, toggling at whole seconds in [1, 40]: ties are frequent."""
    calls: list[Call] = []
    for i in range(draw(st.integers(2, 5))):
        station = f"s{i}"
        calls.append((0.0, station, False))
        active = False
        for t in sorted(draw(st.sets(st.integers(1, 40), max_size=14))):
            active = not active
            calls.append((float(t), station, active))
            if draw(st.booleans()) and active:  # sometimes idle and busy again within the instant
                calls += [(float(t), station, False), (float(t), station, True)]
    return sorted(calls, key=lambda c: c[0])


END = 41.0


def _shares(calls: list[Call]) -> dict[str, Shares]:
    periods = ActivePeriods()
    for t, station, active in calls:
        periods.set_active(t, station, active)
    for station in {s for _, s, _ in calls}:
        periods.set_active(END, station, False)
    return periods.shares(END)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timelines())
def test_shares_equal_the_reference_on_random_timelines(calls: list[Call]) -> None:
    reference, found = _oracle_seconds(calls, END)
    if found < 2:
        return  # the package credits nothing with one bottleneck period (see the module docstring)
    _assert_like_oracle(_shares(calls), reference, END)


@settings(max_examples=300, deadline=None)
@given(timelines(), st.data())
def test_shares_do_not_depend_on_station_names(calls: list[Call], data: st.DataObject) -> None:
    stations = sorted({s for _, s, _ in calls})
    names = data.draw(
        st.lists(st.text(min_size=1, max_size=4), min_size=len(stations), max_size=len(stations), unique=True)
    )
    rename = dict(zip(stations, names, strict=True))
    before = _shares(calls)
    after = _shares([(t, rename[s], a) for t, s, a in calls])
    assert {rename[s]: v for s, v in before.items()} == {
        s: pytest.approx(v, abs=1e-9) for s, v in after.items()
    }


FIVE_STATIONS = parse_site(
    {
        "site": "s",
        "lines": [
            {
                "id": "l",
                "locations": [
                    {"id": f"s{i}", "kind": "station", "process_time": {"mean": 10, "dist": "deterministic"}}
                    for i in range(5)
                ],
            }
        ],
    }
)


@settings(max_examples=100, deadline=None)
@given(timelines(), st.randoms(use_true_random=False), st.integers(0, 3))
def test_the_engine_gives_the_method_s_shares_whatever_the_arrival_order_and_duplicates(
    calls: list[Call], rnd: Any, restart_at: int
) -> None:
    """Instants arrive shuffled (within the lateness), some events twice, the engine restarted from its
    dump midway: the shares are those of the ordered timeline."""
    events = [
        StationState(
            v=1,
            id=f"e{i}",
            time=T0 + timedelta(seconds=t),
            site="s",
            line="l",
            location=station,
            state="working" if active else "idle",
        )
        for i, (t, station, active) in enumerate(calls)
    ]
    instants: dict[datetime, list[Event]] = {}
    for event in events:
        instants.setdefault(event.time, []).append(event)
    groups = list(instants.values())
    rnd.shuffle(groups)  # one instant's events keep their order: it decides the state the instant ends in
    arrival = [e for group in groups for e in group]
    arrival += rnd.sample(events, k=min(3, len(events)))  # redelivered
    config = EngineConfig(lateness_s=100)
    line = FIVE_STATIONS.lines[0]
    engine = LineEngine(line, "s", config)
    cut = len(arrival) * restart_at // 4
    engine.offer(arrival[:cut], partition=0, offset=0)
    engine = LineEngine.load(line, "s", config, engine.dump())
    engine.offer(arrival[cut:], partition=0, offset=1)
    end = T0 + timedelta(seconds=END)
    engine.offer(_closing(line, FIVE_STATIONS, end), partition=0, offset=2)
    engine.release(everything=True)
    assert engine.state.quality.get("duplicate", 0) == min(3, len(events))
    expected = _shares(calls)
    got = engine.state.bottleneck.shares(end.timestamp())
    assert {s: got[s] for s in expected} == {s: pytest.approx(v, abs=1e-9) for s, v in expected.items()}
