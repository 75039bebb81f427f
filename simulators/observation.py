"""What a recorded shift says about each line: flow figures and the raw samples a model is fitted to.

Reads v1 events (the payloads of a recording of ``wipwatch record`` or ``wipwatch simulate --dry-run``,
which the caller reads), sorts them by event time (stable, so events of one instant
keep their order) and replays them through per-line counters. Time zero is the shift start (``start``,
default the first event); only events in ``[start, start + duration]`` count.

Per line: time-average WIP and money tied up (exact integrals), parts shipped, mean lead time (first
arrival on the line -> departure from a last location), deliveries into the first location (lots: the
arrivals of one SKU at one instant), releases out of it, and what shipments reveal about customer orders
(a part that waited in finished goods left when an order came). Per station: process times of single
machines from their state events, repairs, changeovers, and, for every station, the dwell (machine-holding)
time of each part with a flag saying whether the departure coincided with a slot freeing downstream (the
part may have been blocked, so its processing ended earlier: a left-censored observation).
docs/benchmarking.md describes the method.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from wipwatch.errors import EventError, RecordingError
from wipwatch.events import Event, PartIn, PartOut, StationState, decode_event
from wipwatch.site import Line, LocationKind, Site

log = logging.getLogger(__name__)

#: Arrivals of one SKU closer than this (seconds) are one delivery.
LOT_GAP_S = 1e-3


@dataclass
class StationSamples:
    """Raw observations of one station over the shift."""

    machines: int
    departures: int = 0
    state: str = "idle"
    since: float = 0.0
    part: str | None = None
    seconds: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("working", "changeover", "down"), 0.0)
    )
    #: process time per part from ``working`` intervals (single machine with part-tagged states)
    process: list[float] = field(default_factory=list)
    part_states: int = 0
    repairs: list[float] = field(default_factory=list)
    changeovers: list[float] = field(default_factory=list)
    #: machine-holding time per departed part and whether it is exact (not possibly blocked)
    dwell: list[float] = field(default_factory=list)
    dwell_exact: list[bool] = field(default_factory=list)
    #: whether the part came soon after a SKU switch (another SKU among the ``machines`` parts before it)
    dwell_switch: list[bool] = field(default_factory=list)
    sku_switches: int = 0
    last_sku: str | None = None
    _working: dict[str, float] = field(default_factory=dict)
    _recent_skus: list[str] = field(default_factory=list)
    _switch: dict[str, bool] = field(default_factory=dict)

    @property
    def mean_dwell_s(self) -> float | None:
        return sum(self.dwell) / len(self.dwell) if self.dwell else None


@dataclass
class LineObservation:
    """A line over the observed window; ``summary()`` has the figures the simulator's ground truth has."""

    line: Line
    duration: float = 0.0
    shipped: int = 0
    received: int = 0
    lead_times: list[float] = field(default_factory=list)
    cycle_times: list[float] = field(default_factory=list)
    #: deliveries into the first location: [second, parts, sku]
    lots: list[list[float | int | str]] = field(default_factory=list)
    releases: list[float] = field(default_factory=list)
    #: intervals during which finished goods held stock (no order waits then)
    stock_periods: list[tuple[float, float]] = field(default_factory=list)
    #: shipments of parts that waited in stock: each is an order arriving at that moment
    stock_order_times: list[float] = field(default_factory=list)
    #: gaps between orders seen while stock never ran out in between
    order_gaps: list[float] = field(default_factory=list)
    #: event times of all shipments
    ship_times: list[float] = field(default_factory=list)
    stations: dict[str, StationSamples] = field(default_factory=dict)
    location_area: dict[str, float] = field(default_factory=dict)
    started_with_wip: int = 0

    def avg_wip(self, location: str | None = None) -> float:
        """Time-average WIP of the line (or of one location) over the window."""
        if self.duration <= 0:
            return 0.0
        if location is not None:
            return self.location_area.get(location, 0.0) / self.duration
        return sum(self.location_area.values()) / self.duration

    def money_tied_up(self) -> float:
        """Time-average of sum over locations of WIP x unit value."""
        return sum(self.avg_wip(loc.id) * loc.unit_value for loc in self.line.locations)

    def summary(self) -> dict[str, float]:
        hours = self.duration / 3600
        lead = self.lead_times
        return {
            "shipped": float(self.shipped),
            "throughput_per_hour": self.shipped / hours if hours else 0.0,
            "avg_wip": self.avg_wip(),
            "released_wip": self.avg_wip() - self.avg_wip(self.line.locations[0].id),
            "mean_lead_time_s": sum(lead) / len(lead) if lead else 0.0,
            "mean_cycle_time_s": sum(self.cycle_times) / len(self.cycle_times) if self.cycle_times else 0.0,
            "money_tied_up": self.money_tied_up(),
        }


