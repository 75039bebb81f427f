"""Shift review: one shift (or a replayed recording) summarised over the chosen time range.

Metrics are in event time, so a replay at any speed lands on the shift's own timestamps: pick the shift's
time range (the default is the last 8 hours) and every panel aggregates over exactly that range. Beyond
the raw points' retention (30 days), choose Data = 1-minute rollups (docs/dashboards.md).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from wipwatch.dashboards.influxql import DATASOURCE, InfluxQL, site_filter
from wipwatch.dashboards.panels import grid, line_variable, money_unit, site_variable, sort_desc, unit_is
from wipwatch.measurements import BOTTLENECK, COST, DATA_QUALITY, FLOW_TIME, STATION, THROUGHPUT, WIP
from wipwatch.retention import RAW_POLICY, ROLLUP_POLICY
from wipwatch.site import Site

UID = "wipwatch-shift-review"


def shift_totals() -> stat.Panel:
    return (
        stat.Panel()
        .title("Line throughput over the shift (mean, parts/hour) vs demand")
        .datasource(DATASOURCE)
        .grid_pos(grid(0, 0, 12, 5))
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["mean"]))
        .with_target(
            InfluxQL(
                'SELECT mean("parts_per_hour") AS "throughput", mean("demand_per_hour") AS "demand", '
                f'mean("production_ratio") AS "production_ratio" FROM "$retention"."{THROUGHPUT}" '
                f"WHERE {site_filter()} AND \"location\" = '_line' GROUP BY time($__interval)"
            )
        )
        .override_by_name("production_ratio", [unit_is("percentunit")])
    )


def peak_wip() -> barchart.Panel:
    return (
        barchart.Panel()
        .title("Peak and mean WIP per location over the shift")
        .datasource(DATASOURCE)
        .grid_pos(grid(12, 0, 12, 10))
        .x_field("location")
        .with_target(
            InfluxQL(
                f'SELECT max("parts") AS "peak", mean("parts") AS "mean" FROM "$retention"."{WIP}" '
                f'WHERE {site_filter()} GROUP BY "location"'
            ).table()
        )
    )


def flow_time_over_shift() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("End-to-end flow time p90 over the shift")
        .datasource(DATASOURCE)
        .grid_pos(grid(0, 5, 12, 5))
        .unit("s")
        .with_target(
            InfluxQL(
                'SELECT max("p90_s") AS "p90", max("oldest_age_s") AS "oldest" '
                f'FROM "$retention"."{FLOW_TIME}" '
                f"WHERE {site_filter()} AND \"location\" = '_line' GROUP BY time($__interval)"
            )
        )
    )


def bottleneck_shares() -> table.Panel:
    return (
        table.Panel()
        .title("Bottleneck shares over the shift")
        .description(
            "Share of time each station was the bottleneck by the active-period method: sole (alone) and "
            "shifting (the overlap of consecutive bottleneck periods, counted for both stations, so shares "
            "can add up to more than 100 %)."
        )
        .datasource(DATASOURCE)
        .grid_pos(grid(0, 10, 12, 8))
        .with_target(
            InfluxQL(
                'SELECT last("share") AS "share", "sole_share" AS "sole_share", '
                '"shifting_share" AS "shifting_share" '
                f'FROM "$retention"."{BOTTLENECK}" WHERE {site_filter()} GROUP BY "line", "location"'
            ).table()
        )
        .transformations(sort_desc("share"))
        .override_by_name("share", [unit_is("percentunit")])
        .override_by_name("sole_share", [unit_is("percentunit")])
        .override_by_name("shifting_share", [unit_is("percentunit")])
    )


def station_losses() -> table.Panel:
    return (
        table.Panel()
        .title("Station time lost over the shift")
        .description("Increase of starved, blocked and down seconds within the time range.")
        .datasource(DATASOURCE)
        .grid_pos(grid(12, 10, 12, 8))
        .unit("s")
        .with_target(
            InfluxQL(
                'SELECT spread("starved_s") AS "starved", spread("blocked_s") AS "blocked", '
                'spread("down_s") AS "down", spread("working_s") AS "working" '
                f'FROM "$retention"."{STATION}" WHERE {site_filter()} GROUP BY "line", "location"'
            ).table()
        )
    )


def cost_of_shift(site: Site) -> stat.Panel:
    return (
        stat.Panel()
        .title("Holding cost accrued during the shift")
        .datasource(DATASOURCE)
        .grid_pos(grid(0, 18, 12, 5))
        .unit(money_unit(site))
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(
            InfluxQL(
                'SELECT sum("accrued") AS "holding_cost" FROM (SELECT spread("holding_cost") AS "accrued" '
                f'FROM "$retention"."{COST}" WHERE {site_filter()} GROUP BY "line", "location")'
            ).table()
        )
    )


def data_quality_by_reason() -> table.Panel:
    return (
        table.Panel()
        .title("Data-quality issues during the shift")
        .datasource(DATASOURCE)
        .grid_pos(grid(12, 18, 12, 5))
        .with_target(
            InfluxQL(
                f'SELECT sum("count") AS "count" FROM "$retention"."{DATA_QUALITY}" '
                f'WHERE {site_filter()} GROUP BY "line", "location", "reason"'
            ).table()
        )
    )


def retention_variable() -> dash.CustomVariable:
    """``$retention``: raw points (kept 30 days) or 1-minute rollups (kept 400 days) for longer ranges.

    Both carry the same measurement, tag and field names (wipwatch/retention.py), so every panel reads
    either; over a long range the rollups are what is still there, and far fewer points to draw.
    """
    raw = model.VariableOption(selected=True, text=f"raw points ({RAW_POLICY})", value=RAW_POLICY)
    rollup = model.VariableOption(
        selected=False, text=f"1-minute rollups ({ROLLUP_POLICY})", value=ROLLUP_POLICY
    )
    return (
        dash.CustomVariable("retention")
        .label("Data")
        .values(
            f"raw points ({RAW_POLICY}) : {RAW_POLICY}, 1-minute rollups ({ROLLUP_POLICY}) : {ROLLUP_POLICY}"
        )
        .options([raw, rollup])
        .current(raw)
    )


def build(site: Site) -> dash.Dashboard:
    """The shift review dashboard: pick the shift's (event-)time range, read its summary."""
    return (
        dash.Dashboard(f"wipwatch — {site.name or site.site} shift review")
        .uid(UID)
        .tags(["wipwatch"])
        .description("A shift or a replayed recording, summarised over the chosen time range.")
        .time("now-8h", "now")
        .with_variable(site_variable(site))
        .with_variable(line_variable(site, multi=True))
        .with_variable(retention_variable())
        .with_panel(shift_totals())
        .with_panel(flow_time_over_shift())
        .with_panel(peak_wip())
        .with_panel(bottleneck_shares())
        .with_panel(station_losses())
        .with_panel(cost_of_shift(site))
        .with_panel(data_quality_by_reason())
    )
