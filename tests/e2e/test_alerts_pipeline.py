"""Alerts end to end on real servers: a push line that breaks its caps (examples/mass-production.yaml),
simulator → MQTT → ingest → Kafka → processors → retained MQTT state, Alertmanager (webhook and e-mail
receivers), the ``alerts`` measurement in InfluxDB.

Ground truth: the simulator's own WIP samples for every wip-over-cap firing, and the pure engine's backtest
of the same events for the whole timeline (the processors must write exactly its transitions). The shift is
published in two halves, so an alert that fires in the first half is seen firing, then resolving.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.alerting import Inbox, am_alerts, receivers, retained, silence
from tests.conftest import stack_env, stack_settings
from tests.polling import eventually
from wipwatch.events import Event
from wipwatch.influx import InfluxTarget, query, rows
from wipwatch.ingest import wait_subscribed
from wipwatch.mqtt import MqttPublisher
from wipwatch.processors.alert_backtest import run_backtest
from wipwatch.services import (
    ChildProcess,
    NativeStack,
    free_port,
    python_module_argv,
    spawn,
    start_alertmanager,
)
from wipwatch.settings import REPO_ROOT
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SITE_FILE = REPO_ROOT / "examples" / "mass-production.yaml"
START = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
SPLIT_S = 2 * 3600
#: Judged on the wall clock live (no quiet line in this test) and on event time in a backtest.
WALL_CLOCK_RULES = {"line-silent"}
SILENCED_RULE = "new-bottleneck"


@pytest.fixture
def pipeline(stack: NativeStack, tmp_path: Path) -> Iterator[tuple[Inbox, ChildProcess, list[ChildProcess]]]:
    with receivers() as inbox:
        manager = start_alertmanager(tmp_path, free_port(), inbox.alertmanager_config(tmp_path / "am.yml"))
        env = {
            **stack_env(stack, tmp_path / "run", SITE_FILE),
            "WIPWATCH_ALERTMANAGER_URL": manager.address,
            "WIPWATCH_ALERTS_CHECK_S": "1",
        }
        children = [
            spawn("ingest", python_module_argv("ingest"), tmp_path / "logs", env),
            spawn("processors", python_module_argv("process"), tmp_path / "logs", env),
        ]
        try:
            wait_subscribed(children[0], tmp_path / "run", "wipwatch-ingest-1")
            yield inbox, manager, children
        finally:
            for child in [*children, manager]:
                child.stop()


def _transitions(target: InfluxTarget) -> list[tuple[str, int, int, int]]:
    found = rows(query(target, 'SELECT "identity", "firing", "seq", "rule" FROM "alerts"'))
    return sorted(
        (r["identity"], r["time"], r["firing"], r["seq"]) for r in found if r["rule"] not in WALL_CLOCK_RULES
    )


def test_caps_broken_fire_and_resolve_everywhere(
    stack: NativeStack, pipeline: tuple[Inbox, ChildProcess, list[ChildProcess]], tmp_path: Path
) -> None:
    inbox, manager, workers = pipeline
    settings = stack_settings(stack, tmp_path / "run", site_file=SITE_FILE)
    site = load_site(SITE_FILE)
    events: list[Event] = []
    truth = simulate_site(site, events.append, seed=1, duration=8 * 3600, start=START)
    first = [e for e in events if e.timestamp < START.timestamp() + SPLIT_S]
    rest = events[len(first) :]
    assert first + rest == events  # the simulator emits in event-time order

    def expected(upto: list[Event]) -> Any:
        return run_backtest(site, upto, finish=False)

    half, whole = expected(first), expected(events)
    live = lambda result: [e for e in result.episodes if e.rule not in WALL_CLOCK_RULES]  # noqa: E731
    firing_at_split = {e.identity: e for e in live(half) if e.end is None}
    # alerts firing at the split and resolved at the end; what reaches people is each alert's last
    # transition (a fast replay folds the episodes in between), so the last resolution of each
    firing_at_end = {e.identity for e in live(whole) if e.end is None}
    last_end: dict[str, float] = {}
    for e in live(whole):
        if e.identity in firing_at_split and e.identity not in firing_at_end and e.end is not None:
            last_end[e.identity] = max(e.end, last_end.get(e.identity, 0.0))
    bridging = [e for e in live(whole) if e.end == last_end.get(e.identity)]
    assert bridging, "the scenario needs an alert that fires before the split and resolves after it"
    # ground truth for the caps: the simulator's WIP samples exceed the cap all through `for` before a firing
    caps = {(line.id, loc.id): loc.cap for line, loc in site.iter_locations()}
    cap_firings = [e for e in live(whole) if e.rule == "wip-over-cap"]
    assert {e.location for e in cap_firings} >= {"b-raw", "b-cut", "fg"}
    for e in cap_firings:
        key = f"{e.line}/{e.location}"
        held = [
            n
            for t, n in zip(truth.sample_times, truth.samples[key], strict=True)
            if e.start - 240 <= START.timestamp() + t <= e.start
        ]
        assert held and all(n > caps[(e.line, e.location)] for n in held), (e, held)

    silence(manager.address, "alertname", SILENCED_RULE, "shifting bottlenecks are expected on a push line")
    publisher = MqttPublisher(settings.mqtt_host, settings.mqtt_port, "e2e-alerts-sim")
    target = InfluxTarget(stack.influx_url, "1", "wipwatch", "wipwatch", "wipwatch", "")

    def logs() -> str:
        return "\n".join(f"--- {c.name}\n{c.log_tail(30)}" for c in workers)

    def wait(what: str, probe: Any, accept: Any, timeout: float = 120) -> Any:
        for child in workers:
            assert child.alive(), f"{child.name} died\n{logs()}"
        try:
            return eventually(probe, accept, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{logs()}") from None

    def check(result: Any) -> None:
        # InfluxDB: exactly the backtest's transitions (identity, event time, firing, seq)
        want = sorted(
            (tr.identity, round(tr.at * 1_000_000), int(tr.state == "firing"), tr.seq)
            for tr in result.transitions
            if tr.instance.rule not in WALL_CLOCK_RULES
        )
        wait("alert transitions in InfluxDB", lambda: _transitions(target), lambda got: got == want)
        active = {e.identity: e for e in live(result) if e.end is None}
        # the floor: one retained message per firing alert, nothing for the others
        state = wait(
            "retained alert state",
            lambda: retained(settings.mqtt_port, len(active)),
            lambda got: {json.loads(p)["identity"] for p in got.values()} == set(active),
        )
        for topic, payload in state.items():
            alert = json.loads(payload)
            episode = active[alert["identity"]]
            assert topic == f"wipwatch/alerts/{site.site}/{episode.line}/{episode.rule}/{episode.location}"
            assert alert["since"] == datetime.fromtimestamp(episode.start, UTC).isoformat(
                timespec="milliseconds"
            ).replace("+00:00", "Z")
        # people: Alertmanager holds the active alerts; the silenced rule's are suppressed, never notified
        held = wait(
            "Alertmanager's active alerts",
            lambda: {a["labels"]["identity"]: a["status"]["state"] for a in am_alerts(manager.address)},
            lambda got: {i for i, s in got.items() if s != "unprocessed"} >= set(active),
        )
        for identity, episode in active.items():
            assert held[identity] == ("suppressed" if episode.rule == SILENCED_RULE else "active")
            if episode.rule != SILENCED_RULE:
                wait(
                    f"webhook for {episode.rule}/{episode.location}",
                    lambda i=identity: inbox.notified(i, "firing"),
                    bool,
                )
        assert not [
            a for body in inbox.webhook for a in body["alerts"] if a["labels"]["alertname"] == SILENCED_RULE
        ]

    for event in first:
        publisher(event)
    publisher.drain()
    check(half)
    mails_after_half = len(inbox.mails)
    assert mails_after_half >= 1

    for event in rest:
        publisher(event)
    publisher.close()
    check(whole)
    ends = {e.identity: set() for e in bridging}
    for e in live(whole):
        if e.identity in ends and e.end is not None:
            ends[e.identity].add(e.end)
    for episode in bridging:
        if episode.rule == SILENCED_RULE:
            continue
        notes = wait(
            f"resolution of {episode.rule}/{episode.location}",
            lambda e=episode: inbox.notified(e.identity, "resolved"),
            bool,
        )
        # depending on the batches, people hear of the first resolution, the last, or both: each at its time
        for note in notes:
            ended = datetime.fromisoformat(note["endsAt"].replace("Z", "+00:00")).timestamp()
            assert ended in ends[episode.identity], (note["endsAt"], sorted(ends[episode.identity]))
    wait("resolution e-mails", lambda: len(inbox.mails), lambda n: n > mails_after_half)