@dataclass
class ShiftObservation:
    """Every line of the site over one recorded shift."""

    site: Site
    start: datetime
    duration: float
    lines: dict[str, LineObservation]
    events: int
    ignored: int


class _LineReplay:
    """Applies one line's events in time order to a :class:`LineObservation`."""

    def __init__(self, line: Line, duration: float) -> None:
        self.obs = LineObservation(line, duration)
        self.line = line
        self.first = line.locations[0].id
        self.terminals = {loc.id for loc in line.locations if not line.successors(loc.id)}
        self.successors = {loc.id: line.successors(loc.id) for loc in line.locations}
        self.wip = {loc.id: 0 for loc in line.locations}
        self.changed = {loc.id: 0.0 for loc in line.locations}
        self.obs.location_area = {loc.id: 0.0 for loc in line.locations}
        self.arrived: dict[str, float] = {}
        self.released: dict[str, float] = {}
        self.entered: dict[tuple[str, str], float] = {}
        self.last_out: dict[str, float] = {}
        self.stock_since: float | None = None
        self.last_order: float | None = None
        self.loop_end = self._loop_end()
        for loc in line.locations:
            if loc.kind is LocationKind.STATION:
                self.obs.stations[loc.id] = StationSamples(loc.machines)

    def _loop_end(self) -> set[str]:
        """Non-station locations with no station downstream (where the simulator's cycle time ends)."""
        kinds = {loc.id: loc.kind for loc in self.line.locations}
        memo: dict[str, bool] = {}

        def station_below(loc_id: str) -> bool:
            if loc_id not in memo:
                memo[loc_id] = False
                memo[loc_id] = any(
                    kinds[n] is LocationKind.STATION or station_below(n) for n in self.successors[loc_id]
                )
            return memo[loc_id]

        return {i for i, k in kinds.items() if k is not LocationKind.STATION and not station_below(i)}

    def _stock(self) -> int:
        return sum(self.wip[t] for t in self.terminals)

    def _change(self, location: str, now: float, delta: int) -> None:
        self.obs.location_area[location] += self.wip[location] * (now - self.changed[location])
        self.changed[location] = now
        before = self._stock()
        self.wip[location] += delta
        if location in self.terminals:
            after = self._stock()
            if before == 0 and after > 0:
                self.stock_since = now
            elif before > 0 and after == 0 and self.stock_since is not None:
                if now > self.stock_since:  # a part shipped on arrival was never stock
                    self.obs.stock_periods.append((self.stock_since, now))
                self.stock_since = None
                self.last_order = None

    def apply(self, event: Event, now: float) -> None:
        loc = event.location
        if isinstance(event, StationState):
            self._state(loc, event, now)
        elif isinstance(event, PartIn):
            self._part_in(loc, event, now)
        else:
            self._part_out(loc, event, now)

    def _part_in(self, loc: str, event: PartIn, now: float) -> None:
        part = event.part
        if part not in self.arrived:
            self.arrived[part] = now
            self.obs.received += 1
        if loc == self.first:
            lots = self.obs.lots
            if lots and lots[-1][2] == event.sku and now - float(lots[-1][0]) <= LOT_GAP_S:
                lots[-1][1] = int(lots[-1][1]) + event.qty
            else:
                lots.append([now, event.qty, event.sku])
        elif part not in self.released:
            self.released[part] = now
        self.entered[(loc, part)] = now
        station = self.obs.stations.get(loc)
        if station is not None:
            if station.last_sku is not None and station.last_sku != event.sku:
                station.sku_switches += 1
            station.last_sku = event.sku
            recent = station._recent_skus
            station._switch[part] = any(sku != event.sku for sku in recent)
            recent.append(event.sku)
            del recent[: -station.machines]
        if loc in self.loop_end and part in self.released:
            self.obs.cycle_times.append(now - self.released.pop(part))
        self._change(loc, now, event.qty)

    def _part_out(self, loc: str, event: PartOut, now: float) -> None:
        part = event.part
        entered = self.entered.pop((loc, part), None)
        if entered is None:
            self.obs.started_with_wip += 1
            self.last_out[loc] = now
            return  # it was there before the window: WIP would go negative; not applied
        if loc == self.first:
            self.obs.releases.append(now)
            self.released.setdefault(part, now)
        station = self.obs.stations.get(loc)
        if station is not None:
            station.departures += event.qty
            station.dwell.append(now - entered)
            blocked = any(self.last_out.get(s) == now for s in self.successors[loc])
            station.dwell_exact.append(not blocked)
            station.dwell_switch.append(station._switch.pop(part, False))
            done = station._working.pop(part, None)
            if done is not None:
                station.process.append(done)
        if loc in self.terminals:
            if now > entered:  # it waited in stock: an order arrived now
                self.obs.stock_order_times.append(now)
                if self.last_order is not None:
                    self.obs.order_gaps.append(now - self.last_order)
                self.last_order = now
            self.obs.shipped += event.qty
            self.obs.ship_times.extend([now] * event.qty)
            arrived = self.arrived.pop(part, None)
            if arrived is not None:
                self.obs.lead_times.append(now - arrived)
            self.released.pop(part, None)
        self.last_out[loc] = now
        self._change(loc, now, -event.qty)

    def _state(self, loc: str, event: StationState, now: float) -> None:
        station = self.obs.stations.get(loc)
        if station is None:
            return
        spent = now - station.since
        if station.state in station.seconds:
            station.seconds[station.state] += spent
        if station.state == "working" and station.part is not None and station.machines == 1:
            station._working[station.part] = station._working.get(station.part, 0.0) + spent
        elif station.state == "down" and station.machines == 1:
            station.repairs.append(spent)
        elif station.state == "changeover" and station.machines == 1:
            station.changeovers.append(spent)
        if event.state == "working" and event.part is not None:
            station.part_states += 1
        station.state, station.since, station.part = event.state, now, event.part

    def close(self, end: float) -> LineObservation:
        for loc, count in self.wip.items():
            self.obs.location_area[loc] += count * (end - self.changed[loc])
        if self.stock_since is not None:
            self.obs.stock_periods.append((self.stock_since, end))
        for station in self.obs.stations.values():
            if station.state in station.seconds:
                station.seconds[station.state] += end - station.since
            station.since = end
        return self.obs


