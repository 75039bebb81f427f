"""Line detail: one line's WIP, queues, flow times, bottleneck and station states over time."""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import barchart, statetimeline, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from wipwatch.benchmarking import (
    LineBenchmark,
    line_benchmark,
    site_stations,
    station_capacity,
)
from wipwatch.dashboards.influxql import DATASOURCE, InfluxQL, site_filter
from wipwatch.dashboards.panels import cap_override, grid, line_variable, money_unit, site_variable, unit_is
from wipwatch.measurements import BOTTLENECK, COST, FLOW_TIME, LEAD_TIME, QUEUE, STATION, THROUGHPUT, WIP
from wipwatch.site import Site

UID = "wipwatch-line-detail"

#: Grafana groups by the panel's interval; fill(previous) because a metric is written only when it changes.
_BY_LOCATION = 'GROUP BY time($__interval), "location" fill(previous)'
_BY_TIME = "GROUP BY time($__interval) fill(previous)"


def _line_total() -> str:
    return f"{site_filter()} AND \"location\" = '_line'"


def _per_location() -> str:
    return f"{site_filter()} AND \"location\" != '_line'"


def wip_per_location(site: Site) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title("WIP per location")
        .description("Parts at each location; dashed lines are the kanban caps from the site file.")
        .datasource(DATASOURCE)
        .grid_pos(grid(0, 0, 24, 9))
        .min(0)
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
        .with_target(
            InfluxQL(
                f'SELECT last("parts") AS "parts" FROM "{WIP}" WHERE {site_filter()} {_BY_LOCATION}'
            ).alias("$tag_location")
        )
    )
    seen: set[str] = set()
    for _line, loc in site.iter_locations():
        if loc.cap is not None and loc.id not in seen:
            seen.add(loc.id)
            panel = panel.override_by_name(loc.id, cap_override(loc.cap))
    return panel


def queue_growth() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Queue growth (parts/hour)")
        .description("dN/dt over the sliding window; above zero the queue is piling up.")
        .datasource(DATASOURCE)
        .grid_pos(grid(0, 9, 12, 8))
        .with_target(
            InfluxQL(
                f'SELECT last("growth_per_hour") AS "growth_per_hour" FROM "{QUEUE}" '
                f"WHERE {site_filter()} {_BY_LOCATION}"
            ).alias("$tag_location")
        )
    )


def flow_time_percentiles() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("End-to-end flow time p50 / p90 / p99")
        .datasource(DATASOURCE)
        .grid_pos(grid(12, 9, 12, 8))
        .unit("s")
        .with_target(
            InfluxQL(
                'SELECT last("p50_s") AS "p50", last("p90_s") AS "p90", last("p99_s") AS "p99" '
                f'FROM "{FLOW_TIME}" WHERE {_line_total()} {_BY_TIME}'
            )
        )
    )


def oldest_part_age() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Age of the oldest part waiting")
        .datasource(DATASOURCE)
        .grid_pos(grid(0, 17, 12, 8))
        .unit("s")
        .with_target(
            InfluxQL(
                f'SELECT last("oldest_age_s") AS "oldest_age_s" FROM "{FLOW_TIME}" '
                f"WHERE {_per_location()} {_BY_LOCATION}"
            ).alias("$tag_location")
        )
    )


def throughput_vs_takt() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Throughput vs customer demand (parts/hour)")
        .description("Line throughput against demand_per_hour from the site file (takt = 3600 / demand).")
        .datasource(DATASOURCE)
        .grid_pos(grid(12, 17, 12, 8))
        .with_target(
            InfluxQL(
                'SELECT last("parts_per_hour") AS "throughput", last("demand_per_hour") AS "demand" '
                f'FROM "{THROUGHPUT}" WHERE {_line_total()} {_BY_TIME}'
            )
        )
    )


def bottleneck_timeline() -> statetimeline.Panel:
    return (
        statetimeline.Panel()
        .title("Longest running active period (live bottleneck signal)")
        .description(
            "Red while a station's running active period is the longest on the line: the live signal. "
            "The active-period method's bottleneck shares are in the site overview and the shift review."
        )
        .datasource(DATASOURCE)
        .grid_pos(grid(0, 25, 24, 7))
        .mappings(
            [
                model.ValueMap(
                    options={
                        "0": model.ValueMappingResult(text=" ", color="transparent", index=0),
                        "1": model.ValueMappingResult(text="bottleneck", color="red", index=1),
                    },
                )
            ]
        )
        .with_target(
            InfluxQL(
                f'SELECT last("momentary") AS "momentary" FROM "{BOTTLENECK}" '
                f"WHERE {site_filter()} {_BY_LOCATION}"
            ).alias("$tag_location")
        )
    )


def station_states() -> statetimeline.Panel:
    return (
        statetimeline.Panel()
        .title("Station states")
        .datasource(DATASOURCE)
        .grid_pos(grid(0, 32, 24, 7))
        .with_target(
            InfluxQL(
                f'SELECT last("state") AS "state" FROM "{STATION}" WHERE {site_filter()} {_BY_LOCATION}'
            ).alias("$tag_location")
        )
    )


def starved_blocked() -> barchart.Panel:
    return (
        barchart.Panel()
        .title("Station time: working, starved, blocked, down")
        .description("Seconds per state since the start of the run; starved and blocked are derived.")
        .datasource(DATASOURCE)
        .grid_pos(grid(0, 39, 12, 9))
        .unit("s")
        .x_field("location")
        .stacking(common.StackingMode.NORMAL)
        .with_target(
            InfluxQL(
                'SELECT last("working_s") AS "working", "starved_s" AS "starved", '
                '"blocked_s" AS "blocked", "down_s" AS "down" '
                f'FROM "{STATION}" WHERE {site_filter()} GROUP BY "location"'
            ).table()
        )
        .transformations(
            [model.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}})]
        )
    )


