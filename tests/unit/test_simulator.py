"""The simulator is faithful: Factory Physics best case, Little's Law, blocking, determinism, calendar."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from wipwatch.events import Event, PartIn, PartOut, StationState, encode_event
from wipwatch.simulators.line import simulate_site
from wipwatch.simulators.truth import percentile
from wipwatch.site import parse_site

pytestmark = pytest.mark.unit

START = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def _station(
    loc_id: str, mean: float, dist: str = "deterministic", cv: float | None = None, **extra: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {"mean": mean, "dist": dist, **({"cv": cv} if cv else {})}
    return {"id": loc_id, "kind": "station", "process_time": spec, **extra}


def _one_line(
    site: str, release: dict[str, Any], supply: dict[str, Any], locations: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """A site document of one line ``l1``."""
    line = {"id": "l1", "release": release, "supply": supply, "locations": locations, **extra}
    return {"site": site, "lines": [line]}


def _balanced_conwip(w: int, t: float = 10.0) -> dict[str, Any]:
    """Three stations of t seconds each (T0 = 3t, r_b = 1/t), a queue before each, raw always stocked.

    Release moves a part from the raw store into b0, the queue of s1, so cycle time counts that wait.
    """
    return _one_line(
        "fp",
        {"policy": "conwip", "wip_cap": w},
        {"kanbans": 4, "lot_size": 10, "lead_time": 0},
        [
            {"id": "raw", "kind": "store"},
            {"id": "b0", "kind": "buffer"},
            _station("s1", t),
            {"id": "b1", "kind": "buffer"},
            _station("s2", t),
            {"id": "b2", "kind": "buffer"},
            _station("s3", t),
            {"id": "fg", "kind": "store"},
        ],
    )


@pytest.mark.parametrize("w", [1, 2, 3, 5, 8])
def test_balanced_deterministic_conwip_line_meets_the_best_case(w: int) -> None:
    """Factory Physics best case: TH = min(w/T0, r_b), CT = max(T0, w/r_b) (Hopp & Spearman, ch. 7)."""
    t0, r_b, hours = 30.0, 1 / 10.0, 10
    truth = simulate_site(parse_site(_balanced_conwip(w)), lambda e: None, duration=hours * 3600, start=START)
    summary = truth.line_summary("l1")
    throughput = summary["completed"] / (hours * 3600)
    assert throughput == pytest.approx(min(w / t0, r_b), rel=0.02)
    assert summary["mean_cycle_time_s"] == pytest.approx(max(t0, w / r_b), rel=0.02)


def _stochastic_site() -> dict[str, Any]:
    return _one_line(
        "ll",
        {"policy": "push"},
        {"interval": 60, "lot_size": 1, "dist": "exponential"},
        [
            {"id": "raw", "kind": "store"},
            _station("s1", 40, "exponential", changeover={"mean": 20, "dist": "deterministic"}),
            {"id": "b1", "kind": "buffer"},
            _station("s2", 80, "gamma", cv=0.8, machines=2, breakdowns={"mtbf": 3600, "mttr": 300}),
            {"id": "b2", "kind": "buffer"},
            _station("s3", 45, "lognormal", cv=0.5),
            {"id": "fg", "kind": "store"},
        ],
        skus=[{"id": "A", "share": 2}, {"id": "B", "share": 1}],
    )


def test_littles_law_holds_on_a_stochastic_run() -> None:
    """WIP = TH * CT on the ground truth: WIP from the time integral, TH and CT from part records."""
    hours = 300
    truth = simulate_site(parse_site(_stochastic_site()), lambda e: None, seed=3, duration=hours * 3600)
    summary = truth.line_summary("l1")
    assert summary["shipped"] > 5000, "enough parts for a steady-state average"
    throughput_per_s = summary["throughput_per_hour"] / 3600
    assert summary["avg_wip"] == pytest.approx(throughput_per_s * summary["mean_lead_time_s"], rel=0.03)
    stations = truth.as_dict()["stations"]
    assert stations["l1/s2"]["down"] > 0, "breakdowns happen"
    assert stations["l1/s1"]["changeover"] > 0, "SKU changes cause changeovers"


def _blocking_site(cap: int, fast: float, slow: float) -> dict[str, Any]:
    return _one_line(
        "bk",
        {"policy": "kanban"},
        {"interval": 5, "lot_size": 1, "dist": "deterministic"},
        [
            {"id": "raw", "kind": "store"},
            _station("s1", fast),
            {"id": "b1", "kind": "buffer", "cap": cap},
            _station("s2", slow),
            {"id": "fg", "kind": "store"},
        ],
    )


def _derived_states(events: list[Event], end: float) -> tuple[dict[str, float], list[tuple[float, int]]]:
    """Starved/blocked the way docs/simulators.md tells a processor to derive them, from events alone.

    Returns seconds per derived category of s1, and b1's WIP at every moment s1 turned blocked.
    """
    wip: dict[str, int] = {}
    state = "idle"
    category, since = "starved", 0.0
    seconds: dict[str, float] = {}
    blocked_at: list[tuple[float, int]] = []
    t0 = START.timestamp()
    i = 0
    while i < len(events):
        now = events[i].timestamp - t0
        while i < len(events) and events[i].timestamp - t0 == now:  # settle everything at one instant
            event = events[i]
            key = event.location
            if isinstance(event, PartIn):
                wip[key] = wip.get(key, 0) + 1
            elif isinstance(event, PartOut):
                wip[key] = wip.get(key, 0) - 1
            elif isinstance(event, StationState) and key == "s1":
                state = event.state
            i += 1
        new = state if state != "idle" else ("blocked" if wip.get("s1", 0) > 0 else "starved")
        if new != category:
            seconds[category] = seconds.get(category, 0.0) + now - since
            if new == "blocked":
                blocked_at.append((now, wip.get("b1", 0)))
            category, since = new, now
    seconds[category] = seconds.get(category, 0.0) + end - since
    return seconds, blocked_at


def test_blocking_appears_exactly_when_the_finite_buffer_is_full() -> None:
    events: list[Event] = []
    truth = simulate_site(parse_site(_blocking_site(3, 1, 10)), events.append, duration=3600, start=START)
    assert max(truth.samples["l1/b1"]) == 3
    assert truth.locations["l1/b1"].max_wip == 3, "a kanban cap is never exceeded"
    seconds, blocked_at = _derived_states(events, truth.duration)
    assert blocked_at, "a fast station before a slow one fills the buffer and blocks"
    assert all(b1 == 3 for _, b1 in blocked_at), f"blocked only with b1 full: {blocked_at[:5]}"
    blocked_truth = truth.stations["l1/s1"].totals(truth.duration)["blocked"]
    assert seconds["blocked"] == pytest.approx(blocked_truth, abs=1e-6)
    # s1 takes 1 s, s2 10 s and raw never runs dry: once b1 is full s1 works 1 s in 10, blocked the rest
    assert blocked_truth / 3600 == pytest.approx(0.9, rel=0.02)


def test_no_blocking_while_the_buffer_never_fills() -> None:
    truth = simulate_site(parse_site(_blocking_site(3, 4, 3)), lambda e: None, duration=3600, start=START)
    assert truth.stations["l1/s1"].totals(3600)["blocked"] == 0.0
    assert truth.locations["l1/b1"].max_wip < 3


def test_same_seed_same_events_other_seed_other_events() -> None:
    site = parse_site(_stochastic_site())
    runs = []
    for seed in (5, 5, 6):
        out: list[bytes] = []
        simulate_site(
            site, lambda e, out=out: out.append(encode_event(e)), seed=seed, duration=7200, start=START
        )
        runs.append(out)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_real_time_pacing_gives_the_same_events_as_fast() -> None:
    site = parse_site(_stochastic_site())
    runs = []
    for speed in (None, 2400.0):
        out: list[bytes] = []
        simulate_site(site, lambda e, out=out: out.append(encode_event(e)), 2, 600, speed, START)
        runs.append(out)
    assert runs[0] and runs[0] == runs[1]


def test_breaks_stop_stations_and_count_as_off_shift() -> None:
    data = _blocking_site(100, 4, 3)
    data["shift"] = {"hours": 2, "breaks": [{"at_hour": 1, "minutes": 30}]}
    events: list[Event] = []
    truth = simulate_site(parse_site(data), events.append, duration=3 * 3600, start=START)
    starts = [
        e.timestamp - START.timestamp()
        for e in events
        if isinstance(e, StationState) and e.state == "working"
    ]
    in_break = [t for t in starts if 3600 <= t < 5400 or t >= 7200]
    assert not in_break, f"work started outside the shift at {in_break[:3]}"
    totals = truth.stations["l1/s2"].totals(truth.duration)
    # off shift: the 30 min break and the hour after the 2 h shift, minus any part still finishing
    assert totals["off_shift"] == pytest.approx(5400, abs=2 * 3)


def test_demand_paces_shipments_and_profile_changes_rate() -> None:
    data = _blocking_site(100, 4, 3)
    line = data["lines"][0]
    line["demand_per_hour"] = 360
    line["demand_dist"] = "deterministic"
    line["demand_profile"] = [{"from_hour": 0, "factor": 1.0}, {"from_hour": 1, "factor": 0.5}]
    truth = simulate_site(parse_site(data), lambda e: None, duration=2 * 3600, start=START)
    # one order every 10 s in the first hour (10 ... 3600), then every 20 s (3620 ... 7180)
    assert truth.orders == 360 + 179
    assert truth.shipped == truth.orders, "supply (720/h) outpaces demand: every order is filled at once"


def test_conwip_never_holds_more_than_wip_cap_in_the_loop() -> None:
    data = _balanced_conwip(4, t=10.0)
    data["lines"][0]["locations"][4]["process_time"] = {"mean": 12, "dist": "exponential"}
    events: list[Event] = []
    simulate_site(parse_site(data), events.append, seed=2, duration=4 * 3600, start=START)
    loop = {"b0", "s1", "b1", "s2", "b2", "s3"}
    wip, highest = 0, 0
    for i, event in enumerate(events):
        if event.location in loop and isinstance(event, PartIn | PartOut):
            wip += 1 if isinstance(event, PartIn) else -1
        last_at_this_instant = i + 1 == len(events) or events[i + 1].time != event.time
        if last_at_this_instant:
            highest = max(highest, wip)
    assert highest == 4


def test_push_ignores_caps_and_kanban_enforces_them() -> None:
    data = _blocking_site(3, 1, 10)
    data["lines"][0]["release"] = {"policy": "push"}
    truth = simulate_site(parse_site(data), lambda e: None, duration=3600, start=START)
    assert truth.locations["l1/b1"].max_wip > 100, "push: s1 keeps working, b1 grows past its cap"
    assert truth.stations["l1/s1"].totals(3600)["blocked"] == 0.0


def test_kanban_supply_keeps_at_most_its_cards_of_raw_material() -> None:
    completed = {}
    for lead_time in (60, 120):
        data = _blocking_site(3, 1, 10)
        data["lines"][0]["supply"] = {"kanbans": 2, "lot_size": 5, "lead_time": lead_time}
        truth = simulate_site(parse_site(data), lambda e: None, duration=3600, start=START)
        raw = truth.locations["l1/raw"]
        assert raw.max_wip == 10, "two cards of five on hand at the start, never more"
        assert raw.arrivals % 5 == 0, "deliveries come in whole lots"
        completed[lead_time] = truth.line_summary("l1")["completed"]
    # s2 takes 10 s: 10 parts on hand cover a 60 s lead time (6 parts), so the bottleneck sets the pace
    assert completed[60] == pytest.approx(360, abs=2)
    # but not 120 s (12 parts): the line starves for raw material
    assert completed[120] < 0.9 * 360


def _random_site(rng: random.Random) -> dict[str, Any]:
    """A random one-line site: 2-4 stations of any distribution, buffers with caps, any release policy."""
    policy = rng.choice(["push", "kanban", "conwip"])
    locations: list[dict[str, Any]] = [
        {"id": "raw", "kind": "store"},
        {"id": "b0", "kind": "buffer", "cap": 3},
    ]
    for i in range(rng.randint(2, 4)):
        dist = rng.choice(["deterministic", "exponential", "gamma", "lognormal"])
        extra: dict[str, Any] = {"machines": rng.randint(1, 2)}
        if rng.random() < 0.5:
            extra["breakdowns"] = {"mtbf": rng.uniform(300, 3000), "mttr": rng.uniform(30, 300)}
        if rng.random() < 0.5:
            extra["changeover"] = {"mean": rng.uniform(5, 60), "dist": "exponential"}
        cv = rng.uniform(0.2, 1.2) if dist in ("gamma", "lognormal") else None
        locations.append(_station(f"s{i}", rng.uniform(20, 60), dist, cv, **extra))
        locations.append({"id": f"b{i + 1}", "kind": "buffer", "cap": rng.randint(1, 4)})
    locations[-1] = {"id": "fg", "kind": "store", "cap": rng.randint(1, 6)}
    release = {"policy": policy, **({"wip_cap": rng.randint(1, 8)} if policy == "conwip" else {})}
    supply = {"interval": rng.uniform(20, 90), "lot_size": rng.randint(1, 5)}
    extra_line: dict[str, Any] = {"skus": [{"id": "A"}, {"id": "B"}]}
    if rng.random() < 0.7:
        extra_line["demand_per_hour"] = rng.uniform(20, 120)
    return _one_line("rnd", release, supply, locations, **extra_line)


@pytest.mark.parametrize("case", range(12))
def test_random_lines_keep_every_invariant(case: int) -> None:
    """Conservation, no negative WIP, enforced limits, time order, one state event per change."""
    data = _random_site(random.Random(case))
    site = parse_site(data)
    line = site.lines[0]
    events: list[Event] = []
    truth = simulate_site(site, events.append, seed=case, duration=2 * 3600, start=START)
    caps = {loc.id: loc.cap for loc in line.locations[1:] if loc.cap is not None}
    loop = {loc.id for loc in line.locations[1:-1]}
    wip: dict[str, int] = {}
    states: dict[str, str] = {}
    for i, event in enumerate(events):
        assert i == 0 or events[i - 1].time <= event.time
        if isinstance(event, StationState):
            assert states.get(event.location) != event.state, "a state event only when the state changes"
            states[event.location] = event.state
            continue
        wip[event.location] = wip.get(event.location, 0) + (1 if isinstance(event, PartIn) else -1)
        assert wip[event.location] >= 0
        if i + 1 < len(events) and events[i + 1].time == event.time:
            continue  # judge limits once the instant has settled
        if line.release.policy == "kanban":
            assert all(wip.get(loc, 0) <= cap for loc, cap in caps.items()), wip
        if line.release.policy == "conwip":
            assert sum(wip.get(loc, 0) for loc in loop) <= (line.release.wip_cap or 0), wip
    summary = truth.line_summary("l1")
    assert summary["received"] == summary["shipped"] + summary["final_wip"]
    assert {k: v for k, v in wip.items() if v} == {k.split("/")[1]: v for k, v in truth.wip.items() if v}


def test_percentile_is_nearest_rank() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 7.0, 6.0, 9.0, 8.0]
    assert percentile(values, 50) == 5.0
    assert percentile(values, 90) == 9.0
    assert percentile(values, 99) == 10.0
    assert percentile([], 50) is None


def test_dwell_times_of_a_deterministic_station_and_its_queue() -> None:
    """s2 takes exactly 10 s; parts arrive faster than it works, so every part dwells exactly 10 s there."""
    truth = simulate_site(parse_site(_blocking_site(3, 1, 10)), lambda e: None, duration=3600, start=START)
    s2 = truth.as_dict()["locations"]["l1/s2"]
    assert s2["p50_dwell_s"] == s2["p99_dwell_s"] == 10.0
    assert s2["throughput_per_hour"] == pytest.approx(360, abs=1)
