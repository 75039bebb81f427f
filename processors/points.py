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
from dataclasses import dataclass

from wipwatch.influx import escape_tag, field_value, line, series_key
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
from wipwatch.site import Line, LocationKind

#: The location tag of a line's own figures (throughput, end-to-end flow time).
LINE = "_line"
_QUANTILES = (50, 90, 99)
_NO_SHARES = (0.0, 0.0, 0.0)


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
    tail = f" {_us(now)}"
    layout = _layout(engine)
    if len(locations) == 1:  # most shrinks: one queue at an instant, no need to walk the line
        (one,) = locations
        where = layout.by_id.get(one)
        return [] if where is None else [f"{where.queue} {_queue_part(st.locations[one], now)}{tail}"]
    return [
        f"{where.queue} {_queue_part(st.locations[where.id], now)}{tail}"
        for where in layout.locations
        if where.id in locations
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
    """Every measurement of every location of the line as of ``now`` (at or after its last event).

    The lines are written out field by field here (what ``keyed_line`` would make of the field dicts, in
    the same order, ``None`` fields left out): a period's snapshot renders ~60 points, one per event on the
    bench site, and building a dict per point and joining it was half of the snapshot's cost (issue #16).
    """
    st = engine.state
    if st.released is None:
        return []
    layout = _layout(engine)
    tail = f" {_us(now)}"
    fv = field_value
    demand = engine.line.demand_per_hour
    elapsed = now - st.started if st.started is not None else 0.0
    out: list[str] = []
    append = out.append
    wip_hours = 0.0
    value_added = 0.0
    locations = st.locations
    for where in layout.locations:
        loc = locations[where.id]
        cost = loc.cost
        tied_up = cost.tied_up()
        append(f"{where.wip} parts={fv(loc.wip)},value={fv(tied_up)}{tail}")
        append(f"{where.queue} {_queue_part(loc, now)}{tail}")
        hours_here = cost.wip_hours(now)
        accrued = hours_here * cost.cost_per_part_hour  # HoldingCost.accrued(now), wip_hours not twice
        append(f"{where.cost} tied_up={fv(tied_up)},holding_cost={fv(accrued)}{tail}")
        oldest = loc.residents.oldest_age_s(now) or 0.0
        append(f"{where.flow} {_flow_part(loc.dwell, oldest, 'count=', loc.dwell.count)}{tail}")
        wip_hours += hours_here
        clock = loc.clock
        if where.station and clock is not None:
            departures = loc.departures
            total = departures.total
            throughput = _throughput_part(departures.per_hour(now), demand, total, elapsed)
            append(f"{where.throughput} {throughput}{tail}")
            totals = clock.totals(now)
            seconds = [f"{_state_key(name)}{fv(value)}" for name, value in totals.items()]
            append(f"{where.station_state} {','.join([f'state={fv(clock.state)}', *seconds])}{tail}")
            if total:
                value_added += totals["working"] / total
    out += _bottleneck_lines(engine, layout, now, tail)
    shipped = st.shipped
    line_throughput = _throughput_part(shipped.per_hour(now), demand, shipped.total, elapsed)
    append(f"{layout.line_throughput} {line_throughput},events={fv(st.alerts.events)}{tail}")
    oldest = st.on_line.oldest_age_s(now) or 0.0
    append(f"{layout.line_flow} {_flow_part(st.flow, oldest, 'parts=', st.on_line.count())}{tail}")
    hours = elapsed / 3600
    if hours > 0:
        law = littles_law_s(wip_hours / hours, shipped.total / hours)
        measured = st.flow.mean()
        fields_lt = (
            ("littles_law_s=", law),
            ("measured_s=", measured),
            ("value_added_s=", value_added),
            ("value_added_ratio=", value_added_ratio(value_added, measured)),
            ("avg_wip=", wip_hours / hours),
        )
        joined = ",".join([name + fv(value) for name, value in fields_lt if value is not None])
        append(f"{layout.lead_time} {joined}{tail}")
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


@dataclass(frozen=True, slots=True)
class _Where:
    """A location of a line and the series keys of its points."""

    id: str
    station: bool
    wip: str
    queue: str
    cost: str
    flow: str
    throughput: str
    station_state: str
    bottleneck: str


@dataclass(frozen=True, slots=True)
class _Layout:
    """What the points of one line need from its definition, made once per line (``_layout``)."""

    locations: tuple[_Where, ...]
    by_id: dict[str, _Where]
    stations: tuple[_Where, ...]
    line_throughput: str
    line_flow: str
    lead_time: str


#: id(line definition) -> (the definition, site, line id, its layout); the definition is kept so its id
#: cannot be reused while the entry lives.
_layouts: dict[int, tuple[Line, str, str, _Layout]] = {}


def _layout(engine: LineEngine) -> _Layout:
    """The series keys of ``engine``'s line, made on the first snapshot of each line definition."""
    line_def, site, line_id = engine.line, engine.state.site, engine.state.line
    hit = _layouts.get(id(line_def))
    if hit is not None and hit[0] is line_def and hit[1] == site and hit[2] == line_id:
        return hit[3]
    where = tuple(
        _Where(
            id=loc.id,
            station=loc.kind is LocationKind.STATION,
            wip=_key(WIP, site, line_id, loc.id, loc.kind.value),
            queue=_key(QUEUE, site, line_id, loc.id),
            cost=_key(COST, site, line_id, loc.id),
            flow=_key(FLOW_TIME, site, line_id, loc.id),
            throughput=_key(THROUGHPUT, site, line_id, loc.id),
            station_state=_key(STATION, site, line_id, loc.id),
            bottleneck=_key(BOTTLENECK, site, line_id, loc.id),
        )
        for loc in line_def.locations
    )
    layout = _Layout(
        locations=where,
        by_id={w.id: w for w in where},
        stations=tuple(w for w in where if w.station),
        line_throughput=_key(THROUGHPUT, site, line_id, LINE),
        line_flow=_key(FLOW_TIME, site, line_id, LINE),
        lead_time=_key(LEAD_TIME, site, line_id, None),
    )
    if len(_layouts) >= 4096:  # definitions come and go in tests and reloads: stay bounded
        _layouts.clear()
    _layouts[id(line_def)] = (line_def, site, line_id, layout)
    return layout


@functools.lru_cache(maxsize=256)
def _state_key(category: str) -> str:
    """``<category>_s=``: the field of a station's seconds in a category."""
    return f"{escape_tag(category + '_s')}="


def _queue_part(loc: LocationState, now: float) -> str:
    growth = loc.growth
    per_hour, since = field_value(growth.per_hour(now)), field_value(growth.since_shrink_s(now))
    return f"growth_per_hour={per_hour},since_shrink_s={since}"


def _flow_part(sketch: FlowTimeSketch, oldest: float, last: str, value: int) -> str:
    """``p50_s``, ``p90_s``, ``p99_s``, ``mean_s`` (those not None), ``oldest_age_s`` and ``last``."""
    fv = field_value
    p50, p90, p99 = sketch.quantiles(_QUANTILES)
    mean = sketch.mean()
    if p50 is not None and p90 is not None and p99 is not None and mean is not None:
        head = f"p50_s={fv(p50)},p90_s={fv(p90)},p99_s={fv(p99)},mean_s={fv(mean)},"
    else:
        pairs = (("p50_s=", p50), ("p90_s=", p90), ("p99_s=", p99), ("mean_s=", mean))
        head = "".join([f"{name}{fv(v)}," for name, v in pairs if v is not None])
    return f"{head}oldest_age_s={fv(oldest)},{last}{fv(value)}"


def _throughput_part(per_hour: float, demand: float | None, total: int, elapsed: float) -> str:
    ratio = production_ratio(per_hour, demand)
    surplus = surplus_parts(total, demand, elapsed)
    fv = field_value
    if demand is not None and ratio is not None and surplus is not None:
        return (
            f"parts_per_hour={fv(per_hour)},demand_per_hour={fv(demand)},production_ratio={fv(ratio)},"
            f"surplus_parts={fv(surplus)},total={fv(total)}"
        )
    pairs = (
        ("parts_per_hour=", per_hour),
        ("demand_per_hour=", demand),
        ("production_ratio=", ratio),
        ("surplus_parts=", surplus),
        ("total=", total),
    )
    return ",".join([name + fv(v) for name, v in pairs if v is not None])


def _bottleneck_lines(engine: LineEngine, layout: _Layout, now: float, tail: str) -> list[str]:
    bottleneck = engine.state.bottleneck
    longest = bottleneck.longest_running(now)
    shares, window = bottleneck.shares_and_window_shares(now)
    fv = field_value
    out = []
    for where in layout.stations:
        share, sole, shifting = shares.get(where.id, _NO_SHARES)
        w_share, w_sole, w_shifting = window.get(where.id, _NO_SHARES)
        out.append(
            f"{where.bottleneck} momentary={fv(int(where.id in longest))},"
            f"active_period_s={fv(bottleneck.active_period_s(now, where.id))},"
            f"share={fv(share)},sole_share={fv(sole)},shifting_share={fv(shifting)},"
            f"window_share={fv(w_share)},window_sole_share={fv(w_sole)},"
            f"window_shifting_share={fv(w_shifting)}{tail}"
        )
    return out
