"""Every Grafana panel query and the live board's snapshot, run against a real InfluxDB.

InfluxDB is filled with points of every measurement in the processors' contract (docs/metrics.md),
written here by hand through wipwatch.influx, so the expected numbers are known without the processors.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_SITE
from wipwatch.alert_rules import expand_rules
from wipwatch.dashboards.alerting import GrafanaRule, grafana_rules
from wipwatch.dashboards.board.snapshot import INFLUX_ERROR, SnapshotSource
from wipwatch.dashboards.export import build_all
from wipwatch.dashboards.influxql import expand
from wipwatch.influx import InfluxTarget, InfluxWriter, line, query, rows
from wipwatch.retention import MEASUREMENT_FIELDS, RAW_POLICY, ROLLUP_POLICY, ensure_lifecycle, rollup_select
from wipwatch.services import NativeStack
from wipwatch.site import LocationKind, Site, load_site

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = int(datetime(2026, 11, 25, 6, 0, tzinfo=UTC).timestamp() * 1_000_000)
MINUTE = 60_000_000
#: WIP per location at the two sample times (minute 10 and minute 20): the later values are the "latest".
WIP_EARLY = {"raw": 3, "cut": 1, "b-cut": 7, "press": 1, "b-press": 12, "weld": 1, "b-weld": 4}
WIP_LATE = {"raw": 2, "cut": 1, "b-cut": 9, "press": 1, "b-press": 18, "weld": 0, "b-weld": 5}


def contract_lines(site: Site, with_bottleneck: bool = True) -> list[str]:
    """Points of every measurement for the example site; values are simple functions of the location."""
    out: list[str] = []
    line_id = site.lines[0].id
    base = {"site": site.site, "line": line_id}
    for index, loc in enumerate(site.lines[0].locations):
        tags = {**base, "location": loc.id}
        for minute, wip in ((10, WIP_EARLY), (20, WIP_LATE)):
            t = T0 + minute * MINUTE
            parts = wip.get(loc.id, 0)
            out.append(
                line(
                    "wip",
                    {**tags, "kind": loc.kind.value},
                    {"parts": parts, "value": parts * loc.unit_value},
                    t,
                )
            )
            out.append(
                line("queue", tags, {"growth_per_hour": float(index - 3), "since_shrink_s": 60.0 * index}, t)
            )
            out.append(
                line(
                    "flow_time",
                    tags,
                    {"p50_s": 60.0, "p90_s": 90.0, "p99_s": 99.0, "oldest_age_s": 100.0 + index},
                    t,
                )
            )
            out.append(
                line("cost", tags, {"tied_up": parts * loc.unit_value, "holding_cost": minute * 0.5}, t)
            )
            if loc.kind is LocationKind.STATION:
                fields = {"parts_per_hour": 50.0, "demand_per_hour": 55.0, "production_ratio": 50 / 55}
                out.append(line("throughput", tags, {**fields, "total": 2 * minute}, t))
                state = {"state": "working", "working_s": 60.0 * minute, "starved_s": 5.0 * minute}
                out.append(line("station", tags, {**state, "blocked_s": 2.0 * minute, "down_s": 0.0}, t))
                if with_bottleneck:
                    is_press = loc.id == "press"
                    fields = {
                        "momentary": int(is_press),
                        "share": 0.6 if is_press else 0.1,
                        "sole_share": 0.5 if is_press else 0.05,
                        "shifting_share": 0.1 if is_press else 0.05,
                        "window_share": 0.7 if is_press else 0.2,
                        "active_period_s": 300.0 if is_press else 40.0,
                    }
                    out.append(line("bottleneck", tags, fields, t))
    for minute in (10, 20):
        t = T0 + minute * MINUTE
        line_tags = {**base, "location": "_line"}
        fields = {"parts_per_hour": 48.0, "demand_per_hour": 55.0, "production_ratio": 48 / 55}
        out.append(line("throughput", line_tags, fields, t))
        fields = {"p50_s": 600.0, "p90_s": 900.0, "p99_s": 1200.0, "oldest_age_s": 1500.0}
        out.append(line("flow_time", line_tags, fields, t))
        fields = {"littles_law_s": 2700.0, "measured_s": 3000.0, "value_added_ratio": 0.08, "avg_wip": 36.0}
        out.append(line("lead_time", base, fields, t))
    out.append(
        line("data_quality", {**base, "location": "b-cut", "reason": "negative_wip"}, {"count": 1}, T0)
    )
    out += alert_lines(site)
    return out


#: Alert transitions (docs/alerts.md): b-press fired at minute 12 and still fires, b-cut fired at 11 and
#: resolved at 15, the line went silent at 16 and still is.
ALERTS = [
    ("b-press", "wip-over-cap", "warning", 12, 1, 21.0, 20.0),
    ("b-cut", "wip-over-cap", "warning", 11, 1, 22.0, 20.0),
    ("b-cut", "wip-over-cap", "warning", 15, 0, 17.0, 20.0),
    ("_line", "line-silent", "critical", 16, 1, 301.0, 300.0),
]


def alert_lines(site: Site) -> list[str]:
    base = {"site": site.site, "line": site.lines[0].id}
    out = []
    for location, rule, severity, minute, firing, value, threshold in ALERTS:
        tags = {**base, "location": location, "rule": rule, "severity": severity}
        fields = {
            "firing": firing,
            "value": value,
            "threshold": threshold,
            "summary": f"{rule} at {location}",
        }
        out.append(line("alerts", tags, fields, T0 + minute * MINUTE))
    return out


def _write(stack: NativeStack, lines: list[str]) -> InfluxTarget:
    target = InfluxTarget(stack.influx_url, "1", "wipwatch", "wipwatch", "wipwatch", "")
    writer = InfluxWriter(target, batch_size=1000, flush_seconds=0.05)
    writer.write(lines)
    writer.close()
    assert writer.written == len(lines) and writer.rejected == 0
    return target


def _aliases(query_text: str) -> list[str]:
    return re.findall(r'AS "([^"]+)"', query_text.split(" FROM (")[0])


def test_every_panel_query_returns_rows_with_its_columns(stack: NativeStack) -> None:
    site = load_site(EXAMPLE_SITE)
    target = _write(stack, contract_lines(site))
    variables = {"site": site.site, "line": "line1", "retention": RAW_POLICY}
    checked = 0
    for uid, model in build_all(site).items():
        for panel in model["panels"]:
            for t in panel["targets"]:
                sql = expand(
                    t["query"], variables, "'2026-11-25T05:00:00Z'", "'2026-11-25T08:00:00Z'", interval="1m"
                )
                found = rows(query(target, sql))
                where = f"{uid} / {panel['title']} / {t['refId']}"
                assert found, f"no rows: {where}\n{sql}"
                columns = set(found[0])
                assert {"time", *_aliases(t["query"])} <= columns, f"{where}: columns {columns}"
                values = [r[a] for r in found for a in _aliases(t["query"])]
                assert any(v is not None for v in values), f"all values null: {where}"
                checked += 1
    assert checked >= 30  # 11 flow-order bar targets plus every other panel's query


def test_panel_values_match_the_written_points(stack: NativeStack) -> None:
    site = load_site(EXAMPLE_SITE)
    target = _write(stack, contract_lines(site))
    models = build_all(site)
    variables = {"site": site.site, "line": "line1", "retention": RAW_POLICY}

    def run(model_uid: str, title: str, ref: int = 0) -> list[dict[str, Any]]:
        panel = next(p for p in models[model_uid]["panels"] if p["title"] == title)
        sql = expand(
            panel["targets"][ref]["query"], variables, "'2026-11-25T05:00:00Z'", "'2026-11-25T08:00:00Z'"
        )
        return rows(query(target, sql))

    bars = [run("wipwatch-site-overview", "WIP by location (flow order)", i)[0]["parts"] for i in range(7)]
    assert bars == [2, 1, 9, 1, 18, 0, 5]
    # money tied up = sum of latest parts x unit_value: raw 2x4 + b-cut 9x6 + b-press 18x9 + b-weld 5x12
    tied = run("wipwatch-site-overview", "Money tied up in WIP")[0]["tied_up"]
    assert tied == pytest.approx(2 * 4 + 9 * 6 + 18 * 9 + 5 * 12)
    bottlenecks = run("wipwatch-site-overview", "Current bottlenecks")
    press = next(r for r in bottlenecks if r["location"] == "press")
    assert (press["momentary"], press["share"], press["window_share"]) == (1, 0.6, 0.7)
    peaks = {
        r["location"]: r["peak"]
        for r in run("wipwatch-shift-review", "Peak and mean WIP per location over the shift")
    }
    assert peaks["b-press"] == 18 and peaks["raw"] == 3
    active = run("wipwatch-site-overview", "Active alerts")
    assert sorted((r["location"], r["rule"], r["severity"], r["value"], r["time"]) for r in active) == [
        ("_line", "line-silent", "critical", 301.0, T0 + 16 * MINUTE),
        ("b-press", "wip-over-cap", "warning", 21.0, T0 + 12 * MINUTE),
    ]
    [annotation] = models["wipwatch-site-overview"]["annotations"]["list"]
    sql = expand(annotation["query"], variables, "'2026-11-25T05:00:00Z'", "'2026-11-25T08:00:00Z'")
    marks = rows(query(target, sql))
    assert [(r["time"], r["text"], r["rule"]) for r in marks] == [
        (T0 + 11 * MINUTE, "wip-over-cap at b-cut", "wip-over-cap"),
        (T0 + 12 * MINUTE, "wip-over-cap at b-press", "wip-over-cap"),
        (T0 + 16 * MINUTE, "line-silent at _line", "line-silent"),
    ]
    assert {annotation["textColumn"], *annotation["tagsColumn"].split(",")} <= set(marks[0])
    # Factory Physics benchmarks of lean-line from its site file: press 52 s is the bottleneck,
    # r_b = 3600/52 = 69.23/h; T0 = 45 + 52 + 50 + 40 + 30 = 217 s; W0 = 217/52 = 4.173
    bench = run("wipwatch-line-detail", "Throughput vs Factory Physics benchmarks at this WIP (parts/hour)")[
        -1
    ]
    assert bench["throughput"] == pytest.approx(36 / 2700 * 3600)  # 48/h, as the throughput measurement says
    assert bench["practical_worst_case"] == pytest.approx(36 * 3600 / 52 / (217 / 52 - 1 + 36), rel=1e-5)
    assert bench["bottleneck_rate"] == pytest.approx(3600 / 52, rel=1e-5)
    assert bench["worst_case"] == pytest.approx(3600 / 217, rel=1e-5)
    lead = run("wipwatch-line-detail", "Lead time vs Factory Physics benchmarks at this WIP")[-1]
    assert lead["measured"] == 3000.0
    assert lead["practical_worst_case"] == pytest.approx(217 + 35 * 52, rel=1e-5)
    assert lead["best_case"] == pytest.approx(36 * 52, rel=1e-5)


def test_grafana_alert_rule_queries_judge_the_written_points(stack: NativeStack) -> None:
    """Every provisioned Grafana rule's query runs on InfluxDB; its last value against the threshold."""
    site = load_site(EXAMPLE_SITE)
    target = _write(stack, contract_lines(site))

    def judge(rule: GrafanaRule, now_us: int) -> bool | None:
        sql = rule.query.replace(
            "$timeFilter", f"time >= {now_us - rule.range_s * 1_000_000}u AND time <= {now_us}u"
        )
        found = [r for r in rows(query(target, sql)) if r.get(next(k for k in r if k != "time")) is not None]
        if not found:
            return None if rule.no_data == "OK" else True
        value = next(v for k, v in found[-1].items() if k != "time")
        return rule.fires(float(value))

    rules = grafana_rules(site)
    assert len(rules) == len(expand_rules(site)) == 17
    at_21 = T0 + 21 * MINUTE
    fired = {
        f"{r.instance.rule}/{r.instance.location}": judge(r, at_21)
        for r in rules
        if judge(r, at_21) is not None
    }
    # b-press 18 <= cap 20; production ratio 48/55 = 0.87 < 0.9; fg (index 10) grows 10 - 3 = 7 parts/h,
    # 7/55 = 0.13 of demand > 0.1; press momentary both times (the expected bottleneck: no rule), the others
    # never; stations never down (down_s 0); points 1 minute ago: not silent. data-quality: no data
    assert fired == {
        "wip-over-cap/b-cut": False,
        "wip-over-cap/b-press": False,
        "wip-over-cap/b-weld": False,
        "wip-over-cap/b-paint": False,
        "under-production/_line": True,
        "over-production/_line": True,
        **{f"station-down/{s}": False for s in ("cut", "press", "weld", "paint", "pack")},
        **{f"new-bottleneck/{s}": False for s in ("cut", "weld", "paint", "pack")},
        "line-silent/_line": False,
    }
    silent = next(r for r in rules if r.instance.rule == "line-silent")
    assert judge(silent, T0 + 40 * MINUTE) is True  # nothing written for 20 minutes: no data = silent


