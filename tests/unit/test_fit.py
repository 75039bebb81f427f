"""Fitting a model to a recorded shift: the recording read back equals the ground truth, the pieces are
hand-checked, and the fitted model of a simulator shift reproduces its source."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.shifts import record_shift
from wipwatch.cli.whatif import read_events
from wipwatch.simulators.fit import fit_distribution, fit_shift, left_censored_weights
from wipwatch.simulators.line import simulate_site
from wipwatch.simulators.observation import observe
from wipwatch.simulators.truth import GroundTruth
from wipwatch.simulators.whatif import as_run, run_variant
from wipwatch.site import Site, load_site

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).parents[2] / "examples"
START = datetime(2026, 11, 25, 6, tzinfo=UTC)
SHIFT = 8 * 3600.0


def record(site: Site, seed: int, path: Path) -> GroundTruth:
    """One simulated 8-hour shift written as a recording."""
    return record_shift(site, seed, path, SHIFT)


def test_recording_read_back_equals_the_ground_truth(tmp_path: Path) -> None:
    site = load_site(EXAMPLES / "multi-line-site.yaml")
    truth = record(site, 3, tmp_path / "shift.rec")
    events, ignored, unreadable = read_events(tmp_path / "shift.rec", site)
    assert ignored == 0 and unreadable == [] and len(events) == truth.events
    shift = observe(events, site, duration=SHIFT)
    for line in site.lines:
        seen, real = shift.lines[line.id].summary(), truth.line_summary(line.id)
        assert seen["shipped"] == real["shipped"]
        for figure in ("throughput_per_hour", "avg_wip", "mean_lead_time_s", "mean_cycle_time_s"):
            assert seen[figure] == pytest.approx(real[figure], rel=1e-9, abs=1e-6), (line.id, figure)
        for loc in line.locations:
            key = f"{line.id}/{loc.id}"
            assert shift.lines[line.id].avg_wip(loc.id) == pytest.approx(
                truth.locations[key].average(SHIFT), abs=1e-6
            )


def test_fit_distribution_picks_the_family() -> None:
    rng = random.Random(7)
    assert fit_distribution([40.0] * 50).dist == "deterministic"
    exp = fit_distribution([rng.expovariate(1 / 30) for _ in range(3000)])
    assert exp.dist == "exponential" and exp.mean == pytest.approx(30, rel=0.05)
    shape = 1 / 0.5**2
    gam = fit_distribution([rng.gammavariate(shape, 40 / shape) for _ in range(3000)])
    assert gam.dist == "gamma" and gam.mean == pytest.approx(40, rel=0.03)
    assert gam.cv == pytest.approx(0.5, rel=0.05)
    logn = fit_distribution([rng.lognormvariate(4.4, 0.39) for _ in range(3000)])
    assert logn.dist == "lognormal" and logn.cv == pytest.approx(0.4, rel=0.06)
    with pytest.raises(ValueError, match="values"):
        fit_distribution([])


def test_left_censored_weights_by_hand() -> None:
    # values 10 (exact), 8 (censored: X <= 8), 6 (exact), 4 (exact), descending:
    # at 10: 1 of 4 at risk -> mass 1/4, S = 3/4; 8 censored leaves; at 6: 1 of 2 -> 3/8, S = 3/8;
    # at 4: 1 of 1 -> 3/8. The censored value's mass went below 8.
    points, masses = left_censored_weights([10, 8, 6, 4], [True, False, True, True])
    assert points == [10, 6, 4]
    assert masses == pytest.approx([0.25, 0.375, 0.375])
    assert left_censored_weights([5.0], [False]) == ([], [])


def test_fit_reads_the_shift_it_was_given(tmp_path: Path) -> None:
    site = load_site(EXAMPLES / "lean-pull.yaml")
    record(site, 2, tmp_path / "pull.rec")
    events, _, _ = read_events(tmp_path / "pull.rec", site)
    model = fit_shift(observe(events, site, duration=SHIFT))
    line = model.site.line("brackets")
    # the supplier's kanban rule is recognised: 2 cards of 5, 5 minutes
    assert line.supply is not None and (line.supply.kanbans, line.supply.lot_size) == (2, 5)
    assert line.supply.lead_time == pytest.approx(300, abs=1e-3)
    assert model.lines["brackets"].deliveries is None
    stations = {s.station: s for s in model.lines["brackets"].stations}
    assert stations["paint"].process_time.dist == "deterministic"
    assert stations["paint"].process_time.mean == pytest.approx(40)
    assert stations["paint"].changeover is not None and stations["paint"].changeover.mean == pytest.approx(60)
    assert stations["cut"].source == "states" and stations["cut"].process_time.mean == pytest.approx(
        40, rel=0.1
    )
    assert stations["weld"].source == "dwell" and stations["weld"].censored > 0  # 2 machines, kanban blocks
    assert stations["weld"].process_time.mean == pytest.approx(90, rel=0.1)
    assert line.demand_per_hour == pytest.approx(50, rel=0.15)


def test_a_schedule_is_replayed_as_recorded(tmp_path: Path) -> None:
    site = load_site(EXAMPLES / "mass-production.yaml")
    record(site, 1, tmp_path / "push.rec")
    events, _, _ = read_events(tmp_path / "push.rec", site)
    model = fit_shift(observe(events, site, duration=SHIFT))
    deliveries = model.lines["brackets"].deliveries
    assert deliveries is not None
    assert [(t, n) for t, n, _ in deliveries] == [(0.0, 200), (14400.0, 200)]


# Shipped examples: (file, recorded shifts, seeds per re-simulation). More shifts where a line's figures
# vary a lot from shift to shift: lean-line's press runs at 87 % load with finished goods a random walk;
# multi-line-site's machining runs its lathe and mill near 90 %, where a few percent on a fitted mean
# moves WIP by a quarter (docs/benchmarking.md, "Limits").
REPRODUCE = [
    ("mass-production.yaml", 8, 3),
    ("lean-pull.yaml", 8, 3),
    ("lean-line.yaml", 10, 3),
    ("multi-line-site.yaml", 8, 4),
]


@pytest.mark.slow
@pytest.mark.parametrize(("example", "shifts", "seeds"), REPRODUCE)
def test_fitted_model_reproduces_its_source(tmp_path: Path, example: str, shifts: int, seeds: int) -> None:
    """Recorded vs re-simulated throughput, time-average WIP and mean lead time within 5 %, over seeds.

    Each recorded shift is fitted on its own and its fitted model re-simulated with other seeds; the means
    over the shifts are compared (one shift alone differs from its model by its own luck).
    """
    site = load_site(EXAMPLES / example)
    recorded: dict[tuple[str, str], list[float]] = {}
    simulated: dict[tuple[str, str], list[float]] = {}
    for seed in range(1, shifts + 1):
        record(site, seed, tmp_path / f"shift-{seed}.rec")
        events, _, _ = read_events(tmp_path / f"shift-{seed}.rec", site)
        model = fit_shift(observe(events, site, duration=SHIFT))
        runs = run_variant(as_run(model), range(100, 100 + seeds), SHIFT)
        for line in site.lines:
            for figure in ("throughput_per_hour", "avg_wip", "mean_lead_time_s"):
                recorded.setdefault((line.id, figure), []).append(model.lines[line.id].observed[figure])
                simulated.setdefault((line.id, figure), []).append(runs[line.id][figure].mean)
    for key, values in recorded.items():
        assert statistics.fmean(simulated[key]) == pytest.approx(statistics.fmean(values), rel=0.05), key


def test_hostile_event_streams_never_break_the_fit() -> None:
    """Random events of the site's locations in any order: departures without arrivals, states of
    buffers, zero-length repairs, duplicates. The observation never goes negative, the fit never raises,
    and the fitted site is valid and runs."""
    from datetime import timedelta

    from wipwatch.events import Event, PartIn, PartOut, StationState
    from wipwatch.site import Site as SiteModel

    site = load_site(EXAMPLES / "multi-line-site.yaml")
    rng = random.Random(11)
    states = ("working", "down", "changeover", "idle")
    for _ in range(30):
        events: list[Event] = []
        for n in range(rng.randint(1, 400)):
            line = rng.choice(site.lines)
            loc = rng.choice(line.locations).id
            common = {
                "v": 1,
                "id": f"e{n}",
                "time": START + timedelta(seconds=rng.choice([0.0, 1.0, rng.uniform(0, 7200)])),
                "site": site.site,
                "line": line.id,
                "location": loc,
            }
            part = f"p{rng.randint(1, 12)}"
            kind = rng.random()
            if kind < 0.35:
                events.append(PartIn(**common, part=part, sku=rng.choice(["A", "B"])))
            elif kind < 0.7:
                events.append(PartOut(**common, part=part, sku="A"))
            else:
                events.append(StationState(**common, state=rng.choice(states), part=rng.choice([None, part])))
        shift = observe(events, site, start=START, duration=7200.0)
        for line_obs in shift.lines.values():
            summary = line_obs.summary()
            assert all(value >= 0 for value in summary.values()), summary
        model = fit_shift(shift)
        SiteModel.model_validate(model.site.model_dump())
        simulate_site(model.site, lambda e: None, 1, 600.0, start=START, deliveries=model.deliveries)


def test_duplicates_and_damaged_lines_in_a_recording(tmp_path: Path) -> None:
    """A live recording can hold an event twice (QoS 1 redelivery), other topics and a cut last line:
    the duplicates and strangers are ignored and counted, the cut line reported, the figures exact."""
    import gzip

    site = load_site(EXAMPLES / "lean-pull.yaml")
    clean = tmp_path / "clean.rec"
    truth = record_shift(site, 4, clean, 3600.0)
    lines = gzip.decompress(clean.read_bytes()).splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    doubled = [header] + [x for i, line in enumerate(body) for x in ([line, line] if i % 7 == 0 else [line])]
    doubled.insert(5, b'{"t": 1.0, "topic": "wipwatch/alerts/x", "qos": 1, "payload": "{}"}\n')
    doubled.append(b'{"t": 2.0, "topic": "wipwatch/bracket-plant/brackets/cut/in", "qos": 1, "payl')
    damaged = tmp_path / "damaged.rec"
    damaged.write_bytes(gzip.compress(b"".join(doubled)))
    events, ignored, unreadable = read_events(damaged, site)
    assert len(events) == truth.events
    assert ignored == len(range(0, len(body), 7)) + 1  # every 7th line twice, plus the alert
    assert len(unreadable) == 1 and "cut mid-line" in unreadable[0]
    seen = observe(events, site, duration=3600.0).lines["brackets"].summary()
    assert seen["avg_wip"] == pytest.approx(truth.line_summary("brackets")["avg_wip"], rel=1e-9)
