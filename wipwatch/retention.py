"""Storage lifecycle: raw points for weeks, 1-minute rollups for the long view (docs/operations.md).

The processors write every measurement after every batch (docs/metrics.md, "InfluxDB measurements") into
the default retention policy ``autogen``; ``rollup_1m`` keeps one point per minute and series, same
measurement, tag and field names, so the same InfluxQL reads either (the shift-review dashboard's
``$retention`` variable). Each field keeps its last value of the minute, except counts per batch
(``data_quality.count``), which are summed.

InfluxDB 1.x (the native stack): a retention policy and one continuous query per measurement, created by
``wipwatch up`` at start (:func:`ensure_lifecycle`). InfluxDB 2.x (docker-compose): a bucket per policy
and a task, created at first start by ``docker/influxdb-init/lifecycle.sh``.
"""

from __future__ import annotations

import logging
import re
from typing import Final

from wipwatch.errors import ServiceError
from wipwatch.influx import InfluxTarget, query

log = logging.getLogger(__name__)

RAW_POLICY: Final = "autogen"
ROLLUP_POLICY: Final = "rollup_1m"
ROLLUP_INTERVAL: Final = "1m"
#: A continuous query recomputes this much of the past each minute: batches that arrive late still land.
RESAMPLE_FOR: Final = "10m"

#: The measurements of docs/metrics.md and their fields; a field missing from a point is just absent.
MEASUREMENT_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "wip": ("parts", "value"),
    "queue": ("growth_per_hour", "since_shrink_s"),
    "cost": ("tied_up", "holding_cost"),
    "flow_time": ("p50_s", "p90_s", "p99_s", "mean_s", "count", "oldest_age_s", "parts"),
    "throughput": ("parts_per_hour", "total", "demand_per_hour", "production_ratio", "surplus_parts"),
    "station": ("state", "working_s", "changeover_s", "down_s", "blocked_s", "starved_s", "off_shift_s"),
    "bottleneck": ("momentary", "active_period_s", "share", "sole_share", "shifting_share"),
    "lead_time": ("littles_law_s", "measured_s", "avg_wip", "value_added_s", "value_added_ratio"),
    "data_quality": ("count",),
}
#: Fields that are per-batch counts: their minute is the sum, not the last value.
SUMMED: Final = frozenset({("data_quality", "count")})

_DURATION = re.compile(r"INF|\d+[mhdw]")


def rollup_select(database: str, measurement: str, where: str = "") -> str:
    """``SELECT ... INTO`` of one measurement's 1-minute rollup; a continuous query adds the time range
    itself, a backfill passes ``where`` (e.g. ``time >= '...' AND time < '...'``)."""
    fields = ", ".join(
        f'{"sum" if (measurement, f) in SUMMED else "last"}("{f}") AS "{f}"'
        for f in MEASUREMENT_FIELDS[measurement]
    )
    return (
        f'SELECT {fields} INTO "{database}"."{ROLLUP_POLICY}"."{measurement}" '
        f'FROM "{database}"."{RAW_POLICY}"."{measurement}" '
        + (f"WHERE {where} " if where else "")
        + f"GROUP BY time({ROLLUP_INTERVAL}), *"
    )


def lifecycle_statements(database: str, raw_retention: str, rollup_retention: str) -> list[str]:
    """InfluxQL that sets the raw retention, creates the rollup policy and its continuous queries (1.x).

    Raises:
        ValueError: a retention is not an InfluxQL duration (``30d``, ``12w``, ``INF``).
    """
    for name, value in (("raw_retention", raw_retention), ("rollup_retention", rollup_retention)):
        if not _DURATION.fullmatch(value):
            raise ValueError(f"{name} must be a duration like 30d, 12w or INF, got {value!r}")
    statements = [
        f'ALTER RETENTION POLICY "{RAW_POLICY}" ON "{database}" DURATION {raw_retention} DEFAULT',
        f'CREATE RETENTION POLICY "{ROLLUP_POLICY}" ON "{database}" '
        f"DURATION {rollup_retention} REPLICATION 1",
        # CREATE does not change an existing policy's duration: ALTER makes a changed setting take effect
        f'ALTER RETENTION POLICY "{ROLLUP_POLICY}" ON "{database}" DURATION {rollup_retention}',
    ]
    for measurement in MEASUREMENT_FIELDS:
        name = f"{ROLLUP_POLICY}_{measurement}"
        statements.append(f'DROP CONTINUOUS QUERY "{name}" ON "{database}"')
        statements.append(
            f'CREATE CONTINUOUS QUERY "{name}" ON "{database}" '
            f"RESAMPLE EVERY {ROLLUP_INTERVAL} FOR {RESAMPLE_FOR} "
            f"BEGIN {rollup_select(database, measurement)} END"
        )
    return statements


def ensure_lifecycle(target: InfluxTarget, raw_retention: str, rollup_retention: str) -> None:
    """Apply :func:`lifecycle_statements` to an InfluxDB 1.x database; idempotent (re-run at every start).

    Raises:
        ServiceError: InfluxDB refused a statement (``wipwatch.influx.query`` names it).
    """
    if target.version != "1":
        log.info(
            "lifecycle skipped version=%s reason=2.x buckets and tasks come from its setup", target.version
        )
        return
    for statement in lifecycle_statements(target.database, raw_retention, rollup_retention):
        if statement.startswith("DROP CONTINUOUS QUERY"):
            try:
                query(target, statement)
            except ServiceError:  # not there yet: the first start
                log.debug("no continuous query to drop statement=%s", statement)
            continue
        query(target, statement)
    log.info(
        "lifecycle applied database=%s raw=%s rollup=%s", target.database, raw_retention, rollup_retention
    )