def test_benchmark_reads_the_live_figures(stack: NativeStack, tmp_path: Path) -> None:
    """`wipwatch benchmark` from InfluxDB: every station worked 1200 s for 40 departures (te = 30 s)."""
    from wipwatch.cli.whatif import _line_inputs_from_influx, benchmark_report
    from wipwatch.settings import load_settings

    site = load_site(EXAMPLE_SITE)
    _write(stack, contract_lines(site))
    settings = load_settings(influx_url=stack.influx_url, site_file=EXAMPLE_SITE, run_dir=tmp_path)
    report = benchmark_report(site, _line_inputs_from_influx(settings, site), 0.95)
    line1 = report["lines"][0]
    assert [s["te_s"] for s in line1["stations"]] == [30.0] * 5
    assert {s["source"] for s in line1["stations"]} == {"observed"}
    # five single 30 s stations: r_b = 120/h, T0 = 150 s, W0 = 5
    assert (line1["r_b_per_hour"], line1["t0_s"], line1["w0"]) == pytest.approx((120.0, 150.0, 5.0))
    # avg_wip 36, Little's Law 2700 s: 48/h; PWC at 36: 36 / 40 x 120 = 108/h, so the bad region
    assert line1["operating_point"] == pytest.approx(
        {"wip": 36.0, "throughput_per_hour": 48.0, "lead_time_s": 3000.0}
    )
    assert line1["region"] == "bad"
    assert line1["at_wip"]["practical_worst"]["throughput_per_hour"] == pytest.approx(108.0)
    # 95 % of 48/h = 45.6/h: w = 45.6 x 4 / 74.4 = 2.45 -> 3 parts; PWC cycle time 150 + 2 x 30 = 210 s
    assert (line1["wip_needed"], line1["lead_time_at_wip_needed_s"]) == (3, pytest.approx(210.0))
    assert "lead time could fall from 50 min to 4 min" in line1["verdict"]


