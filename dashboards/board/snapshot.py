"""One snapshot of the value stream for the live board: the site file's layout with the latest metrics.

Every measurement is read on its own, so a measurement the processors do not (yet) write leaves its
fields ``None`` (the page shows a dash) instead of breaking the board. Field names follow the measurement
contract in docs/metrics.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from wipwatch.benchmarking import (
    OperatingPoint,
    line_benchmark,
    site_stations,
    station_capacity,
    verdict,
)
from wipwatch.errors import ServiceError
from wipwatch.influx import InfluxTarget, detect_version, query, rows
from wipwatch.measurements import (
    ALERTS,
    BOTTLENECK,
    COST,
    FLOW_TIME,
    LEAD_TIME,
    QUEUE,
    STATION,
    THROUGHPUT,
    WIP,
)
from wipwatch.site import Line, Site

log = logging.getLogger(__name__)

#: The pseudo-location under which line-level metrics are written.
LINE_LOCATION = "_line"
#: What a snapshot says when InfluxDB fails: the details (URL, query) go to the log, never to a browser.
INFLUX_ERROR = "InfluxDB unreachable or refused a query"


@dataclass(frozen=True)
class Latest:
    """The latest point of ``measurement`` per group: ``selector`` picks it, ``fields`` come with it.

    InfluxQL returns the selected point's own values for plain fields beside one selector, so all fields
    of one point arrive together.
    """

    measurement: str
    selector: str
    fields: tuple[str, ...]
    group_by: tuple[str, ...] = ("line", "location")

    def influxql(self, site_id: str) -> str:
        plain = "".join(f', "{f}"' for f in self.fields)
        groups = ", ".join(f'"{g}"' for g in self.group_by)
        return (
            f'SELECT last("{self.selector}") AS "{self.selector}"{plain} FROM "{self.measurement}" '
            f"WHERE \"site\" = '{site_id}' GROUP BY {groups}"
        )


MEASUREMENTS: tuple[Latest, ...] = (
    Latest(WIP, "parts", ("value",)),
    Latest(QUEUE, "growth_per_hour", ("since_shrink_s",)),
    Latest(THROUGHPUT, "parts_per_hour", ("demand_per_hour", "production_ratio", "events")),
    Latest(FLOW_TIME, "p90_s", ("p50_s", "p99_s", "oldest_age_s")),
    Latest(LEAD_TIME, "littles_law_s", ("measured_s", "value_added_ratio", "avg_wip"), ("line",)),
    Latest(BOTTLENECK, "momentary", ("share", "active_period_s")),
    Latest(STATION, "working_s", ("state", "starved_s", "blocked_s", "down_s")),
    Latest(COST, "tied_up", ("holding_cost",)),
    # the latest transition of each alert (docs/alerts.md): firing = 1 means active now
    Latest(ALERTS, "firing", ("summary", "value", "threshold"), ("line", "location", "rule", "severity")),
)
#: Worst first: the order active alerts are listed in, and which one marks a location.
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}

#: Trend lines: this much event time before the latest WIP point, in this many buckets.
TREND_WINDOW_S = 3600
TREND_BUCKETS = 60


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def benchmark_view(line: Line, lead: dict[str, Any]) -> dict[str, Any]:
    """The line against Factory Physics' curves (docs/benchmarking.md): r_b, T0, W0 from the site file,
    the operating point from the latest ``lead_time`` point; region and verdict once there is one."""
    bench = line_benchmark([station_capacity(o)[0] for o in site_stations(line)])
    view: dict[str, Any] = {
        "r_b_per_hour": bench.r_b * 3600,
        "t0_s": bench.t0,
        "w0": bench.w0,
        "bottleneck": bench.bottleneck,
        "wip": None,
        "pwc_throughput_per_hour": None,
        "region": None,
        "wip_needed": None,
        "verdict": None,
    }
    wip, littles, measured = (
        _num(lead.get("avg_wip")),
        _num(lead.get("littles_law_s")),
        _num(lead.get("measured_s")),
    )
    if wip is None or not littles or not measured:
        return view
    demand = line.demand_per_hour / 3600 if line.demand_per_hour else None
    v = verdict(OperatingPoint(wip, wip / littles, measured), bench, 0.95, demand)
    return view | {
        "wip": wip,
        "pwc_throughput_per_hour": v.pwc_th * 3600,
        "region": v.region,
        "wip_needed": v.wip_needed,
        "verdict": v.text,
    }


class SnapshotSource:
    """Builds snapshots from InfluxDB and tracks when data last advanced (for "no data for N s")."""

    def __init__(
        self,
        site: Site,
        target: InfluxTarget,
        stale_after_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if stale_after_s <= 0:
            raise ValueError(f"stale_after_s must be > 0, got {stale_after_s}")
        self.site = site
        self.target = target
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._data_time_us: int | None = None
        self._fingerprint: int | None = None
        self._advanced_at: float | None = None

    def influx_up(self) -> bool:
        """Whether InfluxDB answers its ``/ping`` (blocking; at most 2 s)."""
        try:
            detect_version(self.target.url, timeout=2.0)
        except ServiceError:
            return False
        return True

    def _latest(self, spec: Latest) -> dict[tuple[str, ...], dict[str, Any]]:
        found = rows(query(self.target, spec.influxql(self.site.site)))
        return {tuple(r.get(g, "") for g in spec.group_by): r for r in found}

    def _latest_or_error(self, spec: Latest) -> dict[tuple[str, ...], dict[str, Any]] | ServiceError:
        try:
            return self._latest(spec)
        except ServiceError as exc:
            return exc

    def _trends(self, latest_us: int) -> dict[tuple[str, str], list[float | None]]:
        bucket_s = TREND_WINDOW_S // TREND_BUCKETS
        start_us = latest_us - TREND_WINDOW_S * 1_000_000
        found = rows(
            query(
                self.target,
                f'SELECT last("parts") AS "parts" FROM "{WIP}" WHERE "site" = \'{self.site.site}\' '
                f"AND time > {start_us}u AND time <= {latest_us}u "
                f'GROUP BY time({bucket_s}s), "line", "location" fill(previous)',
            )
        )
        trends: dict[tuple[str, str], list[float | None]] = {}
        for r in found:
            trends.setdefault((r["line"], r["location"]), []).append(_num(r.get("parts")))
        # bucket boundaries align to the clock, so the window can touch one bucket more than asked
        return {key: values[-TREND_BUCKETS:] for key, values in trends.items()}

    def snapshot(self) -> dict[str, Any]:
        """The site's lines and locations in flow order with their latest metrics (None where missing)."""
        data: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {}
        error: str | None = None
        # the queries at once: one after the other they took most of a live update's delay on a loaded
        # machine (bench/latency.py, docs/metrics.md)
        with ThreadPoolExecutor(max_workers=len(MEASUREMENTS)) as pool:
            answers = list(pool.map(self._latest_or_error, MEASUREMENTS))
        for spec, answer in zip(MEASUREMENTS, answers, strict=True):
            if isinstance(answer, ServiceError):
                log.warning("snapshot query failed measurement=%s error=%s", spec.measurement, answer)
                error = INFLUX_ERROR
                data[spec.measurement] = {}
            else:
                data[spec.measurement] = answer
        wip_times = [r["time"] for r in data[WIP].values() if isinstance(r.get("time"), int)]
        latest_us = max(wip_times) if wip_times else None
        trends: dict[tuple[str, str], list[float | None]] = {}
        if latest_us is not None and error is None:
            try:
                trends = self._trends(latest_us)
            except ServiceError as exc:
                log.warning("trend query failed error=%s", exc)
                error = INFLUX_ERROR
        now = self._clock()
        # the newest point is rewritten in place until its event-time period closes (docs/metrics.md,
        # "When points are written"): data advanced when any figure changed, not only the newest time
        fingerprint = hash(repr(sorted((m, repr(rows)) for m, rows in data.items())))
        if latest_us is not None and (latest_us, fingerprint) != (self._data_time_us, self._fingerprint):
            self._data_time_us, self._fingerprint, self._advanced_at = latest_us, fingerprint, now
        alerts = self._alerts(data[ALERTS])
        lines = [self._line(line.id, data, trends, alerts) for line in self.site.lines]
        tied = [loc["value"] for line in lines for loc in line["locations"] if loc["value"] is not None]
        wip = [loc["wip"] for line in lines for loc in line["locations"] if loc["wip"] is not None]
        return {
            "site": self.site.site,
            "name": self.site.name or self.site.site,
            "currency": self.site.currency,
            "generated_at": now,
            "data_time_us": self._data_time_us,
            "stale_s": None if self._advanced_at is None else round(now - self._advanced_at, 1),
            "stale_after_s": self.stale_after_s,
            "influx_error": error,
            "totals": {"wip": sum(wip) if wip else None, "tied_up": sum(tied) if tied else None},
            "alerts": alerts,
            "lines": lines,
        }

    @staticmethod
    def _alerts(latest: dict[tuple[str, ...], dict[str, Any]]) -> list[dict[str, Any]]:
        """Active alerts (latest transition is a firing), worst severity first, then oldest first."""
        active = [
            {
                "line": r.get("line"),
                "location": r.get("location"),
                "rule": r.get("rule"),
                "severity": r.get("severity"),
                "summary": r.get("summary"),
                "since_us": r.get("time"),
                "value": _num(r.get("value")),
                "threshold": _num(r.get("threshold")),
            }
            for r in latest.values()
            if r.get("firing") == 1
        ]
        active.sort(key=lambda a: (SEVERITY_ORDER.get(str(a["severity"]), 9), a["since_us"] or 0, a["rule"]))
        return active

    def _line(
        self,
        line_id: str,
        data: dict[str, dict[tuple[str, ...], dict[str, Any]]],
        trends: dict[tuple[str, str], list[float | None]],
        alerts: list[dict[str, Any]],
    ) -> dict[str, Any]:
        line = self.site.line(line_id)
        # the worst active alert per location of this line (the list is sorted worst first)
        marks: dict[str, str] = {}
        for alert in alerts:
            if alert["line"] == line_id:
                marks.setdefault(str(alert["location"]), str(alert["severity"]))

        def get(measurement: str, location: str, field: str) -> Any:
            return data[measurement].get((line_id, location), {}).get(field)

        lead = data[LEAD_TIME].get((line_id,), {})
        locations = []
        for loc in line.locations:
            wip = get(WIP, loc.id, "parts")
            momentary = get(BOTTLENECK, loc.id, "momentary")
            locations.append(
                {
                    "id": loc.id,
                    "name": loc.label,
                    "kind": loc.kind.value,
                    "cap": loc.cap,
                    "wip": int(wip) if isinstance(wip, int | float) else None,
                    "value": _num(get(WIP, loc.id, "value")),
                    "growth_per_hour": _num(get(QUEUE, loc.id, "growth_per_hour")),
                    "since_shrink_s": _num(get(QUEUE, loc.id, "since_shrink_s")),
                    "oldest_age_s": _num(get(FLOW_TIME, loc.id, "oldest_age_s")),
                    "p90_s": _num(get(FLOW_TIME, loc.id, "p90_s")),
                    "throughput_per_hour": _num(get(THROUGHPUT, loc.id, "parts_per_hour")),
                    "bottleneck": None if momentary is None else bool(momentary),
                    "bottleneck_share": _num(get(BOTTLENECK, loc.id, "share")),
                    "state": get(STATION, loc.id, "state"),
                    "starved_s": _num(get(STATION, loc.id, "starved_s")),
                    "blocked_s": _num(get(STATION, loc.id, "blocked_s")),
                    "tied_up": _num(get(COST, loc.id, "tied_up")),
                    "holding_cost": _num(get(COST, loc.id, "holding_cost")),
                    "trend": trends.get((line_id, loc.id), []),
                    "alert": marks.get(loc.id),
                }
            )
        return {
            "id": line.id,
            "name": line.name or line.id,
            "demand_per_hour": line.demand_per_hour,
            "takt_s": line.takt_seconds,
            "throughput_per_hour": _num(get(THROUGHPUT, LINE_LOCATION, "parts_per_hour")),
            "production_ratio": _num(get(THROUGHPUT, LINE_LOCATION, "production_ratio")),
            "events": _num(get(THROUGHPUT, LINE_LOCATION, "events")),
            "flow_p90_s": _num(get(FLOW_TIME, LINE_LOCATION, "p90_s")),
            "littles_law_s": _num(lead.get("littles_law_s")),
            "measured_lead_s": _num(lead.get("measured_s")),
            "value_added_ratio": _num(lead.get("value_added_ratio")),
            "alert": marks.get(LINE_LOCATION),
            "benchmark": benchmark_view(line, lead),
            "locations": locations,
        }
