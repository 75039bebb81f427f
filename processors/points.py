"""InfluxDB points the processors write: measurements, tags and fields (the contract in docs/metrics.md).

Tags are a small bounded set (site, line, location, location kind, reason); never part or event ids.
Line-level figures use the location tag ``_line``.

When points are stamped (docs/metrics.md, "When points are written"): a line's event time is cut into
periods of ``point_interval_s`` (processors/metrics/line_state.py). When a period closes, every
measurement of every location of the line is rendered as of the period's end; when a queue shrank, its
``queue`` point is rendered at that instant (:func:`collect_points`, the engine's ``on_snapshot``). After
each batch the open period is rendered too (:func:`line_points`), stamped with its end: it holds the
newest figures until the period closes and rewrites that point (same series and time overwrite in
InfluxDB). For live data, whose open period ends in the future, it is stamped at the wall clock instead
(a provisional point, corrected by the points that follow). Past data never takes the wall clock, so a
replay at any speed or batch size writes the same series.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator

from wipwatch.influx import keyed_line, line, series_key
from wipwatch.measurements import (
    ALERTS,
    BOTTLENECK,
    COST,
    DATA_QUALITY,
    FLOW_TIME,
    LEAD_TIME,
    QUEUE,
    STATION,
    THROUGHPUT,
    WIP,
)
from wipwatch.processors.metrics.flow_time import FlowTimeSketch
from wipwatch.processors.metrics.lead_time import littles_law_s, value_added_ratio
from wipwatch.processors.metrics.line_state import LineEngine, LocationState
from wipwatch.processors.metrics.throughput import production_ratio, surplus_parts
from wipwatch.site import LocationKind

#: The location tag of a line's own figures (throughput, end-to-end flow time).
LINE = "_line"


def _us(t: float) -> int:
    return round(t * 1_000_000)


@functools.lru_cache(maxsize=65536)
def _key(measurement: str, site: str, line_id: str, location: str | None, kind: str | None = None) -> str:
    """The series key of a point of ``line_id`` (``location`` None: no location tag), made once: a
    snapshot renders ~60 points of the same series every period (``wipwatch.influx.series_key``)."""
    tags = {"site": site, "line": line_id}
    if location is not None:
        tags["location"] = location
    if kind is not None:
        tags["kind"] = kind
    return series_key(measurement, tags)


def collect_points(engine: LineEngine, at: float, locations: frozenset[str] | None) -> None:
    """``on_snapshot`` of the processors' engines: keep the snapshot's points in ``engine.changes``.

    ``locations`` None is a period end (every measurement of the line); else the ``queue`` points of the
    locations whose queue shrank at ``at``.
    """
    if locations is None:
        engine.changes.points += snapshot_points(engine, at)
    else:
        engine.changes.points += queue_points(engine, at, locations)


def queue_points(engine: LineEngine, now: float, locations: frozenset[str]) -> list[str]:
    """The ``queue`` point of each of ``locations`` (in flow order) as of ``now``."""
    st = engine.state
    t_us = _us(now)
    return [
        keyed_line(_key(QUEUE, st.site, st.line, loc.id), _queue_fields(st.locations[loc.id], now), t_us)
        for loc in engine.line.locations
        if loc.id in locations
    ]


def line_points(engine: LineEngine, open_period: bool = True, wall_now: float | None = None) -> list[str]:
    """The points of the periods closed since ``engine.changes`` was cleared, then the open period's,
    then the alert transitions of the same calls.

    Args:
        open_period: include the open period's snapshot. Closed periods' points are final and the same
            whoever writes them; the open period's is provisional, so only the line's owner writes it.
        wall_now: the wall clock (POSIX seconds). The open period's snapshot is stamped at the period's
            end, where it is rewritten in place until the period closes; when that end lies in the
            future (live data), it is stamped at the wall clock instead (but never before the line's
            last event), so no point is ahead of now: live dashboards over ``now-6h..now`` see it. A
            replay of past data always stamps period ends, so its series does not depend on its speed.
    """
    out = list(engine.changes.points)
    end = engine.state.period_end
    if end is not None and open_period:
        at = end
        released = engine.state.released
        if wall_now is not None and wall_now < end:
            at = max(wall_now, released) if released is not None else wall_now
        out += snapshot_points(engine, at)
    return out + alert_points(engine)


def snapshot_points(engine: LineEngine, now: float) -> list[str]:
    """Every measurement of every location of the line as of ``now`` (at or after its last event)."""
    st = engine.state
    if st.released is None:
        return []
    t_us = _us(now)
    site, line_id = st.site, st.line
    demand = engine.line.demand_per_hour
    elapsed = now - st.started if st.started is not None else 0.0
    out: list[str] = []
    wip_hours = 0.0
    value_added = 0.0
    for loc_def in engine.line.locations:
        loc = st.locations[loc_def.id]
        where = loc_def.id
        out.append(keyed_line(_key(WIP, site, line_id, where, loc_def.kind.value), _wip_fields(loc), t_us))
        out.append(keyed_line(_key(QUEUE, site, line_id, where), _queue_fields(loc, now), t_us))
        out.append(
            keyed_line(
                _key(COST, site, line_id, where),
                {"tied_up": loc.cost.tied_up(), "holding_cost": loc.cost.accrued(now)},
                t_us,
            )
        )
        out.append(keyed_line(_key(FLOW_TIME, site, line_id, where), _flow_fields(loc, now), t_us))
        wip_hours += loc.cost.wip_hours(now)
        if loc_def.kind is LocationKind.STATION and loc.clock is not None:
            per_hour = loc.departures.per_hour(now)
            out.append(
                keyed_line(
                    _key(THROUGHPUT, site, line_id, where),
                    _throughput_fields(per_hour, demand, loc.departures.total, elapsed),
                    t_us,
                )
            )
            totals = loc.clock.totals(now)
            fields: dict[str, float | int | str] = {"state": loc.clock.state}
            fields.update({f"{name}_s": seconds for name, seconds in totals.items()})
            out.append(keyed_line(_key(STATION, site, line_id, where), fields, t_us))
            if loc.departures.total:
                value_added += totals["working"] / loc.departures.total
    out.extend(_bottleneck_lines(engine, now, t_us))
    out.append(
        keyed_line(
            _key(THROUGHPUT, site, line_id, LINE),
            {
                **_throughput_fields(st.shipped.per_hour(now), demand, st.shipped.total, elapsed),
                "events": st.alerts.events,
            },
            t_us,
        )
    )
    flow = {
        **_percentiles(st.flow),
        "oldest_age_s": st.on_line.oldest_age_s(now) or 0.0,
        "parts": st.on_line.count(),
    }
    out.append(
        keyed_line(
            _key(FLOW_TIME, site, line_id, LINE), {k: v for k, v in flow.items() if v is not None}, t_us
        )
    )
    hours = elapsed / 3600
    if hours > 0:
        law = littles_law_s(wip_hours / hours, st.shipped.total / hours)
        measured = st.flow.mean()
        fields_lt = {
            "littles_law_s": law,
            "measured_s": measured,
            "value_added_s": value_added,
            "value_added_ratio": value_added_ratio(value_added, measured),
            "avg_wip": wip_hours / hours,
        }
        out.append(
            keyed_line(
                _key(LEAD_TIME, site, line_id, None),
                {k: v for k, v in fields_lt.items() if v is not None},
                t_us,
            )
        )
    return out


def alert_points(engine: LineEngine) -> list[str]:
    """``alerts`` points: one per transition of this batch, at the transition's time (docs/alerts.md).

    ``firing`` is 1 when the alert fired, 0 when it resolved; the latest point of a series is the alert's
    state. Tags: site, line, location (``_line`` for line alerts), rule, severity.
    """
    out = []
    for tr in engine.changes.alerts:
        inst = tr.instance
        tags = {
            "site": inst.site,
            "line": inst.line,
            "location": inst.location,
            "rule": inst.rule,
            "severity": inst.severity,
        }
        fields: dict[str, float | int | str] = {
            "firing": int(tr.state == "firing"),
            "value": tr.value,
            "threshold": inst.threshold,
            "seq": tr.seq,
            "duration_s": tr.at - tr.since,
            "identity": inst.identity,
            "condition": inst.condition,
            "summary": inst.summary,
        }
        out.append(line(ALERTS, tags, fields, _us(tr.at)))
    return out


def quality_points(engine: LineEngine, last_us: dict[str, int]) -> list[str]:
    """``data_quality`` points: per location and reason, how many findings this batch (``count``).

    Findings of one batch are summed into one point at the latest finding's time; ``last_us`` keeps the
    times strictly increasing per line, so a later batch never overwrites an earlier one's point.
    """
    issues = engine.changes.issues
    if not issues:
        return []
    st = engine.state
    t_us = max(_us(i.time) for i in issues)
    key = f"{st.site}/{st.line}"
    t_us = max(t_us, last_us.get(key, -1) + 1)
    last_us[key] = t_us
    counts = Counter((i.location, i.reason) for i in issues)
    return [
        line(
            DATA_QUALITY,
            {"site": st.site, "line": st.line, "location": loc, "reason": reason},
            {"count": n},
            t_us,
        )
        for (loc, reason), n in sorted(counts.items())
    ]


def _queue_fields(loc: LocationState, now: float) -> dict[str, float | int]:
    return {"growth_per_hour": loc.growth.per_hour(now), "since_shrink_s": loc.growth.since_shrink_s(now)}


def _wip_fields(loc: LocationState) -> dict[str, float | int]:
    return {"parts": loc.wip, "value": loc.cost.tied_up()}


def _flow_fields(loc: LocationState, now: float) -> dict[str, float | int]:
    fields: dict[str, float | int | None] = {
        **_percentiles(loc.dwell),
        "oldest_age_s": loc.residents.oldest_age_s(now) or 0.0,
        "count": loc.dwell.count,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _percentiles(flow: FlowTimeSketch) -> dict[str, float | None]:
    p50, p90, p99 = flow.quantiles((50, 90, 99))
    return {"p50_s": p50, "p90_s": p90, "p99_s": p99, "mean_s": flow.mean()}


def _throughput_fields(
    per_hour: float, demand: float | None, total: int, elapsed: float
) -> dict[str, float | int]:
    fields: dict[str, float | int | None] = {
        "parts_per_hour": per_hour,
        "demand_per_hour": demand,
        "production_ratio": production_ratio(per_hour, demand),
        "surplus_parts": surplus_parts(total, demand, elapsed),
        "total": total,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _bottleneck_lines(engine: LineEngine, now: float, t_us: int) -> Iterator[str]:
    st = engine.state
    longest = st.bottleneck.longest_running(now)
    shares = st.bottleneck.shares(now)
    window = st.bottleneck.window_shares(now)
    for loc_def in engine.line.locations:
        if loc_def.kind is not LocationKind.STATION:
            continue
        share, sole, shifting = shares.get(loc_def.id, (0.0, 0.0, 0.0))
        w_share, w_sole, w_shifting = window.get(loc_def.id, (0.0, 0.0, 0.0))
        fields = {
            "momentary": int(loc_def.id in longest),
            "active_period_s": st.bottleneck.active_period_s(now, loc_def.id),
            "share": share,
            "sole_share": sole,
            "shifting_share": shifting,
            "window_share": w_share,
            "window_sole_share": w_sole,
            "window_shifting_share": w_shifting,
        }
        yield keyed_line(_key(BOTTLENECK, st.site, st.line, loc_def.id), fields, t_us)
