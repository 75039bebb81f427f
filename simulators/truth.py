"""Ground truth of a simulation run: what really happened, to check the processors against.

All times are simulated seconds since the start. WIP is kept exactly (a time integral per location), and
sampled every ``sample_interval`` seconds for plots; station time is split into the categories a processor
derives from the events (docs/simulators.md, "Starved and blocked"):
working, changeover, down, blocked (idle holding a part), starved (idle, empty, on shift), off_shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from wipwatch.events import ACTIVE_STATES, STATION_CATEGORIES


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``q`` % of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class LocationTruth:
    """WIP of one location: count now, its time integral and the largest value seen."""

    wip: int = 0
    arrivals: int = 0
    departures: int = 0
    max_wip: int = 0
    area: float = 0.0
    since: float = 0.0
    dwells: list[float] = field(default_factory=list)

    def change(self, now: float, delta: int) -> None:
        self.area += self.wip * (now - self.since)
        self.since = now
        self.wip += delta
        if delta > 0:
            self.arrivals += delta
            self.max_wip = max(self.max_wip, self.wip)
        else:
            self.departures -= delta

    def average(self, now: float) -> float:
        """Time-average WIP over [0, now]."""
        return (self.area + self.wip * (now - self.since)) / now if now > 0 else float(self.wip)


@dataclass
class StationTruth:
    """Seconds a station spent in each category, and its active periods (working, changeover, down)."""

    category: str = "starved"
    since: float = 0.0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STATION_CATEGORIES, 0.0))
    #: ended active periods [start, end); inactive for no time (within one instant) does not end one
    active: list[tuple[float, float]] = field(default_factory=list)
    active_since: float | None = None

    def enter(self, now: float, category: str) -> None:
        if category == self.category:
            return
        self.seconds[self.category] += now - self.since
        self.category, self.since = category, now
        if category in ACTIVE_STATES:
            if self.active_since is None:
                resumed = self.active and self.active[-1][1] == now
                self.active_since = self.active.pop()[0] if resumed else now
        elif self.active_since is not None:
            self.active.append((self.active_since, now))
            self.active_since = None

    def totals(self, now: float) -> dict[str, float]:
        result = dict(self.seconds)
        result[self.category] += now - self.since
        return result

    def active_periods(self, now: float) -> list[tuple[float, float]]:
        """Active periods up to ``now``; one still running ends at ``now``."""
        running = [] if self.active_since is None or now <= self.active_since else [(self.active_since, now)]
        return [*self.active, *running]


@dataclass(slots=True)
class PartRecord:
    """One part's life: receipt, release into the line, completion (end of the loop), shipment."""

    line: str
    part: str
    sku: str
    arrived: float
    released: float | None = None
    finished: float | None = None
    shipped: float | None = None


