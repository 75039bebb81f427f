"""The storage lifecycle on a real InfluxDB 1.x: policies, continuous queries, rollup values by hand."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.polling import eventually
from wipwatch.influx import InfluxTarget, InfluxWriter, line, query, rows
from wipwatch.retention import MEASUREMENT_FIELDS, ROLLUP_POLICY, ensure_lifecycle, rollup_select
from wipwatch.services import free_port, start_influxdb

pytestmark = [pytest.mark.integration, pytest.mark.slow]

S = 1_000_000  # microseconds


def _write(target: InfluxTarget, lines: list[str]) -> None:
    writer = InfluxWriter(target)
    writer.write(lines)
    writer.close()


def test_policies_queries_and_rollup_values(tmp_path: Path) -> None:
    port = free_port()
    server = start_influxdb(tmp_path, port, "wipwatch")
    target = InfluxTarget(f"http://127.0.0.1:{port}", "1", "wipwatch", "wipwatch", "wipwatch", "")
    try:
        ensure_lifecycle(target, "30d", "400d")
        ensure_lifecycle(target, "30d", "400d")  # every start: idempotent
        policies = {r["name"]: r for r in rows(query(target, "SHOW RETENTION POLICIES"))}
        assert policies["autogen"]["duration"] == "720h0m0s" and policies["autogen"]["default"]
        assert policies[ROLLUP_POLICY]["duration"] == "9600h0m0s" and not policies[ROLLUP_POLICY]["default"]
        (cqs,) = [s for s in query(target, "SHOW CONTINUOUS QUERIES") if s["name"] == "wipwatch"]
        assert sorted(v[0] for v in cqs["values"]) == sorted(
            f"{ROLLUP_POLICY}_{m}" for m in MEASUREMENT_FIELDS
        )

        # an hour ago, on a minute boundary: inside the raw retention
        t0 = (int(time.time()) // 60 - 60) * 60 * S
        tags = {"site": "s", "line": "l", "location": "b1"}
        _write(
            target,
            [
                line("wip", {**tags, "kind": "buffer"}, {"parts": 3, "value": 30.0}, t0 + 10 * S),
                line("wip", {**tags, "kind": "buffer"}, {"parts": 7, "value": 70.0}, t0 + 50 * S),
                line("wip", {**tags, "kind": "buffer"}, {"parts": 2, "value": 20.0}, t0 + 90 * S),
                line("data_quality", {**tags, "reason": "late"}, {"count": 1}, t0 + 5 * S),
                line("data_quality", {**tags, "reason": "late"}, {"count": 2}, t0 + 40 * S),
                line("station", tags, {"state": "down", "working_s": 5.0}, t0 + 20 * S),
                line("station", tags, {"state": "working", "working_s": 9.0}, t0 + 55 * S),
            ],
        )
        window = f"time >= {t0 * 1000} AND time < {(t0 + 120 * S) * 1000}"
        for measurement in MEASUREMENT_FIELDS:  # the continuous queries' own SELECT, as a backfill
            query(target, rollup_select("wipwatch", measurement, window))
        rollup = f'"{ROLLUP_POLICY}"'
        wip = rows(query(target, f'SELECT "parts", "value", "kind" FROM {rollup}."wip" ORDER BY time'))
        assert [(r["time"], r["parts"], r["value"], r["kind"]) for r in wip] == [
            (t0, 7, 70.0, "buffer"),  # the minute's last value, tags kept
            (t0 + 60 * S, 2, 20.0, "buffer"),
        ]
        (quality,) = rows(query(target, f'SELECT "count" FROM {rollup}."data_quality"'))
        assert quality["count"] == 3  # per-batch counts are summed
        (station,) = rows(query(target, f'SELECT "state", "working_s" FROM {rollup}."station"'))
        assert (station["state"], station["working_s"]) == ("working", 9.0)

        # the continuous query itself, on the server's schedule: a point from a minute ago gets rolled up
        recent = (int(time.time()) // 60 - 1) * 60 * S + 30 * S
        _write(target, [line("queue", tags, {"growth_per_hour": 4.5, "since_shrink_s": 12.0}, recent)])
        rolled = eventually(
            lambda: rows(query(target, f'SELECT * FROM {rollup}."queue"')),
            bool,
            timeout=90,
            what="the continuous query rolling up the last minutes",
        )
        assert [(r["time"], r["growth_per_hour"]) for r in rolled] == [(recent - 30 * S, 4.5)]
    finally:
        server.stop()
