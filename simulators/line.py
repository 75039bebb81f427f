"""A discrete-event model of a site's lines (SimPy), emitting v1 events and keeping ground truth.

Every part is a SimPy process that walks the line's route. It holds a slot where it is and asks for a slot
at the next location before it leaves, so a full location blocks the one before it. A station's slots are
its machines (a ``simpy.Store`` of :class:`_Machine`, so each remembers its last SKU and its time to the
next failure); a location with an enforced limit has a ``simpy.Resource`` of that many slots; anything
else is unbounded. Which limits hold is the line's release policy (push, kanban, CONWIP; see
``wipwatch.site.Release``). docs/simulators.md describes the model and how starved and blocked show in
the events.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import simpy
import simpy.rt

from wipwatch.events import STATION_STATES, Event, PartIn, PartOut, StationState, StationStateName
from wipwatch.simulators.truth import GroundTruth, LocationTruth, PartRecord, StationTruth
from wipwatch.site import Line, Location, LocationKind, ProcessTime, Shift, Site

EventSink = Callable[[Event], None]
ProgressSink = Callable[[float], None]
#: A recorded delivery: simulated second, parts, SKU (``simulators/fit.py`` replays a shift's deliveries).
Delivery = tuple[float, int, str]
_ID_NAMESPACE = uuid.UUID("6f1d2a8e-5c7b-4f0e-9a49-3c2d7f5b8e10")
_UNBOUNDED = None
#: A station shows the most productive state among its machines (docs/simulators.md).
_STATE_PRIORITY: tuple[StationStateName, ...] = STATION_STATES

__all__ = ["GroundTruth", "LineModel", "sample", "simulate_site"]


def sample(rng: random.Random, spec: ProcessTime) -> float:
    """One draw from a processing-time distribution given its mean and coefficient of variation.

    Gamma: shape k = 1/cv², scale mean/k. Lognormal: σ² = ln(1 + cv²), μ = ln(mean) - σ²/2.
    """
    if spec.dist == "deterministic":
        return spec.mean
    if spec.dist == "exponential":
        return rng.expovariate(1.0 / spec.mean)
    cv = spec.cv or 0.0
    if spec.dist == "gamma":
        shape = 1.0 / (cv * cv)
        return rng.gammavariate(shape, spec.mean / shape)
    sigma2 = math.log(1.0 + cv * cv)
    mu = math.log(spec.mean) - sigma2 / 2
    return rng.lognormvariate(mu, sigma2**0.5)


class Calendar:
    """The shift calendar as a predicate and a waitable event: is the line working now?"""

    def __init__(self, env: simpy.Environment, shift: Shift | None) -> None:
        self.env = env
        self.shift = shift
        self.on = True
        self._resumed = env.event()
        self._listeners: list[Callable[[], None]] = []

    def listen(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def wait(self) -> simpy.Event:
        """An event that fires when the shift resumes."""
        return self._resumed

    def run(self) -> Generator[simpy.Event, Any, None]:
        """Toggle on/off at shift end, breaks and the next shift's start, forever."""
        shift = self.shift
        if shift is None:
            return
        period = shift.repeat_hours * 3600
        edges: list[tuple[float, bool]] = []
        for pause in sorted(shift.breaks, key=lambda b: b.at_hour):
            edges += [(pause.at_hour * 3600, False), (pause.at_hour * 3600 + pause.minutes * 60, True)]
        if shift.hours < shift.repeat_hours:
            edges += [(shift.hours * 3600, False), (period, True)]
        cycle = 0
        while edges:
            for offset, on in edges:
                delay = cycle * period + offset - self.env.now
                if delay > 0:
                    yield self.env.timeout(delay)
                self._set(on)
            cycle += 1

    def _set(self, on: bool) -> None:
        if on == self.on:
            return
        self.on = on
        if on:
            resumed, self._resumed = self._resumed, self.env.event()
            resumed.succeed()
        for callback in self._listeners:
            callback()


@dataclass(slots=True)
class _Machine:
    index: int
    state: StationStateName = "idle"
    last_sku: str | None = None
    time_to_failure: float = math.inf


class _Station:
    """Runtime of one station: its machines, its reported state and its ground-truth accounting."""

    def __init__(self, env: simpy.Environment, loc: Location, truth: StationTruth) -> None:
        self.loc = loc
        self.machines: simpy.Store = simpy.Store(env, capacity=loc.machines)
        self.machines.items.extend(_Machine(i) for i in range(loc.machines))
        self.counts: dict[str, int] = {"working": 0, "changeover": 0, "down": 0, "idle": loc.machines}
        self.reported: StationStateName = "idle"
        self.truth = truth


