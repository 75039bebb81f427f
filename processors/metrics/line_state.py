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

Points in event time: the line's time is cut into periods of ``point_interval_s`` (aligned to the unix
epoch, so 60 s periods end on whole minutes). A period with at least one event applied is *open* until
an event later than its end is applied; then it is *closed*, and ``on_snapshot(engine, end, None)`` is
called with the state as of the period's end (every event at or before ``end`` applied, none after). A
queue that shrank is a change that matters between periods: once no more events can come at the instant
it shrank at (an event later than that is applied), ``on_snapshot(engine, instant, locations)`` is called
with the state as of that instant and the locations whose WIP settled lower there. What is called, when
in event time and with which state depends only on the events and their order, never on how they were
batched: so the points drawn from them (processors/points.py) are the same at any replay speed.

Guards (docs/metrics.md, "Clock guards"): an event is refused before it touches anything, counted in data
quality and never retried, when it cannot be applied or its time cannot be trusted: a time outside
[``EARLIEST_TIME``, ``LATEST_TIME``) or a field beyond the schema's limits (``out of range``, ``invalid``),
a time more than ``max_ahead_s`` after the Kafka record's timestamp (``ahead``), or more than the horizon
behind the line's watermark (``too old``: its id may already be forgotten, so it could count twice). So
no single event can move a line's clock far ahead or restart its history far back, and the state always
dumps and loads. Anything else an event raises while being applied is counted as ``internal``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

import msgspec

from wipwatch.alert_rules import RuleInstance
from wipwatch.events import (
    ACTIVE_STATES,
    EARLIEST_TS,
    LATEST_TS,
    MAX_QTY,
    Event,
    PartIn,
    PartOut,
    StationState,
    StationStateName,
)
from wipwatch.processors.metrics.alerts import AlertBook, AlertEvaluator, Transition
from wipwatch.processors.metrics.bottleneck import ActivePeriods
from wipwatch.processors.metrics.flow_time import FlowTimeSketch, Residents
from wipwatch.processors.metrics.holding_cost import HoldingCost
from wipwatch.processors.metrics.queue_growth import QueueGrowth, new_queue_growth
from wipwatch.processors.metrics.station_state import StationClock
from wipwatch.processors.metrics.throughput import Throughput
from wipwatch.site import Line, LocationKind

#: Every data-quality reason (docs/metrics.md): a fixed set, so counters and the ``reason`` tag stay bounded.
QualityReason = Literal[
    "duplicate",
    "late",
    "too old",
    "ahead",
    "out of range",
    "invalid",
    "wrong line",
    "undecodable",
    "departure without arrival",
    "quantity mismatch",
    "arrival of a present part",
    "unknown location",
    "state of a non-station",
    "internal",
]
#: The location tag of data-quality points for events naming a location the site file does not have.
UNKNOWN_LOCATION = "_unknown"
_FORGET_CHUNK = 256
#: Called with the engine, an event time and the locations to snapshot there (None: the whole line), with the
#: state as of that time, before the next event is applied (module docstring).
Snapshot = Callable[["LineEngine", float, frozenset[str] | None], None]
_STATES = frozenset(get_args(StationStateName))
_KINDS = frozenset({PartIn, PartOut, StationState})
_MAX_ID = 128
_MAX_SKU = 64


