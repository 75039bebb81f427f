"""A discrete-event model of a site's lines (SimPy), emitting v1 events and keeping ground truth.

Each location holds parts in a SimPy resource: a station has one slot per machine, a buffer ``cap`` slots
(or unbounded), a store unbounded. A part moves on when it holds a slot at the next location, so a full
buffer blocks the station before it. Raw material arrives by the line's ``supply``; finished goods leave
the last location at the customer's ``demand_per_hour`` (or at once without demand).
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import simpy
import simpy.rt

from wipwatch.events import Event, PartIn, PartOut, StationState, StationStateName
from wipwatch.site import Line, LocationKind, ProcessTime, Site

EventSink = Callable[[Event], None]
_ID_NAMESPACE = uuid.UUID("6f1d2a8e-5c7b-4f0e-9a49-3c2d7f5b8e10")


@dataclass
class GroundTruth:
    """What really happened in the simulation: the reference the processors are checked against."""

    wip: dict[str, int] = field(default_factory=dict)
    arrivals: dict[str, int] = field(default_factory=dict)
    departures: dict[str, int] = field(default_factory=dict)
    events: int = 0
    shipped: int = 0

    def record(self, key: str, delta: int) -> None:
        self.wip[key] = self.wip.get(key, 0) + delta
        bucket = self.arrivals if delta > 0 else self.departures
        bucket[key] = bucket.get(key, 0) + abs(delta)

    def as_dict(self) -> dict[str, Any]:
        return {
            "wip": dict(sorted(self.wip.items())),
            "arrivals": dict(sorted(self.arrivals.items())),
            "departures": dict(sorted(self.departures.items())),
            "events": self.events,
            "shipped": self.shipped,
        }


def sample(rng: random.Random, spec: ProcessTime) -> float:
    """One draw from a processing-time distribution given its mean and coefficient of variation."""
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


class LineModel:
    """One line of the site in a SimPy environment."""

    def __init__(
        self,
        env: simpy.Environment,
        site: Site,
        line: Line,
        rng: random.Random,
        start: datetime,
        emit: Callable[[Event], None],
        truth: GroundTruth,
    ) -> None:
        self.env, self.site, self.line, self.rng = env, site, line, rng
        self.start, self.emit, self.truth = start, emit, truth
        self.slots: dict[str, simpy.Resource] = {}
        for loc in line.locations:
            capacity = 1 if loc.kind is LocationKind.STATION else (loc.cap or 10**9)
            self.slots[loc.id] = simpy.Resource(env, capacity=capacity)
        self._parts = 0
        self._finished: simpy.Store = simpy.Store(env)

    def _time(self) -> datetime:
        return self.start + timedelta(seconds=self.env.now)

    def _event_id(self) -> str:
        self.truth.events += 1
        return str(
            uuid.uuid5(
                _ID_NAMESPACE, f"{self.site.site}/{self.line.id}/{self.start.isoformat()}/{self.truth.events}"
            )
        )

    def _move(self, cls: type[PartIn] | type[PartOut], location: str, part: str) -> None:
        self.truth.record(f"{self.line.id}/{location}", 1 if cls is PartIn else -1)
        self.emit(
            cls(
                v=1,
                id=self._event_id(),
                time=self._time(),
                site=self.site.site,
                line=self.line.id,
                location=location,
                part=part,
                sku="A",
                qty=1,
            )
        )

    def _state(self, location: str, state: StationStateName, part: str | None = None) -> None:
        self.emit(
            StationState(
                v=1,
                id=self._event_id(),
                time=self._time(),
                site=self.site.site,
                line=self.line.id,
                location=location,
                state=state,
                part=part,
            )
        )

    def start_processes(self) -> None:
        self.env.process(self._supply())
        if self.line.demand_per_hour:
            self.env.process(self._demand())

    def _supply(self) -> Generator[simpy.Event, Any, None]:
        supply = self.line.supply
        interval = supply.interval if supply else 60.0
        lot = supply.lot_size if supply else 1
        deterministic = supply is not None and supply.dist == "deterministic"
        while True:
            yield self.env.timeout(interval if deterministic else self.rng.expovariate(1.0 / interval))
            for _ in range(lot):
                self._parts += 1
                self.env.process(self._part(f"{self.line.id}-P{self._parts:07d}"))

    def _demand(self) -> Generator[simpy.Event, Any, None]:
        assert self.line.demand_per_hour
        mean = 3600.0 / self.line.demand_per_hour
        while True:
            yield self.env.timeout(self.rng.expovariate(1.0 / mean))
            order = yield self._finished.get()
            order.succeed()

    def _part(self, part: str) -> Generator[simpy.Event, Any, None]:
        locations = self.line.locations
        first = locations[0].id
        request = self.slots[first].request()
        yield request
        self._move(PartIn, first, part)
        current, held = first, request
        while True:
            loc = self.line.location(current)
            if loc.kind is LocationKind.STATION:
                assert loc.process_time is not None
                self._state(current, "working", part)
                yield self.env.timeout(sample(self.rng, loc.process_time))
                self._state(current, "idle")
            successors = self.line.successors(current)
            if not successors:
                if self.line.demand_per_hour:
                    shipped = self.env.event()
                    yield self._finished.put(shipped)  # customer orders take finished parts FIFO
                    yield shipped
                self._move(PartOut, current, part)
                self.slots[current].release(held)
                self.truth.shipped += 1
                return
            target = successors[0] if len(successors) == 1 else self.rng.choice(successors)
            request = self.slots[target].request()
            yield request
            self._move(PartOut, current, part)
            self.slots[current].release(held)
            self._move(PartIn, target, part)
            current, held = target, request


def simulate_site(
    site: Site,
    emit: EventSink,
    seed: int = 1,
    duration: float | None = None,
    speed: float | None = None,
    start: datetime | None = None,
) -> GroundTruth:
    """Run every line of ``site`` for ``duration`` simulated seconds (forever if ``None``).

    Args:
        speed: simulated seconds per wall-clock second; ``None`` runs as fast as possible.
        start: event time of simulated second zero (default: now, truncated to the second).
    """
    if speed is not None and speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    if duration is not None and duration <= 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    start = start or datetime.now(UTC).replace(microsecond=0)
    env: simpy.Environment = (
        simpy.rt.RealtimeEnvironment(factor=1.0 / speed, strict=False) if speed else simpy.Environment()
    )
    truth = GroundTruth()
    rng = random.Random(seed)
    for line in site.lines:
        LineModel(env, site, line, random.Random(rng.getrandbits(64)), start, emit, truth).start_processes()
    env.run(until=duration)
    return truth
