"""Line detail: one line's WIP, queues, flow times, bottleneck and station states over time."""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, statetimeline, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from wipwatch.dashboards.influxql import DATASOURCE, InfluxQL, site_filter
from wipwatch.dashboards.panels import cap_override, grid, line_variable, money_unit, site_variable, unit_is
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
                f'SELECT last("parts") AS "parts" FROM "wip" WHERE {site_filter()} {_BY_LOCATION}'
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
                f'SELECT last("growth_per_hour") AS "growth_per_hour" FROM "queue" '
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
                f'FROM "flow_time" WHERE {_line_total()} {_BY_TIME}'
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
                f'SELECT last("oldest_age_s") AS "oldest_age_s" FROM "flow_time" '
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
                f'FROM "throughput" WHERE {_line_total()} {_BY_TIME}'
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
                f'SELECT last("momentary") AS "momentary" FROM "bottleneck" '
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
                f'SELECT last("state") AS "state" FROM "station" WHERE {site_filter()} {_BY_LOCATION}'
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
                f'FROM "station" WHERE {site_filter()} GROUP BY "location"'
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
                f'FROM "lead_time" WHERE {site_filter()} {_BY_TIME}'
            )
        )
        .with_target(
            InfluxQL(
                f'SELECT last("value_added_ratio") AS "value_added_ratio" FROM "lead_time" '
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
                f'SELECT last("holding_cost") AS "holding_cost" FROM "cost" '
                f"WHERE {site_filter()} {_BY_LOCATION}"
            ).alias("$tag_location")
        )
    )


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
    )
