"""The stream processors on real servers, checked against the simulator's ground truth.

Events go straight to the Kafka topic packed as ingest packs them; workers are real ``wipwatch process``
child processes; every figure is read back from InfluxDB.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_SITE
from tests.polling import eventually
from tests.processors_rig import START, Rig, assert_same_metrics, by_location, packed, produce
from wipwatch.events import Event, PartIn, PartOut
from wipwatch.influx import query, rows
from wipwatch.processors.metrics.bottleneck import method_shares
from wipwatch.processors.metrics.line_state import EngineConfig, period_end
from wipwatch.services import NativeStack
from wipwatch.settings import REPO_ROOT
from wipwatch.simulators.line import simulate_site
from wipwatch.simulators.truth import GroundTruth
from wipwatch.site import LocationKind, load_site

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MULTI_LINE_SITE = REPO_ROOT / "examples" / "multi-line-site.yaml"
#: The quantile sketch reports every percentile within 1 % of the exact nearest-rank value.
SKETCH_TOLERANCE = 0.0101
SITE = load_site(EXAMPLE_SITE)


@pytest.fixture
def rig(stack: NativeStack, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(stack, tmp_path, EXAMPLE_SITE)
    try:
        yield r
    finally:
        r.stop()


def simulate(site_file: Path, hours: float, seed: int) -> tuple[list[Event], GroundTruth]:
    events: list[Event] = []
    truth = simulate_site(load_site(site_file), events.append, seed=seed, duration=hours * 3600, start=START)
    return events, truth


def all_locations(site_file: Path, wip: dict[str, int]) -> dict[str, int]:
    return {
        f"{line.id}/{loc.id}": wip.get(f"{line.id}/{loc.id}", 0)
        for line, loc in load_site(site_file).iter_locations()
    }


def truth_wip_at(truth: GroundTruth, seconds: float) -> dict[str, int]:
    if seconds == truth.duration:
        return truth.wip
    index = truth.sample_times.index(seconds)
    return {key: values[index] for key, values in truth.samples.items()}


def wip_from_events(events: list[Event], until: datetime) -> dict[str, int]:
    """WIP per location from the simulator's own events up to ``until``."""
    wip: dict[str, int] = {}
    for e in events:
        if e.time <= until and isinstance(e, PartIn | PartOut):
            key = f"{e.line}/{e.location}"
            wip[key] = wip.get(key, 0) + (e.qty if isinstance(e, PartIn) else -e.qty)
    return wip


def test_wip_exact_at_every_checkpoint_and_flow_metrics_match_ground_truth(rig: Rig) -> None:
    events, truth = simulate(EXAMPLE_SITE, hours=6, seed=11)
    rig.start_worker("worker")
    for hour in (2, 4, 6):
        until = START + timedelta(hours=hour)
        chunk = [
            e
            for e in events
            if (START + timedelta(hours=hour - 2)) < e.time <= until or (hour == 2 and e.time == START)
        ]
        produce(rig.stack, packed(chunk, per_record=200), SITE)
        rig.wait_wip(all_locations(EXAMPLE_SITE, truth_wip_at(truth, hour * 3600.0)))

    metrics = rig.metrics()
    site = load_site(EXAMPLE_SITE)
    line = site.lines[0]
    truth_all = truth.as_dict()
    # the newest points are stamped at the end of the period holding the last event (docs/metrics.md)
    last_points = period_end(events[-1].timestamp, EngineConfig().point_interval_s)
    tail = truth.duration - (last_points - START.timestamp())
    flow = by_location(metrics["flow_time"])
    throughput = by_location(metrics["throughput"])
    stations = by_location(metrics["station"])
    for loc in line.locations:
        key = f"{line.id}/{loc.id}"
        expected = truth_all["locations"].get(key)
        if expected is None or not expected["departures"]:
            continue
        for q in ("p50", "p90", "p99"):
            exact = expected[f"{q}_dwell_s"]
            assert math.isclose(flow[key][f"{q}_s"], exact, rel_tol=SKETCH_TOLERANCE, abs_tol=1e-3), (key, q)
        assert math.isclose(flow[key]["mean_s"], expected["mean_dwell_s"], abs_tol=2e-6), key  # µs times
        if loc.kind is LocationKind.STATION:
            assert throughput[key]["total"] == expected["departures"], key
            totals = truth_all["stations"][key]
            # the truth runs to the end of the shift, the newest points to the end of the last event's
            # period: the station's category at the end differs by that tail, every other one is exact
            diffs = [
                totals[c] - stations[key][f"{c}_s"] for c in ("working", "changeover", "down", "blocked")
            ]
            near = [d for d in diffs if abs(d) < 0.01]
            assert len(near) >= 3 and all(abs(d) < 0.01 or abs(d - tail) < 0.01 for d in diffs), (key, diffs)

    summary = truth_all["lines"][line.id]
    line_key = f"{line.id}/_line"
    assert throughput[line_key]["total"] == summary["shipped"]
    for q in ("p50", "p90"):
        assert math.isclose(flow[line_key][f"{q}_s"], summary[f"{q}_lead_time_s"], rel_tol=SKETCH_TOLERANCE)
    lead = by_location(metrics["lead_time"])[f"{line.id}/"]
    assert math.isclose(lead["measured_s"], summary["mean_lead_time_s"], abs_tol=2e-6)
    # Little's Law over the whole run: time-average WIP / throughput against the measured mean lead time
    # (not exact: parts still on the line at the end are in the WIP but not yet in the lead times)
    assert math.isclose(lead["littles_law_s"], lead["measured_s"], rel_tol=0.15)
    assert math.isclose(lead["avg_wip"], summary["avg_wip"], rel_tol=0.02)
    assert 0 < lead["value_added_ratio"] < 1
    # bottleneck shares by the active-period method over the ground truth's own active periods, cut
    # where the processors' clock stands (the last event), as the processors cut running periods
    expected_shares = method_shares(truth.active_periods(line.id), 0.0, truth.duration - tail)
    bottleneck = by_location(metrics["bottleneck"])
    for station, (share, sole, shifting) in expected_shares.items():
        got = bottleneck[f"{line.id}/{station}"]
        assert math.isclose(got["share"], share, abs_tol=1e-6), station
        assert math.isclose(got["sole_share"], sole, abs_tol=1e-6), station
        assert math.isclose(got["shifting_share"], shifting, abs_tol=1e-6), station
    assert max(share for share, _, _ in expected_shares.values()) > 0.3


