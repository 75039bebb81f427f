"""Alert evaluation in event time (DESIGN.md, "Alerts"; the rules and their semantics in docs/alerts.md).

Pure: no Kafka, MQTT or I/O. The line engine calls ``AlertEvaluator.until`` before it applies an event at
``t``; every *tick* (event time ``k * evaluate_every``) before ``t`` is then evaluated on the line's state,
which at that moment holds exactly the events at or before the tick. The ticks and so the whole alert
timeline depend only on the events, never on how they were batched or how fast they were replayed.

Per rule instance (``RuleInstance``: a rule applied to one line or location) a small state machine::

    inactive --value past threshold--> pending --held for `for`--> firing --value back past `clear`,
    held for `clear_for`--> inactive (resolved)

``pending`` falls back to ``inactive`` as soon as the value is no longer past the threshold. Between
``clear`` and the threshold a firing alert stays firing (hysteresis), so a value hovering at the threshold
does not flap. Firing and resolving are *transitions*, numbered per instance by ``seq``; the instance's
status (``AlertStatus``) always describes its last transition, so a delivery that lost a transition can
rebuild it from the stored state and send it again under the same identity and ``seq``.

``line_silent`` is judged on the wall clock in the processors (``check_silence``, value = wall seconds since
the line's last record) and on event time otherwise (value = seconds since the last event applied, so a
backtest shows the gaps in a recording).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import msgspec

from wipwatch.alert_rules import Condition, RuleInstance

if TYPE_CHECKING:
    from wipwatch.processors.metrics.line_state import LineState

#: Ticks evaluated one by one in a gap between two events (11.5 days at 10 s); beyond, the evaluation jumps
#: to the last tick before the next event, so an event time years ahead cannot stall the line.
MAX_GAP_TICKS = 100_000
#: Fewest events in the window for the data-quality rate to be judged (1 finding in 2 events is noise).
MIN_DQ_EVENTS = 20


class AlertStatus(msgspec.Struct, kw_only=True):
    """One rule instance's state; after a transition, that transition's details."""

    state: Literal["inactive", "pending", "firing"] = "inactive"
    pending_since: float | None = None
    clearing_since: float | None = None
    #: Time of the last firing transition, and of the last resolution (None while it fires).
    fired_at: float | None = None
    resolved_at: float | None = None
    #: Transitions so far (firing and resolved); a firing has an odd ``seq``, a resolution an even one.
    seq: int = 0
    #: The value at the last transition.
    value: float = 0.0


class AlertBook(msgspec.Struct, kw_only=True):
    """The alert part of a line's state (``LineState.alerts``), stored with it in the changelog."""

    #: Index k of the next tick to evaluate, at event time ``k * every``.
    next_tick: int | None = None
    every: float = 0.0
    status: dict[str, AlertStatus] = msgspec.field(default_factory=dict)
    #: Events applied or rejected as duplicates, and data-quality findings counted at ticks so far.
    events: int = 0
    issues: int = 0
    #: Event times of findings not yet counted (counted at the first tick at or after them).
    issue_times: list[float] = msgspec.field(default_factory=list)
    #: (tick time, events, issues) over the longest data-quality window.
    dq: list[tuple[float, int, int]] = msgspec.field(default_factory=list)
    #: Wall-clock time the processors last received a record of the line.
    heard_wall: float | None = None


@dataclass(frozen=True)
class Transition:
    """An alert fired or resolved: the instance, when (event time), its ``seq`` and the value then."""

    instance: RuleInstance
    state: Literal["firing", "resolved"]
    at: float
    since: float
    seq: int
    value: float

    @property
    def identity(self) -> str:
        return self.instance.identity


def transition_of(instance: RuleInstance, status: AlertStatus) -> Transition | None:
    """The last transition of an instance, rebuilt from its status (None if it never fired)."""
    if status.seq == 0 or status.fired_at is None:
        return None
    if status.seq % 2 == 1:
        return Transition(instance, "firing", status.fired_at, status.fired_at, status.seq, status.value)
    assert status.resolved_at is not None
    return Transition(instance, "resolved", status.resolved_at, status.fired_at, status.seq, status.value)


def step(instance: RuleInstance, status: AlertStatus, value: float, t: float) -> Transition | None:
    """Advance one instance's state machine with ``value`` observed at ``t``; the transition, if any."""
    below = instance.fires_below
    past = value < instance.threshold if below else value > instance.threshold
    if status.state == "inactive" and past:
        status.state = "pending"
        status.pending_since = t
    if status.state == "pending":
        if not past:
            status.state = "inactive"
            status.pending_since = None
            return None
        assert status.pending_since is not None
        if t - status.pending_since >= instance.for_s:
            status.state = "firing"
            status.fired_at = t
            status.resolved_at = None
            status.clearing_since = None
            status.seq += 1
            status.value = value
            return Transition(instance, "firing", t, t, status.seq, value)
        return None
    if status.state == "firing":
        cleared = value >= instance.clear if below else value <= instance.clear
        if not cleared:
            status.clearing_since = None
            return None
        if status.clearing_since is None:
            status.clearing_since = t
        if t - status.clearing_since >= instance.clear_for_s:
            assert status.fired_at is not None
            status.state = "inactive"
            status.pending_since = None
            status.clearing_since = None
            status.resolved_at = t
            status.seq += 1
            status.value = value
            return Transition(instance, "resolved", t, status.fired_at, status.seq, value)
    return None


