"""Every metric family as one flat dict of figures, from the simulator's ground truth, from the pure engine
or from InfluxDB, and one comparison with a tolerance per family.

Families (docs/metrics.md): WIP, departures and dwell time per location, station time per category, holding
cost and money tied up per location, bottleneck shares (share, sole, shifting) per station, shipped and lead
time (mean, p50, p90) per line. Time-dependent figures (station time, holding cost, bottleneck shares) are
taken at an instant ``at`` per line: the end of the shift for the engine, the time of the line's last
point for InfluxDB. The ground truth's bottleneck shares are the active-period method
(``method_shares``) over the simulator's own active periods.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from wipwatch.processors.metrics.bottleneck import method_shares
from wipwatch.processors.metrics.line_state import LineEngine
from wipwatch.processors.points import LINE
from wipwatch.simulators.truth import GroundTruth, percentile
from wipwatch.site import LocationKind, Site

Figures = dict[str, float]
#: The quantile sketch reports every percentile within 1 % of the exact nearest-rank value.
SKETCH_TOLERANCE = 0.0101
#: Station categories the processors see exactly (starved and off-shift need the shift calendar).
EXACT_CATEGORIES = ("working", "changeover", "down", "blocked")
SHARES = ("share", "sole_share", "shifting_share")


def _shares(out: Figures, site: Site, line_id: str, shares: Mapping[str, tuple[float, float, float]]) -> None:
    for loc in site.line(line_id).locations:
        if loc.kind is LocationKind.STATION:
            for name, value in zip(SHARES, shares.get(loc.id, (0.0, 0.0, 0.0)), strict=True):
                out[f"bottleneck_{name} {line_id}/{loc.id}"] = value


def truth_figures(truth: GroundTruth, site: Site, start: datetime, at: Mapping[str, float]) -> Figures:
    """The figures of ``truth``; ``at`` maps a line to the unix time of its time-dependent figures."""
    t0 = start.timestamp()
    out: Figures = {}
    for line in site.lines:
        now = at[line.id] - t0
        for loc in line.locations:
            key = f"{line.id}/{loc.id}"
            lt = truth.locations.get(key)
            wip = lt.wip if lt else 0
            out[f"wip {key}"] = wip
            out[f"departures {key}"] = lt.departures if lt else 0
            if lt and lt.dwells:
                out[f"dwell_mean {key}"] = sum(lt.dwells) / len(lt.dwells)
                for q in (50, 90, 99):
                    out[f"dwell_p{q} {key}"] = percentile(lt.dwells, q) or 0.0
            area = (lt.area + lt.wip * (now - lt.since)) if lt else 0.0
            out[f"holding_cost {key}"] = area / 3600 * loc.holding_cost_per_hour
            out[f"tied_up {key}"] = wip * loc.unit_value
            if loc.kind is LocationKind.STATION and key in truth.stations:
                totals = truth.stations[key].totals(now)
                for category in EXACT_CATEGORIES:
                    out[f"station_{category} {key}"] = totals[category]
        _shares(out, site, line.id, method_shares(truth.active_periods(line.id), 0.0, now))
        lead = [p.shipped - p.arrived for p in truth.parts if p.line == line.id and p.shipped is not None]
        out[f"shipped {line.id}"] = len(lead)
        if lead:
            out[f"lead_mean {line.id}"] = sum(lead) / len(lead)
            out[f"lead_p50 {line.id}"] = percentile(lead, 50) or 0.0
            out[f"lead_p90 {line.id}"] = percentile(lead, 90) or 0.0
    return out


def engine_figures(site: Site, engines: Mapping[str, LineEngine], at: Mapping[str, float]) -> Figures:
    """The same figures from the pure engine's state, one engine per line id."""
    out: Figures = {}
    for line_id, engine in engines.items():
        now = at[line_id]
        st = engine.state
        _shares(out, site, line_id, st.bottleneck.shares(now))
        for loc in engine.line.locations:
            key = f"{line_id}/{loc.id}"
            ls = st.locations[loc.id]
            out[f"wip {key}"] = ls.wip
            out[f"departures {key}"] = ls.dwell.count
            if ls.dwell.count:
                out[f"dwell_mean {key}"] = ls.dwell.mean() or 0.0
                for q in (50, 90, 99):
                    out[f"dwell_p{q} {key}"] = ls.dwell.quantile(q) or 0.0
            out[f"holding_cost {key}"] = ls.cost.accrued(now) if ls.cost.since is not None else 0.0
            out[f"tied_up {key}"] = ls.cost.tied_up()
            if ls.clock is not None and ls.clock.since is not None:
                totals = ls.clock.totals(now)
                for category in EXACT_CATEGORIES:
                    out[f"station_{category} {key}"] = totals[category]
        out[f"shipped {line_id}"] = st.shipped.total
        if st.flow.count:
            out[f"lead_mean {line_id}"] = st.flow.mean() or 0.0
            out[f"lead_p50 {line_id}"] = st.flow.quantile(50) or 0.0
            out[f"lead_p90 {line_id}"] = st.flow.quantile(90) or 0.0
    return out


