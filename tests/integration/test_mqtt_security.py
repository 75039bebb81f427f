"""MQTT rights on a real mosquitto, with the password file and ACL that docker-compose uses.

The files come from wipwatch/credentials.py (what ``wipwatch secrets`` writes); the clients are wipwatch's
own (``MqttPublisher``, ``Recorder``, ``wipwatch ingest``) with credentials and TLS from ``MqttSecurity``.
Ground truth: how many events the device published where it may; ingest's accepted count must equal it.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_SITE, stack_env
from tests.polling import eventually
from wipwatch.credentials import (
    INGEST_USER,
    PROCESSORS_USER,
    RECORDER_USER,
    BrokerTls,
    MqttAccount,
    device_user,
    mqtt_accounts,
    write_broker_files,
)
from wipwatch.errors import ServiceError
from wipwatch.events import Event, encode_event, topic_for
from wipwatch.ingest import read_status, wait_subscribed
from wipwatch.mqtt import MqttPublisher, MqttSecurity
from wipwatch.mqtt_subscriber import InboundMessage, MqttSubscriber
from wipwatch.recorder.formats import RecordingWriter, read_recording
from wipwatch.recorder.record import Recorder
from wipwatch.services import (
    ChildProcess,
    NativeStack,
    Ports,
    free_port,
    python_module_argv,
    spawn,
    start_mosquitto,
)
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE = load_site(EXAMPLE_SITE)
OTHER_SITE = "other-plant"


def _accounts() -> dict[str, MqttAccount]:
    return {a.username: a for a in mqtt_accounts([SITE.site, OTHER_SITE], {})}


def _as(account: MqttAccount, **tls: Path) -> MqttSecurity:
    return MqttSecurity(account.username, account.password, **tls)  # type: ignore[arg-type]


def _events(minutes: int) -> list[Event]:
    """A shift that ended before now: ingest refuses event times ahead of its clock (docs/events.md)."""
    events: list[Event] = []
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes + 5)
    simulate_site(SITE, events.append, 1, minutes * 60.0, None, start)
    return events


def _publish(port: int, security: MqttSecurity, messages: list[tuple[str, bytes]], client_id: str) -> None:
    publisher = MqttPublisher("127.0.0.1", port, client_id, security=security)
    try:
        for topic, payload in messages:
            publisher.publish(topic, payload)
        assert publisher.drain(30)
    finally:
        publisher.close()


@dataclass
class SecuredStack:
    stack: NativeStack
    accounts: dict[str, MqttAccount]
    run_dir: Path


@pytest.fixture
def secured(tmp_path: Path, kafka_broker: str) -> Iterator[SecuredStack]:
    """mosquitto with the password file and ACL, influxd, the session's Kafka (topics of this test)."""
    accounts = _accounts()
    auth = write_broker_files(tmp_path / "auth", accounts.values())
    native = NativeStack(tmp_path / "stack", Ports.free(), kafka_external=kafka_broker, mqtt_auth=auth)
    with native.running():
        yield SecuredStack(native, accounts, tmp_path / "run")


def test_anonymous_and_wrong_passwords_are_refused(secured: SecuredStack) -> None:
    port = secured.stack.mqtt_port
    with pytest.raises(ServiceError, match=r"[Nn]ot authori"):
        MqttPublisher("127.0.0.1", port, "anonymous")
    device = secured.accounts[device_user(SITE.site)]
    with pytest.raises(ServiceError, match=r"[Nn]ot authori"):
        MqttPublisher("127.0.0.1", port, "guess", security=MqttSecurity(device.username, "wrong"))

    async def subscribe(security: MqttSecurity, topic: str) -> None:
        subscriber = MqttSubscriber("127.0.0.1", port, "sub-guess", [topic], security=security)
        try:
            await subscriber.start(timeout=10)
        finally:
            await subscriber.close()

    # the subscriber (ingest, recorder) says what to check, and never subscribes
    with pytest.raises(ServiceError, match=r"not authorized; check WIPWATCH_MQTT_USERNAME"):
        asyncio.run(subscribe(MqttSecurity(INGEST_USER, "wrong"), "wipwatch/#"))