def test_board_snapshot_shows_latest_values_and_dashes_for_missing(stack: NativeStack) -> None:
    site = load_site(EXAMPLE_SITE)
    target = _write(stack, contract_lines(site, with_bottleneck=False))
    clock = {"now": 1000.0}
    source = SnapshotSource(site, target, clock=lambda: clock["now"])
    snap = source.snapshot()
    assert snap["influx_error"] is None
    locations = snap["lines"][0]["locations"]
    assert [loc["id"] for loc in locations] == [loc.id for loc in site.lines[0].locations]
    assert [loc["wip"] for loc in locations] == [2, 1, 9, 1, 18, 0, 5, 0, 0, 0, 0]
    b_press = locations[4]
    assert b_press["value"] == 18 * 9.0 and b_press["cap"] == 20
    assert b_press["growth_per_hour"] == 1.0 and b_press["oldest_age_s"] == 104.0
    assert b_press["bottleneck"] is None  # no bottleneck measurement written: shown as a dash
    assert locations[3]["state"] == "working" and locations[3]["starved_s"] == 100.0
    assert snap["totals"] == {"wip": 36, "tied_up": 2 * 4 + 9 * 6 + 18 * 9 + 5 * 12}
    # active alerts, worst first; the location and the line they concern are marked
    assert [(a["severity"], a["location"], a["since_us"]) for a in snap["alerts"]] == [
        ("critical", "_line", T0 + 16 * MINUTE),
        ("warning", "b-press", T0 + 12 * MINUTE),
    ]
    assert b_press["alert"] == "warning" and locations[2]["alert"] is None  # b-cut resolved
    assert snap["lines"][0]["alert"] == "critical"
    line_view = snap["lines"][0]
    assert (line_view["littles_law_s"], line_view["measured_lead_s"]) == (2700.0, 3000.0)
    assert line_view["throughput_per_hour"] == 48.0
    # lean-line from its site file: r_b = 3600/52 = 69.23/h, W0 = 217/52; at WIP 36 and 48/h the
    # practical worst case makes 36 x 69.23 / (4.173 - 1 + 36) = 63.6/h: the bad region
    bench = line_view["benchmark"]
    assert (bench["r_b_per_hour"], bench["w0"]) == (pytest.approx(3600 / 52), pytest.approx(217 / 52))
    assert bench["wip"] == 36.0 and bench["region"] == "bad"
    assert bench["pwc_throughput_per_hour"] == pytest.approx(36 * 3600 / 52 / (217 / 52 - 1 + 36))
    assert bench["verdict"].startswith("runs at 36 parts of WIP where ")
    # trend: one bucket per minute over the hour before the latest point; the last bucket holds it
    assert len(b_press["trend"]) == 60 and b_press["trend"][-1] == 18
    assert snap["stale_s"] == 0.0
    clock["now"] += 25
    assert source.snapshot()["stale_s"] == 25.0  # no new points: "no data for 25 s"
    _write(stack, [line("wip", {"site": site.site, "line": "line1", "location": "raw", "kind": "store"},
                        {"parts": 4, "value": 16.0}, T0 + 30 * MINUTE)])  # fmt: skip
    again = source.snapshot()
    assert again["stale_s"] == 0.0 and again["lines"][0]["locations"][0]["wip"] == 4