def site_events(payloads: Iterable[bytes], site: Site) -> tuple[list[Event], int]:
    """The site's v1 events among ``payloads`` in their order (each event id once), and how many payloads
    were not (ignored: not an event, another site's, an unknown location, a duplicate id).

    The caller reads the recording (``wipwatch.recorder.formats.read_recording``) and reports the lines
    it could not read; this module stays free of file formats.
    """
    events: list[Event] = []
    ignored = 0
    seen: set[str] = set()
    for payload in payloads:
        try:
            event = decode_event(payload)
        except EventError:
            ignored += 1
            continue
        if event.site != site.site or not site.has_location(event.line, event.location) or event.id in seen:
            ignored += 1  # another site's, an unknown location, or delivered twice (QoS 1 redelivery)
            continue
        seen.add(event.id)
        events.append(event)
    return events, ignored


def observe(
    events: Iterable[Event],
    site: Site,
    start: datetime | None = None,
    duration: float | None = None,
    ignored: int = 0,
) -> ShiftObservation:
    """Replay ``events`` of ``site`` through per-line counters.

    Args:
        start: the shift start (time zero of the site's shift calendar); default the first event.
        duration: seconds observed from ``start``; default up to the last event.
    """
    ordered = sorted(events, key=lambda e: e.time)
    if not ordered:
        raise RecordingError("no events to observe")
    if start is None:
        start = ordered[0].time
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    origin = start.timestamp()
    if duration is None:
        duration = ordered[-1].time.timestamp() - origin
    if duration <= 0:
        raise RecordingError(
            f"the recording spans no time after {start.isoformat()} (duration {duration:.0f} s)"
        )
    replays = {line.id: _LineReplay(line, duration) for line in site.lines}
    count = 0
    for event in ordered:
        now = event.time.timestamp() - origin
        if now < -1e-6 or now > duration + 1e-6:
            continue
        replays[event.line].apply(event, max(now, 0.0))
        count += 1
    lines = {line_id: replay.close(duration) for line_id, replay in replays.items()}
    for line_id, obs in lines.items():
        if obs.started_with_wip:
            log.warning(
                "line=%s parts_there_before_start=%d (their departures are not applied)",
                line_id,
                obs.started_with_wip,
            )
    return ShiftObservation(site, start, duration, lines, count, ignored)
