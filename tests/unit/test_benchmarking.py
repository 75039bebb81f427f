"""Factory Physics internal benchmarking against Hopp & Spearman's Penny Fab tables and hand counts."""

from __future__ import annotations

import math

import pytest

from wipwatch.benchmarking import (
    LineBenchmark,
    OperatingPoint,
    StationCapacity,
    best_case,
    critical_wip,
    line_benchmark,
    nominal_te_s,
    observed_te_s,
    practical_worst_case,
    pwc_wip_for_throughput,
    verdict,
    worst_case,
)

pytestmark = pytest.mark.unit

H = 3600.0  # the Penny Fabs are in hours; the module works in seconds

# Penny Fab One: four stations, one machine each, 2 h per penny: r_b = 0.5 j/h, T0 = 8 h, W0 = 4.
PENNY_ONE = [StationCapacity(f"s{i}", 1, 2 * H) for i in range(1, 5)]
# Penny Fab Two: (machines, hours) = (1, 2), (2, 5), (6, 10), (2, 3): rates 0.5, 0.4, 0.6, 0.67 j/h;
# r_b = 0.4 j/h (station 2), T0 = 20 h, W0 = 8.
PENNY_TWO = [
    StationCapacity("s1", 1, 2 * H),
    StationCapacity("s2", 2, 5 * H),
    StationCapacity("s3", 6, 10 * H),
    StationCapacity("s4", 2, 3 * H),
]

