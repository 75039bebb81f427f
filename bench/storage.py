"""Bytes InfluxDB stores per event, and the disk a year takes at a stated plant size.

The plant: ``bench/sites/three-lines.yaml`` (three lines), simulated for ``--hours`` of event time.
The points are those the processors write in live operation (docs/metrics.md): the pure line engine
(``processors/metrics``) takes the events in batches of ``processor_batch_seconds`` of event time (live,
speed 1) and ``processors/points.py`` turns each batch into points, one per location and measurement.
They go to a real influxd (1.x) whose cache is compacted to TSM files after one idle second; then the
1-minute rollups are computed with the continuous queries' own SELECT (``wipwatch/retention.py``).

Printed: bytes per event raw and rolled up, and the disk of a year with the lifecycle (30 days raw,
rollups for the year) against the baseline of keeping raw points a whole year, measured in the same run.
Figures also go to ``bench/results/storage.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from wipwatch.events import Event
from wipwatch.influx import InfluxTarget, InfluxWriter, query
from wipwatch.processors.metrics.line_state import EngineConfig, LineEngine
from wipwatch.processors.points import line_points
from wipwatch.retention import MEASUREMENT_FIELDS, RAW_POLICY, ROLLUP_POLICY, ensure_lifecycle, rollup_select
from wipwatch.services import free_port, spawn, start_influxdb
from wipwatch.settings import REPO_ROOT, Settings
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

SITE_FILE = REPO_ROOT / "bench" / "sites" / "three-lines.yaml"
RESULTS = REPO_ROOT / "bench" / "results" / "storage.json"
DAY_S = 86400.0


def live_points(events: list[Event], batch_s: float) -> list[str]:
    """The processors' points for ``events`` when each ``batch_s`` of event time is one batch."""
    site = load_site(SITE_FILE)
    by_line: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_line[event.line].append(event)
    points: list[str] = []
    for line in site.lines:
        engine = LineEngine(line, site.site, EngineConfig())
        batch: list[Event] = []
        offset = 0
        for event in sorted(by_line[line.id], key=lambda e: e.timestamp):
            if batch and event.timestamp - batch[0].timestamp >= batch_s:
                offset += 1
                engine.offer(batch, 0, offset)
                engine.release(everything=True)
                points += line_points(engine)
                batch = []
            batch.append(event)
        if batch:
            engine.offer(batch, 0, offset + 1)
            engine.release(everything=True)
            points += line_points(engine)
    return points


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _settled_size(data: Path, timeout: float = 120.0) -> int:
    """TSM bytes once the WAL is written out and compaction has stopped changing them."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        tsm = sum(p.stat().st_size for p in data.rglob("*.tsm"))
        wal = sum(p.stat().st_size for p in data.parent.joinpath("wal").rglob("*.wal"))
        if tsm and tsm == last and wal < 64 * 1024:
            return tsm
        last = tsm
        time.sleep(3)
    raise RuntimeError(f"influxd did not settle its files in {timeout:.0f}s under {data}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=4.0, help="simulated hours of the plant")
    args = parser.parse_args()
    site = load_site(SITE_FILE)
    events: list[Event] = []
    simulate_site(site, events.append, 1, args.hours * 3600, None)
    batch_s = Settings.model_fields["processor_batch_seconds"].default
    points = live_points(events, batch_s)
    locations = sum(len(line.locations) for line in site.lines)

    run = Path(tempfile.mkdtemp(prefix="wipwatch-storage-"))
    try:
        port = free_port()
        start_influxdb(run, port, "wipwatch").stop()  # writes the config and the database
        conf = run / "influxdb" / "influxdb.conf"
        # snapshot the cache and compact after one idle second, so the measured files are the TSM ones
        cold = '  cache-snapshot-write-cold-duration = "1s"\n  compact-full-write-cold-duration = "1s"\n'
        conf.write_text(conf.read_text().replace("[data]\n", "[data]\n" + cold))
        server = spawn("influxdb", ["influxd", "-config", str(conf)], run / "logs")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        try:
            target = InfluxTarget(url, "1", "wipwatch", "wipwatch", "wipwatch", "")
            ensure_lifecycle(target, "INF", "INF")
            writer = InfluxWriter(target, batch_size=5000)
            writer.write(points)
            writer.close()
            data = run / "influxdb" / "data" / "wipwatch"
            raw_bytes = _settled_size(data / RAW_POLICY)
            first, last = events[0].timestamp, events[-1].timestamp
            window = f"time >= {int(first) * 10**9} AND time <= {int(last + 60) * 10**9}"
            for measurement in MEASUREMENT_FIELDS:
                query(target, rollup_select("wipwatch", measurement, window))
            rollup_bytes = _settled_size(data / ROLLUP_POLICY)
        finally:
            server.stop()
    finally:
        shutil.rmtree(run, ignore_errors=True)

    days = args.hours * 3600 / DAY_S
    events_per_day = len(events) / days
    raw_per_day, rollup_per_day = raw_bytes / days, rollup_bytes / days
    lifecycle_year = raw_per_day * 30 + rollup_per_day * 365
    baseline_year = raw_per_day * 365
    figures = {
        "plant": f"{len(site.lines)} lines, {locations} locations, {events_per_day:,.0f} events/day",
        "events": len(events),
        "points_per_event": len(points) / len(events),
        "raw_bytes_per_event": raw_bytes / len(events),
        "rollup_bytes_per_event": rollup_bytes / len(events),
        "raw_mb_per_day": raw_per_day / 1e6,
        "year_with_lifecycle_gb": lifecycle_year / 1e9,
        "year_raw_only_gb": baseline_year / 1e9,
    }
    print(f"plant: {figures['plant']} (bench/sites/three-lines.yaml, {args.hours:g} h simulated)")
    print(f"points_per_event: {figures['points_per_event']:.1f} points (batches of {batch_s} s event time)")
    print(f"raw_bytes_per_event: {figures['raw_bytes_per_event']:.1f} bytes")
    print(f"rollup_bytes_per_event: {figures['rollup_bytes_per_event']:.1f} bytes")
    print(f"raw_per_day: {figures['raw_mb_per_day']:.1f} MB")
    ratio = lifecycle_year / baseline_year
    print(f"year_with_lifecycle: {figures['year_with_lifecycle_gb']:.2f} GB ({ratio:.2f}x of raw-only)")
    print(f"year_raw_only (baseline): {figures['year_raw_only_gb']:.2f} GB (1.00x)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({**figures, "ratio_to_baseline": ratio, "at": time.time()}, indent=1))


if __name__ == "__main__":
    main()
