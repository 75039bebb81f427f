"""Delivering alert transitions: retained MQTT state for the floor, Prometheus Alertmanager for people.

Delivery is driven by the alert *state* stored with each line (``AlertBook``), not by a queue of events:
every instance's status describes its last transition (``transition_of``), numbered by ``seq``. So:

1. the processors store the line's state (with the transitions) in the changelog first, then call
   ``deliver`` with the lines of the batch;
2. ``deliver`` sends each instance whose ``seq`` is above the last one this process delivered to that
   target: a firing alert as a retained QoS 1 message on its topic, a resolution as an empty retained
   message (which clears it); to Alertmanager, firing with ``startsAt``, resolved with ``endsAt``;
3. a target's delivered ``seq`` only moves once the target acknowledged (PUBACK; HTTP 200), so a failed
   send is retried at the next call;
4. a new process has delivered nothing: its first call re-sends the last transition of every instance of
   its lines. A worker killed between storing and delivering therefore loses no transition, and one killed
   before storing recomputes the same transitions from the same events: either way a target gets the same
   identity with the same ``seq`` again, which is idempotent (a retained message replaced by the same
   message, an Alertmanager alert with the same labels and times);
5. firing alerts are re-posted to Alertmanager every ``resend_s`` with ``endsAt`` four periods ahead, as
   Prometheus does: if the processors stop, Alertmanager resolves the alerts itself.

In the processors, ``submit`` hands the transitions to one delivery thread and returns at once, so a slow
or unreachable Alertmanager or broker never stalls the stream; the thread keeps only the latest
transition per alert until it can send.

Topics, payloads and labels: docs/alerts.md.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec

from wipwatch.alert_rules import ALERT_SCHEMA_VERSION, AlertMessage
from wipwatch.errors import ServiceError
from wipwatch.mqtt import MqttPublisher, MqttSecurity
from wipwatch.processors.metrics.alerts import Transition, transition_of
from wipwatch.processors.metrics.line_state import LineEngine
from wipwatch.settings import Settings

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()


def iso(t: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds, e.g. ``2026-11-25T06:00:12.000Z``."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_message(tr: Transition) -> AlertMessage:
    """The retained MQTT payload of a transition (a firing alert; a resolution clears the topic)."""
    inst = tr.instance
    return AlertMessage(
        v=ALERT_SCHEMA_VERSION,
        identity=inst.identity,
        rule=inst.rule,
        condition=inst.condition,
        site=inst.site,
        line=inst.line,
        location=inst.location,
        severity=inst.severity,
        state=tr.state,
        seq=tr.seq,
        since=iso(tr.since),
        at=iso(tr.at),
        value=tr.value,
        threshold=inst.threshold,
        summary=inst.summary,
        labels=dict(inst.labels),
        ended=iso(tr.at) if tr.state == "resolved" else None,
    )


def alert_labels(tr: Transition) -> dict[str, str]:
    """Alertmanager labels: stable for the instance (never the value), so re-posts update one alert."""
    inst = tr.instance
    return {
        **inst.labels,
        "alertname": inst.rule,
        "site": inst.site,
        "line": inst.line,
        "location": inst.location,
        "severity": inst.severity,
        "identity": inst.identity,
    }


def alertmanager_alert(tr: Transition, now: float, resend_s: float) -> dict[str, Any]:
    """One element of Alertmanager's ``POST /api/v2/alerts`` body."""
    inst = tr.instance
    # Alertmanager judges on its clock: times ahead of it (event time runs ahead in a simulation at speed)
    # would keep a resolved alert active until then, so they are clamped to now
    starts = min(tr.since, now)
    ends = now + 4 * resend_s if tr.state == "firing" else max(starts, min(tr.at, now))
    return {
        "labels": alert_labels(tr),
        "annotations": {
            "summary": inst.summary,
            "condition": inst.condition,
            "value": f"{tr.value:g}",
            "threshold": f"{inst.threshold:g}",
            "seq": str(tr.seq),
        },
        "startsAt": iso(starts),
        "endsAt": iso(ends),
    }


