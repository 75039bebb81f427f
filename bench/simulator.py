"""How fast the simulator generates events: one 8-hour shift of the 3-line, 30-location example site.

Baseline, measured in the same run: constructing and encoding the same number of v1 events (uuid5 ids,
event times, msgspec JSON) in a plain loop, without SimPy. The ratio says what the model costs on top of
making the events at all.

Each figure is the best of three runs (after a warm-up), the one least disturbed by other work.

Run: .venv/bin/python bench/simulator.py
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from wipwatch.events import PartIn, encode_event
from wipwatch.settings import REPO_ROOT
from wipwatch.simulators.line import simulate_site
from wipwatch.simulators.recording import JsonLinesSink
from wipwatch.site import load_site

SITE = REPO_ROOT / "examples" / "multi-line-site.yaml"
SHIFT = 8 * 3600.0
START = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
RESULTS = Path(__file__).parent / "results" / "simulator.json"
REPEATS = 3


def baseline(n: int) -> float:
    """Events per second: build and encode ``n`` events without any simulation."""
    namespace = uuid.uuid4()
    began = time.perf_counter()
    for i in range(n):
        event = PartIn(
            v=1,
            id=str(uuid.uuid5(namespace, f"multi-plant/l1/{i}")),
            time=START + timedelta(seconds=i * 0.5),
            site="multi-plant",
            line="l1",
            location="b1",
            part=f"l1-P{i:07d}",
            sku="A",
            qty=1,
        )
        encode_event(event)
    return n / (time.perf_counter() - began)


def _best(repeats: int, run: Callable[[], object]) -> float:
    """Fastest wall time of ``repeats`` runs: the least disturbed by other work on the machine."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    site = load_site(SITE)
    simulate_site(site, lambda e: None, seed=1, duration=600, start=START)  # warm-up
    truth = simulate_site(site, lambda e: None, seed=1, duration=SHIFT, start=START)
    sim_seconds = _best(REPEATS, lambda: simulate_site(site, encode_event, 1, SHIFT, None, START))
    sim_rate = truth.events / sim_seconds

    with tempfile.TemporaryDirectory() as tmp:

        def dry_run() -> None:
            with JsonLinesSink(Path(tmp) / "events.jsonl") as sink:
                simulate_site(site, sink, seed=1, duration=SHIFT, start=START)

        dry_run_seconds = _best(REPEATS, dry_run)

    base_rate = max(baseline(truth.events) for _ in range(REPEATS))
    figures = {
        "shift_events": truth.events,
        "shift_wall_seconds": round(sim_seconds, 3),
        "sim_events_per_second": round(sim_rate),
        "dry_run_shift_wall_seconds": round(dry_run_seconds, 3),
        "dry_run_events_per_second": round(truth.events / dry_run_seconds),
        "baseline_construct_encode_events_per_second": round(base_rate),
        "ratio_sim_to_baseline": round(sim_rate / base_rate, 3),
        "simulated_seconds_per_wall_second": round(SHIFT / sim_seconds),
    }
    units = {
        "shift_events": "events",
        "shift_wall_seconds": "s",
        "dry_run_shift_wall_seconds": "s",
        "ratio_sim_to_baseline": "x",
        "simulated_seconds_per_wall_second": "x real time",
    }
    for name, value in figures.items():
        print(f"{name}: {value} {units.get(name, 'events/s')}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"bench": "simulator", "site": SITE.name, **figures}, indent=1))


if __name__ == "__main__":
    main()
