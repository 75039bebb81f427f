"""InfluxDB points the processors write: measurements, tags and fields (documented in docs/metrics.md).

Tags are a small bounded set (site, line, location, location kind, reason); never part or event ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from wipwatch.events import Event
from wipwatch.influx import line
from wipwatch.processors.metrics.wip import DataQualityIssue
from wipwatch.site import Site


def wip_lines(site: Site, changed: Mapping[str, int], times_us: Mapping[str, int]) -> list[str]:
    """``wip`` points: parts and money tied up per location, at the event time of its last change."""
    out = []
    for key, parts in changed.items():
        line_id, location_id = key.split("/", 1)
        loc = site.line(line_id).location(location_id)
        tags = {"site": site.site, "line": line_id, "location": location_id, "kind": loc.kind.value}
        fields = {"parts": parts, "value": parts * loc.unit_value}
        out.append(line("wip", tags, fields, times_us[key]))
    return out


def data_quality_lines(site: Site, issues: Sequence[DataQualityIssue], events: Sequence[Event]) -> list[str]:
    """``data_quality`` points: one per rejected event, ``count`` = 1, at the event's time."""
    if not issues:
        return []
    times = {e.id: int(e.timestamp * 1_000_000) for e in events}
    return [
        line(
            "data_quality",
            {"site": site.site, "line": i.line, "location": i.location, "reason": i.reason},
            {"count": 1, "event_id": i.event_id},
            times[i.event_id],
        )
        for i in issues
    ]