def lead_time() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Lead time: Little's Law vs measured")
        .datasource(DATASOURCE)
        .grid_pos(grid(12, 39, 12, 9))
        .unit("s")
        .with_target(
            InfluxQL(
                'SELECT last("littles_law_s") AS "littles_law", last("measured_s") AS "measured" '
                f'FROM "{LEAD_TIME}" WHERE {site_filter()} {_BY_TIME}'
            )
        )
        .with_target(
            InfluxQL(
                f'SELECT last("value_added_ratio") AS "value_added_ratio" FROM "{LEAD_TIME}" '
                f"WHERE {site_filter()} {_BY_TIME}",
                ref_id="B",
            )
        )
        .override_by_name("value_added_ratio", [unit_is("percentunit")])
    )


def holding_cost(site: Site) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Accumulated holding cost per location")
        .datasource(DATASOURCE)
        .grid_pos(grid(0, 48, 24, 8))
        .unit(money_unit(site))
        .with_target(
            InfluxQL(
                f'SELECT last("holding_cost") AS "holding_cost" FROM "{COST}" '
                f"WHERE {site_filter()} {_BY_LOCATION}"
            ).alias("$tag_location")
        )
    )


def _per_line(
    panel: timeseries.Panel, site: Site, select: Callable[[LineBenchmark], str]
) -> timeseries.Panel:
    """One query per line, with that line's benchmark from its site file; only the chosen line's returns
    rows (``"line" =~ /^$line$/`` and ``"line" = 'id'``)."""
    for index, line in enumerate(site.lines):
        bench = line_benchmark([station_capacity(o)[0] for o in site_stations(line)])
        ref = chr(ord("A") + index % 26) + (str(index // 26) if index >= 26 else "")
        where = f"{site_filter()} AND \"line\" = '{line.id}' {_BY_TIME}"
        panel = panel.with_target(InfluxQL(f'{select(bench)} FROM "{LEAD_TIME}" WHERE {where}', ref_id=ref))
    return panel


def benchmark_throughput(site: Site) -> timeseries.Panel:
    """Throughput against Factory Physics' curves at the line's time-average WIP w (docs/benchmarking.md).

    Practical worst case ``w r_b / (W0 + w - 1)``; best case above W0 ``r_b``; worst case ``1 / T0``.
    Throughput since the start: ``avg_wip / littles_law_s``.
    """
    panel = (
        timeseries.Panel()
        .title("Throughput vs Factory Physics benchmarks at this WIP (parts/hour)")
        .description(
            "Throughput since the start against the bottleneck rate r_b (best case above the critical WIP "
            "W0), the practical worst case at the line's time-average WIP (above it: the good region) and "
            "the worst case 1/T0. r_b and T0 from the site file; `wipwatch benchmark` uses observed times."
        )
        .datasource(DATASOURCE)
        .grid_pos(grid(0, 56, 12, 8))
    )

    def select(bench: LineBenchmark) -> str:
        rb_h, w0, worst_h = bench.r_b * 3600, bench.w0, 3600 / bench.t0
        return (
            'SELECT last("avg_wip") / last("littles_law_s") * 3600 AS "throughput", '
            f'last("avg_wip") * {rb_h:.6g} / ({w0:.6g} - 1 + last("avg_wip")) AS "practical_worst_case", '
            f'last("avg_wip") * 0 + {rb_h:.6g} AS "bottleneck_rate", '
            f'last("avg_wip") * 0 + {worst_h:.6g} AS "worst_case"'
        )

    return _per_line(panel, site, select)


def benchmark_lead_time(site: Site) -> timeseries.Panel:
    """Measured lead time against the cycle-time curves at the line's WIP: PWC ``T0 + (w - 1)/r_b``, best
    ``max(T0, w/r_b)`` shown as ``w/r_b`` (the line runs above W0 whenever it is worth benchmarking)."""
    panel = (
        timeseries.Panel()
        .title("Lead time vs Factory Physics benchmarks at this WIP")
        .description(
            "Measured lead time against the practical-worst-case cycle time T0 + (w-1)/r_b and the best "
            "case w/r_b at the line's time-average WIP w (r_b, T0 from the site file)."
        )
        .datasource(DATASOURCE)
        .grid_pos(grid(12, 56, 12, 8))
        .unit("s")
    )

    def select(bench: LineBenchmark) -> str:
        te_b = 1 / bench.r_b
        return (
            'SELECT last("measured_s") AS "measured", '
            f'{bench.t0:.6g} + (last("avg_wip") - 1) * {te_b:.6g} AS "practical_worst_case", '
            f'last("avg_wip") * {te_b:.6g} AS "best_case"'
        )

    return _per_line(panel, site, select)


def build(site: Site) -> dash.Dashboard:
    """The line detail dashboard (one line at a time, caps from ``site``)."""
    return (
        dash.Dashboard(f"wipwatch — {site.name or site.site} line detail")
        .uid(UID)
        .tags(["wipwatch"])
        .description("One line: WIP, queue growth, flow times, bottleneck, throughput vs takt, stations.")
        .refresh("10s")
        .time("now-6h", "now")
        .with_variable(site_variable(site))
        .with_variable(line_variable(site, multi=False))
        .with_panel(wip_per_location(site))
        .with_panel(queue_growth())
        .with_panel(flow_time_percentiles())
        .with_panel(oldest_part_age())
        .with_panel(throughput_vs_takt())
        .with_panel(bottleneck_timeline())
        .with_panel(station_states())
        .with_panel(starved_blocked())
        .with_panel(lead_time())
        .with_panel(holding_cost(site))
        .with_panel(benchmark_throughput(site))
        .with_panel(benchmark_lead_time(site))
    )