@dataclass(frozen=True)
class EngineConfig:
    """How the processors treat time: lateness, windows and de-duplication (settings ``PROCESSOR_*``)."""

    lateness_s: float = 5.0
    throughput_window_s: float = 3600.0
    growth_window_s: float = 900.0
    bottleneck_window_s: float = 3600.0
    dedup_horizon_s: float = 3600.0
    dedup_max_ids: int = 20_000
    #: Event-time seconds between alert evaluations (the site file's ``alerts.evaluate_every``).
    alert_every_s: float = 10.0
    #: Judge ``line_silent`` on the wall clock (the live processors) instead of event time (backtests).
    wall_clock_silence: bool = False
    point_interval_s: float = 60.0
    #: Seconds an event time may be after its Kafka record's timestamp (``WIPWATCH_MAX_CLOCK_AHEAD_S``).
    max_ahead_s: float = math.inf
    #: A line is *live* while its newest event is at most this old on the caller's wall clock (``release``);
    #: the processors use the lateness plus the idle release, so a burst's last events still count.
    live_window_s: float = 5.0

    @property
    def horizon_s(self) -> float:
        """How far behind the watermark an event may be and still count (``too old`` beyond)."""
        return max(self.dedup_horizon_s, self.lateness_s)

    def __post_init__(self) -> None:
        for name in (
            "throughput_window_s",
            "growth_window_s",
            "bottleneck_window_s",
            "alert_every_s",
            "point_interval_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("lateness_s", "dedup_horizon_s", "live_window_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.dedup_max_ids < 1:
            raise ValueError(f"dedup_max_ids must be >= 1, got {self.dedup_max_ids}")
        if not self.max_ahead_s > 0:
            raise ValueError(f"max_ahead_s must be > 0, got {self.max_ahead_s}")


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
    #: End of the open period (the event time its points are stamped with); None while none is open.
    period_end: float | None = None
    #: Locations whose queue shrank at the instant ``released`` (snapshot when that instant is over).
    shrunk: list[str] = msgspec.field(default_factory=list)
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
    alerts: AlertBook = msgspec.field(default_factory=AlertBook)


@dataclass(frozen=True)
class Issue:
    """A data-quality finding: which location, why, and the event time it is counted at."""

    location: str
    reason: QualityReason
    time: float


@dataclass
class Changes:
    """What calls changed: locations touched, data-quality findings, alert transitions, and the points
    of closed periods and shrink instants (rendered by ``on_snapshot``), until ``clear``."""

    locations: set[str] = field(default_factory=set)
    issues: list[Issue] = field(default_factory=list)
    alerts: list[Transition] = field(default_factory=list)
    points: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.locations.clear()
        self.issues.clear()
        self.alerts.clear()
        self.points.clear()


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(LineState)


def period_end(t: float, interval_s: float) -> float:
    """End of the point period holding event time ``t``: the next multiple of ``interval_s`` at or after."""
    return math.ceil(t / interval_s) * interval_s


class LineEngine:
    """Applies one line's events to its ``LineState`` in event-time order (pure: no Kafka, no I/O).

    ``on_snapshot(engine, at, locations)`` is called at every period end and every shrink instant (module
    docstring), with the state as of ``at``; the processors render the line's points there.
    """

    def __init__(
        self,
        line: Line,
        site_id: str,
        config: EngineConfig,
        state: LineState | None = None,
        rules: Sequence[RuleInstance] = (),
        on_snapshot: Snapshot | None = None,
    ) -> None:
        self.line = line
        self.config = config
        self.on_snapshot = on_snapshot
        # the settings the per-event paths read, looked up once (``horizon_s`` is a property)
        self._horizon_s = config.horizon_s
        self._max_ahead_s = config.max_ahead_s
        self._dedup_max_ids = config.dedup_max_ids
        self._dedup_horizon_s = config.dedup_horizon_s
        self._interval_s = config.point_interval_s
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
        self.alerts = AlertEvaluator(
            [r for r in rules if r.line == line.id],
            config.alert_every_s,
            line.demand_per_hour,
            config.wall_clock_silence,
        )
        self.alerts.attach(self.state)
        self._alert_due = self.alerts.due(self.state.alerts)

    @classmethod
    def load(
        cls,
        line: Line,
        site_id: str,
        config: EngineConfig,
        blob: bytes,
        rules: Sequence[RuleInstance] = (),
        on_snapshot: Snapshot | None = None,
    ) -> LineEngine:
        """Rebuild an engine from ``dump``'s bytes (after a restart, from the changelog)."""
        return cls(line, site_id, config, _decoder.decode(blob), rules, on_snapshot)

    def dump(self) -> bytes:
        return _encoder.encode(self.state)

    @property
    def now(self) -> float | None:
        """The line's event-time clock: the time of the last event applied."""
        return self.state.released

    def offer(
        self, events: Iterable[Event], partition: int, offset: int, received_at: float | None = None
    ) -> bool:
        """Take the events of one Kafka record; False (and nothing changes) if it was applied before.

        ``received_at`` is the record's timestamp (POSIX seconds): events later than it by more than
        ``max_ahead_s`` are refused as ``ahead``.
        """
        st = self.state
        if partition == st.partition and offset <= st.offset:
            return False
        st.partition, st.offset = partition, offset
        ids = self._ids
        admit, remember, pending = self._admit, self._remember, st.pending
        for event in events:
            refusal, t = admit(event, received_at)
            if refusal is not None:
                self._issue(getattr(event, "location", ""), refusal, self._clock_or(received_at))
                continue
            if event.id in ids:
                self._issue(event.location, "duplicate", t)
                continue
            remember(event.id, t)
            if st.watermark is None or t > st.watermark:
                st.watermark = t
            if st.released is not None and t < st.released:
                self._issue(event.location, "late", st.released)
                self._apply_guarded(event, st.released)
                continue
            st.seq += 1
            heapq.heappush(pending, (t, st.seq, event))
        return True

    def skip(
        self, partition: int, offset: int, reason: QualityReason, received_at: float | None = None
    ) -> bool:
        """Count a record that cannot be decoded as one finding of ``reason``; False if seen before."""
        st = self.state
        if partition == st.partition and offset <= st.offset:
            return False
        st.partition, st.offset = partition, offset
        self._issue("", reason, self._clock_or(received_at))
        return True

    def release(self, everything: bool = False, wall_now: float | None = None) -> int:
        """Apply the waiting events up to the watermark minus the lateness (all with ``everything``).

        ``wall_now`` (POSIX seconds, the caller's clock) lets a *live* line's events wait for the lateness
        in wall time too: while the line's newest event is at most ``live_window_s`` old, an event is
        applied once the wall clock is the lateness past it, even if no later event has come. A line
        whose events are older (a replay of past data, a backlog) waits for its watermark only, so what
        it applies, and in which order, does not depend on how fast it is replayed (docs/metrics.md,
        "Live latency and the release policy").
        """
        st = self.state
        if not st.pending or st.watermark is None:
            return 0
        lateness = self.config.lateness_s
        bound = st.watermark
        if wall_now is not None and st.watermark >= wall_now - self.config.live_window_s:
            bound = max(bound, wall_now)
        bound = float("inf") if everything else bound - lateness
        applied = 0
        pending = st.pending
        apply, pop = self._apply, heapq.heappop
        while pending and pending[0][0] <= bound:
            t, _, event = pop(pending)
            try:  # inline, not _apply_guarded: this is the processors' hottest loop
                apply(event, t)
            except Exception:
                self._issue(event.location, "internal", t)
                continue
            applied += 1
        return applied

    def finish_alerts(self) -> None:
        """Evaluate the alert ticks up to the last event applied (a backtest's end; live: the next event)."""
        self.alerts.finish(self.state, self.changes.alerts)
        self._alert_due = self.alerts.due(self.state.alerts)

    def heard(self, wall_now: float) -> None:
        """The processors received a record of this line at wall-clock ``wall_now`` (for ``line_silent``)."""
        self.state.alerts.heard_wall = wall_now

    def check_silence(self, wall_now: float, not_before: float | None = None) -> None:
        """Judge ``line_silent`` rules on the wall clock (the processors' timer; see ``EngineConfig``)."""
        self.alerts.check_silence(self.state, wall_now, self.changes.alerts, not_before)

    def _apply_guarded(self, event: Event, t: float) -> bool:
        """Apply ``event`` at ``t``; if that raises, count ``internal`` instead: never retried, so no
        record can crash-loop a worker (module docstring)."""
        try:
            self._apply(event, t)
        except Exception:
            self._issue(event.location, "internal", t)
            return False
        return True

    def _admit(self, event: Any, received_at: float | None) -> tuple[QualityReason | None, float]:
        """``(None, event time)`` if ``event`` may touch the line, else ``(data-quality reason, 0)``.

        ``decode_record`` already enforces the schema; these checks are cheap (~1 µs) and also hold for
        events built any other way, so whatever enters the state dumps and loads.
        """
        st = self.state
        if type(event) not in _KINDS:
            return "invalid", 0.0
        if event.site != st.site or event.line != st.line or event.v != 1:
            return "wrong line", 0.0
        if event.location not in st.locations:
            return "unknown location", 0.0
        if type(event.id) is not str or not 0 < len(event.id) <= _MAX_ID:
            return "invalid", 0.0
        if type(event) is StationState:
            part = event.part
            if event.state not in _STATES or (part is not None and (type(part) is not str or not part)):
                return "invalid", 0.0
        else:
            part, qty = event.part, event.qty
            if type(part) is not str or not part or type(event.sku) is not str or len(event.sku) > _MAX_SKU:
                return "invalid", 0.0
            if type(qty) is not int or not 1 <= qty <= MAX_QTY:
                return "out of range", 0.0
        if part is not None and len(part) > _MAX_ID:
            return "invalid", 0.0
        when = event.time
        if type(when) is not datetime or when.tzinfo is None:
            return "invalid", 0.0
        try:
            t = when.timestamp()
        except (OverflowError, ValueError, OSError):
            return "out of range", 0.0
        if not EARLIEST_TS <= t < LATEST_TS:
            return "out of range", 0.0
        if received_at is not None and t > received_at + self._max_ahead_s:
            return "ahead", 0.0
        if st.watermark is not None and t < st.watermark - self._horizon_s:
            return "too old", 0.0
        return None, t

    def _clock_or(self, received_at: float | None) -> float:
        """The time a refused event is counted at: the line's clock, never the event's own time."""
        st = self.state
        for t in (st.released, st.watermark, received_at):
            if t is not None and EARLIEST_TS <= t < LATEST_TS:
                return t
        return EARLIEST_TS

    def _remember(self, event_id: str, t: float) -> None:
        st = self.state
        ids, times = st.recent_ids, st.recent_times
        ids.append(event_id)
        times.append(t)
        self._ids.add(event_id)
        # forget in chunks, and only look when a whole chunk is due: deleting the head of a list costs
        # O(n), and scanning for expired ids on every event made this the hottest line of the processors
        limit = len(ids) - self._dedup_max_ids
        horizon = (st.watermark or t) - self._dedup_horizon_s
        if limit <= _FORGET_CHUNK and (len(times) <= _FORGET_CHUNK or times[_FORGET_CHUNK] >= horizon):
            return
        drop = max(limit, 0)
        while drop < len(ids) and times[drop] < horizon:
            drop += 1
        for old in ids[:drop]:
            self._ids.discard(old)
        del ids[:drop], times[:drop]

    def _issue(self, location: object, reason: QualityReason, t: float) -> None:
        known = isinstance(location, str) and location in self.state.locations
        where = location if isinstance(location, str) and known else UNKNOWN_LOCATION
        self.state.quality[reason] = self.state.quality.get(reason, 0) + 1
        self.changes.issues.append(Issue(where, reason, t))
        if self.alerts.dq_window:
            self.state.alerts.issue_times.append(t)

    def _apply(self, event: Event, t: float) -> None:
        st = self.state
        if st.shrunk and st.released is not None and t > st.released:
            instant = st.released
            # judged again now that the instant is over: a part in at the same instant undoes a shrink
            shrunk = frozenset(x for x in st.shrunk if st.locations[x].growth.last_shrink == instant)
            st.shrunk = []
            if shrunk and self.on_snapshot is not None:
                self.on_snapshot(self, instant, shrunk)
        end = st.period_end
        if end is not None and t > end:
            st.period_end = None
            if self.on_snapshot is not None:
                self.on_snapshot(self, end, None)
            end = st.period_end
        if end is None:
            interval = self._interval_s
            st.period_end = math.ceil(t / interval) * interval  # period_end(t, interval), inline
        if st.started is None:
            st.started = t
            st.shipped.start(t)
            for each in st.locations.values():
                each.departures.start(t)
            self.alerts.start(st.alerts, t)
            self._alert_due = self.alerts.due(st.alerts)
        elif t > self._alert_due:
            self.alerts.until(st, t, self.changes.alerts)
            self._alert_due = self.alerts.due(st.alerts)
        st.released = t
        st.alerts.events += 1
        where = event.location
        loc = st.locations[where]
        # exactly one of the three (``_admit`` refused anything else): no subclass to look for
        if type(event) is PartIn:
            # a part already here starts its stay again (Residents): WIP moves by the difference only
            part, qty = event.part, event.qty
            residents = loc.residents
            present = residents.batch_qty.get(part, 1) if residents.has(part) else 0
            if present:
                self._issue(where, "arrival of a present part", t)
            residents.arrive(part, t, qty)
            if not st.on_line.has(part):
                st.on_line.arrive(part, t, qty)
            self._wip(where, loc, t, qty - present)
        elif type(event) is PartOut:
            # a part leaves as it arrived: WIP stays the sum of what is here, never negative
            part = event.part
            residents = loc.residents
            qty = residents.batch_qty.get(part, 1)  # its arrival quantity, if it is here
            arrived = residents.leave(part)
            if arrived is None:
                self._issue(where, "departure without arrival", t)
                return
            if qty != event.qty:
                self._issue(where, "quantity mismatch", t)
            loc.dwell.add(t - arrived, qty)
            loc.departures.record(t, qty)
            self._wip(where, loc, t, -qty)
            if where in self._exits:
                entered = st.on_line.leave(part)
                if entered is not None:
                    st.flow.add(t - entered, qty)
                    st.shipped.record(t, qty)
        elif type(event) is StationState:
            if loc.clock is None:
                self._issue(event.location, "state of a non-station", t)
                return
            loc.clock.set_state(t, event.state)
            st.bottleneck.set_active(t, event.location, event.state in ACTIVE_STATES)
            self.changes.locations.add(event.location)

    def _wip(self, location: str, loc: LocationState, t: float, delta: int) -> None:
        loc.wip = wip = loc.wip + delta
        loc.changed_at = t
        growth = loc.growth
        growth.record(t, wip)
        if growth.last_shrink == t:
            shrunk = self.state.shrunk
            if location not in shrunk:
                shrunk.append(location)
        loc.cost.record(t, wip)
        clock = loc.clock
        if clock is not None:
            clock.set_wip(t, wip)
        self.changes.locations.add(location)
