"""CPU per event of the processors' pure engine (issue #16), against the same engine at another commit.

What the Faust agent (processors/app.py) does per batch, without Kafka, Faust or InfluxDB: decode each
record (``decode_record``), ``LineEngine.offer``, ``release``, render ``line_points`` + ``quality_points``
(the closed periods' and shrinks' points, the open period's, the alert transitions), ``changes.clear`` and
``dump`` each touched line's state. Input: a shift of the bench site (bench/sites/three-lines.yaml, the
SimPy model, packed as ingest packs it: ``bench.processors.shift_records``).

Figures, CPU seconds of this process (``time.process_time``), in one run:
- ``decode``: the decode-only loop over the same records (the baseline: msgspec alone);
- ``base``: the engine and points of ``--ref`` (default: the commit before the engine work of issue #16),
  loaded from git into a temporary package beside this tree's;
- ``engine``: this tree's engine and points;

as µs per event, the best of ``--rounds`` alternated runs (the machine is shared: the best is the least
disturbed), with ``engine / base`` and ``engine / decode``. Before timing, both run the shift with a dump
and the points after every 25 events, and every line of line protocol and every dump are compared: the bench
fails if one differs (the output must stay byte-identical; docs/metrics.md is the contract).

Run: ``.venv/bin/python bench/engine.py [--hours 12] [--rounds 3] [--batch 100] [--ref REF]``. Writes
bench/results/engine.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.processors import SITE_FILE, shift_records  # noqa: E402
from wipwatch.alert_rules import expand_rules  # noqa: E402
from wipwatch.events import decode_record  # noqa: E402
from wipwatch.processors.app import engine_config  # noqa: E402
from wipwatch.settings import REPO_ROOT, load_settings  # noqa: E402
from wipwatch.site import load_site  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "engine.json"
#: main before the engine work of issue #16 (bench/mqtt_hop.py measured the processors at 64 µs an event).
DEFAULT_REF = "941945d"
#: Modules of the engine and its points, loaded at ``--ref`` into the package ``_engine_base``.
_BASE_FILES = {
    "wipwatch/influx.py": "influx",
    "processors/points.py": "points",
}
_REWRITES = (
    ("wipwatch.processors.metrics", "_engine_base.metrics"),
    ("wipwatch.processors.points", "_engine_base.points"),
    ("wipwatch.influx", "_engine_base.influx"),
)

#: Events offered at a time in the comparison (a dump and the points after each part).
CHECK_SPLIT = 25

Records = list[tuple[bytes, bytes]]


@dataclasses.dataclass
class Engine:
    """The three things a run needs from one version of the code."""

    line_engine: Any
    collect_points: Callable[..., None]
    line_points: Callable[..., list[str]]
    quality_points: Callable[..., list[str]]


def current() -> Engine:
    from wipwatch.processors.metrics.line_state import LineEngine
    from wipwatch.processors.points import collect_points, line_points, quality_points

    return Engine(LineEngine, collect_points, line_points, quality_points)


def base(ref: str, into: Path) -> Engine:
    """The engine and points at git ``ref``, as package ``_engine_base`` (imports rewritten to it)."""
    files = dict(_BASE_FILES)
    listing = _git("ls-tree", "--name-only", f"{ref}:processors/metrics")
    for name in listing.split():
        if name.endswith(".py"):
            files[f"processors/metrics/{name}"] = f"metrics/{name[:-3]}"
    package = into / "_engine_base"
    (package / "metrics").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for path, module in files.items():
        text = _git("show", f"{ref}:{path}")
        for old, new in _REWRITES:
            text = text.replace(old, new)
        (package / f"{module}.py").write_text(text)
    sys.path.insert(0, str(into))
    line_state = importlib.import_module("_engine_base.metrics.line_state")
    points = importlib.import_module("_engine_base.points")
    return Engine(line_state.LineEngine, points.collect_points, points.line_points, points.quality_points)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout


def run(
    engine: Engine, records: Records, batch: int, keep: bool = False, split: int = 0
) -> tuple[float, list[str], list[bytes]]:
    """CPU seconds to process ``records`` in batches of ``batch``; the lines and dumps if ``keep``.

    ``split``: offer each record's events ``split`` at a time, each part a batch of its own (finer steps
    for the comparison: the open period's points and the state after every ``split`` events).
    """
    if split:
        return _run_split(engine, records, split, keep)
    engine_of = _Engines(engine)
    dq: dict[str, int] = {}
    lines: list[str] = []
    dumps: list[bytes] = []
    started = time.process_time()
    for first in range(0, len(records), batch):
        touched: dict[bytes, Any] = {}
        for offset, (key, value) in enumerate(records[first : first + batch], first):
            e = engine_of(key)
            e.offer(decode_record(value), 0, offset)
            touched[key] = e
        for e in touched.values():
            e.release()
            out = engine.line_points(e) + engine.quality_points(e, dq)
            e.changes.clear()
            blob = e.dump()
            if keep:
                lines += out
                dumps.append(blob)
    return time.process_time() - started, lines, dumps


class _Engines:
    """The bench site's line engines of ``engine``'s code, each made on its line's first record (as the
    agent does); ``made`` holds them."""

    def __init__(self, engine: Engine) -> None:
        site = load_site(SITE_FILE)
        self.engine, self.site_id = engine, site.site
        self.config = dataclasses.replace(
            engine_config(load_settings()), alert_every_s=site.alerts.evaluate_every
        )
        self.rules = expand_rules(site)
        self.lines = {f"{site.site}/{line.id}".encode(): line for line in site.lines}
        self.made: dict[bytes, Any] = {}

    def __call__(self, key: bytes) -> Any:
        e = self.made.get(key)
        if e is None:
            e = self.made[key] = self.engine.line_engine(
                self.lines[key],
                self.site_id,
                self.config,
                rules=self.rules,
                on_snapshot=self.engine.collect_points,
            )
        return e


def _run_split(
    engine: Engine, records: Records, split: int, keep: bool
) -> tuple[float, list[str], list[bytes]]:
    engine_of = _Engines(engine)
    dq: dict[str, int] = {}
    lines: list[str] = []
    dumps: list[bytes] = []
    offset = 0
    started = time.process_time()
    for key, value in records:
        e = engine_of(key)
        events = decode_record(value)
        for first in range(0, len(events), split):
            offset += 1
            e.offer(events[first : first + split], 0, offset)
            e.release()
            lines += engine.line_points(e) + engine.quality_points(e, dq)
            e.changes.clear()
            dumps.append(e.dump())
    for e in engine_of.made.values():
        e.release(everything=True)
        e.finish_alerts()
        lines += engine.line_points(e) + engine.quality_points(e, dq)
        e.changes.clear()
        dumps.append(e.dump())
    return time.process_time() - started, lines, dumps


def decode_only(records: Records) -> float:
    started = time.process_time()
    for _, value in records:
        decode_record(value)
    return time.process_time() - started


def check_identical(old: Engine, new: Engine, records: Records) -> tuple[int, int]:
    """Run both with a dump and the points after every ``CHECK_SPLIT`` events and at the end (every
    event released, the last alert ticks); (lines, dumps) compared, or raise."""
    _, old_lines, old_dumps = run(old, records, 1, keep=True, split=CHECK_SPLIT)
    _, new_lines, new_dumps = run(new, records, 1, keep=True, split=CHECK_SPLIT)
    for kind, a, b in (("line", old_lines, new_lines), ("dump", old_dumps, new_dumps)):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            if x != y:
                raise SystemExit(f"{kind} {i} differs:\n  base:   {x[:300]!r}\n  engine: {y[:300]!r}")
        if len(a) != len(b):
            raise SystemExit(f"{kind}s: base wrote {len(a)}, engine {len(b)}")
    return len(new_lines), len(new_dumps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=12.0, help="simulated hours of the bench site")
    parser.add_argument("--rounds", type=int, default=3, help="alternated runs of each; the best counts")
    parser.add_argument("--batch", type=int, default=100, help="records per batch (the agent's default)")
    parser.add_argument("--ref", default=DEFAULT_REF, help="git ref of the base engine")
    args = parser.parse_args()

    records, n_events, _ = shift_records(args.hours)
    with tempfile.TemporaryDirectory(prefix="wipwatch-engine-") as tmp:
        old, new = base(args.ref, Path(tmp)), current()
        n_lines, n_dumps = check_identical(old, new, records)
        print(
            f"identical: {n_lines:,} lines and {n_dumps:,} dumps "
            f"(a dump and the points after every {CHECK_SPLIT} events)"
        )
        times: dict[str, list[float]] = {"decode": [], "base": [], "engine": []}
        for _ in range(args.rounds):
            times["decode"].append(decode_only(records))
            times["base"].append(run(old, records, args.batch)[0])
            times["engine"].append(run(new, records, args.batch)[0])

    us = {name: min(values) / n_events * 1e6 for name, values in times.items()}
    figures: dict[str, Any] = {
        "events": n_events,
        "records": len(records),
        "hours": args.hours,
        "batch": args.batch,
        "ref": args.ref,
        "decode_us": us["decode"],
        "base_us": us["base"],
        "engine_us": us["engine"],
        "engine_over_base": us["engine"] / us["base"],
        "engine_over_decode": us["engine"] / us["decode"],
        "runs_s": times,
        "identical_lines": n_lines,
        "identical_dumps": n_dumps,
    }
    print(f"events: {n_events:,} in {len(records)} records ({args.hours:g} h of {SITE_FILE.name})")
    print(f"decode: {us['decode']:.1f} µs/event (decode_record alone; baseline)")
    print(
        f"base:   {us['base']:.1f} µs/event "
        f"(engine + points at {args.ref}; {us['base'] / us['decode']:.1f}x decode)"
    )
    print(
        f"engine: {us['engine']:.1f} µs/event (this tree; {us['engine'] / us['decode']:.1f}x decode, "
        f"{us['engine'] / us['base']:.2f}x base)"
    )
    print("runs (CPU s): " + "; ".join(f"{k} {', '.join(f'{v:.2f}' for v in vs)}" for k, vs in times.items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"time": time.time(), **figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
