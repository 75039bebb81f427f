"""`wipwatch benchmark` and `wipwatch whatif` on recordings: the documented hand calculation, the JSON
they print, and one-line errors for what a user can get wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.shifts import record_shift
from wipwatch.benchmarking import (
    OperatingPoint,
    line_benchmark,
    site_stations,
    station_capacity,
    verdict,
)
from wipwatch.cli.main import app
from wipwatch.errors import RecordingError, SiteFileError
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).parents[2] / "examples"
START = datetime(2026, 11, 25, 6, tzinfo=UTC)


def test_mass_production_verdict_matches_the_hand_calculation() -> None:
    """docs/benchmarking.md, "Worked example": every number there, from the site file and one shift."""
    site = load_site(EXAMPLES / "mass-production.yaml")
    line = site.line("brackets")
    stations = {s.station: s for s in site_stations(line)}
    assert stations["press"].nominal_te_s == pytest.approx(50 / (7200 / 7500))  # 52.083 s
    assert stations["paint"].nominal_te_s == pytest.approx(40 + 60 * 0.48 / 200)  # 40.144 s
    bench = line_benchmark([station_capacity(s)[0] for s in stations.values()])
    assert bench.bottleneck == "press"
    assert bench.r_b * 3600 == pytest.approx(69.12)
    assert bench.t0 == pytest.approx(40 + 52.0833 + 90 + 40.144 + 30, abs=1e-3)  # 252.23 s
    assert bench.w0 == pytest.approx(4.843, abs=1e-3)
    shift = simulate_site(site, lambda e: None, 1, 8 * 3600, start=START).line_summary("brackets")
    assert (round(shift["avg_wip"], 2), shift["throughput_per_hour"]) == (104.10, 49.875)
    assert shift["mean_lead_time_s"] == pytest.approx(7477.6, abs=0.1)
    point = OperatingPoint(shift["avg_wip"], shift["throughput_per_hour"] / 3600, shift["mean_lead_time_s"])
    v = verdict(point, bench, 0.95, 50 / 3600)
    assert v.region == "bad"
    assert v.pwc_th * 3600 == pytest.approx(66.66, abs=0.01)
    assert v.best_ct == pytest.approx(5421.7, abs=0.1) and v.pwc_ct == pytest.approx(5621.8, abs=0.1)
    assert v.worst_th * 3600 == pytest.approx(14.27, abs=0.01)
    assert v.wip_needed == 9  # 47.381 x 3.843 / 21.739 = 8.38
    assert v.lead_time_at_wip_needed_s == pytest.approx(252.23 + 8 * 52.0833, abs=0.01)  # 668.9 s
    assert v.text == (
        "runs at 104 parts of WIP where 9 would give 95 % of the same output; lead time could fall from "
        "2.1 h to 11 min (bad region: 49.9/h vs practical worst case 66.7/h at that WIP; r_b 69.1/h, "
        "T0 4 min, W0 4.8); orders (50.0/h) set the output, not the line"
    )


@pytest.fixture(scope="module")
def push_shift(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("shift") / "push.rec"
    record_shift(load_site(EXAMPLES / "mass-production.yaml"), 1, path)
    return path


def test_benchmark_json_from_a_recording(push_shift: Path) -> None:
    site = str(EXAMPLES / "mass-production.yaml")
    args = ["benchmark", "--site", site, "--recording", str(push_shift), "--duration", "8h", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout)["lines"][0]
    assert line["bottleneck"] == "press"
    sources = {s["station"]: s["source"] for s in line["stations"]}
    assert sources == {
        "cut": "observed",
        "press": "observed",
        "weld": "dwell",
        "paint": "observed",
        "pack": "observed",
    }
    # observed: the press ran 49.6 s a part in that shift (two short repairs) against 52.08 s on paper
    assert line["r_b_per_hour"] == pytest.approx(3600 / 49.60, abs=0.01)  # 72.58/h
    assert line["operating_point"]["wip"] == pytest.approx(104.10, abs=0.01)
    assert line["region"] == "bad" and line["wip_needed"] == 8
    assert line["verdict"].startswith("brackets: runs at 104 parts of WIP where 8 would give 95 %")
    curve = {p["wip"]: p for p in line["curves"]}
    assert curve[1.0]["best_th_per_hour"] == pytest.approx(3600 / line["t0_s"])
    assert max(curve) >= 104


def test_whatif_json_on_a_short_shift(tmp_path: Path) -> None:
    path = tmp_path / "pull.rec"
    site = load_site(EXAMPLES / "lean-pull.yaml")
    truth = record_shift(site, 2, path, 2 * 3600)
    scenarios = tmp_path / "more.yaml"
    scenarios.write_text("all-conwip:\n  description: one loop\n  release: {policy: conwip, wip_cap: 12}\n")
    args = ["whatif", "--site", str(EXAMPLES / "lean-pull.yaml"), "--recording", str(path)]
    result = CliRunner().invoke(
        app, [*args, "--duration", "2h", "--seeds", "3", "--scenarios", str(scenarios), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    recorded = truth.line_summary("brackets")
    fit = report["fit"]["brackets"]
    assert fit["observed"]["avg_wip"] == pytest.approx(recorded["avg_wip"])
    assert fit["supply"] == {"kanbans": 2, "lead_time": pytest.approx(300.0), "lot_size": 5}
    alternatives = report["alternatives"]
    assert {"as-run", "bottleneck -20 %", "lots /2", "all-conwip"} <= set(alternatives)
    as_run = alternatives["as-run"]["brackets"]
    assert as_run["throughput_per_hour"]["n"] == 3
    assert as_run["avg_wip"]["low"] <= as_run["avg_wip"]["mean"] <= as_run["avg_wip"]["high"]
    kinds = {s["kind"] for s in report["suggestions"]}
    assert kinds == {"conwip", "kanban"}
    for s in report["suggestions"]:
        if s["level"] is not None:  # the cap keeps throughput within 5 % of today's, as promised
            assert (
                s["with_cap"]["throughput_per_hour"]["mean"]
                >= 0.95 * s["today"]["throughput_per_hour"]["mean"]
            )


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    site = str(EXAMPLES / "lean-pull.yaml")
    runner = CliRunner()
    missing = runner.invoke(app, ["whatif", "--site", site, "--recording", str(tmp_path / "none.jsonl")])
    assert isinstance(missing.exception, RecordingError) and "no such recording" in str(missing.exception)
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"topic": "other/thing", "payload": "hello"}\n')
    empty = runner.invoke(app, ["benchmark", "--site", site, "--recording", str(junk)])
    assert isinstance(empty.exception, RecordingError)
    assert "no event of site 'bracket-plant'" in str(empty.exception)
    bad = tmp_path / "bad.yaml"
    bad.write_text("x:\n  release: {policy: conwip}\n")
    path = tmp_path / "s.rec"
    record_shift(load_site(site), 1, path, 600)
    wrong = runner.invoke(app, ["whatif", "--site", site, "--recording", str(path), "--scenarios", str(bad)])
    assert isinstance(wrong.exception, SiteFileError)
    assert "bad.yaml" in str(wrong.exception) and "x.release" in str(wrong.exception)
    seeds = runner.invoke(app, ["whatif", "--site", site, "--recording", str(path), "--seeds", "1"])
    assert seeds.exit_code == 2 and "--seeds must be at least 2" in seeds.output
    share = runner.invoke(app, ["benchmark", "--site", site, "--recording", str(path), "--share", "0"])
    assert share.exit_code == 2 and "--share must be in (0, 1]" in share.output