def test_duplicates_late_and_impossible_events_are_counted_not_applied(rig: Rig) -> None:
    site = load_site(EXAMPLE_SITE)
    line_id = site.lines[0].id

    def move(cls: type, eid: str, location: str, part: str, second: float) -> Event:
        return cls(
            v=1,
            id=eid,
            time=START + timedelta(seconds=second),
            site=site.site,
            line=line_id,
            location=location,
            part=part,
        )

    first = [
        move(PartIn, "e1", "raw", "p1", 0),
        move(PartIn, "e2", "raw", "p2", 10),
        move(PartIn, "e3", "raw", "p3", 20),
    ]
    later = [
        move(PartIn, "e2", "raw", "p2", 10),  # duplicate id, in a later record
        move(PartOut, "e4", "raw", "p1", 100),
        move(PartIn, "e5", "raw", "p5", 98),  # out of order by 2 s, in the same record: put in its place
        move(PartOut, "e6", "b-cut", "ghost", 101),  # departure without arrival
        move(PartIn, "e7", "raw", "p7", 200),
        move(PartIn, "e8", "raw", "p8", 150),  # 50 s late: applied at the line's clock, counted as late
    ]
    produce(rig.stack, packed(first, per_record=10), SITE)
    rig.start_worker("worker", processor_idle_release_s="0.5")
    produce(rig.stack, packed(later[:4], per_record=10), SITE)
    produce(rig.stack, packed(later[4:5], per_record=10), SITE)
    # make sure e7 is released (quiet line) before the late e8 arrives
    eventually(lambda: rig.wip().get(f"{line_id}/raw"), lambda n: n == 4, 60, "raw WIP after e7")
    produce(rig.stack, packed(later[5:], per_record=10), SITE)
    rig.wait_wip(all_locations(EXAMPLE_SITE, {f"{line_id}/raw": 5}))

    summed = rows(
        query(rig.target(), 'SELECT sum("count") AS n FROM "data_quality" GROUP BY "location", "reason"')
    )
    counts = {(r["location"], r["reason"]): r["n"] for r in summed}
    assert counts == {("raw", "duplicate"): 1, ("b-cut", "departure without arrival"): 1, ("raw", "late"): 1}
    dwell = by_location(rig.metrics()["flow_time"])[f"{line_id}/raw"]
    assert dwell["count"] == 1 and math.isclose(dwell["mean_s"], 100.0)