class LineModel:
    """One line of the site in a SimPy environment."""

    def __init__(
        self,
        env: simpy.Environment,
        site: Site,
        line: Line,
        rng: random.Random,
        start: datetime,
        emit: EventSink,
        truth: GroundTruth,
        calendar: Calendar,
        deliveries: Sequence[Delivery] | None = None,
    ) -> None:
        self.env, self.site, self.line, self.rng = env, site, line, rng
        #: Replaces the line's supply when given: these lots, at these times, of these SKUs.
        self.deliveries = deliveries
        # One stream per purpose (common random numbers): two scenarios of one line with the same seed see
        # the same customer orders and the same n-th process time at each station.
        self.demand_rng = random.Random(rng.getrandbits(64))
        self.station_rngs = {loc.id: random.Random(rng.getrandbits(64)) for loc in line.locations}
        self.start, self.emit, self.truth, self.calendar = start, emit, truth, calendar
        self.policy = line.release.policy
        locations = line.locations
        self.first, self.last = locations[0].id, locations[-1].id
        self.loc_truth: dict[str, LocationTruth] = {}
        self.slots: dict[str, simpy.Resource | None] = {}
        self.stations: dict[str, _Station] = {}
        self.successors = {loc.id: line.successors(loc.id) for loc in locations}
        self.locations = {loc.id: loc for loc in locations}
        for loc in locations:
            key = f"{line.id}/{loc.id}"
            self.loc_truth[key] = truth.locations[key] = LocationTruth()
            if loc.kind is LocationKind.STATION:
                st_truth = truth.stations[key] = StationTruth()
                self.stations[loc.id] = _Station(env, loc, st_truth)
                self.slots[loc.id] = _UNBOUNDED
            else:
                limit = self._limit(loc)
                self.slots[loc.id] = simpy.Resource(env, capacity=limit) if limit else _UNBOUNDED
        self.loop_end = self._loop_end()
        self.conwip = (
            simpy.Resource(env, capacity=line.release.wip_cap)
            if self.policy == "conwip" and line.release.wip_cap
            else None
        )
        skus = line.skus or []
        self.sku_ids = [sku.id for sku in skus] or ["A"]
        self.sku_weights = [sku.share for sku in skus] or [1.0]
        self._parts = 0
        self._released_since_order = 0
        self._orders: simpy.Store = simpy.Store(env)
        self._prefix = f"{site.site}/{line.id}/{start.isoformat()}/"
        calendar.listen(self._shift_changed)

    def _limit(self, loc: Location) -> int | None:
        """The enforced slot count of a non-station location under the line's release policy."""
        if loc.id == self.first:
            return None  # the supplier delivers regardless; WIP piles up in the receiving store
        if self.policy == "kanban" or (self.policy == "conwip" and loc.id == self.last):
            return loc.cap
        return None

    def _loop_end(self) -> set[str]:
        """Non-station locations with no station downstream: entering one ends the CONWIP loop."""
        downstream_station: dict[str, bool] = {}

        def visit(loc_id: str) -> bool:
            if loc_id not in downstream_station:
                downstream_station[loc_id] = False
                downstream_station[loc_id] = any(
                    self.locations[n].kind is LocationKind.STATION or visit(n)
                    for n in self.successors[loc_id]
                )
            return downstream_station[loc_id]

        return {loc_id for loc_id in self.locations if loc_id not in self.stations and not visit(loc_id)}

    # ---------------------------------------------------------------- events

    def _time(self) -> datetime:
        return self.start + timedelta(seconds=self.env.now)

    def _event_id(self) -> str:
        self.truth.events += 1
        return str(uuid.uuid5(_ID_NAMESPACE, f"{self._prefix}{self.truth.events}"))

    def _move(self, cls: type[PartIn] | type[PartOut], location: str, part: str, sku: str) -> None:
        delta = 1 if cls is PartIn else -1
        self.loc_truth[f"{self.line.id}/{location}"].change(self.env.now, delta)
        station = self.stations.get(location)
        if station is not None:
            self._account(station)
        self.emit(
            cls(
                v=1,
                id=self._event_id(),
                time=self._time(),
                site=self.site.site,
                line=self.line.id,
                location=location,
                part=part,
                sku=sku,
                qty=1,
            )
        )

    def _machine_state(
        self, station: _Station, machine: _Machine, state: StationStateName, part: str | None = None
    ) -> None:
        station.counts[machine.state] -= 1
        station.counts[state] += 1
        machine.state = state
        shown = next(s for s in _STATE_PRIORITY if station.counts[s])
        if shown != station.reported:
            station.reported = shown
            self._emit_state(station, shown, part if shown in ("working", "changeover") else None)
        self._account(station)

    def _emit_state(self, station: _Station, state: StationStateName, part: str | None) -> None:
        self.emit(
            StationState(
                v=1,
                id=self._event_id(),
                time=self._time(),
                site=self.site.site,
                line=self.line.id,
                location=station.loc.id,
                state=state,
                part=part,
            )
        )

    def _account(self, station: _Station) -> None:
        state = station.reported
        if state == "idle":
            wip = self.loc_truth[f"{self.line.id}/{station.loc.id}"].wip
            category = "blocked" if wip > 0 else "starved" if self.calendar.on else "off_shift"
        else:
            category = state
        station.truth.enter(self.env.now, category)

    def _shift_changed(self) -> None:
        for station in self.stations.values():
            self._account(station)

    # ---------------------------------------------------------------- processes

    def start_processes(self) -> None:
        """Announce every station idle at the start (so a processor knows each state from t = 0), then run."""
        for station in self.stations.values():
            self._emit_state(station, "idle", None)
        self.env.process(self._supply())
        if self.line.demand_per_hour:
            self.env.process(self._demand())

    def _deliver(self, lot: int, sku: str | None = None) -> None:
        if sku is None:
            sku = (
                self.rng.choices(self.sku_ids, self.sku_weights)[0]
                if len(self.sku_ids) > 1
                else self.sku_ids[0]
            )
        for _ in range(lot):
            self._parts += 1
            self.env.process(self._part(f"{self.line.id}-P{self._parts:07d}", sku))

    def _supply(self) -> Generator[simpy.Event, Any, None]:
        if self.deliveries is not None:
            for at, lot, sku in self.deliveries:
                if at > self.env.now:
                    yield self.env.timeout(at - self.env.now)
                self._deliver(lot, sku)
            return
        supply = self.line.supply
        if supply is None:  # one part a minute, Poisson: the skeleton's default
            while True:
                yield self.env.timeout(self.rng.expovariate(1 / 60.0))
                self._deliver(1)
        if supply.kanbans is not None:
            for _ in range(supply.kanbans):
                self._deliver(supply.lot_size)
            return  # further lots are ordered by _released
        if supply.at is not None:
            for at in sorted(supply.at):
                if at > self.env.now:
                    yield self.env.timeout(at - self.env.now)
                self._deliver(supply.lot_size)
            return
        assert supply.interval is not None
        while True:
            gap = supply.interval
            yield self.env.timeout(gap if supply.dist == "deterministic" else self.rng.expovariate(1 / gap))
            self._deliver(supply.lot_size)

    def _released(self) -> None:
        """A part left the first location: under kanban supply, order a lot per ``lot_size`` consumed."""
        supply = self.line.supply
        if supply is None or supply.kanbans is None or self.deliveries is not None:
            return
        self._released_since_order += 1
        if self._released_since_order >= supply.lot_size:
            self._released_since_order = 0
            self.env.process(self._replenish(supply.lead_time, supply.lot_size))

    def _replenish(self, lead_time: float, lot: int) -> Generator[simpy.Event, Any, None]:
        if lead_time > 0:
            yield self.env.timeout(lead_time)
        self._deliver(lot)

    def _demand_factor(self, now: float) -> float:
        factor = 1.0
        for step in self.line.demand_profile or []:
            if step.from_hour * 3600 <= now:
                factor = step.factor
        return factor

    def _next_step(self, now: float) -> float | None:
        for step in self.line.demand_profile or []:
            if step.from_hour * 3600 > now:
                return step.from_hour * 3600
        return None

    def _demand(self) -> Generator[simpy.Event, Any, None]:
        """Customer orders, one part each: Poisson by thinning at the profile's peak, or every takt."""
        assert self.line.demand_per_hour
        rate = self.line.demand_per_hour / 3600
        peak = rate * max([s.factor for s in self.line.demand_profile or []] + [1.0])
        deterministic = self.line.demand_dist == "deterministic"
        while True:
            now = self.env.now
            factor = self._demand_factor(now)
            if deterministic:
                if factor == 0:
                    next_step = self._next_step(now)
                    if next_step is None:
                        return
                    yield self.env.timeout(next_step - now)
                    continue
                yield self.env.timeout(1 / (rate * factor))
            else:
                if peak == 0:
                    return
                yield self.env.timeout(self.demand_rng.expovariate(peak))
                if self.demand_rng.random() * peak >= rate * self._demand_factor(self.env.now):
                    continue
            self.truth.orders += 1
            self.truth.orders_by_line[self.line.id] = self.truth.orders_by_line.get(self.line.id, 0) + 1
            yield self._orders.put(1)

    def _acquire(self, loc_id: str) -> Generator[simpy.Event, Any, Any]:
        """Wait for a slot at ``loc_id``; returns the token that frees it (machine, request or None)."""
        station = self.stations.get(loc_id)
        if station is not None:
            machine = yield station.machines.get()
            if not self.calendar.on:
                yield self.calendar.wait()  # nobody moves a part onto a machine that will not start
            return machine
        slots = self.slots[loc_id]
        if slots is None:
            return None
        request = slots.request()
        yield request
        return request

    def _choose(self, successors: list[str]) -> str:
        """Of several next locations, the one with most free slots net of parts already waiting for it
        (join the shortest queue); ties go to the first listed."""

        def room(loc_id: str) -> float:
            station = self.stations.get(loc_id)
            if station is not None:
                return len(station.machines.items) - len(station.machines.get_queue)
            slots = self.slots[loc_id]
            return math.inf if slots is None else slots.capacity - slots.count - len(slots.queue)

        return max(successors, key=room)

    def _free(self, loc_id: str, token: Any) -> None:
        station = self.stations.get(loc_id)
        if station is not None:
            station.machines.put(token)
        elif token is not None:
            slots = self.slots[loc_id]
            assert slots is not None
            slots.release(token)

    def _work(
        self, station: _Station, machine: _Machine, part: str, sku: str
    ) -> Generator[simpy.Event, Any, None]:
        loc = station.loc
        rng = self.station_rngs[loc.id]
        assert loc.process_time is not None
        if loc.changeover is not None and machine.last_sku is not None and machine.last_sku != sku:
            self._machine_state(station, machine, "changeover", part)
            yield self.env.timeout(sample(rng, loc.changeover))
        machine.last_sku = sku
        self._machine_state(station, machine, "working", part)
        work = sample(rng, loc.process_time)
        failures = loc.breakdowns
        if failures is not None:
            if machine.time_to_failure == math.inf:
                machine.time_to_failure = rng.expovariate(1 / failures.mtbf)
            while work > machine.time_to_failure:
                yield self.env.timeout(machine.time_to_failure)
                work -= machine.time_to_failure
                self._machine_state(station, machine, "down")
                yield self.env.timeout(rng.expovariate(1 / failures.mttr))
                self._machine_state(station, machine, "working", part)
                machine.time_to_failure = rng.expovariate(1 / failures.mtbf)
            machine.time_to_failure -= work
        yield self.env.timeout(work)
        self._machine_state(station, machine, "idle")

    def _part(self, part: str, sku: str) -> Generator[simpy.Event, Any, None]:
        line_id, now = self.line.id, self.env.now
        record = PartRecord(line_id, part, sku, now)
        self.truth.parts.append(record)
        current = self.first
        card: Any = None
        if current in self.stations and self.conwip is not None:
            card = self.conwip.request()  # no receiving store: release is entry into the first station
            yield card
        held = yield from self._acquire(current)
        self._move(PartIn, current, part, sku)
        entered = self.env.now
        if current in self.stations:
            record.released = entered
            self._released()
        while True:
            station = self.stations.get(current)
            if station is not None:
                yield from self._work(station, held, part, sku)
            successors = self.successors[current]
            if not successors:
                if self.line.demand_per_hour:
                    yield self._orders.get()  # finished parts meet customer orders first in, first out
                self._leave(current, part, sku, held, entered)
                record.shipped = self.env.now
                self.truth.shipped += 1
                if card is not None:
                    assert self.conwip is not None
                    self.conwip.release(card)
                return
            if self.conwip is not None and record.released is None:
                card = self.conwip.request()
                yield card
            target = successors[0] if len(successors) == 1 else self._choose(successors)
            next_held = yield from self._acquire(target)
            self._leave(current, part, sku, held, entered)
            if record.released is None:
                record.released = self.env.now
                self._released()
            self._move(PartIn, target, part, sku)
            current, held, entered = target, next_held, self.env.now
            if current in self.loop_end:
                if record.finished is None:
                    record.finished = entered
                if card is not None:
                    assert self.conwip is not None
                    self.conwip.release(card)
                    card = None

    def _leave(self, location: str, part: str, sku: str, held: Any, entered: float) -> None:
        self._move(PartOut, location, part, sku)
        self.loc_truth[f"{self.line.id}/{location}"].dwells.append(self.env.now - entered)
        self._free(location, held)


