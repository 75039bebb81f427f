"""The asyncio MQTT v5 subscriber against a real mosquitto, and against a broker that breaks the protocol.

mosquitto checks: what is not acknowledged comes again (DUP set) on the next connection of the same
session, what is acknowledged never does; QoS 2; a broker restart is survived with nothing lost. The
hostile broker (a small TCP server here, since mosquitto never sends malformed packets) checks that a
malformed packet, an unknown packet type and a DISCONNECT each end the connection, not the client, and
that the messages after the reconnect arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from wipwatch.errors import ServiceError
from wipwatch.mqtt import MqttPublisher, encode_varint
from wipwatch.mqtt_subscriber import InboundMessage, MqttSubscriber
from wipwatch.services import ChildProcess, free_port, start_mosquitto

pytestmark = pytest.mark.integration


async def _take(sub: MqttSubscriber, n: int, timeout: float = 20.0) -> list[InboundMessage]:
    got: list[InboundMessage] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(got) < n:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError(f"{len(got)} of {n} messages arrived")
        got += await sub.receive(timeout=left)
    return got


def _publish(port: int, messages: list[tuple[str, bytes]], qos: int = 1) -> None:
    publisher = MqttPublisher("127.0.0.1", port, "sub-test-pub", qos=qos)
    for topic, payload in messages:
        publisher.publish(topic, payload)
    publisher.close()


def test_unacknowledged_messages_come_again_acknowledged_ones_never(tmp_path: Path) -> None:
    port = free_port()
    broker = start_mosquitto(tmp_path, port)
    sent = [(f"t/{i % 3}", f"m{i}".encode()) for i in range(3000)]

    async def scenario() -> None:
        def subscriber() -> MqttSubscriber:
            return MqttSubscriber("127.0.0.1", port, "sub-a", ["$share/g/t/#"], session_expiry_s=600)

        sub = subscriber()
        await sub.start()
        await asyncio.to_thread(_publish, port, sent)
        first = await _take(sub, len(sent))
        assert [m.payload for m in first] == [p for _, p in sent], "in order, each once"
        sub.ack(first[:1000])  # the rest is "not yet in Kafka" when the connection ends
        await asyncio.sleep(0.5)
        await sub.close()

        sub = subscriber()
        await sub.start()
        again = await _take(sub, 2000)
        assert [m.payload for m in again] == [p for _, p in sent[1000:]]
        assert all(m.dup for m in again), "a redelivery carries DUP"
        sub.ack(again)
        await asyncio.sleep(0.5)
        await sub.close()

        sub = subscriber()
        await sub.start()
        assert await sub.receive(timeout=2.0) == [], "acknowledged messages are never sent again"
        await sub.close()

    try:
        asyncio.run(scenario())
    finally:
        broker.stop()


def test_qos2_and_a_broker_restart_lose_nothing(tmp_path: Path) -> None:
    port = free_port()
    children: list[ChildProcess] = [start_mosquitto(tmp_path, port)]
    sent = [("q/x", f"m{i}".encode()) for i in range(500)]

    async def scenario() -> None:
        sub = MqttSubscriber("127.0.0.1", port, "sub-q2", ["q/#"], 2, session_expiry_s=600)
        await sub.start()
        await asyncio.to_thread(_publish, port, sent[:250], 2)
        got = await _take(sub, 250)
        sub.ack(got)
        await asyncio.sleep(0.5)
        children[0].stop()
        children.append(start_mosquitto(tmp_path, port))  # persistence keeps the session
        await asyncio.to_thread(_publish, port, sent[250:], 2)
        more = await _take(sub, 250, timeout=60)
        assert sub.reconnects >= 1
        sub.ack(more)
        payloads = [m.payload for m in got + more]
        assert set(payloads) == {p for _, p in sent}
        await sub.close()

    try:
        asyncio.run(scenario())
    finally:
        children[-1].stop()


def test_a_filter_the_broker_cannot_parse_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    broker = start_mosquitto(tmp_path, port)

    async def scenario() -> None:
        # '#' must be the last level: mosquitto answers with DISCONNECT (malformed packet), no SUBACK
        sub = MqttSubscriber("127.0.0.1", port, "sub-bad", ["t/#/x"], session_expiry_s=0)
        with pytest.raises(ServiceError, match=r"before confirming the subscription to t/#/x: .*malformed"):
            await sub.start(timeout=10)
        await sub.close()

    try:
        asyncio.run(scenario())
    finally:
        broker.stop()


def test_nothing_listening_is_a_clear_error() -> None:
    async def scenario() -> None:
        sub = MqttSubscriber("127.0.0.1", free_port(), "nobody", ["t/#"])
        with pytest.raises(ServiceError, match="not reachable"):
            await sub.start(timeout=5)

    asyncio.run(scenario())


def _publish_packet(topic: bytes, payload: bytes, mid: int) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big") + b"\x00" + payload
    return b"\x32" + encode_varint(len(body)) + body


#: What the hostile broker sends after CONNACK and SUBACK on each connection, in turn.
HOSTILE = [
    b"\x32\x06\x00\x09t\x00\x01\x00",  # a topic longer than its packet
    b"\xf0\x00",  # AUTH out of nowhere (packet type 15)
    b"\xe0\x02\x8b\x00",  # DISCONNECT, server shutting down
    b"\x30\xff\xff\xff\xff\x01",  # a remaining length of five bytes
    b"\x90\x04\x00\x02\x05\x01",  # a SUBACK whose properties run past the packet
    b"\x20\x03\x00\x00\x00",  # a second CONNACK
]


def test_a_broker_that_breaks_the_protocol_gets_a_reconnect_not_a_dead_client() -> None:
    connections: list[bytes] = []  # what the client sent on each connection

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = len(connections)
        connections.append(b"")
        await reader.read(4096)  # CONNECT
        writer.write(b"\x20\x03\x00\x00\x00")  # CONNACK: no session, success, no properties
        with contextlib.suppress(Exception):
            sub = await reader.read(4096)  # SUBSCRIBE, packet id in bytes 2-3
            writer.write(b"\x90\x04" + sub[2:4] + b"\x00\x01")
            if n < len(HOSTILE):
                writer.write(_publish_packet(b"t/ok", f"before-{n}".encode(), 1) + HOSTILE[n])
            else:
                writer.write(_publish_packet(b"t/ok", b"after", 7))
            await writer.drain()
            while data := await reader.read(4096):
                connections[n] += data
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sub = MqttSubscriber("127.0.0.1", port, "victim", ["t/#"], session_expiry_s=60, keepalive=60)
        await sub.start()
        payloads: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + 60
        while b"after" not in payloads and asyncio.get_running_loop().time() < deadline:
            batch = await sub.receive(timeout=1.0)
            payloads += [m.payload for m in batch]
            sub.ack(batch)
        assert b"after" in payloads, f"no delivery after the hostile packets: {payloads}"
        await asyncio.sleep(0.3)
        await sub.close()
        server.close()
        await server.wait_closed()
        assert sub.reconnects == len(HOSTILE)
        # the last connection acknowledged its message: PUBACK for id 7
        assert b"\x40\x02\x00\x07" in connections[-1]

    asyncio.run(scenario())


def test_a_refused_subscription_is_a_clear_error() -> None:
    # mosquitto grants any filter and applies its ACL per message, so a broker that refuses is played here
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(b"\x20\x03\x00\x00\x00")
        sub = await reader.read(4096)
        writer.write(b"\x90\x04" + sub[2:4] + b"\x00\x87")  # SUBACK: not authorized
        await writer.drain()
        await reader.read(4096)
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sub = MqttSubscriber("127.0.0.1", port, "refused", ["wipwatch/#"])
        with pytest.raises(ServiceError, match=r"refused the subscription \(wipwatch/#: not authorized\)"):
            await sub.start(timeout=10)
        await sub.close()
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())