class AlertmanagerClient:
    """Posts alerts to Alertmanager's v2 API."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def post(self, alerts: list[dict[str, Any]]) -> None:
        """``POST /api/v2/alerts``.

        Raises:
            ServiceError: Alertmanager is unreachable or refused the alerts (the reason it gave).
        """
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            reason = exc.read().decode(errors="replace")[:300]
            raise ServiceError(
                f"Alertmanager at {self.url} refused alerts: HTTP {exc.code} {reason}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServiceError(f"Alertmanager at {self.url} not reachable: {exc}") from None


class AlertDelivery:
    """Sends each alert instance's last transition once per target and process (see the module docstring).

    Args:
        mqtt: Factory of the MQTT publisher (called at the first delivery), or None for no MQTT.
        alertmanager: Client of the Alertmanager to post to, or None.
        resend_s: Seconds between re-posts of firing alerts to Alertmanager.
        ack_timeout: Seconds to wait for the MQTT broker's PUBACKs before retrying at the next call.
        retry_s: Seconds to wait after a failed Alertmanager post before trying again.
    """

    def __init__(
        self,
        mqtt: Callable[[], MqttPublisher] | None,
        alertmanager: AlertmanagerClient | None,
        resend_s: float = 60.0,
        ack_timeout: float = 5.0,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (("resend_s", resend_s), ("ack_timeout", ack_timeout), ("retry_s", retry_s)):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        self._mqtt_factory = mqtt
        self._mqtt: MqttPublisher | None = None
        self.alertmanager = alertmanager
        self.resend_s = resend_s
        self.ack_timeout = ack_timeout
        self.retry_s = retry_s
        self.clock = clock
        #: identity -> last seq delivered, per target
        self.mqtt_seq: dict[str, int] = {}
        self.am_seq: dict[str, int] = {}
        self._firing: dict[str, Transition] = {}
        self._last_resend = 0.0
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._pending: dict[str, Transition] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- collecting (reads the engines' state: call where the state cannot change underneath)

    def collect(self, engines: Iterable[LineEngine], complete: bool = False) -> list[Transition]:
        """Each instance's last transition; with ``complete``, ``engines`` are all the lines this process
        owns, and firing alerts of other lines are no longer re-posted."""
        out: list[Transition] = []
        seen: set[str] = set()
        for engine in engines:
            statuses = engine.state.alerts.status
            for inst in engine.alerts.instances:
                status = statuses.get(inst.identity)
                tr = None if status is None else transition_of(inst, status)
                if tr is None:
                    continue
                out.append(tr)
                seen.add(tr.identity)
        with self._lock:
            for tr in out:
                if tr.state == "firing":
                    self._firing[tr.identity] = tr
                else:
                    self._firing.pop(tr.identity, None)
            if complete:
                for identity in set(self._firing) - seen:
                    del self._firing[identity]
        return out

    # -- sending (blocking I/O: run it in a thread from async code)

    def send(self, transitions: list[Transition]) -> None:
        """Deliver what each target has not acknowledged yet; re-post firing alerts when due."""
        if self._mqtt_factory is not None:
            self._send_mqtt([tr for tr in transitions if tr.seq > self.mqtt_seq.get(tr.identity, 0)])
        if self.alertmanager is not None:
            self._send_alertmanager([tr for tr in transitions if tr.seq > self.am_seq.get(tr.identity, 0)])

    def deliver(self, engines: Iterable[LineEngine], complete: bool = False) -> None:
        """``collect`` and ``send`` in the caller's thread (blocks until the targets answered)."""
        self.send(self.collect(engines, complete))

    def submit(self, engines: Iterable[LineEngine], complete: bool = False) -> None:
        """``collect`` now (the caller holds the state); the delivery thread sends. Never blocks on I/O."""
        transitions = self.collect(engines, complete)
        with self._lock:
            for tr in transitions:
                queued = self._pending.get(tr.identity)
                if queued is None or queued.seq < tr.seq:
                    self._pending[tr.identity] = tr
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="alert-delivery", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(min(self.resend_s, self.retry_s))
            self._wake.clear()
            with self._lock:
                batch, self._pending = list(self._pending.values()), {}
            try:
                self.send(batch)
            except Exception:  # the thread must outlive any surprise; the next wake retries
                log.exception("alert delivery failed count=%d", len(batch))

    def _send_mqtt(self, due: list[Transition]) -> None:
        if not due or self._mqtt_factory is None:
            return
        try:
            if self._mqtt is None:
                self._mqtt = self._mqtt_factory()
            for tr in due:
                payload = _encoder.encode(alert_message(tr)) if tr.state == "firing" else b""
                self._mqtt.publish(tr.instance.topic, payload, retain=True)
            acknowledged = self._mqtt.drain(self.ack_timeout)
        except ServiceError as exc:
            log.warning("alerts not delivered target=mqtt count=%d reason=%s", len(due), exc)
            return
        if not acknowledged:
            log.warning("alerts not acknowledged target=mqtt count=%d: retrying later", len(due))
            return
        for tr in due:
            self.mqtt_seq[tr.identity] = max(tr.seq, self.mqtt_seq.get(tr.identity, 0))
        log.info("alerts delivered target=mqtt count=%d", len(due))

    def _send_alertmanager(self, due: list[Transition]) -> None:
        assert self.alertmanager is not None
        now = self.clock()
        resend = now - self._last_resend >= self.resend_s
        if not due and not resend:
            return
        if now < self._retry_at:
            return
        batch = {tr.identity: tr for tr in due}
        if resend:
            with self._lock:
                firing = dict(self._firing)
            for identity, tr in firing.items():
                batch.setdefault(identity, tr)
        if not batch:
            self._last_resend = now
            return
        try:
            self.alertmanager.post([alertmanager_alert(tr, now, self.resend_s) for tr in batch.values()])
        except ServiceError as exc:
            log.warning("alerts not delivered target=alertmanager count=%d reason=%s", len(batch), exc)
            self._retry_at = now + self.retry_s
            return
        for tr in due:
            self.am_seq[tr.identity] = max(tr.seq, self.am_seq.get(tr.identity, 0))
        if resend:
            self._last_resend = now
        log.info("alerts delivered target=alertmanager count=%d", len(batch))

    def close(self) -> None:
        """Stop the delivery thread after a last attempt to send what waits, then disconnect."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.ack_timeout + 10)
            with self._lock:
                batch, self._pending = list(self._pending.values()), {}
            if batch:
                self.send(batch)
        if self._mqtt is not None:
            self._mqtt.close()
            self._mqtt = None


def delivery_from_settings(settings: Settings) -> AlertDelivery | None:
    """The processors' delivery: MQTT unless ``alerts_mqtt`` is off, Alertmanager if ``alertmanager_url``."""
    mqtt: Callable[[], MqttPublisher] | None = None
    if settings.alerts_mqtt:
        client_id = f"{settings.processor_id}-alerts-{os.getpid()}"

        def mqtt() -> MqttPublisher:
            return MqttPublisher(
                settings.mqtt_host,
                settings.mqtt_port,
                client_id,
                qos=settings.mqtt_qos,
                security=MqttSecurity.from_settings(settings),
            )

    manager = AlertmanagerClient(settings.alertmanager_url) if settings.alertmanager_url else None
    if mqtt is None and manager is None:
        return None
    return AlertDelivery(mqtt, manager, resend_s=settings.alerts_resend_s)