def test_board_snapshot_with_nothing_written_and_with_influx_down(stack: NativeStack) -> None:
    site = load_site(EXAMPLE_SITE)
    target = InfluxTarget(stack.influx_url, "1", "wipwatch", "wipwatch", "wipwatch", "")
    empty = SnapshotSource(site, target).snapshot()
    assert empty["stale_s"] is None and empty["influx_error"] is None
    assert all(loc["wip"] is None for loc in empty["lines"][0]["locations"])
    stack.children["influxdb"].stop()
    down = SnapshotSource(site, target).snapshot()
    assert down["influx_error"] == INFLUX_ERROR, "what failed in words; the URL stays in the log"
    assert down["totals"] == {"wip": None, "tied_up": None}


def test_shift_review_reads_the_rollups_as_it_reads_raw_points(stack: NativeStack) -> None:
    """The contract has one point per series and minute, so a 1-minute rollup equals the raw points:
    every shift-review panel must answer the same from either retention policy (wipwatch/retention.py)."""
    site = load_site(EXAMPLE_SITE)
    target = _write(stack, contract_lines(site))
    ensure_lifecycle(target, "INF", "INF")
    window = "time >= '2026-11-25T05:00:00Z' AND time < '2026-11-25T08:00:00Z'"
    for measurement in MEASUREMENT_FIELDS:  # what the continuous queries do each minute, as a backfill
        query(target, rollup_select("wipwatch", measurement, window))
    model = build_all(site)["wipwatch-shift-review"]
    compared = 0
    for panel in model["panels"]:
        for t in panel["targets"]:
            answers = []
            for policy in (RAW_POLICY, ROLLUP_POLICY):
                variables = {"site": site.site, "line": "line1", "retention": policy}
                sql = expand(t["query"], variables, "'2026-11-25T05:00:00Z'", "'2026-11-25T08:00:00Z'", "1m")
                answers.append(rows(query(target, sql)))
            assert answers[0] and answers[0] == answers[1], panel["title"]
            compared += 1
    assert compared == 7