@dataclass
class GroundTruth:
    """What really happened in the simulation: the reference the processors are checked against.

    ``wip`` ("line/location" -> parts at the end) and ``events`` (events emitted) are the figures the
    end-to-end tests compare against InfluxDB.
    """

    duration: float = 0.0
    events: int = 0
    shipped: int = 0
    orders: int = 0
    orders_by_line: dict[str, int] = field(default_factory=dict)
    locations: dict[str, LocationTruth] = field(default_factory=dict)
    stations: dict[str, StationTruth] = field(default_factory=dict)
    parts: list[PartRecord] = field(default_factory=list)
    sample_interval: float = 60.0
    sample_times: list[float] = field(default_factory=list)
    samples: dict[str, list[int]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def wip(self) -> dict[str, int]:
        return {key: loc.wip for key, loc in self.locations.items()}

    @property
    def arrivals(self) -> dict[str, int]:
        return {key: loc.arrivals for key, loc in self.locations.items()}

    @property
    def departures(self) -> dict[str, int]:
        return {key: loc.departures for key, loc in self.locations.items()}

    def sample(self, now: float) -> None:
        self.sample_times.append(now)
        for key, loc in self.locations.items():
            self.samples.setdefault(key, []).append(loc.wip)

    def line_summary(self, line: str) -> dict[str, float]:
        """Throughput, time-average WIP and flow times of one line (Little's Law inputs)."""
        hours = self.duration / 3600 if self.duration else 0.0
        prefix = f"{line}/"
        avg_wip = sum(loc.average(self.duration) for k, loc in self.locations.items() if k.startswith(prefix))
        mine = [p for p in self.parts if p.line == line]
        shipped = [p for p in mine if p.shipped is not None]
        finished = [p for p in mine if p.finished is not None and p.released is not None]
        lead = [p.shipped - p.arrived for p in shipped if p.shipped is not None]
        cycle = [
            p.finished - p.released for p in finished if p.finished is not None and p.released is not None
        ]
        return {
            "orders": float(self.orders_by_line.get(line, 0)),
            "received": float(len(mine)),
            "shipped": float(len(shipped)),
            "throughput_per_hour": len(shipped) / hours if hours else 0.0,
            "avg_wip": avg_wip,
            "final_wip": float(sum(loc.wip for k, loc in self.locations.items() if k.startswith(prefix))),
            "mean_lead_time_s": sum(lead) / len(lead) if lead else 0.0,
            "max_lead_time_s": max(lead, default=0.0),
            "p50_lead_time_s": percentile(lead, 50) or 0.0,
            "p90_lead_time_s": percentile(lead, 90) or 0.0,
            "completed": float(len(finished)),
            "mean_cycle_time_s": sum(cycle) / len(cycle) if cycle else 0.0,
        }

    def active_periods(self, line: str) -> list[tuple[float, float, str]]:
        """(start, end, station) active periods of ``line``'s stations up to the end of the run.

        The input of the bottleneck shares (``wipwatch.processors.metrics.bottleneck.method_shares``,
        called by the tests: the simulator does not import the processors).
        """
        prefix = f"{line}/"
        return [
            (start, end, key.removeprefix(prefix))
            for key, station in sorted(self.stations.items())
            if key.startswith(prefix)
            for start, end in station.active_periods(self.duration)
        ]

    def as_dict(self) -> dict[str, Any]:
        now = self.duration
        lines = sorted({p.line for p in self.parts} | {k.split("/", 1)[0] for k in self.locations})
        return {
            **self.meta,
            "duration_s": now,
            "events": self.events,
            "shipped": self.shipped,
            "orders": self.orders,
            "wip": dict(sorted(self.wip.items())),
            "arrivals": dict(sorted(self.arrivals.items())),
            "departures": dict(sorted(self.departures.items())),
            "locations": {
                key: {
                    "final_wip": loc.wip,
                    "avg_wip": loc.average(now),
                    "max_wip": loc.max_wip,
                    "arrivals": loc.arrivals,
                    "departures": loc.departures,
                    "mean_dwell_s": sum(loc.dwells) / len(loc.dwells) if loc.dwells else None,
                    "p50_dwell_s": percentile(loc.dwells, 50),
                    "p90_dwell_s": percentile(loc.dwells, 90),
                    "p99_dwell_s": percentile(loc.dwells, 99),
                    "throughput_per_hour": loc.departures * 3600 / now if now else 0.0,
                }
                for key, loc in sorted(self.locations.items())
            },
            "stations": {key: st.totals(now) for key, st in sorted(self.stations.items())},
            "lines": {line: self.line_summary(line) for line in lines},
            "wip_series": {"interval_s": self.sample_interval, "t": self.sample_times, **self.samples},
            "parts": [
                {
                    "line": p.line,
                    "part": p.part,
                    "sku": p.sku,
                    "arrived": p.arrived,
                    "released": p.released,
                    "finished": p.finished,
                    "shipped": p.shipped,
                }
                for p in self.parts
            ],
        }
