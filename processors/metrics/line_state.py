"""One line's complete processor state, and the order in which events change it (docs/metrics.md).

Everything the processors know about a line lives in one ``LineState``: WIP and the flow metrics of each
location, the parts on the line, the events waiting to be put in event-time order, the ids seen lately and
the Kafka offset of the last record applied. The Faust app stores it as one changelog record per line per
batch, so state and offset move together: after a crash the table comes back from the changelog, the
records at or below ``offset`` are skipped, and every accepted event counts exactly once.

Order of events: ``offer`` puts new events into a reorder buffer; ``release`` applies those at or before the
watermark (largest event time seen) minus the allowed lateness, in event-time order. An event older than the
last released time is *late*: it is applied at that time and counted in data quality as ``late``, never
silently dropped or placed in the past. Events with the same id as one seen within the de-duplication
horizon are ignored and counted as ``duplicate``. A departure of a part that is not at the location is
``departure without arrival`` and changes nothing: WIP is never clamped.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from wipwatch.events import ACTIVE_STATES, Event, PartIn, PartOut, StationState
from wipwatch.processors.metrics.bottleneck import ActivePeriods
from wipwatch.processors.metrics.flow_time import FlowTimeSketch, Residents
from wipwatch.processors.metrics.holding_cost import HoldingCost
from wipwatch.processors.metrics.queue_growth import QueueGrowth, new_queue_growth
from wipwatch.processors.metrics.station_state import StationClock
from wipwatch.processors.metrics.throughput import Throughput
from wipwatch.site import Line, LocationKind

#: The location tag of data-quality points for events naming a location the site file does not have.
UNKNOWN_LOCATION = "_unknown"
_FORGET_CHUNK = 256


@dataclass(frozen=True)
class EngineConfig:
    """How the processors treat time: lateness, windows and de-duplication (settings ``PROCESSOR_*``)."""

    lateness_s: float = 5.0
    throughput_window_s: float = 3600.0
    growth_window_s: float = 900.0
    bottleneck_window_s: float = 3600.0
    dedup_horizon_s: float = 3600.0
    dedup_max_ids: int = 20_000

    def __post_init__(self) -> None:
        for name in ("throughput_window_s", "growth_window_s", "bottleneck_window_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("lateness_s", "dedup_horizon_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.dedup_max_ids < 1:
            raise ValueError(f"dedup_max_ids must be >= 1, got {self.dedup_max_ids}")


class LocationState(msgspec.Struct, kw_only=True):
    """WIP of one location and the metrics that follow it."""

    wip: int = 0
    changed_at: float | None = None
    growth: QueueGrowth
    departures: Throughput
    dwell: FlowTimeSketch
    residents: Residents
    cost: HoldingCost
    clock: StationClock | None = None


class LineState(msgspec.Struct, kw_only=True):
    """Everything the processors keep for one line; msgpack-encoded into one changelog record."""

    site: str
    line: str
    partition: int = -1
    offset: int = -1
    started: float | None = None
    watermark: float | None = None
    released: float | None = None
    seq: int = 0
    pending: list[tuple[float, int, Event]] = msgspec.field(default_factory=list)
    recent_ids: list[str] = msgspec.field(default_factory=list)
    recent_times: list[float] = msgspec.field(default_factory=list)
    on_line: Residents = msgspec.field(default_factory=Residents)
    flow: FlowTimeSketch = msgspec.field(default_factory=FlowTimeSketch)
    shipped: Throughput
    bottleneck: ActivePeriods = msgspec.field(default_factory=ActivePeriods)
    locations: dict[str, LocationState] = msgspec.field(default_factory=dict)
    quality: dict[str, int] = msgspec.field(default_factory=dict)


@dataclass(frozen=True)
class Issue:
    """A data-quality finding: which location, why, and the event time it is counted at."""

    location: str
    reason: str
    time: float


@dataclass
class Changes:
    """What a call changed, for the InfluxDB points: locations touched and data-quality findings."""

    locations: set[str] = field(default_factory=set)
    issues: list[Issue] = field(default_factory=list)

    def clear(self) -> None:
        self.locations.clear()
        self.issues.clear()


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(LineState)


class LineEngine:
    """Applies one line's events to its ``LineState`` in event-time order (pure: no Kafka, no I/O)."""

    def __init__(
        self, line: Line, site_id: str, config: EngineConfig, state: LineState | None = None
    ) -> None:
        self.line = line
        self.config = config
        self.state = state or LineState(
            site=site_id,
            line=line.id,
            shipped=Throughput(window_s=config.throughput_window_s),
            bottleneck=ActivePeriods(window_s=config.bottleneck_window_s),
        )
        for loc in line.locations:
            if loc.id not in self.state.locations:
                self.state.locations[loc.id] = LocationState(
                    growth=new_queue_growth(config.growth_window_s),
                    departures=Throughput(window_s=config.throughput_window_s),
                    dwell=FlowTimeSketch(),
                    residents=Residents(),
                    cost=HoldingCost(unit_value=loc.unit_value, cost_per_part_hour=loc.holding_cost_per_hour),
                    clock=StationClock() if loc.kind is LocationKind.STATION else None,
                )
        self._exits = frozenset(loc.id for loc in line.locations if not line.successors(loc.id))
        self._ids = set(self.state.recent_ids)
        self.changes = Changes()

    @classmethod
    def load(cls, line: Line, site_id: str, config: EngineConfig, blob: bytes) -> LineEngine:
        """Rebuild an engine from ``dump``'s bytes (after a restart, from the changelog)."""
        return cls(line, site_id, config, _decoder.decode(blob))

    def dump(self) -> bytes:
        return _encoder.encode(self.state)

    @property
    def now(self) -> float | None:
        """The line's event-time clock: the time of the last event applied."""
        return self.state.released

    def offer(self, events: Iterable[Event], partition: int, offset: int) -> bool:
        """Take the events of one Kafka record; False (and nothing changes) if it was applied before."""
        st = self.state
        if partition == st.partition and offset <= st.offset:
            return False
        st.partition, st.offset = partition, offset
        for event in events:
            if event.id in self._ids:
                self._issue(event.location, "duplicate", event.timestamp)
                continue
            t = event.timestamp
            self._remember(event.id, t)
            if st.watermark is None or t > st.watermark:
                st.watermark = t
            if st.released is not None and t < st.released:
                self._issue(event.location, "late", st.released)
                self._apply(event, st.released)
                continue
            st.seq += 1
            heapq.heappush(st.pending, (t, st.seq, event))
        return True

    def release(self, everything: bool = False) -> int:
        """Apply the waiting events up to the watermark minus the lateness (all with ``everything``)."""
        st = self.state
        if not st.pending or st.watermark is None:
            return 0
        bound = float("inf") if everything else st.watermark - self.config.lateness_s
        applied = 0
        pending = st.pending
        while pending and pending[0][0] <= bound:
            t, _, event = heapq.heappop(pending)
            self._apply(event, t)
            applied += 1
        return applied

    def _remember(self, event_id: str, t: float) -> None:
        st = self.state
        ids, times = st.recent_ids, st.recent_times
        ids.append(event_id)
        times.append(t)
        self._ids.add(event_id)
        # forget in chunks, and only look when a whole chunk is due: deleting the head of a list costs
        # O(n), and scanning for expired ids on every event made this the hottest line of the processors
        limit = len(ids) - self.config.dedup_max_ids
        horizon = (st.watermark or t) - self.config.dedup_horizon_s
        if limit <= _FORGET_CHUNK and (len(times) <= _FORGET_CHUNK or times[_FORGET_CHUNK] >= horizon):
            return
        drop = max(limit, 0)
        while drop < len(ids) and times[drop] < horizon:
            drop += 1
        for old in ids[:drop]:
            self._ids.discard(old)
        del ids[:drop], times[:drop]

    def _issue(self, location: str, reason: str, t: float) -> None:
        where = location if location in self.state.locations else UNKNOWN_LOCATION
        self.state.quality[reason] = self.state.quality.get(reason, 0) + 1
        self.changes.issues.append(Issue(where, reason, t))

    def _apply(self, event: Event, t: float) -> None:
        st = self.state
        if st.started is None:
            st.started = t
            st.shipped.start(t)
            for each in st.locations.values():
                each.departures.start(t)
        st.released = t
        loc = st.locations.get(event.location)
        if loc is None:
            self._issue(event.location, "unknown location", t)
            return
        if isinstance(event, PartIn):
            loc.residents.arrive(event.part, t, event.qty)
            if not st.on_line.has(event.part):
                st.on_line.arrive(event.part, t, event.qty)
            self._wip(event.location, loc, t, event.qty)
        elif isinstance(event, PartOut):
            arrived = loc.residents.leave(event.part)
            if arrived is None:
                self._issue(event.location, "departure without arrival", t)
                return
            loc.dwell.add(t - arrived, event.qty)
            loc.departures.record(t, event.qty)
            self._wip(event.location, loc, t, -event.qty)
            if event.location in self._exits:
                entered = st.on_line.leave(event.part)
                if entered is not None:
                    st.flow.add(t - entered, event.qty)
                    st.shipped.record(t, event.qty)
        elif isinstance(event, StationState):
            if loc.clock is None:
                self._issue(event.location, "state of a non-station", t)
                return
            loc.clock.set_state(t, event.state)
            st.bottleneck.set_active(t, event.location, event.state in ACTIVE_STATES)
            self.changes.locations.add(event.location)

    def _wip(self, location: str, loc: LocationState, t: float, delta: int) -> None:
        loc.wip += delta
        loc.changed_at = t
        loc.growth.record(t, loc.wip)
        loc.cost.record(t, loc.wip)
        if loc.clock is not None:
            loc.clock.set_wip(t, loc.wip)
        self.changes.locations.add(location)
