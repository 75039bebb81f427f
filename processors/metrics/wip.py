"""Work in process per location (DESIGN.md, Metrics): N(t) = arrivals - departures.

A departure that would take a location below zero is a data-quality issue: it is reported with its reason
and not applied, never silently clamped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from wipwatch.events import Event, PartIn, PartOut


@dataclass(frozen=True)
class DataQualityIssue:
    """An accepted-schema event the metrics could not use, and why."""

    line: str
    location: str
    reason: str
    event_id: str


def location_key(line: str, location: str) -> str:
    return f"{line}/{location}"


def apply_movements(
    counts: Mapping[str, int], events: Iterable[Event]
) -> tuple[dict[str, int], list[DataQualityIssue]]:
    """Apply part movements in order to WIP ``counts`` (``"line/location" -> parts``), read-only.

    Returns:
        The new WIP of every location that changed, and the movements that could not be applied.
    """
    changed: dict[str, int] = {}
    issues: list[DataQualityIssue] = []
    for event in events:
        if isinstance(event, PartIn):
            delta = event.qty
        elif isinstance(event, PartOut):
            delta = -event.qty
        else:
            continue
        key = location_key(event.line, event.location)
        current = changed[key] if key in changed else counts.get(key, 0)
        if current + delta < 0:
            issues.append(DataQualityIssue(event.line, event.location, "departure without arrival", event.id))
            continue
        changed[key] = current + delta
    return changed, issues