def test_worker_killed_with_sigkill_ends_with_the_numbers_of_an_uninterrupted_run(rig: Rig) -> None:
    events, truth = simulate(EXAMPLE_SITE, hours=8, seed=21)
    expected = all_locations(EXAMPLE_SITE, truth.wip)
    produce(rig.stack, packed(events, per_record=20), SITE)
    rig.create_database("reference")
    rig.start_worker("reference", group="reference", database="reference")
    rig.wait_wip(expected, database="reference")

    rig.create_database("killed")
    small_batches = {"processor_batch_size": "2"}
    victim = rig.start_worker("victim", group="killed", database="killed", **small_batches)
    eventually(lambda: rig.wip("killed"), lambda got: bool(got), 60, "first points of the victim")
    victim.kill()
    assert rig.wip("killed") != expected, "the kill must land in the middle of the run"
    # no broker restart: Apache Kafka expires the dead member after the session timeout and hands its
    # partitions to the new worker
    rig.start_worker("restarted", group="killed", database="killed", **small_batches)
    rig.wait_wip(expected, database="killed")
    assert_same_metrics(rig.metrics("reference"), rig.metrics("killed"))


def test_influxdb_down_for_a_minute_delays_points_and_loses_none(rig: Rig) -> None:
    events, truth = simulate(EXAMPLE_SITE, hours=4, seed=31)
    rig.start_worker("worker")

    def chunk(start_h: float, end_h: float) -> list[Event]:
        low, high = START + timedelta(hours=start_h), START + timedelta(hours=end_h)
        return [e for e in events if (low < e.time or start_h == 0) and e.time <= high]

    produce(rig.stack, packed(chunk(0, 2), per_record=200), SITE)
    rig.wait_wip(all_locations(EXAMPLE_SITE, truth_wip_at(truth, 2 * 3600.0)))
    rig.stack.children["influxdb"].stop()
    produce(rig.stack, packed(chunk(2, 3), per_record=200), SITE)
    down_until = time.monotonic() + 60
    eventually(time.monotonic, lambda now: now > down_until - 40, 30, "20 s of outage")
    produce(rig.stack, packed(chunk(3, 4), per_record=200), SITE)
    eventually(time.monotonic, lambda now: now > down_until, 60, "the rest of the minute")
    for worker in rig.workers:
        assert worker.alive(), rig.logs()
    rig.stack.restart("influxdb")
    rig.wait_wip(all_locations(EXAMPLE_SITE, truth_wip_at(truth, 4 * 3600.0)))

    # points computed while InfluxDB was down (event time between hour 2 and 3) arrived after the outage:
    # the latest one before hour 3 holds the WIP of the events up to its own time
    at_3h = int((START + timedelta(hours=3)).timestamp() * 1_000_000)
    found = rows(
        query(
            rig.target(),
            f'SELECT last("parts") AS parts FROM "wip" WHERE time <= {at_3h}u GROUP BY "line", "location"',
        )
    )
    times = {r["time"] for r in found}
    assert len(times) == 1, "a line's points share the batch's event time"
    point_time = START + timedelta(microseconds=times.pop() - int(START.timestamp() * 1_000_000))
    assert point_time > START + timedelta(hours=2), "no point from the outage survived"
    got = {f"{r['line']}/{r['location']}": int(r["parts"]) for r in found}
    assert got == all_locations(EXAMPLE_SITE, wip_from_events(events, point_time))


def test_two_workers_split_the_lines_and_agree_with_one(stack: NativeStack, tmp_path: Path) -> None:
    events, truth = simulate(MULTI_LINE_SITE, hours=3, seed=41)
    expected = all_locations(MULTI_LINE_SITE, truth.wip)
    rig = Rig(stack, tmp_path, MULTI_LINE_SITE)
    try:
        rig.create_database("one")
        rig.create_database("two")
        rig.start_worker("single", group="one", database="one")
        pair = [rig.start_worker(f"pair-{i}", group="two", database="two") for i in (1, 2)]
        eventually(
            lambda: [rig.status(w).get("partitions", []) for w in pair],
            lambda found: all(found) and sorted(found[0] + found[1]) == [0, 1, 2, 3],
            90,
            "the four partitions split between the pair",
        )
        produce(stack, packed(events, per_record=100), load_site(MULTI_LINE_SITE))
        rig.wait_wip(expected, database="one")
        rig.wait_wip(expected, database="two")
        assert_same_metrics(rig.metrics("one"), rig.metrics("two"))
        owned = [set(rig.status(w)["lines"]) for w in pair]
        assert owned[0] | owned[1] == {line.id for line in load_site(MULTI_LINE_SITE).lines}
        assert owned[0] and owned[1] and not owned[0] & owned[1], f"lines per worker: {owned}"
    finally:
        rig.stop()
