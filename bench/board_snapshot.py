"""How long the live board takes to build one snapshot of a 36-location site from InfluxDB.

Baseline, measured in the same run: the single ``wip`` query of ``wipwatch top`` (last WIP per location).
The board's snapshot runs one query per measurement of the contract plus one for the trend lines, so the
ratio says what the board's richer view costs per refresh. Prints ``name: value unit`` lines and writes
bench/results/board_snapshot.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wipwatch.dashboards.board.snapshot import MEASUREMENTS, SnapshotSource  # noqa: E402
from wipwatch.influx import InfluxTarget, InfluxWriter, line, query  # noqa: E402
from wipwatch.services import NativeStack, Ports  # noqa: E402
from wipwatch.site import Site, parse_site  # noqa: E402

POINTS_PER_SERIES = 600  # ten hours of one point a minute
ROUNDS = 30
T0 = 1_795_000_000_000_000


def _big_site() -> Site:
    """Three lines of twelve locations: store, five station/buffer pairs, finished goods."""
    lines = []
    for n in range(3):
        locations: list[dict[str, object]] = [{"id": "raw", "kind": "store"}]
        for i in range(5):
            locations.append({"id": f"s{i}", "kind": "station", "process_time": {"mean": 10}})
            locations.append({"id": f"b{i}", "kind": "buffer", "cap": 10})
        locations.append({"id": "fg", "kind": "store"})
        lines.append({"id": f"line{n}", "locations": locations})
    return parse_site({"site": "big", "lines": lines})


def fill(target: InfluxTarget) -> int:
    site = _big_site()
    writer = InfluxWriter(target, batch_size=20_000, flush_seconds=0.1)
    count = 0
    for ln in site.lines:
        for loc in ln.locations:
            tags = {"site": site.site, "line": ln.id, "location": loc.id}
            batch = []
            for i in range(POINTS_PER_SERIES):
                t = T0 + i * 60_000_000
                for spec in MEASUREMENTS:
                    fields: dict[str, object] = {spec.selector: float(i % 17)}
                    fields.update({f: float(i) for f in spec.fields if f != "state"})
                    if "state" in spec.fields:
                        fields["state"] = "working"
                    batch.append(line(spec.measurement, tags, fields, t))
            writer.write(batch)
            count += len(batch)
    writer.close(timeout=120)
    return count


def timed(action, rounds: int) -> float:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = NativeStack(Path(tmp) / "stack", Ports.free())
        with stack.running():
            target = InfluxTarget(stack.influx_url, "1", "wipwatch", "wipwatch", "wipwatch", "")
            points = fill(target)
            site = _big_site()
            source = SnapshotSource(site, target)
            baseline_sql = (
                'SELECT last("parts") AS parts, "value" FROM "wip" WHERE "site" = \'big\' '
                'GROUP BY "line", "location"'
            )
            baseline = timed(lambda: query(target, baseline_sql), ROUNDS)
            snapshot = timed(source.snapshot, ROUNDS)
            size = len(json.dumps(source.snapshot()))
    figures = {
        "points_written": points,
        "top_query_ms": round(baseline * 1000, 2),
        "board_snapshot_ms": round(snapshot * 1000, 2),
        "board_snapshot_ratio_vs_top_query": round(snapshot / baseline, 2),
        "board_snapshot_json_bytes": size,
    }
    print(f"points_written: {points} points")
    print(f"top_query (baseline, 36 locations): {figures['top_query_ms']} ms")
    print(
        f"board_snapshot (36 locations, 8 measurements + trends): {figures['board_snapshot_ms']} ms "
        f"(x{figures['board_snapshot_ratio_vs_top_query']} baseline)"
    )
    print(f"board_snapshot_json: {size} bytes")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "board_snapshot.json").write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
