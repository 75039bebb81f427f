"""Site overview: where material waits now, which queues grow fastest, what it costs, what limits flow."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common

from wipwatch.dashboards.influxql import DATASOURCE, InfluxAnnotation, InfluxQL, site_filter
from wipwatch.dashboards.panels import (
    cap_override,
    grid,
    line_variable,
    location_alias,
    money_unit,
    site_variable,
    sort_desc,
    unit_is,
)
from wipwatch.measurements import ALERTS, BOTTLENECK, COST, DATA_QUALITY, LEAD_TIME, QUEUE, WIP
from wipwatch.site import Site

UID = "wipwatch-site-overview"


def wip_by_location(site: Site) -> bargauge.Panel:
    """One bar per location in the site file's flow order, coloured against its cap.

    InfluxDB returns grouped series in tag order, not flow order, so each location is its own target:
    Grafana draws a bar gauge's series in target order.
    """
    panel = (
        bargauge.Panel()
        .title("WIP by location (flow order)")
        .description("Parts at each location now; amber from 80% of the kanban cap, red at the cap.")
        .datasource(DATASOURCE)
        .grid_pos(grid(0, 0, 16, 14))
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .show_unfilled(True)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .min(0)
        .unit("none")
    )
    for index, (line, loc) in enumerate(site.iter_locations()):
        alias = location_alias(line, loc.id)
        panel = panel.with_target(
            InfluxQL(
                f'SELECT last("parts") AS "parts" FROM "{WIP}" WHERE {site_filter()} '
                f"AND \"line\" = '{line.id}' AND \"location\" = '{loc.id}'",
                ref_id=f"L{index}",
            ).alias(alias)
        )
        if loc.cap is not None:
            panel = panel.override_by_name(alias, cap_override(loc.cap))
    return panel


def fastest_growing_queues() -> table.Panel:
    return (
        table.Panel()
        .title("Fastest-growing queues")
        .description("Queue growth dN/dt over the sliding window (parts/hour) and time since it last shrank.")
        .datasource(DATASOURCE)
        .grid_pos(grid(16, 0, 8, 7))
        .with_target(
            InfluxQL(
                'SELECT last("growth_per_hour") AS "growth_per_hour", "since_shrink_s" AS "since_shrink_s" '
                f'FROM "{QUEUE}" WHERE {site_filter()} GROUP BY "line", "location"'
            ).table()
        )
        .transformations(sort_desc("growth_per_hour", limit=10))
        .override_by_name("since_shrink_s", [unit_is("s")])
    )


def current_bottlenecks() -> table.Panel:
    return (
        table.Panel()
        .title("Current bottlenecks")
        .description(
            "Active-period method: window_share = share of the last hour each station was the bottleneck, "
            "share = the same since the start (shifting time counts for both stations, so shares can add "
            "up to more than 100 %). momentary = 1 for the station whose running active period is the "
            "longest now: a live signal, not the method."
        )
        .datasource(DATASOURCE)
        .grid_pos(grid(16, 7, 8, 7))
        .with_target(
            InfluxQL(
                'SELECT last("window_share") AS "window_share", "share" AS "share", '
                '"momentary" AS "momentary", "active_period_s" AS "active_period_s" '
                f'FROM "{BOTTLENECK}" WHERE {site_filter()} GROUP BY "line", "location"'
            ).table()
        )
        .transformations(sort_desc("window_share"))
        .override_by_name("window_share", [unit_is("percentunit")])
        .override_by_name("share", [unit_is("percentunit")])
        .override_by_name("active_period_s", [unit_is("s")])
    )


def money_tied_up(site: Site) -> stat.Panel:
    return (
        stat.Panel()
        .title("Money tied up in WIP")
        .description("Sum over locations of parts waiting x unit value (site file unit_value).")
        .datasource(DATASOURCE)
        .grid_pos(grid(0, 14, 6, 6))
        .unit(money_unit(site))
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(
            InfluxQL(
                f'SELECT sum("tied") AS "tied_up" FROM (SELECT last("value") AS "tied" FROM "{WIP}" '
                f'WHERE {site_filter()} GROUP BY "line", "location")'
            ).table()
        )
    )


def money_over_time(site: Site) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Money tied up and holding cost over time")
        .datasource(DATASOURCE)
        .grid_pos(grid(6, 14, 10, 6))
        .unit(money_unit(site))
        .with_target(
            InfluxQL(
                'SELECT sum("t") AS "tied_up", sum("h") AS "holding_cost" FROM '
                f'(SELECT last("tied_up") AS "t", last("holding_cost") AS "h" FROM "{COST}" '
                f'WHERE {site_filter()} GROUP BY time($__interval), "line", "location" fill(previous)) '
                "WHERE $timeFilter GROUP BY time($__interval)"
            )
        )
    )


def lead_times() -> table.Panel:
    return (
        table.Panel()
        .title("Lead time per line")
        .description(
            "Little's Law lead time = WIP / throughput beside the measured end-to-end flow time, and "
            "the value-added ratio (processing time / lead time)."
        )
        .datasource(DATASOURCE)
        .grid_pos(grid(16, 14, 8, 6))
        .with_target(
            InfluxQL(
                'SELECT last("littles_law_s") AS "littles_law_s", "measured_s" AS "measured_s", '
                '"value_added_ratio" AS "value_added_ratio" '
                f'FROM "{LEAD_TIME}" WHERE {site_filter()} GROUP BY "line"'
            ).table()
        )
        .override_by_name("littles_law_s", [unit_is("s")])
        .override_by_name("measured_s", [unit_is("s")])
        .override_by_name("value_added_ratio", [unit_is("percentunit")])
    )


def data_quality() -> stat.Panel:
    return (
        stat.Panel()
        .title("Data-quality issues")
        .description("Events the processors rejected (e.g. a departure without an arrival), by reason.")
        .datasource(DATASOURCE)
        .grid_pos(grid(0, 20, 24, 4))
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["sum"]))
        .no_value("0")
        .with_target(
            InfluxQL(
                f'SELECT sum("count") AS "count" FROM "{DATA_QUALITY}" '
                f'WHERE {site_filter()} GROUP BY "reason"'
            ).alias("$tag_reason")
        )
    )


def active_alerts() -> table.Panel:
    """Alerts whose latest transition is a firing (docs/alerts.md, the ``alerts`` measurement)."""
    return (
        table.Panel()
        .title("Active alerts")
        .description(
            "Alerts of the site's rules that are firing now: since when (event time), the value that fired "
            "it and the threshold. Rules, routing and silences: docs/alerts.md."
        )
        .datasource(DATASOURCE)
        .grid_pos(grid(0, 24, 24, 6))
        .no_value("no active alerts")
        .with_target(
            InfluxQL(
                'SELECT "firing" AS "firing", "summary" AS "summary", "value" AS "value", '
                '"threshold" AS "threshold" FROM (SELECT last("firing") AS "firing", "summary" AS "summary", '
                f'"value" AS "value", "threshold" AS "threshold" FROM "{ALERTS}" '
                f'WHERE {site_filter()} GROUP BY "line", "location", "rule", "severity") '
                'WHERE "firing" = 1 GROUP BY "line", "location", "rule", "severity"'
            ).table()
        )
        .transformations(sort_desc("Time"))
    )


def alert_annotations() -> InfluxAnnotation:
    """A marker on every time series where an alert fired, with its summary; tags: rule and severity."""
    return InfluxAnnotation(
        "Alerts fired",
        f'SELECT "summary" AS "text", "rule" AS "rule", "severity" AS "severity" FROM "{ALERTS}" '
        f'WHERE {site_filter()} AND "firing" = 1',
        text_column="text",
        tags_column="rule,severity",
        icon_color="red",
    )


def build(site: Site) -> dash.Dashboard:
    """The site overview dashboard for ``site`` (caps and flow order from its site file)."""
    return (
        dash.Dashboard(f"wipwatch — {site.name or site.site} overview")
        .uid(UID)
        .tags(["wipwatch"])
        .description("Where material waits, how fast queues grow, what it costs and what limits flow.")
        .refresh("10s")
        .time("now-6h", "now")
        .with_variable(site_variable(site))
        .with_variable(line_variable(site, multi=True))
        .with_panel(wip_by_location(site))
        .with_panel(fastest_growing_queues())
        .with_panel(current_bottlenecks())
        .with_panel(money_tied_up(site))
        .with_panel(money_over_time(site))
        .with_panel(lead_times())
        .with_panel(data_quality())
        .with_panel(active_alerts())
        .annotation(alert_annotations())
    )
