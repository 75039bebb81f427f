"""Counts how many of N runs of "worker SIGKILLed mid-run, restarted" end equal to an uninterrupted run.

Not collected by pytest (the issue asks for 20 runs in a row; CI runs the case once per site in
tests/integration/test_kafka_faults.py). One Apache Kafka broker, mosquitto and influxd serve all runs;
each run uses its own consumer group and database, the kill lands at a random moment after the victim's
first points, and every field of every series is compared with the reference run's.

Run: ``.venv/bin/python tests/sigkill_loop.py --runs 20 --site 3-lines`` (or ``12-lines``).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.test_kafka_faults import (
    MULTI_LINE_SITE,
    final_wip,
    simulate,
    twelve_line_site,
)
from tests.polling import eventually
from tests.processors_rig import Rig, assert_same_metrics, packed, produce
from wipwatch.services import NativeStack, Ports
from wipwatch.site import load_site


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--site", choices=["3-lines", "12-lines"], default="3-lines")
    parser.add_argument("--hours", type=float, default=2.0, help="simulated hours of events")
    args = parser.parse_args()
    rng = random.Random(1)
    equal = 0
    with tempfile.TemporaryDirectory(prefix="wipwatch-sigkill-") as tmp:
        work = Path(tmp)
        site_file = MULTI_LINE_SITE if args.site == "3-lines" else twelve_line_site(work)
        site = load_site(site_file)
        events = simulate(site, args.hours, seed=5)
        expected = final_wip(site, events)
        stack = NativeStack(work / "stack", Ports.free())
        with stack.running():
            rig = Rig(stack, work, site_file)
            produce(stack, packed(events, per_record=20), site)
            rig.create_database("reference")
            rig.start_worker("reference", group="reference", database="reference")
            rig.wait_wip(expected, database="reference", timeout=300)
            reference = rig.metrics("reference")
            for run in range(1, args.runs + 1):
                database, small = f"killed{run}", {"processor_batch_size": "3"}
                rig.create_database(database)
                victim = rig.start_worker(f"victim{run}", group=database, database=database, **small)
                eventually(lambda db=database: rig.wip(db), bool, 120, "first points of the victim")
                time.sleep(rng.uniform(0.0, 2.0))
                victim.kill()
                successor = rig.start_worker(f"successor{run}", group=database, database=database, **small)
                try:
                    rig.wait_wip(expected, database=database, timeout=300)
                    assert_same_metrics(reference, rig.metrics(database))
                    equal += 1
                    verdict = "equal"
                except AssertionError as exc:
                    verdict = f"DIFFERENT: {str(exc).splitlines()[0][:200]}"
                successor.stop()
                print(f"run {run}: {verdict}", flush=True)
            rig.stop()
    print(f"sigkill_equal_runs: {equal} of {args.runs} ({args.site}, {len(events)} events)")
    return 0 if equal == args.runs else 1


if __name__ == "__main__":
    raise SystemExit(main())
