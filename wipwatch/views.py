"""What users read back from InfluxDB: the WIP snapshot of ``wipwatch top``, the benches and the e2e tests.

Queries in InfluxQL (docs/architecture.md, "Storage"), on the measurement contract of docs/metrics.md.
"""

from __future__ import annotations

from typing import Any

from wipwatch.influx import InfluxTarget, query, rows
from wipwatch.measurements import WIP
from wipwatch.settings import Settings
from wipwatch.site import load_site


def wip_snapshot(settings: Settings) -> dict[str, Any]:
    """Latest WIP per location from InfluxDB, in flow order of the site file.

    Returns:
        ``{"site", "currency", "locations": [{"line", "location", "kind", "cap", "wip", "value",
        "time_us"}, ...]}``; a location without a point yet has WIP 0 and ``time_us`` None.
    """
    site_model = load_site(settings.site_file)
    target = InfluxTarget.from_settings(settings)
    series = query(
        target,
        # one selector plus a plain field: InfluxQL then returns the selected point's own time and value
        f'SELECT last("parts") AS parts, "value" FROM "{WIP}" '
        f'WHERE "site" = \'{site_model.site}\' GROUP BY "line", "location"',
    )
    latest = {(r["line"], r["location"]): r for r in rows(series)}
    locations = []
    for line, loc in site_model.iter_locations():
        r = latest.get((line.id, loc.id), {})
        locations.append(
            {
                "line": line.id,
                "location": loc.id,
                "kind": loc.kind.value,
                "cap": loc.cap,
                "wip": int(r.get("parts") or 0),
                "value": float(r.get("value") or 0.0),
                "time_us": r.get("time"),
            }
        )
    return {"site": site_model.site, "currency": site_model.currency, "locations": locations}
