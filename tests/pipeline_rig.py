"""The whole processing chain on a running stack for replay tests: ingest and processors as child processes,
waiting for settled metrics, and reading every point back."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import EXAMPLE_SITE, stack_env
from tests.polling import eventually
from wipwatch.events import Event
from wipwatch.influx import InfluxTarget, last_values, query
from wipwatch.ingest import wait_subscribed
from wipwatch.processors.metrics.line_state import EngineConfig, period_end
from wipwatch.services import ChildProcess, NativeStack, python_module_argv, spawn

State = dict[str, Any]
Points = dict[tuple[str, tuple[tuple[str, str], ...], int], dict[str, Any]]


@contextmanager
def pipeline(
    stack: NativeStack, run_dir: Path, site_file: Path = EXAMPLE_SITE
) -> Iterator[list[ChildProcess]]:
    """ingest + processors as child processes against ``stack``; ingest subscribed before yielding."""
    env = stack_env(stack, run_dir, site_file)
    children = [spawn("ingest", python_module_argv("ingest"), run_dir / "logs", env)]
    try:
        wait_subscribed(children[0], run_dir, "wipwatch-ingest-1")
        children.append(spawn("processors", python_module_argv("process"), run_dir / "logs", env))
        yield children
    finally:
        for child in children:
            child.stop()


def settled_state(
    target: InfluxTarget, children: list[ChildProcess], done: Callable[[State], bool], timeout: float
) -> State:
    """Poll the database until ``done`` holds and two polls a second apart agree: the final state."""
    previous: dict[str, State] = {"state": {}}

    def probe() -> State:
        for child in children:
            assert child.alive(), f"{child.name} died: {child.log_tail(30)}"
        return last_values(target)

    def accept(state: State) -> bool:
        stable = state == previous["state"]
        previous["state"] = state
        return stable and done(state)

    logs = "\n".join(f"--- {c.name}\n{c.log_tail(20)}" for c in children)
    try:
        return eventually(probe, accept, timeout=timeout, what="settled metrics")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs}") from None


def all_points(target: InfluxTarget) -> Points:
    """Every point of every series: ``{(measurement, tags, time µs): fields}``."""
    names = [values[0] for s in query(target, "SHOW MEASUREMENTS") for values in s.get("values", [])]
    points: Points = {}
    for name in names:
        for s in query(target, f'SELECT * FROM "{name}" GROUP BY *'):
            tags = tuple(sorted((s.get("tags") or {}).items()))
            for values in s["values"]:
                row = dict(zip(s["columns"], values, strict=True))
                t = row.pop("time")
                points[(name, tags, t)] = {k: v for k, v in row.items() if v is not None}
    return points


def last_point_times(
    events: Iterable[Event], interval_s: float = EngineConfig().point_interval_s
) -> dict[str, float]:
    """Per line, the time of its newest points: the end of the period holding its last event."""
    last: dict[str, float] = {}
    for event in events:
        last[event.line] = max(last.get(event.line, event.timestamp), event.timestamp)
    return {line: period_end(t, interval_s) for line, t in last.items()}
