"""Alert delivery on real servers: retained MQTT state (mosquitto), Prometheus Alertmanager with a webhook
receiver (an HTTP server in the test) and an e-mail receiver (aiosmtpd), silences, resolution, restarts.

No Kafka: the line engine is fed directly; the processors call the same ``AlertDelivery``.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from tests.alerting import Inbox, am_alerts, receivers, retained, silence
from tests.polling import eventually
from wipwatch.alert_rules import expand_rules
from wipwatch.events import Event, PartIn, PartOut
from wipwatch.mqtt import MqttPublisher
from wipwatch.processors.alert_delivery import AlertDelivery, AlertmanagerClient
from wipwatch.processors.metrics.line_state import EngineConfig, LineEngine
from wipwatch.services import ChildProcess, free_port, start_alertmanager, start_mosquitto
from wipwatch.site import Site, parse_site

pytestmark = pytest.mark.integration
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
SITE: Site = parse_site(
    {
        "site": "plant",
        "alerts": {
            "defaults": False,
            "evaluate_every": 1,
            "rules": [{"id": "wip-high", "condition": "wip_over_cap", "labels": {"team": "assembly"}}],
        },
        "lines": [
            {
                "id": "l1",
                "locations": [
                    {"id": "a", "kind": "buffer", "cap": 1},
                    {"id": "b", "kind": "buffer", "cap": 1},
                    {"id": "m", "kind": "station", "process_time": {"mean": 5}},
                ],
            }
        ],
    }
)


@dataclass
class Alerting:
    mqtt_port: int
    alertmanager: ChildProcess
    inbox: Inbox

    @property
    def am_url(self) -> str:
        return self.alertmanager.address

    def publisher(self) -> MqttPublisher:
        return MqttPublisher("127.0.0.1", self.mqtt_port, f"alerts-{free_port()}")

    def retained(self, count: int) -> dict[str, bytes]:
        return retained(self.mqtt_port, count)

    def am_alerts(self) -> list[dict[str, Any]]:
        return am_alerts(self.am_url)


@pytest.fixture
def alerting(tmp_path: Path) -> Iterator[Alerting]:
    mqtt_port = free_port()
    children: list[ChildProcess] = []
    with receivers() as inbox:
        try:
            children.append(start_mosquitto(tmp_path, mqtt_port))
            config = inbox.alertmanager_config(tmp_path / "alertmanager.yml")
            children.append(start_alertmanager(tmp_path, free_port(), config))
            yield Alerting(mqtt_port, children[1], inbox)
        finally:
            for child in reversed(children):
                child.stop()


_ids = iter(range(10**9))


def into(location: str, part: str, second: float) -> Event:
    when = T0 + timedelta(seconds=second)
    return PartIn(v=1, id=f"e{next(_ids)}", time=when, site="plant", line="l1", location=location, part=part)


def out(location: str, part: str, second: float) -> Event:
    when = T0 + timedelta(seconds=second)
    return PartOut(v=1, id=f"e{next(_ids)}", time=when, site="plant", line="l1", location=location, part=part)


class Line:
    def __init__(self) -> None:
        self.engine = LineEngine(
            SITE.lines[0], "plant", EngineConfig(alert_every_s=1, lateness_s=0), rules=expand_rules(SITE)
        )
        self.offset = 0

    def feed(self, *events: Event) -> list[tuple[str, str, int]]:
        self.engine.offer(list(events), 0, self.offset)
        self.offset += 1
        self.engine.release()
        out = [(tr.instance.location, tr.state, tr.seq) for tr in self.engine.changes.alerts]
        self.engine.changes.clear()
        return out

    def identity(self, location: str) -> str:
        return next(i.identity for i in self.engine.alerts.instances if i.location == location)


def test_mqtt_state_alertmanager_webhook_email_silence_and_resolution(alerting: Alerting) -> None:
    line = Line()
    id_a, id_b = line.identity("a"), line.identity("b")
    silence(alerting.am_url, "identity", id_b, "known: buffer b is being emptied by hand")
    delivery = AlertDelivery(alerting.publisher, AlertmanagerClient(alerting.am_url), resend_s=30)
    # two parts in a and in b (cap 1): both fire at tick 1, evaluated when the event at 2 arrives
    assert line.feed(into("a", "p1", 0), into("a", "p2", 1), into("b", "p3", 0), into("b", "p4", 1)) == []
    assert line.feed(into("m", "p9", 2)) == [("a", "firing", 1), ("b", "firing", 1)]
    delivery.deliver([line.engine])

    # the floor: retained state of both alerts, whatever the silences of Alertmanager
    retained = alerting.retained(2)
    assert set(retained) == {"wipwatch/alerts/plant/l1/wip-high/a", "wipwatch/alerts/plant/l1/wip-high/b"}
    state_a = json.loads(retained["wipwatch/alerts/plant/l1/wip-high/a"])
    assert state_a["v"] == 1 and state_a["identity"] == id_a and state_a["seq"] == 1
    assert (state_a["state"], state_a["value"], state_a["threshold"]) == ("firing", 2, 1)
    assert state_a["since"] == (T0 + timedelta(seconds=1)).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
    assert state_a["labels"] == {"team": "assembly"}

    # people: a's notification by webhook and e-mail; b is silenced in Alertmanager
    [firing] = eventually(lambda: alerting.inbox.notified(id_a, "firing"), bool, 30, "webhook got a firing")
    assert firing["labels"] == {
        "alertname": "wip-high",
        "site": "plant",
        "line": "l1",
        "location": "a",
        "severity": "warning",
        "identity": id_a,
        "team": "assembly",
    }
    assert firing["annotations"]["seq"] == "1" and firing["annotations"]["value"] == "2"
    eventually(lambda: len(alerting.inbox.mails), lambda n: n >= 1, 30, "an e-mail")
    mail = message_from_bytes(alerting.inbox.mails[0])
    assert "lead@plant.test" in mail["To"] and "wip-high" in mail["Subject"]
    by_identity = {a["labels"]["identity"]: a for a in alerting.am_alerts()}
    assert by_identity[id_b]["status"]["state"] == "suppressed"
    assert by_identity[id_a]["status"]["state"] == "active"

    # a restarted worker delivers the same transitions again: same seq, still one alert each
    again = AlertDelivery(alerting.publisher, AlertmanagerClient(alerting.am_url), resend_s=30)
    again.deliver([line.engine])
    assert json.loads(alerting.retained(2)["wipwatch/alerts/plant/l1/wip-high/a"])["seq"] == 1
    assert sorted(a["labels"]["identity"] for a in alerting.am_alerts()) == sorted([id_a, id_b])

    # a clears: resolved (seq 2) notified, its retained state cleared; b's stays
    assert line.feed(out("a", "p1", 3), out("a", "p2", 4), into("m", "p10", 6)) == [("a", "resolved", 2)]
    again.deliver([line.engine])
    assert set(alerting.retained(1)) == {"wipwatch/alerts/plant/l1/wip-high/b"}
    [resolved] = eventually(
        lambda: alerting.inbox.notified(id_a, "resolved"), bool, 30, "webhook got a resolution"
    )
    assert resolved["annotations"]["seq"] == "2"
    eventually(lambda: len(alerting.inbox.mails), lambda n: n >= 2, 30, "the resolution e-mail")
    # the silenced alert never reached a person
    assert alerting.inbox.notified(id_b, "firing") == []
    assert all(id_b not in mail.decode(errors="replace") for mail in alerting.inbox.mails)
    again.close()
    delivery.close()


def test_an_unreachable_alertmanager_is_retried_and_mqtt_goes_on(alerting: Alerting) -> None:
    line = Line()
    line.feed(into("a", "p1", 0), into("a", "p2", 1))
    line.feed(into("m", "p9", 2))
    id_a = line.identity("a")
    dead = AlertmanagerClient(f"http://127.0.0.1:{free_port()}", timeout=1)
    delivery = AlertDelivery(alerting.publisher, dead, retry_s=0.1)
    # the processors' path: submit returns at once, the delivery thread sends
    delivery.submit([line.engine])
    eventually(lambda: dict(delivery.mqtt_seq), lambda s: s == {id_a: 1}, 10, "MQTT delivered")
    assert delivery.am_seq == {}
    assert "wipwatch/alerts/plant/l1/wip-high/a" in alerting.retained(1)
    delivery.alertmanager = AlertmanagerClient(alerting.am_url)
    eventually(
        lambda: (delivery.submit([line.engine]), dict(delivery.am_seq))[1],
        lambda s: s == {id_a: 1},
        10,
        "retry",
    )
    assert [a["labels"]["identity"] for a in alerting.am_alerts()] == [id_a]
    delivery.close()


def test_cli_lists_the_retained_alerts_and_follows_changes(alerting: Alerting, tmp_path: Path) -> None:
    import queue
    import sys

    import yaml
    from typer.testing import CliRunner

    from wipwatch.cli.main import app

    site_file = tmp_path / "plant.yaml"
    site_file.write_text(yaml.safe_dump(SITE.model_dump(mode="json", by_alias=True, exclude_none=True)))
    line = Line()
    line.feed(into("a", "p1", 0), into("a", "p2", 1), into("b", "p3", 0), into("b", "p4", 1))
    line.feed(into("m", "p9", 2))
    delivery = AlertDelivery(alerting.publisher, None)
    delivery.deliver([line.engine])
    common = ["--site", str(site_file), "--mqtt-port", str(alerting.mqtt_port)]
    listed = CliRunner().invoke(app, ["alerts", *common, "--json"])
    assert listed.exit_code == 0, listed.output
    assert sorted((a["location"], a["seq"], a["value"]) for a in json.loads(listed.stdout)) == [
        ("a", 1, 2.0),
        ("b", 1, 2.0),
    ]
    table = CliRunner().invoke(app, ["alerts", *common])
    assert "wip-high" in table.stdout and "WIP at l1/a above 1 parts" in table.stdout

    follow = subprocess.Popen(
        [sys.executable, "-m", "wipwatch", "alerts", *common, "--json", "--follow"],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(row) for row in follow.stdout or []], daemon=True).start()
    try:
        retained = [json.loads(lines.get(timeout=20)) for _ in range(2)]
        assert {(r["alert"]["location"], r["retained"]) for r in retained} == {("a", True), ("b", True)}
        line.feed(out("a", "p1", 3), out("a", "p2", 4), into("m", "p10", 6))
        delivery.deliver([line.engine])
        cleared = json.loads(lines.get(timeout=20))
        assert cleared == {"topic": "wipwatch/alerts/plant/l1/wip-high/a", "retained": False, "alert": None}
    finally:
        follow.terminate()
        follow.wait(10)
        delivery.close()