# Published Penny Fab One tables, w = 1..12 (throughput in jobs/h, cycle time in h).
BEST_TH = [0.125, 0.25, 0.375, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
BEST_CT = [8, 8, 8, 8, 10, 12, 14, 16, 18, 20, 22, 24]
PWC_TH = [0.125, 0.2, 0.25, 0.286, 0.3125, 0.333, 0.35, 0.364, 0.375, 0.385, 0.393, 0.4]
PWC_CT = [8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30]


def test_penny_fab_one_parameters() -> None:
    bench = line_benchmark(PENNY_ONE)
    assert bench.r_b * H == pytest.approx(0.5)
    assert bench.t0 / H == pytest.approx(8.0)
    assert bench.w0 == pytest.approx(4.0)
    assert bench.bottleneck == "s1"  # all equal: the first one
    assert critical_wip(bench.r_b, bench.t0) == pytest.approx(4.0)


@pytest.mark.parametrize("w", range(1, 13))
def test_penny_fab_one_tables(w: int) -> None:
    bench = line_benchmark(PENNY_ONE)
    th, ct = best_case(w, bench.r_b, bench.t0)
    assert th * H == pytest.approx(BEST_TH[w - 1])
    assert ct / H == pytest.approx(BEST_CT[w - 1])
    th, ct = practical_worst_case(w, bench.r_b, bench.t0)
    assert th * H == pytest.approx(PWC_TH[w - 1], abs=5e-4)  # the table rounds to 3 decimals
    assert ct / H == pytest.approx(PWC_CT[w - 1])
    th, ct = worst_case(w, bench.r_b, bench.t0)
    assert th * H == pytest.approx(0.125)
    assert ct / H == pytest.approx(8.0 * w)
    # Little's Law holds on every curve: w = TH x CT
    for case in (best_case, practical_worst_case, worst_case):
        th, ct = case(w, bench.r_b, bench.t0)
        assert th * ct == pytest.approx(w)


def test_penny_fab_two_parameters_and_curves() -> None:
    bench = line_benchmark(PENNY_TWO)
    assert bench.r_b * H == pytest.approx(0.4)
    assert bench.t0 / H == pytest.approx(20.0)
    assert bench.w0 == pytest.approx(8.0)
    assert bench.bottleneck == "s2"
    th, ct = best_case(8, bench.r_b, bench.t0)
    assert (th * H, ct / H) == pytest.approx((0.4, 20.0))
    th, ct = practical_worst_case(8, bench.r_b, bench.t0)
    assert (th * H, ct / H) == pytest.approx((8 / 15 * 0.4, 20 + 7 / 0.4))  # 0.2133 j/h, 37.5 h
    th, ct = best_case(20, bench.r_b, bench.t0)
    assert (th * H, ct / H) == pytest.approx((0.4, 50.0))


def test_parallel_alternatives_share_the_flow() -> None:
    # two 80 s stations that each see half the parts carry 90 parts/h together: r = 1 / (0.5 x 80 s)
    stations = [
        StationCapacity("kit", 1, 30.0),
        StationCapacity("asm-a", 1, 80.0, visits=0.5),
        StationCapacity("asm-b", 1, 80.0, visits=0.5),
        StationCapacity("test", 2, 70.0),
    ]
    bench = line_benchmark(stations)
    assert bench.bottleneck == "asm-a"
    assert bench.r_b * H == pytest.approx(90.0)
    assert bench.t0 == pytest.approx(30 + 40 + 40 + 70)


def test_pwc_wip_for_throughput_inverts_the_curve() -> None:
    r_b, t0 = 0.5 / H, 8 * H
    for w in (1, 2, 5, 12):
        th, _ = practical_worst_case(w, r_b, t0)
        assert pwc_wip_for_throughput(th, r_b, t0) == pytest.approx(w)
    assert pwc_wip_for_throughput(0.5 / H, r_b, t0) == math.inf
    assert pwc_wip_for_throughput(0.0, r_b, t0) == 1.0


def test_effective_process_times() -> None:
    # press of the bracket line: 50 s, mtbf 2 h, mttr 5 min: A = 7200/7500 = 0.96, te = 52.083 s
    assert nominal_te_s(50.0, 7200.0, 300.0) == pytest.approx(50 / 0.96)
    # paint: 40 s, a 60 s changeover every 200/0.48 parts
    assert nominal_te_s(40.0, setup_s=60.0, parts_per_setup=200 / 0.48) == pytest.approx(40 + 60 * 0.48 / 200)
    assert nominal_te_s(30.0) == 30.0
    assert observed_te_s(1000.0, 60.0, 300.0, 20) == pytest.approx(68.0)
    assert observed_te_s(0.0, 0.0, 0.0, 0) is None


def test_verdict_hand_counted() -> None:
    # r_b = 72 parts/h (0.02/s), T0 = 250 s: W0 = 5. Today: 100 parts of WIP, 50 parts/h, 2 h lead time.
    bench = LineBenchmark(0.02, 250.0, 5.0, "press")
    v = verdict(OperatingPoint(100.0, 50 / H, 7200.0), bench)
    # PWC at w = 100: 100 / 104 x 72 = 69.2/h > 50/h: "bad" region
    assert v.region == "bad"
    assert v.pwc_th * H == pytest.approx(100 / 104 * 72)
    assert v.best_th * H == pytest.approx(72.0)
    # 95 % of 50/h = 47.5/h; PWC: w = th (W0 - 1)/(r_b - th) = 47.5 x 4 / 24.5 = 7.76 -> 8 parts
    assert v.wip_needed == 8
    # PWC cycle time at 8: 250 + 7/0.02 = 600 s = 10 min
    assert v.lead_time_at_wip_needed_s == pytest.approx(600.0)
    assert v.text.startswith("runs at 100 parts of WIP where 8 would give 95 % of the same output; ")
    assert "lead time could fall from 2.0 h to 10 min" in v.text


def test_verdict_good_region_and_no_saving() -> None:
    bench = LineBenchmark(0.02, 250.0, 5.0, "press")
    v = verdict(OperatingPoint(4.0, 60 / H, 240.0), bench)
    assert v.region == "good"  # PWC at 4: 4/8 x 72 = 36/h < 60/h
    assert v.wip_needed is not None and v.wip_needed >= 4
    assert "it needs its WIP" in v.text
    at_rate = verdict(OperatingPoint(40.0, 72 / H, 2000.0), bench)
    assert at_rate.wip_needed == 76  # 95 % of 72/h is 68.4/h: PWC needs 68.4 x 4 / 3.6 = 76 > 40
    assert "even the practical worst case would need 76 parts" in at_rate.text
    above = verdict(OperatingPoint(40.0, 80 / H, 1800.0), bench)
    assert above.wip_needed is None  # 95 % of 80/h = 76/h > r_b: no finite WIP on the PWC gets there
    assert "no lower WIP keeps 95 %" in above.text
    idle = verdict(OperatingPoint(3.0, 0.0, 0.0), bench)
    assert idle.region == "idle"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: best_case(-1, 1, 1), "w must be"),
        (lambda: best_case(1, 0, 1), "r_b"),
        (lambda: practical_worst_case(0.5, 1, 1), "w must be >= 1"),
        (lambda: worst_case(1, 1, math.inf), "t0"),
        (lambda: StationCapacity("x", 0, 1.0), "machines of 'x'"),
        (lambda: StationCapacity("x", 1, 0.0), "te_s of 'x'"),
        (lambda: line_benchmark([]), "stations must not be empty"),
        (lambda: nominal_te_s(1.0, 10.0, None), "mtbf_s and mttr_s"),
        (lambda: verdict(OperatingPoint(1, 1, 1), LineBenchmark(1, 1, 1, "s"), 0.0), "target_share"),
    ],
)
def test_bad_arguments_name_the_parameter(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


def test_site_stations_and_observed_capacity() -> None:
    from pathlib import Path

    from wipwatch.benchmarking import StationObservation, site_stations, station_capacity
    from wipwatch.site import load_site

    site = load_site(Path(__file__).parents[2] / "examples" / "multi-line-site.yaml")
    assembly = {s.station: s for s in site_stations(site.line("assembly"))}
    # kit routes to two 80 s alternatives: each gets half; test: 70 s / (7200/7800) = 75.83 s on 2 machines
    assert (assembly["asm-a"].nominal_visits, assembly["asm-b"].nominal_visits) == (0.5, 0.5)
    assert assembly["test"].nominal_te_s == pytest.approx(70 * 7800 / 7200)
    # one SKU: the carton changeover never happens
    assert {s.station: s for s in site_stations(site.line("packaging"))}["carton"].nominal_te_s == 20.0
    single = StationObservation("press", 1, 52.0, 1.0, 40, 1800.0, 120.0, 80.0)
    assert station_capacity(single) == (StationCapacity("press", 1, 50.0, 1.0), "observed")  # 2000 s / 40
    pair = StationObservation("weld", 2, 90.0, 1.0, 40, 3000.0, 0.0, 0.0, 88.0)
    assert station_capacity(pair) == (StationCapacity("weld", 2, 88.0, 1.0), "dwell")  # clock: any machine
    early = StationObservation("press", 1, 52.0, 1.0, 9, 450.0, 0.0, 0.0)
    assert station_capacity(early) == (StationCapacity("press", 1, 52.0, 1.0), "site")  # < 10 departures
