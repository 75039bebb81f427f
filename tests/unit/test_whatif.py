"""What-if runs: confidence intervals by hand, the alternatives, the suggested cap against the Factory
Physics best case, and a pull what-if on a recorded push shift against simulating the pull line itself."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.shifts import record_shift
from wipwatch.cli.whatif import read_events
from wipwatch.simulators.fit import fit_shift
from wipwatch.simulators.observation import observe
from wipwatch.simulators.whatif import (
    Estimate,
    Variant,
    as_run,
    conwip,
    faster_bottleneck,
    kanban_caps,
    run_variant,
    smaller_lots,
    suggest_cap,
    with_scenario,
)
from wipwatch.site import Scenario, load_site, parse_site

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).parents[2] / "examples"
START = datetime(2026, 11, 25, 6, tzinfo=UTC)
SHIFT = 8 * 3600.0


def test_estimate_by_hand() -> None:
    e = Estimate.of([10.0, 12.0, 14.0])
    # mean 12, s = 2, t(0.975, 2) = 4.303: half width 4.303 x 2 / sqrt(3) = 4.969
    assert (e.mean, e.n) == (12.0, 3)
    assert e.low == pytest.approx(12 - 4.9687, abs=1e-3) and e.high == pytest.approx(12 + 4.9687, abs=1e-3)
    one = Estimate.of([5.0])
    assert (one.low, one.high) == (5.0, 5.0)
    with pytest.raises(ValueError, match="values"):
        Estimate.of([])


def _serial_push(times: list[float]) -> dict[str, Any]:
    """A push line of deterministic single machines, raw material plenty (400 parts at t = 0)."""
    locations: list[dict[str, Any]] = [{"id": "raw", "kind": "store"}, {"id": "b0", "kind": "buffer"}]
    for i, t in enumerate(times, start=1):
        locations += [
            {"id": f"s{i}", "kind": "station", "process_time": {"mean": t, "dist": "deterministic"}},
            {"id": f"b{i}", "kind": "buffer"},
        ]
    locations[-1] = {"id": "fg", "kind": "store"}
    line = {
        "id": "l1",
        "release": {"policy": "push"},
        "supply": {"at": [0], "lot_size": 400},
        "locations": locations,
    }
    return {"site": "fp", "lines": [line]}


def test_suggested_conwip_level_is_the_critical_wip() -> None:
    # Three deterministic 10 s stations: r_b = 0.1/s, T0 = 30 s, W0 = 3. Best case: TH(w) = min(w/30, 0.1):
    # w = 2 gives 2/3 of the bottleneck rate, w = 3 all of it; pushing 400 parts in gives the full rate.
    site = parse_site(_serial_push([10.0, 10.0, 10.0]))
    base = Variant("as-run", "", site, {})
    suggestion = suggest_cap(base, "l1", "conwip", [1], 3600.0, tolerance=0.05)
    assert suggestion.level == 3
    assert suggestion.today["throughput_per_hour"].mean == pytest.approx(358, abs=2)  # first part at 30 s
    assert suggestion.with_cap is not None
    assert suggestion.with_cap["throughput_per_hour"].mean == pytest.approx(358, abs=2)
    # Little: CONWIP keeps 3 parts released where push released all 400 at once
    assert suggestion.with_cap["released_wip"].mean < 4 < suggestion.today["released_wip"].mean
    # a 40 % tolerance accepts w = 2 (2/3 of the rate, 240/h)
    assert suggest_cap(base, "l1", "conwip", [1], 3600.0, tolerance=0.4).level == 2


def test_suggested_kanban_caps_on_an_unbalanced_line() -> None:
    # 10 s then 20 s: the second station sets the pace; a buffer of 1 in front of it keeps it busy.
    site = parse_site(_serial_push([10.0, 20.0]))
    suggestion = suggest_cap(Variant("as-run", "", site, {}), "l1", "kanban", [1], 3600.0)
    assert suggestion.level == 1
    assert suggestion.with_cap is not None
    assert suggestion.with_cap["throughput_per_hour"].mean == pytest.approx(179, abs=2)


def test_alternatives_change_what_they_say() -> None:
    site = parse_site(_serial_push([10.0, 20.0]))
    base = Variant("as-run", "", site, {"l1": [(0.0, 400, "A"), (1800.0, 100, "A")]})
    lots = smaller_lots(base, 4, 3600.0)
    # 400 at 0 until the next delivery at 1800 s: 4 lots of 100, 450 s apart; the last until the end
    assert lots.deliveries["l1"] == [
        (0.0, 100, "A"), (450.0, 100, "A"), (900.0, 100, "A"), (1350.0, 100, "A"),
        (1800.0, 25, "A"), (2250.0, 25, "A"), (2700.0, 25, "A"), (3150.0, 25, "A"),
    ]  # fmt: skip
    capped = conwip(base, {"l1": 4})
    assert capped.site.line("l1").release.wip_cap == 4 and capped.deliveries == base.deliveries
    kanban = kanban_caps(base, {"l1": 2})
    assert {loc.cap for loc in kanban.site.line("l1").locations if loc.kind.value == "buffer"} == {2}
    scenario = with_scenario(base, "jit", Scenario(supply={"kanbans": 2, "lot_size": 5}))  # type: ignore[arg-type]
    assert "l1" not in scenario.deliveries  # a new supply replaces the replayed deliveries


def _record(site_file: str, seed: int, path: Path) -> None:
    record_shift(load_site(EXAMPLES / site_file), seed, path, SHIFT)


def test_faster_bottleneck_on_a_fitted_shift(tmp_path: Path) -> None:
    site = load_site(EXAMPLES / "mass-production.yaml")
    _record("mass-production.yaml", 1, tmp_path / "push.rec")
    events, _, _ = read_events(tmp_path / "push.rec", site)
    model = fit_shift(observe(events, site, duration=SHIFT))
    faster = faster_bottleneck(as_run(model), model, 0.2)
    assert "brackets/press" in faster.description  # press: 50 s / 0.96 availability, 69 parts/h
    fitted = {loc.id: loc for loc in model.site.line("brackets").locations}
    press = faster.site.line("brackets").location("press")
    assert press.process_time is not None and fitted["press"].process_time is not None
    assert press.process_time.mean == pytest.approx(0.8 * fitted["press"].process_time.mean)


@pytest.mark.slow
def test_pull_what_if_on_recorded_push_shifts_predicts_lean_pull(tmp_path: Path) -> None:
    """Fitted mass-production shifts + lean-pull's release and supply vs simulating lean-pull directly.

    WIP and lead time within 10 %. Each recorded shift carries its own customer orders (one shift's
    order count differs from the long-run 50/h by a few percent, and a pull line's lead time follows), so
    the prediction is the mean over three recorded shifts, as lean-pull's figure is its mean over seeds.
    """
    pull = load_site(EXAMPLES / "lean-pull.yaml")
    pull_line = pull.line("brackets")
    seeds = range(1, 9)
    direct = run_variant(Variant("lean-pull", "", pull, {}), seeds, SHIFT)["brackets"]
    mass = load_site(EXAMPLES / "mass-production.yaml")
    predicted: dict[str, list[float]] = {"avg_wip": [], "mean_lead_time_s": [], "throughput_per_hour": []}
    for shift in (1, 2, 3):
        _record("mass-production.yaml", shift, tmp_path / f"push-{shift}.rec")
        events, _, _ = read_events(tmp_path / f"push-{shift}.rec", mass)
        model = fit_shift(observe(events, mass, duration=SHIFT))
        scenario = Scenario(release=pull_line.release, supply=pull_line.supply)
        runs = run_variant(with_scenario(as_run(model), "pull", scenario), seeds, SHIFT)["brackets"]
        for figure, values in predicted.items():
            values.append(runs[figure].mean)
    for figure, values in predicted.items():
        assert statistics.fmean(values) == pytest.approx(direct[figure].mean, rel=0.10), figure
    # and the push shift itself held several times that WIP
    assert model.lines["brackets"].observed["avg_wip"] > 4 * direct["avg_wip"].mean