def test_devices_publish_only_their_own_site_and_only_processors_raise_alerts(
    secured: SecuredStack, tmp_path: Path
) -> None:
    port, accounts = secured.stack.mqtt_port, secured.accounts
    env = {
        **stack_env(secured.stack, secured.run_dir),
        "WIPWATCH_MQTT_USERNAME": INGEST_USER,
        "WIPWATCH_MQTT_PASSWORD": accounts[INGEST_USER].password,
    }
    ingest: ChildProcess = spawn("ingest", python_module_argv("ingest"), tmp_path / "logs", env)
    recording = tmp_path / "all.gz"
    recorder = Recorder(
        RecordingWriter(recording, "native"),
        "127.0.0.1",
        port,
        ["wipwatch/#"],
        "recorder-1",
        security=_as(accounts[RECORDER_USER]),
    )
    try:
        wait_subscribed(ingest, secured.run_dir, "wipwatch-ingest-1")
        recorder.start()
        recorder.wait_subscribed()
        worker = threading.Thread(target=recorder.run, daemon=True)
        worker.start()

        own = [(topic_for(e), encode_event(e)) for e in _events(30)]
        stray = own[0][1]
        forbidden = [
            (f"wipwatch/{OTHER_SITE}/line1/cut/in", stray),  # another site's topic
            ("wipwatch/alerts/demo-plant/line1/wip_over_cap", b'{"state":"firing"}'),  # alerts
        ]
        _publish(port, _as(accounts[device_user(SITE.site)]), own + forbidden, "device-1")
        # a subscriber-only account cannot publish either, not even events
        _publish(port, _as(accounts[INGEST_USER]), [own[0]], "ingest-publish")
        alert = ("wipwatch/alerts/demo-plant/line1/wip_over_cap", b'{"state":"firing","by":"processors"}')
        _publish(port, _as(accounts[PROCESSORS_USER]), [alert], "processors-1")

        eventually(
            lambda: read_status(secured.run_dir, "wipwatch-ingest-1") or {},
            lambda s: s.get("accepted", 0) >= len(own),
            timeout=60,
            what=f"ingest accepting the device's {len(own)} events",
        )
        eventually(lambda: recorder.received, lambda n: n >= len(own) + 1, 30, "recorder receiving")
    finally:
        recorder.stop()
        recorder.close()
        ingest.stop()
    assert ingest.process.returncode == 0, ingest.log_tail()
    final = read_status(secured.run_dir, "wipwatch-ingest-1") or {}
    # nothing beyond the device's own site arrived: another site's event would be dead-lettered (rejected)
    assert (final["accepted"], final["rejected"]) == (len(own), 0), final
    received = [(m.topic, m.payload) for m in read_recording(recording)]
    assert received.count(alert) == 1 and forbidden[1] not in received
    assert [m for m in received if m != alert] == own  # all of the device's events, in order, nothing else


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _certificate(directory: Path, name: str, ca: tuple[Path, Path], san: str | None) -> tuple[Path, Path]:
    key, csr, crt = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
    )  # fmt: skip
    extensions = directory / f"{name}.ext"
    extensions.write_text(f"subjectAltName={san}\n" if san else "extendedKeyUsage=clientAuth\n")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
        "-out", str(crt), "-days", "1", "-extfile", str(extensions),
    )  # fmt: skip
    return crt, key


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(crt), "-days", "1", "-subj", f"/CN={name}",
    )  # fmt: skip
    return crt, key


def test_tls_with_a_throwaway_ca_and_client_certificates(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    ca = _ca(pki, "wipwatch-test-ca")
    server_crt, server_key = _certificate(pki, "broker", ca, "IP:127.0.0.1,DNS:localhost")
    client_crt, client_key = _certificate(pki, "device", ca, None)
    stranger_ca = _ca(pki, "someone-else")
    accounts = _accounts()
    tls = BrokerTls(ca[0], server_crt, server_key, require_client_cert=True)
    auth = write_broker_files(tmp_path / "auth", accounts.values(), tls)
    port = free_port()
    broker = start_mosquitto(tmp_path / "broker", port, auth)
    device = accounts[device_user(SITE.site)]
    try:
        events = _events(5)
        trusted = _as(device, ca_file=ca[0], cert_file=client_crt, key_file=client_key)
        messages = [(topic_for(e), encode_event(e)) for e in events]
        reader = _as(accounts[RECORDER_USER], ca_file=ca[0], cert_file=client_crt, key_file=client_key)

        async def receive_over_tls() -> list[tuple[str, bytes]]:
            # ingest's and the recorder's subscriber, over TLS with a client certificate
            sub = MqttSubscriber("127.0.0.1", port, "reader-tls", ["wipwatch/#"], security=reader)
            await sub.start(timeout=20)
            await asyncio.to_thread(_publish, port, trusted, messages, "device-tls")
            got: list[InboundMessage] = []
            while len(got) < len(messages):
                batch = await sub.receive(timeout=20)
                assert batch, f"{len(got)} of {len(messages)} messages over TLS"
                got += batch
            sub.ack(got)
            await sub.close()
            return [(m.topic, m.payload) for m in got]

        assert asyncio.run(receive_over_tls()) == messages
        # the broker's certificate is checked against the CA the client trusts
        with pytest.raises(ServiceError, match="not reachable"):
            _publish(
                port, _as(device, ca_file=stranger_ca[0], cert_file=client_crt, key_file=client_key), [], "x"
            )
        # without a client certificate the broker ends the handshake
        with pytest.raises(ServiceError):
            _publish(port, _as(device, ca_file=ca[0]), [], "no-cert")
        # plain MQTT on the TLS port gets nowhere
        with pytest.raises(ServiceError):
            MqttPublisher("127.0.0.1", port, "plain", security=MqttSecurity(device.username, device.password))
    finally:
        broker.stop()
