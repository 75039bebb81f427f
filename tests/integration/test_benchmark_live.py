"""The live path of `wipwatch benchmark`: a simulated shift through real processors into a real InfluxDB,
benchmarked from InfluxDB, equals the benchmark computed from the same events as a recording."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.processors_rig import START, Rig, packed, produce
from wipwatch.cli.whatif import _line_inputs_from_influx, _line_inputs_from_shift, benchmark_report
from wipwatch.events import Event
from wipwatch.services import NativeStack
from wipwatch.settings import REPO_ROOT, load_settings
from wipwatch.simulators.line import simulate_site
from wipwatch.simulators.observation import observe
from wipwatch.site import load_site

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE_FILE = REPO_ROOT / "examples" / "mass-production.yaml"


def test_live_benchmark_equals_the_benchmark_of_the_same_events(stack: NativeStack, tmp_path: Path) -> None:
    site = load_site(SITE_FILE)
    events: list[Event] = []
    truth = simulate_site(site, events.append, seed=1, duration=8 * 3600, start=START)
    rig = Rig(stack, tmp_path, SITE_FILE)
    try:
        produce(stack, packed(events, per_record=200), site)
        rig.start_worker("worker")
        expected = {
            f"{line.id}/{loc.id}": truth.wip.get(f"{line.id}/{loc.id}", 0)
            for line, loc in site.iter_locations()
        }
        rig.wait_wip(expected, timeout=300)
        settings = load_settings(influx_url=stack.influx_url, site_file=SITE_FILE, run_dir=tmp_path)
        live = benchmark_report(site, _line_inputs_from_influx(settings, site), 0.95)["lines"][0]
    finally:
        rig.stop()
    # the processors' clock runs from the line's first event to its last
    last = max(e.time for e in events).timestamp() - START.timestamp()
    recorded = benchmark_report(site, _line_inputs_from_shift(observe(events, site, START, last)), 0.95)
    offline = recorded["lines"][0]
    for got, want in zip(live["stations"], offline["stations"], strict=True):
        assert got["source"] == want["source"], got["station"]
        assert got["te_s"] == pytest.approx(want["te_s"], rel=1e-5), got["station"]
    assert (live["r_b_per_hour"], live["t0_s"], live["bottleneck"]) == (
        pytest.approx(offline["r_b_per_hour"], rel=1e-5),
        pytest.approx(offline["t0_s"], rel=1e-5),
        "press",
    )
    point, want = live["operating_point"], offline["operating_point"]
    assert point["wip"] == pytest.approx(want["wip"], rel=0.02)
    assert point["throughput_per_hour"] == pytest.approx(want["throughput_per_hour"], rel=0.02)
    assert point["lead_time_s"] == pytest.approx(want["lead_time_s"], rel=1e-6)
    assert (live["region"], live["wip_needed"]) == (offline["region"], offline["wip_needed"]) == ("bad", 8)
