"""Alert rules in event time: one hand-computed timeline per condition, ``for``, hysteresis, flapping input,
wall-clock silence, and the same timeline whatever the batching or a restart from the stored state.

Streams are hand-made on a small line, evaluated every second of event time (``evaluate_every: 1``), so
every firing and resolution time below follows from the rule's definition in docs/alerts.md.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from wipwatch.alert_rules import LINE_SCOPE, alert_identity, alert_topic, expand_rules
from wipwatch.errors import SiteFileError
from wipwatch.events import Event, PartIn, PartOut, StationState
from wipwatch.processors.alert_backtest import run_backtest
from wipwatch.processors.metrics.alerts import AlertStatus, step, transition_of
from wipwatch.processors.metrics.line_state import EngineConfig, LineEngine
from wipwatch.settings import REPO_ROOT
from wipwatch.simulators.line import simulate_site
from wipwatch.site import Site, load_site, parse_site

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
BASE = T0.timestamp()
LOCATIONS = [
    {"id": "q", "kind": "buffer", "cap": 2},
    {"id": "m", "kind": "station", "process_time": {"mean": 10, "dist": "deterministic"}},
    {"id": "m2", "kind": "station", "process_time": {"mean": 5, "dist": "deterministic"}},
    {"id": "fg", "kind": "store"},
]


def site_with(*rules: dict[str, Any], demand: float | None = 3600.0) -> Site:
    line: dict[str, Any] = {"id": "l", "locations": LOCATIONS}
    if demand is not None:
        line["demand_per_hour"] = demand
    return parse_site(
        {
            "site": "s",
            "alerts": {"defaults": False, "evaluate_every": 1, "rules": list(rules)},
            "lines": [line],
        }
    )


_ids = iter(range(10**9))


def into(location: str, part: str, second: float) -> PartIn:
    when = T0 + timedelta(seconds=second)
    return PartIn(v=1, id=f"e{next(_ids)}", time=when, site="s", line="l", location=location, part=part)


def out(location: str, part: str, second: float) -> PartOut:
    when = T0 + timedelta(seconds=second)
    return PartOut(v=1, id=f"e{next(_ids)}", time=when, site="s", line="l", location=location, part=part)


def state(location: str, value: str, second: float) -> StationState:
    when = T0 + timedelta(seconds=second)
    return StationState(
        v=1, id=f"e{next(_ids)}", time=when, site="s", line="l", location=location, state=value
    )  # type: ignore[arg-type]


def timeline(site: Site, events: list[Event], **config: Any) -> list[tuple[str, str, float, int, float]]:
    """(rule/location, state, seconds after T0, seq, value) of every transition, in order."""
    cfg = EngineConfig(alert_every_s=site.alerts.evaluate_every, lateness_s=0.0, **config)
    result = run_backtest(site, sorted(events, key=lambda e: e.timestamp), cfg, per_record=7)
    return [
        (
            f"{tr.instance.rule}/{tr.instance.location}",
            tr.state,
            round(tr.at - BASE, 6),
            tr.seq,
            round(tr.value, 6),
        )
        for tr in result.transitions
    ]


def fill(into_q: list[float]) -> list[Event]:
    return [into("q", f"p{i}", t) for i, t in enumerate(into_q)]


# ------------------------------------------------------------------ conditions


def test_wip_over_cap_fires_after_for_and_clears_below_the_band() -> None:
    site = site_with({"id": "cap", "condition": "wip_over_cap", "for": 10})
    events = [*fill([0, 1, 2]), out("q", "p0", 20), out("q", "p1", 30), state("m", "idle", 100)]
    # WIP 3 > cap 2 from t=2: pending at tick 2, fires at tick 12 (held 10 s); WIP 2 at t=20 is inside the
    # band (clear at 90 % of 2 = 1.8), WIP 1 at t=30 resolves
    assert timeline(site, events) == [("cap/q", "firing", 12, 1, 3), ("cap/q", "resolved", 30, 2, 1)]


def test_flapping_wip_never_fires_while_shorter_than_for() -> None:
    site = site_with({"id": "cap", "condition": "wip_over_cap", "for": 5})
    events = fill([0, 1])
    for k in range(10):  # WIP 3 for 3 s, 2 for 3 s, ten times
        events += [into("q", f"x{k}", 10 + 6 * k), out("q", f"x{k}", 13 + 6 * k)]
    events.append(state("m", "idle", 200))
    assert timeline(site, events) == []


def test_hysteresis_band_keeps_a_flapping_value_firing_once() -> None:
    flaps: list[Event] = fill([0, 1])
    for k in range(10):
        flaps += [into("q", f"x{k}", 10 + 6 * k), out("q", f"x{k}", 13 + 6 * k)]
    flaps += [out("q", "p0", 100), state("m", "idle", 200)]
    banded = site_with({"id": "cap", "condition": "wip_over_cap"})
    # fires at the first WIP 3 (t=10); back to 2 is inside the band; WIP 1 at t=100 resolves
    assert timeline(banded, flaps) == [("cap/q", "firing", 10, 1, 3), ("cap/q", "resolved", 100, 2, 1)]
    no_band = site_with({"id": "cap", "condition": "wip_over_cap", "clear": 2})
    # without a band every dip resolves and every rise fires again: 10 firings, 10 resolutions
    flapping = timeline(no_band, flaps)
    assert [tr[1] for tr in flapping] == ["firing", "resolved"] * 10
    assert [tr[2] for tr in flapping[:4]] == [10, 13, 16, 19]
    assert [tr[3] for tr in flapping] == list(range(1, 21))


def test_clear_for_needs_the_clear_condition_to_hold() -> None:
    site = site_with({"id": "cap", "condition": "wip_over_cap", "clear_for": 10})
    events = [*fill([0, 1, 2]), out("q", "p0", 20), out("q", "p1", 21), into("q", "p5", 25)]
    events += [out("q", "p5", 27), state("m", "idle", 100)]
    # fires at t=2; WIP 1 from t=21 (clearing since 21), WIP 2 at t=25 stops the clearing (2 > 1.8);
    # WIP 1 again from t=27: resolved at 27 + 10 = 37
    assert timeline(site, events) == [("cap/q", "firing", 2, 1, 3), ("cap/q", "resolved", 37, 2, 1)]


def test_queue_growth_over_the_growth_window() -> None:
    site = site_with({"id": "grow", "condition": "queue_growth", "threshold": 1800, "for": 5})
    events = [*fill([float(t) for t in range(11)]), state("m", "idle", 100)]
    # one arrival a second: growth (N(t) - N(0)) / t * 3600 = 3600/h from tick 1, fires at tick 6;
    # arrivals stop at t=10 (N=11): growth 36000 / t per hour until the 60 s window is full,
    # at or below the clear 1620/h from t >= 22.2, so tick 23
    assert timeline(site, events, growth_window_s=60.0) == [
        ("grow/q", "firing", 6, 1, 3600),
        ("grow/q", "resolved", 23, 2, round(36000 / 23, 6)),
    ]


def test_oldest_part_age() -> None:
    site = site_with({"id": "old", "condition": "oldest_part_age", "threshold": 30})
    events = [*fill([0]), out("q", "p0", 40), state("m", "idle", 100)]
    # age 31 > 30 at tick 31; the part leaves at t=40 (no part: age 0)
    assert timeline(site, events) == [("old/q", "firing", 31, 1, 31), ("old/q", "resolved", 40, 2, 0)]


def shipments(times: list[float]) -> list[Event]:
    events: list[Event] = []
    for t in times:
        events += [into("fg", f"s{t}", t), out("fg", f"s{t}", t)]
    return events


def test_under_production_against_demand() -> None:
    site = site_with({"id": "under", "condition": "under_production", "for": 10})
    evens = [float(t) for t in range(0, 100, 2)]
    each = [float(t) for t in range(100, 201)]
    events = [*shipments(evens + each), state("m", "idle", 300)]
    # demand 1/s, window 60 s; judged from tick 60 (a whole window observed): 30 parts in (0, 60] = 0.5
    # of demand, pending at 60, fires at 70. One a second from t=100: (98, 158] holds 59 parts (0.983 <
    # clear 0.99), (99, 159] holds 60: resolved at 159. Shipping stops at t=200: (t-60, t] holds 260 - t
    # parts, below 0.9 x 60 = 54 from tick 207, firing at 217 with 43 parts
    assert timeline(site, events, throughput_window_s=60.0) == [
        ("under/_line", "firing", 70, 1, 0.5),
        ("under/_line", "resolved", 159, 2, 1.0),
        ("under/_line", "firing", 217, 3, round(43 / 60, 6)),
    ]


def test_over_production_finished_goods_growing_beyond_demand() -> None:
    site = site_with({"id": "over", "condition": "over_production"})
    events = [into("fg", f"f{t}", float(t)) for t in range(0, 101, 5)] + [state("m", "idle", 300)]
    # fg growth / demand over 60 s: at tick 60, (13 - 1) / 60 s = 720/h = 0.2 of demand > 0.1: fires.
    # Arrivals end at t=100 (N=21); N(t-60) = floor((t-60)/5) + 1, ratio (20 - floor((t-60)/5)) / 60,
    # at or below the clear 0.09 from floor >= 15: t = 135, ratio 5/60
    assert timeline(site, events, growth_window_s=60.0) == [
        ("over/_line", "firing", 60, 1, 0.2),
        ("over/_line", "resolved", 135, 2, round(5 / 60, 6)),
    ]


def test_station_down_for_longer_than_for() -> None:
    site = site_with({"id": "down", "condition": "station_down", "for": 30, "scope": {"location": "m"}})
    events = [state("m", "down", 10), state("m", "working", 50), state("m", "down", 60)]
    events += [state("m", "working", 85), state("m", "idle", 200)]
    # down 10..50: fires at 40, resolves at 50; down 60..85 is shorter than 30 s: nothing
    assert timeline(site, events) == [("down/m", "firing", 40, 1, 1), ("down/m", "resolved", 50, 2, 0)]


def test_station_blocked() -> None:
    site = site_with({"id": "blocked", "condition": "station_blocked", "for": 20, "scope": {"location": "m"}})
    events = [state("m", "idle", 0), into("m", "p", 5), out("m", "p", 30), state("m", "idle", 100)]
    # idle holding a part from t=5: blocked; fires at 25; the part leaves at 30 (starved)
    assert timeline(site, events) == [("blocked/m", "firing", 25, 1, 1), ("blocked/m", "resolved", 30, 2, 0)]


def test_new_sole_bottleneck() -> None:
    site = site_with({"id": "neck", "condition": "new_bottleneck", "for": 20, "expected": "m"})
    events = [state("m", "working", 0), state("m2", "working", 0), state("m", "idle", 5)]
    events += [state("m", "working", 6), state("m2", "idle", 40), into("fg", "z", 100)]
    # both start at 0, the tie goes to m (name); m's period ends at 5, so m2 (active since 0) is the
    # momentary bottleneck from tick 5: fires at 25; m2 goes idle at 40: m (since 6) takes over
    assert timeline(site, events) == [
        ("neck/m2", "firing", 25, 1, 1),
        ("neck/m2", "resolved", 40, 2, 0),
    ]


def test_line_silent_in_event_time() -> None:
    site = site_with({"id": "quiet", "condition": "line_silent", "threshold": 30})
    events = [state("m", "idle", 0), state("m", "idle", 100)]
    # 31 s since the last event at tick 31; the event at 100 resolves at tick 100 (end of the recording)
    assert timeline(site, events) == [
        ("quiet/_line", "firing", 31, 1, 31),
        ("quiet/_line", "resolved", 100, 2, 0),
    ]


def test_line_silent_on_the_wall_clock() -> None:
    site = site_with({"id": "quiet", "condition": "line_silent", "threshold": 30})
    config = EngineConfig(alert_every_s=1, wall_clock_silence=True)
    engine = LineEngine(site.lines[0], "s", config, rules=expand_rules(site))
    engine.check_silence(5_000.0)
    assert engine.changes.alerts == []  # never heard: nothing to judge
    engine.heard(1_000.0)
    engine.offer([state("m", "idle", 0), state("m", "idle", 500)], 0, 0)
    engine.release(everything=True)
    engine.finish_alerts()
    assert engine.changes.alerts == []  # event-time gaps do not count on the wall clock
    for wall in (1_020.0, 1_030.0, 1_031.0, 1_035.0):
        engine.check_silence(wall)
    engine.heard(1_040.0)
    engine.check_silence(1_041.0)
    assert [(tr.state, tr.at, tr.seq, tr.value) for tr in engine.changes.alerts] == [
        ("firing", 1_031.0, 1, 31.0),
        ("resolved", 1_041.0, 2, 1.0),
    ]


def test_data_quality_rate() -> None:
    site = site_with({"id": "dq", "condition": "data_quality", "threshold": 0.1, "window": 60})
    events: list[Event] = [into("q", f"g{t}", float(t)) for t in range(40)]
    events += [out("m", f"ghost{t}", float(t)) for t in range(40, 50)]  # departures without arrival
    events += [into("q", f"h{t}", float(t)) for t in range(50, 130)]
    # findings / events in (t-60, t]: at tick 44, 5 / 45 = 0.111 > 0.1 fires; the window then slides:
    # at tick 104 it holds events 45..104 (60) and findings 45..49 (5): 0.083 <= clear 0.09
    assert timeline(site, events) == [
        ("dq/_line", "firing", 44, 1, round(5 / 45, 6)),
        ("dq/_line", "resolved", 104, 2, round(5 / 60, 6)),
    ]


def test_a_long_gap_is_evaluated_tick_by_tick_then_jumps() -> None:
    site = site_with(
        {"id": "old", "condition": "oldest_part_age", "threshold": 3600, "for": 600},
        {"id": "down", "condition": "station_down", "scope": {"location": "m"}},
    )
    events = [*fill([0]), state("m", "down", 1), state("m", "idle", 3 * 86400.0)]
    # age > 3600 s from tick 3601, fires at 4201 (one tick a second); station m down from t=1 fires at
    # tick 1. After MAX_GAP_TICKS (100,000) ticks the evaluation jumps to the last tick before the next
    # event and m (still down then) stays firing; it resolves at the idle event (the end)
    assert timeline(site, events) == [
        ("down/m", "firing", 1, 1, 1),
        ("old/q", "firing", 4201, 1, 4201),
        ("down/m", "resolved", 3 * 86_400, 2, 0),
    ]


# ------------------------------------------------------------------ state machine and identities


def test_transition_rebuilt_from_the_stored_status() -> None:
    [instance] = expand_rules(site_with({"id": "cap", "condition": "wip_over_cap"}))
    status = AlertStatus()
    assert transition_of(instance, status) is None
    fired = step(instance, status, 3.0, 10.0)
    assert fired is not None and transition_of(instance, status) == fired
    resolved = step(instance, status, 1.0, 20.0)
    assert resolved is not None and transition_of(instance, status) == resolved
    assert (resolved.since, resolved.seq) == (10.0, 2)


def test_identity_and_topic_are_stable() -> None:
    assert alert_identity("cap", "s", "l", "q") == alert_identity("cap", "s", "l", "q")
    assert alert_identity("cap", "s", "l", "q") != alert_identity("cap", "s", "l", "q2")
    assert alert_topic("s", "l", "cap", "q") == "wipwatch/alerts/s/l/cap/q"
    assert alert_topic("s", "l", "silent", LINE_SCOPE) == "wipwatch/alerts/s/l/silent/_line"


def test_defaults_follow_caps_demand_and_stations() -> None:
    site = load_site(REPO_ROOT / "examples" / "mass-production.yaml")
    rules = expand_rules(site)
    caps = {r.location: r.threshold for r in rules if r.rule == "wip-over-cap"}
    assert caps == {"b-raw": 2, "b-cut": 2, "b-press": 2, "b-weld": 2, "b-paint": 2, "fg": 5}
    assert {r.location for r in rules if r.rule == "station-down"} == {
        "cut",
        "press",
        "weld",
        "paint",
        "pack",
    }
    # press (50 s per part, one machine) is the designed bottleneck: no new-bottleneck alert for it
    assert {r.location for r in rules if r.rule == "new-bottleneck"} == {"cut", "weld", "paint", "pack"}
    assert {r.rule for r in rules if r.location == LINE_SCOPE} == {
        "under-production",
        "over-production",
        "line-silent",
        "data-quality",
    }
    assert len({r.identity for r in rules}) == len(rules)


def test_a_declared_rule_replaces_the_default_of_the_same_id() -> None:
    data = load_site(REPO_ROOT / "examples" / "mass-production.yaml").model_dump(by_alias=True)
    data["alerts"] = {
        "rules": [{"id": "wip-over-cap", "condition": "wip_over_cap", "scope": {"location": "fg"}}]
    }
    rules = expand_rules(parse_site(data))
    assert [(r.location, r.for_s) for r in rules if r.rule == "wip-over-cap"] == [("fg", 0.0)]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            {"id": "a", "condition": "queue_growth"},
            "alerts.rules[0]: condition queue_growth needs a threshold",
        ),
        (
            {"id": "a", "condition": "station_down", "threshold": 3},
            "alerts.rules[0]: condition station_down is",
        ),
        (
            {"id": "a", "condition": "wip_over_cap", "threshold": 5, "clear": 6},
            "clear 6.0 must be at or below",
        ),
        ({"id": "a", "condition": "under_production", "threshold": 0.9, "clear": 0.5}, "must be at or above"),
        ({"id": "a", "condition": "nope"}, "alerts.rules[0].condition: Input should be"),
        ({"id": "a", "condition": "wip_over_cap", "for": -1}, "alerts.rules[0].for: Input should be greater"),
        (
            {"id": "a", "condition": "wip_over_cap", "scope": {"line": "x"}},
            ": alerts.rules[0].scope.line: unknown",
        ),
        ({"id": "a", "condition": "wip_over_cap", "scope": {"location": "x"}}, "unknown location 'x'"),
        (
            {"id": "a", "condition": "wip_over_cap", "labels": {"site": "x"}},
            "labels site are set by wipwatch",
        ),
        ({"id": "a", "condition": "wip_over_cap", "labels": {"a b": "x"}}, "alerts.rules[0].labels.a b"),
        ({"id": "a b", "condition": "wip_over_cap"}, "alerts.rules[0].id: String should match"),
        ({"id": "a", "condition": "new_bottleneck", "expected": "q"}, "expected: 'q' is not a station"),
        ({"id": "a", "condition": "wip_over_cap", "severity": "page"}, "alerts.rules[0].severity"),
        ({"id": "a", "condition": "wip_over_cap", "colour": "red"}, "alerts.rules[0].colour: Extra inputs"),
    ],
)
def test_bad_rules_name_the_field(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(SiteFileError) as err:
        site_with(rule)
    assert message in str(err.value)


def test_duplicate_rule_ids_are_rejected() -> None:
    rule = {"id": "a", "condition": "wip_over_cap"}
    with pytest.raises(SiteFileError, match="alerts: rule ids appear twice: a"):
        site_with(rule, rule)


# ------------------------------------------------------------------ same timeline, whatever happens


@pytest.fixture(scope="module")
def shift() -> tuple[Site, list[Event]]:
    site = load_site(REPO_ROOT / "examples" / "mass-production.yaml")
    events: list[Event] = []
    simulate_site(site, events.append, seed=3, duration=8 * 3600, start=T0)
    return site, events


def _key(result: Any) -> list[tuple[str, str, float, int]]:
    return [(tr.identity, tr.state, tr.at, tr.seq) for tr in result.transitions]


def test_a_shift_replayed_twice_gives_the_same_timeline(shift: tuple[Site, list[Event]]) -> None:
    site, events = shift
    first = run_backtest(site, events, per_record=500)
    again = run_backtest(site, events, per_record=37)  # other batching: other release points
    assert _key(first) == _key(again)
    fired = {tr.instance.rule for tr in first.transitions if tr.state == "firing"}
    # a push line with caps of 2 parts: the caps break, finished goods pile up beyond demand
    assert {"wip-over-cap", "over-production"} <= fired


def test_restarts_from_the_stored_state_lose_and_repeat_no_transition(
    shift: tuple[Site, list[Event]],
) -> None:
    """A worker killed after storing state resumes from it: the transitions of an uninterrupted run."""
    site, events = shift
    rules = expand_rules(site)
    config = EngineConfig(alert_every_s=site.alerts.evaluate_every)
    line = site.lines[0]
    engine = LineEngine(line, site.site, config, rules=rules)
    rng = random.Random(7)
    seen: list[tuple[str, str, float, int]] = []
    records = [events[i : i + 200] for i in range(0, len(events), 200)]
    stored = engine.dump()
    stored_offset = -1
    offset = 0
    while offset < len(records):
        engine.offer(records[offset], 0, offset)
        engine.release()
        batch = [(tr.identity, tr.state, tr.at, tr.seq) for tr in engine.changes.alerts]
        engine.changes.clear()
        if rng.random() < 0.2:  # killed before the state was stored: the batch's transitions are lost
            engine = LineEngine.load(line, site.site, config, stored, rules)
            offset = stored_offset + 1
            continue
        stored, stored_offset = engine.dump(), offset
        seen += batch
        offset += 1
    engine.release(everything=True)
    engine.finish_alerts()
    seen += [(tr.identity, tr.state, tr.at, tr.seq) for tr in engine.changes.alerts]
    assert sorted(seen) == sorted(_key(run_backtest(site, events, config, per_record=200)))
    assert len(seen) == len(set(seen))


def test_wall_clock_silence_counts_from_a_restart_at_the_earliest() -> None:
    site = site_with({"id": "quiet", "condition": "line_silent", "threshold": 30})
    config = EngineConfig(alert_every_s=1, wall_clock_silence=True)
    engine = LineEngine(site.lines[0], "s", config, rules=expand_rules(site))
    engine.heard(1_000.0)
    engine.check_silence(2_000.0, not_before=1_990.0)  # restarted at 1990: 10 s, not 1000 s
    assert engine.changes.alerts == []
    engine.check_silence(2_021.0, not_before=1_990.0)
    assert [(tr.state, tr.at, tr.value) for tr in engine.changes.alerts] == [("firing", 2_021.0, 31.0)]


def test_a_state_stored_before_alerts_or_with_another_step_goes_on_evaluating() -> None:
    site = site_with({"id": "cap", "condition": "wip_over_cap"})
    line = site.lines[0]
    rules = expand_rules(site)
    old = LineEngine(line, "s", EngineConfig(alert_every_s=1), rules=rules)
    old.offer(fill([0, 1, 2]), 0, 0)
    old.release(everything=True)
    # a state from before alerts: no tick position; another step: the stored position means other times
    old.state.alerts.next_tick, old.state.alerts.every = None, 0.0
    for every in (1.0, 10.0):
        engine = LineEngine.load(line, "s", EngineConfig(alert_every_s=every), old.dump(), rules)
        engine.offer([state("m", "idle", 25)], 0, 1)
        engine.release(everything=True)
        # ticks from the line's clock (t=2) on: the first after it fires, WIP 3 > 2
        assert [(tr.state, tr.at - BASE) for tr in engine.changes.alerts] == [
            ("firing", 3 if every == 1 else 10)
        ]
