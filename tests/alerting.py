"""Receivers for alert tests: a webhook (HTTP server) and an SMTP sink (aiosmtpd), an Alertmanager config
routing to both, and readers of what mosquitto retains and Alertmanager holds."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

from aiosmtpd.controller import Controller

from wipwatch.services import free_port


@dataclass
class Inbox:
    """What the webhook and SMTP receivers got, and where they listen."""

    webhook_port: int = 0
    smtp_port: int = 0
    webhook: list[dict[str, Any]] = field(default_factory=list)
    mails: list[bytes] = field(default_factory=list)

    def notified(self, identity: str, status: str) -> list[dict[str, Any]]:
        return [
            alert
            for body in list(self.webhook)
            for alert in body["alerts"]
            if alert["labels"].get("identity") == identity and alert["status"] == status
        ]

    def alertmanager_config(self, path: Path) -> Path:
        """An Alertmanager config: one notification per alert (group by identity), to both receivers."""
        path.write_text(
            f"""
global:
  smtp_smarthost: 127.0.0.1:{self.smtp_port}
  smtp_from: wipwatch@plant.test
  smtp_require_tls: false
route:
  receiver: floor
  group_by: [identity]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: floor
    webhook_configs: [{{url: "http://127.0.0.1:{self.webhook_port}/hook", send_resolved: true}}]
    email_configs: [{{to: lead@plant.test, send_resolved: true}}]
"""
        )
        return path


class _Webhook(BaseHTTPRequestHandler):
    inbox: Inbox

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.inbox.webhook.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


class _Smtp:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.inbox.mails.append(envelope.content)
        return "250 OK"


@contextlib.contextmanager
def receivers() -> Iterator[Inbox]:
    """A webhook server and an SMTP server on free loopback ports, stopped on exit."""
    inbox = Inbox()
    handler = type("Hook", (_Webhook,), {"inbox": inbox})
    web = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    smtp = Controller(_Smtp(inbox), hostname="127.0.0.1", port=free_port())
    smtp.start()
    inbox.webhook_port, inbox.smtp_port = web.server_port, smtp.port
    try:
        yield inbox
    finally:
        smtp.stop()
        web.shutdown()


def retained(mqtt_port: int, count: int, wait_s: int = 3) -> dict[str, bytes]:
    """Retained messages under wipwatch/alerts/ (mosquitto_sub; waits up to ``wait_s`` for ``count``)."""
    argv = ["mosquitto_sub", "-p", str(mqtt_port), "-t", "wipwatch/alerts/#", "-v", "-W", str(wait_s)]
    argv += ["-C", str(count)] if count else []
    done = subprocess.run(argv, capture_output=True, timeout=wait_s + 10, check=False)
    out: dict[str, bytes] = {}
    for row in done.stdout.splitlines():
        topic, _, payload = row.partition(b" ")
        out[topic.decode()] = payload
    return out


def am_alerts(url: str) -> list[dict[str, Any]]:
    with urlopen(f"{url}/api/v2/alerts", timeout=5) as response:
        alerts: list[dict[str, Any]] = json.load(response)
        return alerts


def silence(url: str, name: str, value: str, comment: str) -> None:
    now = datetime.now(UTC)
    body = {
        "matchers": [{"name": name, "value": value, "isRegex": False, "isEqual": True}],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
        "createdBy": "test",
        "comment": comment,
    }
    headers = {"Content-Type": "application/json"}
    request = Request(f"{url}/api/v2/silences", json.dumps(body).encode(), headers, method="POST")
    with urlopen(request, timeout=5) as response:
        assert response.status == 200
