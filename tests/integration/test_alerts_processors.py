"""Alerts in the processors' exactly-once state: a worker SIGKILLed in the middle of a shift.

Events go straight to Kafka (tests/processors_rig.py); the successor resumes from the changelog. Ground
truth is the pure engine's backtest of the same events: InfluxDB must hold exactly its transitions, MQTT must
retain exactly the alerts firing at the end, and whatever was sent twice (the successor re-sends the last
transition of each alert) carries the same identity, ``seq`` and payload.
"""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.alerting import retained
from tests.polling import eventually
from tests.processors_rig import Rig, packed, produce
from wipwatch.events import Event
from wipwatch.influx import query, rows
from wipwatch.processors.alert_backtest import run_backtest
from wipwatch.services import NativeStack
from wipwatch.settings import REPO_ROOT
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SITE_FILE = REPO_ROOT / "examples" / "mass-production.yaml"
START = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
WALL_CLOCK_RULES = {"line-silent"}


@pytest.fixture
def rig(stack: NativeStack, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(stack, tmp_path, SITE_FILE)
    try:
        yield r
    finally:
        r.stop()


def test_sigkilled_worker_loses_no_transition_and_repeats_only_identical_ones(
    rig: Rig, tmp_path: Path
) -> None:
    site = load_site(SITE_FILE)
    events: list[Event] = []
    # six hours: b-raw, b-cut over their caps and cut the bottleneck at the end (the backtest says so)
    simulate_site(site, events.append, seed=1, duration=6 * 3600, start=START)
    expected = run_backtest(site, events, finish=False)
    want = sorted(
        (tr.identity, round(tr.at * 1_000_000), int(tr.state == "firing"), tr.seq)
        for tr in expected.transitions
        if tr.instance.rule not in WALL_CLOCK_RULES
    )
    firing_at_end = {
        e.identity for e in expected.episodes if e.end is None and e.rule not in WALL_CLOCK_RULES
    }
    assert len(want) > 20 and firing_at_end

    log = (tmp_path / "alerts.log").open("wb")
    argv = ["mosquitto_sub", "-p", str(rig.stack.mqtt_port), "-t", "wipwatch/alerts/#", "-q", "1"]
    watcher = subprocess.Popen([*argv, "-F", "%t %p"], stdout=log)
    try:
        produce(rig.stack, packed(events, per_record=20), site)

        def transitions() -> list[tuple[str, int, int, int]]:
            found = rows(query(rig.target(), 'SELECT "identity", "firing", "seq", "rule" FROM "alerts"'))
            return sorted(
                (r["identity"], r["time"], r["firing"], r["seq"])
                for r in found
                if r["rule"] not in WALL_CLOCK_RULES
            )

        victim = rig.start_worker("victim", processor_batch_size="2")
        eventually(transitions, lambda got: len(got) >= 3, 120, "the victim's first alert transitions")
        victim.kill()
        assert transitions() != want, "the kill must land in the middle of the run"
        # Apache Kafka expires the dead member after the session timeout and hands its partitions on
        rig.start_worker("successor", processor_batch_size="2")
        try:
            eventually(transitions, lambda got: got == want, 180, "the backtest's transitions in InfluxDB")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{rig.logs()}") from None
        state = eventually(
            lambda: retained(rig.stack.mqtt_port, len(firing_at_end)),
            lambda got: {json.loads(p)["identity"] for p in got.values()} == firing_at_end,
            60,
            "retained alerts firing at the end",
        )
        assert len(state) == len(firing_at_end)
    finally:
        watcher.terminate()
        watcher.wait(10)
        log.close()

    sent: dict[tuple[str, int], set[bytes]] = defaultdict(set)
    for row in (tmp_path / "alerts.log").read_bytes().splitlines():
        _topic, _, payload = row.partition(b" ")
        if payload:
            alert = json.loads(payload)
            sent[(alert["identity"], alert["seq"])].add(payload)
    assert sent, "the watcher saw no firing alert"
    assert all(len(payloads) == 1 for payloads in sent.values()), (
        "one identity and seq, two different payloads"
    )
    fired = {(tr.identity, tr.seq) for tr in expected.transitions if tr.state == "firing"}
    assert set(sent) <= fired, "a firing message that the backtest does not have"
