"""Backtesting alert rules: a site's rules run on recorded events through the pure line engine.

The same ``LineEngine`` and ``AlertEvaluator`` as the live processors, fed in file order, so what a
backtest says would have fired is what the processors fire on a replay of the same recording (docs/alerts.md,
"Backtesting"). ``line_silent`` is judged on event time here: it shows the gaps of the recording.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from wipwatch.alert_rules import expand_rules
from wipwatch.events import Event
from wipwatch.processors.metrics.alerts import Transition
from wipwatch.processors.metrics.line_state import EngineConfig, LineEngine
from wipwatch.site import Site


@dataclass(frozen=True)
class Episode:
    """One alert from firing to resolution (``end`` None: still firing at the end of the recording)."""

    identity: str
    rule: str
    line: str
    location: str
    severity: str
    start: float
    end: float | None
    value: float

    def duration_s(self, last: float) -> float:
        return (self.end if self.end is not None else last) - self.start


@dataclass
class BacktestResult:
    transitions: list[Transition]
    episodes: list[Episode]
    events: int
    skipped: int
    first: float | None
    last: float | None


def run_backtest(
    site: Site,
    events: Iterable[Event],
    config: EngineConfig | None = None,
    per_record: int = 500,
    finish: bool = True,
) -> BacktestResult:
    """Apply ``events`` (in file order) to one engine per line and collect the alert transitions.

    Args:
        site: The site file whose ``alerts`` rules (and defaults) are evaluated.
        events: Decoded events; events of other sites or unknown lines are counted as skipped.
        config: Engine settings; the default is the processors' defaults with the site's evaluation step.
        per_record: Events per simulated Kafka record; releases happen between records, as live.
        finish: Evaluate up to the last event's time at the end (live processors wait for a later event).
    """
    config = config or EngineConfig(alert_every_s=site.alerts.evaluate_every)
    rules = expand_rules(site)
    engines: dict[str, LineEngine] = {}
    buffers: dict[str, list[Event]] = {}
    offsets: dict[str, int] = {}
    transitions: list[Transition] = []
    count = skipped = 0
    first: float | None = None
    last: float | None = None

    def flush(line_id: str) -> None:
        engine = engines[line_id]
        offsets[line_id] += 1
        engine.offer(buffers[line_id], 0, offsets[line_id])
        buffers[line_id] = []
        engine.release()
        transitions.extend(engine.changes.alerts)
        engine.changes.clear()

    for event in events:
        if event.site != site.site or not any(line.id == event.line for line in site.lines):
            skipped += 1
            continue
        count += 1
        t = event.timestamp
        first = t if first is None else min(first, t)
        last = t if last is None else max(last, t)
        if event.line not in engines:
            engines[event.line] = LineEngine(site.line(event.line), site.site, config, rules=rules)
            buffers[event.line] = []
            offsets[event.line] = -1
        buffers[event.line].append(event)
        if len(buffers[event.line]) >= per_record:
            flush(event.line)
    for line_id, engine in engines.items():
        if buffers[line_id]:
            flush(line_id)
        engine.release(everything=True)
        if finish:
            engine.finish_alerts()
        transitions.extend(engine.changes.alerts)
        engine.changes.clear()
    transitions.sort(key=lambda tr: (tr.at, tr.instance.line, tr.instance.rule, tr.instance.location))
    return BacktestResult(transitions, episodes(transitions), count, skipped, first, last)


def episodes(transitions: Iterable[Transition]) -> list[Episode]:
    """Pair each firing with the resolution of the same identity that follows it."""
    open_: dict[str, Transition] = {}
    out: list[Episode] = []
    for tr in transitions:
        inst = tr.instance
        if tr.state == "firing":
            open_[tr.identity] = tr
            continue
        fired = open_.pop(tr.identity, None)
        if fired is not None:
            out.append(
                Episode(
                    tr.identity,
                    inst.rule,
                    inst.line,
                    inst.location,
                    inst.severity,
                    fired.at,
                    tr.at,
                    fired.value,
                )
            )
    for fired in open_.values():
        inst = fired.instance
        out.append(
            Episode(
                fired.identity,
                inst.rule,
                inst.line,
                inst.location,
                inst.severity,
                fired.at,
                None,
                fired.value,
            )
        )
    out.sort(key=lambda e: (e.start, e.line, e.rule, e.location))
    return out