def simulate_site(
    site: Site,
    emit: EventSink,
    seed: int = 1,
    duration: float | None = None,
    speed: float | None = None,
    start: datetime | None = None,
    progress: ProgressSink | None = None,
    sample_interval: float = 60.0,
    deliveries: Mapping[str, Sequence[Delivery]] | None = None,
    warmup: float = 0.0,
    warmup_speed: float | None = None,
) -> GroundTruth:
    """Run every line of ``site`` for ``duration`` simulated seconds (forever if ``None``).

    Same site, seed and start give the same events, event ids included.

    Live use (docs/simulators.md, "Live time"): ``warmup`` seconds of the shift that already passed are
    simulated quickly (at ``warmup_speed``) from ``start = now - warmup``, so dashboards over the last
    hours are full within seconds; then the clock runs at ``speed``. Simulated second ``warmup`` is
    pinned to the wall time ``start + warmup``: at speed 1 event times then follow the wall clock and
    never run ahead of it.

    Args:
        speed: simulated seconds per wall-clock second; ``None`` runs as fast as possible.
        start: event time of simulated second zero (default: now minus ``warmup``, whole seconds).
        progress: called with the simulated time every ``sample_interval`` seconds.
        sample_interval: seconds between WIP samples in the ground truth.
        deliveries: per line id, recorded deliveries ``(second, parts, sku)`` in time order that replace
            the line's ``supply`` (a what-if on a recorded shift replays the shift's own deliveries).
        warmup: simulated seconds run before pacing at ``speed`` begins.
        warmup_speed: simulated seconds per wall second during the warm-up; ``None`` is unpaced. The
            processors write one point per line per batch, so an unpaced warm-up reaches the dashboards
            as a handful of points; paced, every batch covers a slice of the past hours.
    """
    if speed is not None and speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    if duration is not None and duration <= 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    if sample_interval <= 0:
        raise ValueError(f"sample_interval must be > 0, got {sample_interval}")
    if warmup < 0 or (duration is not None and warmup > duration):
        raise ValueError(f"warmup must be between 0 and the duration, got {warmup}")
    if warmup_speed is not None and warmup_speed <= 0:
        raise ValueError(f"warmup_speed must be > 0, got {warmup_speed}")
    start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=warmup)
    env: simpy.Environment = (
        simpy.rt.RealtimeEnvironment(factor=1.0 / speed, strict=False) if speed else simpy.Environment()
    )
    truth = GroundTruth(sample_interval=sample_interval)
    truth.meta = {"site": site.site, "seed": seed, "start": start.isoformat()}
    calendar = Calendar(env, site.shift)
    env.process(calendar.run())
    rng = random.Random(seed)
    for line in site.lines:
        trace = deliveries.get(line.id) if deliveries is not None else None
        line_rng = random.Random(rng.getrandbits(64))
        model = LineModel(env, site, line, line_rng, start, emit, truth, calendar, trace)
        model.start_processes()

    def sampler() -> Generator[simpy.Event, Any, None]:
        while True:
            truth.sample(env.now)
            if progress is not None:
                progress(env.now)
            yield env.timeout(sample_interval)

    env.process(sampler())
    try:
        if isinstance(env, simpy.rt.RealtimeEnvironment) and warmup > 0:
            _warm_up(env, warmup, (start + timedelta(seconds=warmup)).timestamp(), warmup_speed)
        env.run(until=duration)
    finally:
        truth.duration = env.now
    return truth


def _warm_up(
    env: simpy.rt.RealtimeEnvironment, until: float, wall_at_end: float, speed: float | None
) -> None:
    """Process events up to simulated second ``until`` at ``speed`` (``None``: unpaced), then pin that
    second to the wall time ``wall_at_end``.

    ``RealtimeEnvironment`` fires the event of simulated time t at ``real_start + (t - env_start) *
    factor`` (monotonic clock). Re-anchoring ``env_start`` at ``until`` and moving ``real_start`` back by
    how late ``wall_at_end`` already is (the warm-up itself took that long) lets the non-strict environment
    catch up at once, after which events go out when the wall clock reaches their event time (speed 1).
    """
    end = env.timeout(until - env.now)
    began, sim0 = time.monotonic(), env.now
    while not end.processed:
        if speed is not None:
            lead = began + (env.peek() - sim0) / speed - time.monotonic()
            if lead > 0.001:
                time.sleep(lead)
        simpy.Environment.step(env)  # the base class's step: no real-time pacing of its own
    env.env_start = env.now
    env.real_start = time.monotonic() - max(0.0, time.time() - wall_at_end)