class AlertEvaluator:
    """Evaluates one line's rule instances on its ``LineState`` at event-time ticks."""

    def __init__(
        self,
        instances: Sequence[RuleInstance],
        evaluate_every: float = 10.0,
        demand_per_hour: float | None = None,
        wall_clock_silence: bool = False,
    ) -> None:
        if not 0 < evaluate_every < math.inf:
            raise ValueError(f"evaluate_every must be a positive number of seconds, got {evaluate_every!r}")
        self.instances = list(instances)
        self.every = evaluate_every
        self.demand = demand_per_hour
        self.wall_clock_silence = wall_clock_silence
        self._ticked = [
            i for i in self.instances if not (wall_clock_silence and i.condition == Condition.LINE_SILENT)
        ]
        self._silence = [i for i in self.instances if i.condition == Condition.LINE_SILENT]
        self.dq_window = max(
            (i.window_s for i in self.instances if i.condition == Condition.DATA_QUALITY), default=0.0
        )
        # per ticked instance, what ``evaluate`` needs, looked up once: a line evaluates ~17 instances
        # every tick, and dispatching on the condition by name for each was most of the alerts' cost
        self._plan = [(i, i.identity, self._getter(i), i.fires_below, i.threshold) for i in self._ticked]
        #: ``longest_running`` of the tick being evaluated (every ``new_bottleneck`` instance asks)
        self._longest: frozenset[str] | None = None

    def start(self, book: AlertBook, t: float) -> None:
        """The line's first event is at ``t``: the first tick is the first multiple at or after it."""
        if book.next_tick is None:
            book.next_tick = math.ceil(t / self.every)
            book.every = self.every

    def attach(self, state: LineState) -> None:
        """Take over a stored state: one stored before alerts existed, or with another evaluation step
        (the site file changed), goes on from the line's clock."""
        book = state.alerts
        if state.released is not None and (book.next_tick is None or book.every != self.every):
            book.next_tick = None
            self.start(book, math.nextafter(state.released, math.inf))

    def due(self, book: AlertBook) -> float:
        """Event time of the next tick: an event after it makes ``until`` evaluate (inf before the start)."""
        return math.inf if book.next_tick is None else book.next_tick * self.every

    def until(self, state: LineState, t: float, out: list[Transition]) -> None:
        """Evaluate every tick strictly before ``t`` (the event about to be applied is at ``t``)."""
        book = state.alerts
        k = book.next_tick
        if k is None:
            return
        every = self.every
        limit = math.ceil(t / every)  # ticks k with k * every < t
        if not self._ticked:
            book.next_tick = max(k, limit)
            return
        evaluated = 0
        while k < limit:
            if evaluated == MAX_GAP_TICKS:
                k = max(k, limit - 1)
            self.evaluate(state, k * every, out)
            evaluated += 1
            k += 1
        book.next_tick = k

    def finish(self, state: LineState, out: list[Transition]) -> None:
        """Evaluate the ticks up to and including the last event applied (end of a recording)."""
        if state.released is not None:
            self.until(state, math.nextafter(state.released, math.inf), out)

    def evaluate(self, state: LineState, t: float, out: list[Transition]) -> None:
        """Evaluate every instance at tick ``t`` and append the transitions to ``out``."""
        book = state.alerts
        if self.dq_window:
            self._sample_quality(book, t)
        statuses = book.status
        self._longest = None
        for instance, identity, value_at, below, threshold in self._plan:
            value = value_at(state, t)
            if value is None:
                continue
            status = statuses.get(identity)
            if status is None:
                status = statuses[identity] = AlertStatus()
            if status.state == "inactive" and not (value < threshold if below else value > threshold):
                continue  # what ``step`` does then: nothing (most instances, most ticks)
            transition = step(instance, status, value, t)
            if transition is not None:
                out.append(transition)

    def _getter(self, instance: RuleInstance) -> Callable[[LineState, float], float | None]:
        """``value(state, instance, t)`` as a function of (state, t), the condition resolved once."""
        cond = instance.condition
        where = instance.location
        if cond == Condition.LINE_SILENT:
            return lambda state, t: None if state.released is None else t - state.released
        if cond == Condition.DATA_QUALITY:
            window_s = instance.window_s
            return lambda state, t: self._quality_rate(state.alerts, t, window_s)
        if cond in (Condition.UNDER_PRODUCTION, Condition.OVER_PRODUCTION):
            return lambda state, t: self._production(state, cond, t)
        if cond == Condition.WIP_OVER_CAP:

            def wip(state: LineState, t: float) -> float | None:
                loc = state.locations.get(where)
                return None if loc is None else float(loc.wip)

            return wip
        if cond == Condition.STATION_DOWN:

            def down(state: LineState, t: float) -> float | None:
                loc = state.locations.get(where)
                if loc is None:
                    return None
                return 1.0 if loc.clock is not None and loc.clock.state == "down" else 0.0

            return down
        if cond == Condition.NEW_BOTTLENECK:
            alone = frozenset({where})

            def new_bottleneck(state: LineState, t: float) -> float | None:
                if where not in state.locations:
                    return None
                longest = self._longest
                if longest is None:
                    longest = self._longest = state.bottleneck.longest_running(t)
                return 1.0 if longest == alone else 0.0

            return new_bottleneck
        return lambda state, t: self.value(state, instance, t)

    def check_silence(
        self, state: LineState, wall_now: float, out: list[Transition], not_before: float | None = None
    ) -> None:
        """Judge ``line_silent`` on the wall clock: seconds since ``heard_wall`` (once anything was heard).

        ``not_before``: the silence counts from no earlier than this (a restarted worker has not yet read
        what the line sent while no worker ran).
        """
        book = state.alerts
        if not self.wall_clock_silence or book.heard_wall is None:
            return
        heard = book.heard_wall if not_before is None else max(book.heard_wall, not_before)
        for instance in self._silence:
            status = book.status.get(instance.identity)
            if status is None:
                status = book.status[instance.identity] = AlertStatus()
            transition = step(instance, status, max(0.0, wall_now - heard), wall_now)
            if transition is not None:
                out.append(transition)

    def value(self, state: LineState, instance: RuleInstance, t: float) -> float | None:
        """The instance's value at tick ``t`` (units in docs/alerts.md); None while it cannot be judged."""
        cond = instance.condition
        if cond == Condition.LINE_SILENT:
            return None if state.released is None else t - state.released
        if cond == Condition.DATA_QUALITY:
            return self._quality_rate(state.alerts, t, instance.window_s)
        if cond in (Condition.UNDER_PRODUCTION, Condition.OVER_PRODUCTION):
            return self._production(state, cond, t)
        loc = state.locations.get(instance.location)
        if loc is None:
            return None
        if cond == Condition.WIP_OVER_CAP:
            return float(loc.wip)
        if cond == Condition.QUEUE_GROWTH:
            return float(loc.growth.per_hour(t))
        if cond == Condition.OLDEST_PART_AGE:
            return loc.residents.oldest_age_s(t) or 0.0
        if cond == Condition.STATION_DOWN:
            return 1.0 if loc.clock is not None and loc.clock.state == "down" else 0.0
        if cond == Condition.STATION_BLOCKED:
            return 1.0 if loc.clock is not None and loc.clock.category == "blocked" else 0.0
        if cond == Condition.NEW_BOTTLENECK:
            # the live signal, alone: the station's running active period is the longest, without a tie
            return 1.0 if state.bottleneck.longest_running(t) == {instance.location} else 0.0
        raise ValueError(f"unknown condition {cond!r}")

    def _production(self, state: LineState, cond: str, t: float) -> float | None:
        """Throughput / demand (under) or finished-goods growth / demand (over), once a window is observed."""
        demand = self.demand
        if not demand or state.started is None:
            return None
        if cond == Condition.UNDER_PRODUCTION:
            if t - state.started < state.shipped.window_s:
                return None
            return float(state.shipped.per_hour(t)) / demand
        finished = next(reversed(state.locations.values()))
        if t - state.started < finished.growth.window_s:
            return None
        return float(finished.growth.per_hour(t)) / demand

    def _sample_quality(self, book: AlertBook, t: float) -> None:
        pending = book.issue_times
        if pending:
            due = [x for x in pending if x <= t]
            if due:
                book.issues += len(due)
                book.issue_times = [x for x in pending if x > t]
        samples = book.dq
        samples.append((t, book.events, book.issues))
        horizon = t - self.dq_window
        drop = 0
        while drop + 1 < len(samples) and samples[drop + 1][0] <= horizon:
            drop += 1
        if drop:
            del samples[:drop]

    @staticmethod
    def _quality_rate(book: AlertBook, t: float, window_s: float) -> float | None:
        """Findings per event received in ``(t - window_s, t]`` (None below ``MIN_DQ_EVENTS`` events)."""
        samples = book.dq
        if not samples:
            return None
        start = t - window_s
        # history shorter than the window: everything since the line's first event is in it
        base: tuple[float, int, int] = (start, 0, 0)
        for sample in samples:
            if sample[0] > start:
                break
            base = sample
        events = book.events - base[1]
        if events < MIN_DQ_EVENTS:
            return None
        return (book.issues - base[2]) / events