def influx_figures(
    site: Site, last: Mapping[str, Mapping[tuple[tuple[str, str], ...], Mapping[str, Any]]]
) -> Figures:
    """The same figures from InfluxDB (``wipwatch.influx.last_values``)."""

    def by_key(measurement: str) -> dict[str, Mapping[str, Any]]:
        return {
            f"{dict(tags).get('line')}/{dict(tags).get('location', '')}": fields
            for tags, fields in last.get(measurement, {}).items()
        }

    wip, flow, cost, station = (by_key(m) for m in ("wip", "flow_time", "cost", "station"))
    lead, bottleneck = by_key("lead_time"), by_key("bottleneck")
    out: Figures = {}
    for line in site.lines:
        _shares(
            out,
            site,
            line.id,
            {
                key.split("/", 1)[1]: tuple(fields[name] for name in SHARES)  # type: ignore[misc]
                for key, fields in bottleneck.items()
                if key.startswith(f"{line.id}/")
            },
        )
        for loc in line.locations:
            key = f"{line.id}/{loc.id}"
            out[f"wip {key}"] = wip.get(key, {}).get("parts", 0)
            f = flow.get(key, {})
            out[f"departures {key}"] = f.get("count", 0)
            if f.get("count"):
                out[f"dwell_mean {key}"] = f["mean_s"]
                for q in (50, 90, 99):
                    out[f"dwell_p{q} {key}"] = f[f"p{q}_s"]
            out[f"holding_cost {key}"] = cost.get(key, {}).get("holding_cost", 0.0)
            out[f"tied_up {key}"] = cost.get(key, {}).get("tied_up", 0.0)
            if key in station:
                for category in EXACT_CATEGORIES:
                    out[f"station_{category} {key}"] = station[key][f"{category}_s"]
        line_flow = flow.get(f"{line.id}/{LINE}", {})
        shipped = by_key("throughput").get(f"{line.id}/{LINE}", {}).get("total", 0)
        out[f"shipped {line.id}"] = shipped
        if shipped:
            out[f"lead_mean {line.id}"] = lead[f"{line.id}/"]["measured_s"]
            out[f"lead_p50 {line.id}"] = line_flow["p50_s"]
            out[f"lead_p90 {line.id}"] = line_flow["p90_s"]
    return out


def mismatches(got: Figures, want: Figures) -> list[str]:
    """Every figure that differs beyond its family's tolerance (empty when all agree)."""
    problems = [f"{key}: missing (want {want[key]})" for key in sorted(want.keys() - got.keys())]
    problems += [f"{key}: unexpected {got[key]}" for key in sorted(got.keys() - want.keys())]
    for key in sorted(want.keys() & got.keys()):
        family = key.split(" ", 1)[0]
        a, b = float(got[key]), float(want[key])
        if family in ("wip", "departures", "shipped"):
            ok = a == b
        elif family.startswith(("dwell_p", "lead_p")):
            ok = math.isclose(a, b, rel_tol=SKETCH_TOLERANCE, abs_tol=1e-3)
        elif family in ("dwell_mean", "lead_mean"):
            ok = math.isclose(a, b, abs_tol=2e-6)  # times carry microseconds
        elif family.startswith("station_"):
            ok = math.isclose(a, b, abs_tol=0.01)
        elif family.startswith("bottleneck_"):
            ok = math.isclose(a, b, abs_tol=1e-6)
        else:  # money: sums of products of unix-time differences
            ok = math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
        if not ok:
            problems.append(f"{key}: got {a}, want {b}")
    return problems


def influx_is_truth(
    site: Site, truth: GroundTruth, start: datetime, at: Mapping[str, float]
) -> Callable[[Mapping[str, Any]], bool]:
    """A condition on ``last_values``: every family in InfluxDB equals the truth. Wait on this, not on WIP
    alone: WIP can equal the final WIP while the last seconds of events still wait for the lateness (a
    part out of and another into each location nets to zero), and the other families are then short."""
    want = truth_figures(truth, site, start, at)

    def done(state: Mapping[str, Any]) -> bool:
        return bool(state.get("wip")) and not mismatches(influx_figures(site, state), want)

    return done
