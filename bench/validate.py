"""What ingest's full validation costs per message: ``validate_message`` with every limit of docs/events.md.

Baseline, measured in the same run: msgspec's schema decode alone (``decode_event``), which is what
validation cost before the limits (size, duplicate keys, time range, clock ahead) were added. Messages:
10,000 simulated events of the 3-line example site, with the site file loaded, as ingest runs it.
Beside them ingest's own path (``IngestValidator.line_of``: the same verdicts, faster; issue #16), warmed
on the messages once (its identifier cache holds the site's names, as in a running ingest).

Each figure is the best of 15 runs, the three taking turns.

Run: .venv/bin/python bench/validate.py
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from wipwatch.events import Event, IngestValidator, decode_event, encode_event, topic_for, validate_message
from wipwatch.settings import REPO_ROOT
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

SITE = REPO_ROOT / "examples" / "multi-line-site.yaml"
START = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
RESULTS = Path(__file__).parent / "results" / "validate.json"
MESSAGES = 10_000
REPEATS = 15


def main() -> None:
    site = load_site(SITE)
    events: list[Event] = []
    simulate_site(site, events.append, seed=1, duration=8 * 3600, start=START)
    messages = [(topic_for(e), encode_event(e)) for e in events[:MESSAGES]]
    now = time.time()

    def best(*runs: Callable[[], None]) -> list[float]:
        """The best time of each of ``runs`` over ``REPEATS`` rounds, run in turn (load falls on all)."""
        times: list[list[float]] = [[] for _ in runs]
        for _ in range(REPEATS):
            for run, spent in zip(runs, times, strict=True):
                began = time.perf_counter()
                run()
                spent.append(time.perf_counter() - began)
        return [min(spent) for spent in times]

    def baseline() -> None:
        for _, payload in messages:
            decode_event(payload)

    def full() -> None:
        for topic, payload in messages:
            validate_message(topic, payload, site, now, 300.0)

    ingest = IngestValidator(site, 300.0)

    def ingest_path() -> None:
        for topic, payload in messages:
            ingest.line_of(topic, payload, now)

    ingest_path()
    base_s, full_s, ingest_s = best(baseline, full, ingest_path)
    figures = {
        "validate_message_us_per_message": round(full_s / len(messages) * 1e6, 2),
        "baseline_decode_us_per_message": round(base_s / len(messages) * 1e6, 2),
        "ratio_validate_to_baseline": round(full_s / base_s, 2),
        "ingest_validator_us_per_message": round(ingest_s / len(messages) * 1e6, 2),
        "ratio_ingest_validator_to_validate": round(ingest_s / full_s, 2),
    }
    units = {"ratio_validate_to_baseline": "x", "ratio_ingest_validator_to_validate": "x"}
    for name, value in figures.items():
        print(f"{name}: {value} {units.get(name, 'us')}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"bench": "validate", "messages": len(messages), **figures}, indent=1))


if __name__ == "__main__":
    main()
