"""The socket-level publisher against a real mosquitto: every QoS, long payloads, a broker restart."""

from __future__ import annotations

import getpass
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.polling import eventually
from wipwatch.errors import ServiceError
from wipwatch.mqtt import MqttPublisher
from wipwatch.services import ChildProcess, free_port, port_in_use, spawn, start_mosquitto, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[Path, int, list[ChildProcess]]]:
    port = free_port()
    children = [start_mosquitto(tmp_path, port)]
    try:
        yield tmp_path, port, children
    finally:
        children[-1].stop()


class _Subscriber:
    """A paho subscriber on a persistent QoS 1/2 session, so a broker restart keeps what it queued."""

    def __init__(self, port: int, qos: int) -> None:
        self.payloads: list[bytes] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pub-test-sub", protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_connect = lambda client, *_a: client.subscribe("t/#", qos=qos)
        self.client.reconnect_delay_set(1, 2)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.payloads.append(bytes(message.payload))

    def count(self) -> int:
        with self._lock:
            return len(self.payloads)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_every_message_arrives_in_order_at_each_qos(
    broker: tuple[Path, int, list[ChildProcess]], qos: int
) -> None:
    _, port, _ = broker
    subscriber = _Subscriber(
        port, 1
    )  # QoS 2 on the publishing side only: a paho QoS 2 reader is the slow part
    # at QoS 1, 70,000 messages wrap the 16-bit packet ids; 20 kB payloads need a 3-byte remaining length
    sent = [b"%d" % i for i in range(70_000 if qos == 1 else 5_000)] + [
        bytes([i % 251]) * 20_000 for i in range(20)
    ]
    publisher = MqttPublisher("127.0.0.1", port, f"pub-test-{qos}", qos=qos, max_outstanding=500)
    try:
        for payload in sent:
            publisher.publish("t/x", payload)
        assert publisher.drain(60)
        assert publisher.published == len(sent)
        eventually(subscriber.count, lambda n: n >= len(sent), timeout=60, what=f"{len(sent)} messages")
    finally:
        publisher.close()
        subscriber.close()
    # QoS 0 may drop under overload in principle; on loopback into a queueing broker it does not
    assert subscriber.payloads == sent


@pytest.mark.parametrize("qos", [0, 1])
def test_a_lone_message_is_written_without_a_flush(
    broker: tuple[Path, int, list[ChildProcess]], qos: int
) -> None:
    """``publish`` buffers its packets for one write; a live source publishing one event and then
    nothing must not leave it in the buffer (the writer thread sends it, no ``drain`` or ``close``)."""
    _, port, _ = broker
    subscriber = _Subscriber(port, 1)
    publisher = MqttPublisher("127.0.0.1", port, f"pub-lone-{qos}", qos=qos)
    try:
        for i in range(3):
            publisher.publish("t/lone", b"%d" % i)
            eventually(subscriber.count, lambda n, i=i: n == i + 1, timeout=10, what=f"message {i}")
        if qos:
            eventually(lambda: publisher.outstanding, lambda n: n == 0, timeout=10, what="its PUBACKs")
    finally:
        publisher.close()
        subscriber.close()
    assert subscriber.payloads == [b"0", b"1", b"2"]


def test_broker_restart_mid_run_loses_nothing(broker: tuple[Path, int, list[ChildProcess]]) -> None:
    run_dir, port, children = broker
    subscriber = _Subscriber(port, 1)
    publisher = MqttPublisher("127.0.0.1", port, "pub-test-restart", max_outstanding=2000)
    sent = [b"m-%d" % i for i in range(40_000)]
    try:
        for i, payload in enumerate(sent):
            publisher.publish("t/r", payload)
            if i == 20_000:
                children[-1].stop()  # SIGTERM: mosquitto saves the persistent session's queue
                children.append(start_mosquitto(run_dir, port))
        assert publisher.drain(120), f"{publisher.outstanding} messages never acknowledged"
        assert publisher.reconnects >= 1
        eventually(
            lambda: len(set(subscriber.payloads)), lambda n: n >= len(sent), timeout=60, what="every message"
        )
    finally:
        publisher.close()
        subscriber.close()
    assert set(subscriber.payloads) == set(sent), "at least once: duplicates allowed, loss not"


def test_unreachable_broker_and_bad_arguments_say_what() -> None:
    with pytest.raises(ServiceError, match="not reachable"):
        MqttPublisher("127.0.0.1", free_port(), "nobody")
    with pytest.raises(ValueError, match="max_outstanding"):
        MqttPublisher("127.0.0.1", 1, "x", max_outstanding=0)
    with pytest.raises(ValueError, match="qos"):
        MqttPublisher("127.0.0.1", 1, "x", qos=3)


def _openssl(where: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=where, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_tls_delivers_everything_and_refuses_an_untrusted_broker(tmp_path: Path) -> None:
    _openssl(
        tmp_path,
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=wipwatch-test-ca",
    )
    _openssl(
        tmp_path,
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (tmp_path / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        tmp_path,
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.crt",
        "-days",
        "1",
        "-extfile",
        "ext",
    )
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
        f"cafile {tmp_path}/ca.crt\ncertfile {tmp_path}/srv.crt\nkeyfile {tmp_path}/srv.key\n"
        # as the embedded broker: queue for a slower subscriber rather than drop (the default keeps 1000)
        "max_queued_messages 1000000\n"
    )
    broker = spawn("mosquitto-tls", ["mosquitto", "-c", str(conf)], tmp_path / "logs")
    tls_args = ["-h", "127.0.0.1", "-p", str(port), "--cafile", str(tmp_path / "ca.crt")]
    sent = [b"tls-%d" % i for i in range(20_000)]
    sub: subprocess.Popen[bytes] | None = None
    try:
        wait_until(broker, lambda: port_in_use(port))
        # a retained message: the subscriber's first line, proof that it is subscribed
        subprocess.run(
            ["mosquitto_pub", *tls_args, "-q", "1", "-r", "-t", "t/ready", "-m", "ready"], check=True
        )
        out = tmp_path / "sub.out"
        with open(out, "wb") as stdout:
            sub = subprocess.Popen(
                ["mosquitto_sub", *tls_args, "-q", "1", "-t", "t/#", "-C", str(len(sent) + 1)], stdout=stdout
            )
        eventually(lambda: out.stat().st_size, bool, timeout=30, what="the subscriber's first message")
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        publisher = MqttPublisher("127.0.0.1", port, "tls-pub", ssl_context=context)
        for payload in sent:
            publisher.publish("t/x", payload)
        assert publisher.drain(60)
        publisher.close()
        assert sub.wait(60) == 0
        assert out.read_bytes().split(b"\n")[1:-1] == sent
        with pytest.raises(ServiceError, match="CERTIFICATE_VERIFY_FAILED"):
            MqttPublisher("127.0.0.1", port, "tls-untrusted", ssl_context=ssl.create_default_context())
    finally:
        if sub is not None and sub.poll() is None:
            sub.kill()
        broker.stop()
