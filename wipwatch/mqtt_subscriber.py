"""MQTT v5 subscriber on asyncio streams: QoS 1 on a persistent session, acknowledged by the caller.

Ingest and the recorder receive through this one client: session set-up (``clean_start`` off, Session
Expiry, Receive Maximum), shared subscriptions, credentials and TLS from :class:`MqttSecurity`, manual
acknowledgement and back-pressure.

Why not paho or gmqtt (docs/architecture.md, "Where the time goes"): paho's network thread builds MQTT v5
``Properties`` objects per message and wakes its loop through a socket pair per acknowledgement, and each
message crosses from its thread into the asyncio loop; ingest topped out at 2,000-5,000 events/s. gmqtt
(asyncio, ``optimistic_acknowledgement=False``) runs one task per message and writes one PUBACK each:
14,200 msg/s receiving and acknowledging alone, with nothing else in the loop. Here every read from the
socket is parsed in bulk into :class:`InboundMessage` objects (one per PUBLISH, nothing else allocated),
the caller takes them in batches with :meth:`MqttSubscriber.receive` and acknowledges a batch with one
write (:meth:`MqttSubscriber.ack`), after whatever made it safe (Kafka confirmed the records, the
recording was flushed). The client needs little of MQTT v5: CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH
in, PUBACK (QoS 1) or PUBREC/PUBREL/PUBCOMP (QoS 2) out, PINGREQ, DISCONNECT.

Guarantees: the broker holds every message until it is acknowledged; a message not acknowledged when the
connection drops (or the process dies) is delivered again, DUP set, on the next connection of the same
client id within the session expiry. An acknowledgement is only written on the connection that delivered
the message: after a reconnect the broker sends the message again, so the caller may see it twice
(wipwatch's processors drop duplicates by event id), never zero times.

Back-pressure: the broker sends at most ``receive_maximum`` unacknowledged QoS 1/2 messages; beyond
``max_buffered_bytes`` of messages not yet taken by the caller the client stops reading the socket (which
also bounds a QoS 0 flood). The broker never sends a packet over ``max_packet_size`` (Maximum Packet Size
in CONNECT; it drops larger messages for this client), so one packet bounds the read buffer.

Hostile input: a malformed packet, an unknown packet type or a DISCONNECT from the broker end the
connection, which is re-established with back-off (1 s doubling to 30 s); they never end the client. A
topic that is not UTF-8 is handed over as bytes (:attr:`InboundMessage.raw_topic`); its ``topic`` raises
``UnicodeDecodeError``, for the caller to reject the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final

from wipwatch.errors import ServiceError
from wipwatch.mqtt import (
    _CONNACK,
    _PINGREQ,
    _PINGRESP,
    _PUBLISH,
    MqttSecurity,
    encode_string,
    encode_varint,
    refusal_hint,
)
from wipwatch.mqtt import _DISCONNECT as _DISCONNECT_NORMAL

log = logging.getLogger(__name__)

#: Unacknowledged QoS 1/2 messages the broker may send at once (MQTT v5 Receive Maximum; 65,535 at most).
RECEIVE_MAXIMUM: Final = 65_535
#: Largest packet the broker may send this client (MQTT v5 Maximum Packet Size): the broker drops bigger
#: messages for this client. Above ingest's own payload limit, so oversized events still reach the
#: dead letters with their size and hash.
MAX_PACKET_SIZE: Final = 16 * 1024 * 1024
#: Bytes of received messages not yet taken by the caller before the client stops reading the socket.
MAX_BUFFERED_BYTES: Final = 64 * 1024 * 1024
_READ_SIZE: Final = 256 * 1024

# packet types as the first byte's high nibble (CONNACK, PUBLISH, PINGRESP, PINGREQ are the publisher's)
_PUBREL: Final = 0x60
_SUBACK: Final = 0x90
_DISCONNECT: Final = 0xE0
# One 32-bit big-endian word per acknowledgement: packet type, remaining length 2, packet id.
_PUBACK_WORD: Final = 0x40020000
_PUBREC_WORD: Final = 0x50020000
_PUBCOMP_WORD: Final = 0x70020000

#: MQTT v5 reason codes a broker answers CONNECT or SUBSCRIBE with (spec 2.4), in words.
REASONS: Final = {
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8C: "bad authentication method",
    0x8E: "session taken over",
    0x8F: "topic filter invalid",
    0x91: "packet identifier in use",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x9A: "retain not supported",
    0x9B: "QoS not supported",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded",
    0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}

# Property identifier -> how its value is encoded (MQTT v5 spec 2.2.2.2): byte, two-byte integer,
# four-byte integer, variable byte integer, UTF-8 string, binary data, string pair.
_PROPERTY_TYPES: Final = {
    0x01: "b", 0x02: "i", 0x03: "s", 0x08: "s", 0x09: "d", 0x0B: "v", 0x11: "i", 0x12: "s", 0x13: "h",
    0x15: "s", 0x16: "d", 0x17: "b", 0x18: "i", 0x19: "b", 0x1A: "s", 0x1C: "s", 0x1F: "s", 0x21: "h",
    0x22: "h", 0x23: "h", 0x24: "b", 0x25: "b", 0x26: "p", 0x27: "i", 0x28: "b", 0x29: "b", 0x2A: "b",
}  # fmt: skip
SESSION_EXPIRY: Final = 0x11
SERVER_KEEP_ALIVE: Final = 0x13
REASON_STRING: Final = 0x1F
RECEIVE_MAXIMUM_PROPERTY: Final = 0x21
MAXIMUM_QOS: Final = 0x24
MAXIMUM_PACKET_SIZE: Final = 0x27


class MqttProtocolError(Exception):
    """The broker sent something MQTT v5 does not allow here: the connection is dropped and re-made."""


class MqttBrokerDisconnect(MqttProtocolError):
    """The broker sent DISCONNECT, with its reason."""


class InboundMessage:
    """One PUBLISH received: ``raw_topic`` and ``payload`` as bytes, ``mid`` its packet id (0 at QoS 0).

    ``received_at`` is the wall clock (POSIX seconds) of the read that brought it; ``connection`` numbers
    the connection it came on, so an acknowledgement never goes to a later connection.
    """

    __slots__ = ("connection", "dup", "mid", "payload", "qos", "raw_topic", "received_at", "retain")

    def __init__(
        self,
        raw_topic: bytes,
        payload: bytes,
        qos: int,
        mid: int,
        retain: bool,
        dup: bool,
        received_at: float,
        connection: int,
    ) -> None:
        self.raw_topic = raw_topic
        self.payload = payload
        self.qos = qos
        self.mid = mid
        self.retain = retain
        self.dup = dup
        self.received_at = received_at
        self.connection = connection

    @property
    def topic(self) -> str:
        """The topic as text; raises ``UnicodeDecodeError`` if it is not UTF-8 (MQTT requires it)."""
        return self.raw_topic.decode()

    def __repr__(self) -> str:
        return (
            f"InboundMessage({self.raw_topic!r}, {len(self.payload)} bytes, qos={self.qos}, mid={self.mid})"
        )


def _decode_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it); MqttProtocolError past ``end`` or beyond four bytes."""
    value, shift = 0, 0
    for i in range(pos, min(pos + 4, end)):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    raise MqttProtocolError("malformed variable byte integer")


def parse_properties(data: bytes, pos: int, end: int) -> tuple[dict[int, Any], int]:
    """The properties block at ``pos``: ({identifier: value}, position after the block).

    User properties (0x26) collect as a list of (name, value) pairs; strings stay bytes.

    Raises:
        MqttProtocolError: an unknown identifier, or a block that runs past ``end``.
    """
    try:
        return _parse_properties(data, pos, end)
    except IndexError:
        raise MqttProtocolError("properties run past the packet") from None


def _parse_properties(data: bytes, pos: int, end: int) -> tuple[dict[int, Any], int]:
    length, pos = _decode_varint(data, pos, end)
    stop = pos + length
    if stop > end:
        raise MqttProtocolError("properties run past the packet")
    out: dict[int, Any] = {}
    while pos < stop:
        ident, pos = _decode_varint(data, pos, stop)
        kind = _PROPERTY_TYPES.get(ident)
        if kind is None:
            raise MqttProtocolError(f"unknown property {ident:#x}")
        value: Any
        if kind == "b":
            value, pos = data[pos], pos + 1
        elif kind == "h":
            value, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        elif kind == "i":
            value, pos = int.from_bytes(data[pos : pos + 4], "big"), pos + 4
        elif kind == "v":
            value, pos = _decode_varint(data, pos, stop)
        else:
            n = int.from_bytes(data[pos : pos + 2], "big")
            value, pos = bytes(data[pos + 2 : pos + 2 + n]), pos + 2 + n
            if kind == "p":
                m = int.from_bytes(data[pos : pos + 2], "big")
                value, pos = (value, bytes(data[pos + 2 : pos + 2 + m])), pos + 2 + m
        if pos > stop:
            raise MqttProtocolError(f"property {ident:#x} runs past its block")
        if ident == 0x26:
            out.setdefault(ident, []).append(value)
        else:
            out[ident] = value
    return out, stop


def connect_packet_v5(
    client_id: str,
    keepalive: int,
    username: str | None,
    password: str | None,
    session_expiry_s: int,
    receive_maximum: int,
    max_packet_size: int,
) -> bytes:
    """An MQTT v5 CONNECT that resumes the session (Clean Start off) with the given properties."""
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    props = (
        bytes([SESSION_EXPIRY])
        + struct.pack("!I", session_expiry_s)
        + bytes([RECEIVE_MAXIMUM_PROPERTY])
        + struct.pack("!H", receive_maximum)
        + bytes([MAXIMUM_PACKET_SIZE])
        + struct.pack("!I", max_packet_size)
    )
    body = b"\x00\x04MQTT\x05" + bytes([flags]) + struct.pack("!H", keepalive)
    body += encode_varint(len(props)) + props + encode_string(client_id)
    if username is not None:
        body += encode_string(username)
    if password is not None:
        body += encode_string(password)
    return b"\x10" + encode_varint(len(body)) + body


def subscribe_packet_v5(mid: int, topics: Sequence[str], qos: int) -> bytes:
    """An MQTT v5 SUBSCRIBE of ``topics`` at ``qos`` (retained messages sent at subscribe, the default)."""
    body = struct.pack("!H", mid) + b"\x00" + b"".join(encode_string(t) + bytes([qos]) for t in topics)
    return b"\x82" + encode_varint(len(body)) + body


def ack_packets(mids: Iterable[int], word: int = _PUBACK_WORD) -> bytes:
    """PUBACKs (or, with ``_PUBREC_WORD``, PUBRECs) for packet ids ``mids``, success, in one buffer."""
    words = [word | mid for mid in mids]
    return struct.pack(f"!{len(words)}I", *words)


class PacketReader:
    """Splits the byte stream from the broker into packets, however the reads cut it.

    :meth:`feed` returns the PUBLISH packets of the bytes fed so far as :class:`InboundMessage` objects
    and every other complete packet as ``(first byte, body)``; an incomplete packet waits for the next read.
    """

    def __init__(self, max_packet_size: int = MAX_PACKET_SIZE) -> None:
        self.max_packet_size = max_packet_size
        self.connection = 0
        self._rest = b""
        self._need = 0

    def reset(self, connection: int) -> None:
        """Forget a partial packet: a new connection starts a new stream."""
        self._rest, self._need, self.connection = b"", 0, connection

    def feed(
        self, data: bytes, received_at: float = 0.0
    ) -> tuple[list[InboundMessage], list[tuple[int, bytes]]]:
        """Parse ``data`` (after what is left of earlier reads).

        Raises:
            MqttProtocolError: a malformed packet, or one over ``max_packet_size``; the stream cannot be
                resynchronised, so the caller drops the connection.
        """
        if self._rest:
            data = self._rest + data
            if len(data) < self._need:
                self._rest = data
                return [], []
            self._need = 0
        messages: list[InboundMessage] = []
        others: list[tuple[int, bytes]] = []
        append = messages.append
        connection = self.connection
        limit = self.max_packet_size
        i, n = 0, len(data)
        while i + 2 <= n:
            first = data[i]
            byte = data[i + 1]
            if byte < 0x80:
                length, j = byte, i + 2
            elif i + 2 < n and data[i + 2] < 0x80:  # 128..16,383 bytes: most event messages
                length, j = (byte & 0x7F) | data[i + 2] << 7, i + 3
            else:
                try:
                    length, j = _decode_varint(data, i + 1, n)
                except MqttProtocolError:
                    if n - i - 1 < 4:  # the length itself is cut by the read
                        break
                    raise
            end = j + length
            if end - i > limit:
                raise MqttProtocolError(f"packet of {end - i} bytes, over {limit}")
            if end > n:
                self._need = end - i
                break
            if first & 0xF0 == _PUBLISH:
                qos = (first >> 1) & 3
                if qos == 3 or length < 2:
                    raise MqttProtocolError(f"malformed PUBLISH (first byte {first:#x})")
                t1 = j + 2 + (data[j] << 8 | data[j + 1])
                if qos:
                    p = t1 + 2
                    mid = data[t1] << 8 | data[t1 + 1] if p <= end else 0
                    if mid == 0:
                        raise MqttProtocolError("malformed PUBLISH (no packet id, or id 0)")
                else:
                    mid, p = 0, t1
                if p >= end:  # no room for the properties length
                    raise MqttProtocolError("malformed PUBLISH (topic longer than the packet)")
                plen = data[p]
                if plen < 0x80:
                    p += 1 + plen
                else:
                    plen, p = _decode_varint(data, p, end)
                    p += plen
                if p > end:
                    raise MqttProtocolError("malformed PUBLISH (properties run past the packet)")
                append(
                    InboundMessage(
                        data[j + 2 : t1],
                        data[p:end],
                        qos,
                        mid,
                        (first & 1) != 0,
                        (first & 8) != 0,
                        received_at,
                        connection,
                    )
                )
            else:
                others.append((first, data[j:end]))
            i = end
        self._rest = data[i:] if i < n else b""
        return messages, others


class MqttSubscriber:
    """Subscribe to ``topics`` at QoS ``qos`` on a persistent MQTT v5 session; the caller acknowledges.

    Use inside one asyncio loop: ``await start()``, then ``await receive()`` batches and ``ack(batch)``
    each once it is safe, ``await close()`` at the end. Topics may be shared subscriptions
    (``$share/<group>/<filter>``).

    Args:
        session_expiry_s: how long the broker keeps the session (and queues for it) while disconnected.
        receive_maximum: unacknowledged messages in flight from the broker at most (1..65535).
        security: credentials and TLS (:class:`MqttSecurity`).
        max_packet_size: Maximum Packet Size announced to the broker.
        max_buffered_bytes: received bytes not yet taken by :meth:`receive` before reading pauses.
        read_pause: seconds to wait after a read of less than half the read size before the next one,
            so that the next brings more: each read costs a loop wake-up, a timer and a parse call.
            Measured 2026-12-02 (receiving and acknowledging alone, publisher in another process): 5 ms
            made reads of 170-210 messages instead of ~15, and 7.4-9.0 instead of 11.5-12.1 µs of CPU a
            message; ingest (bench/ingest_cpu.py): 13.6 instead of 15.7. Messages wait that much longer.

    Raises:
        ValueError: an argument out of range (named in the message).
        SettingsError: ``security`` names TLS files that cannot be used.
    """

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        topics: Sequence[str],
        qos: int = 1,
        *,
        session_expiry_s: int = 3600,
        receive_maximum: int = RECEIVE_MAXIMUM,
        security: MqttSecurity | None = None,
        keepalive: int = 30,
        max_packet_size: int = MAX_PACKET_SIZE,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
        read_pause: float = 0.0,
    ) -> None:
        if read_pause < 0:
            raise ValueError(f"read_pause must be >= 0 s, got {read_pause}")
        if not topics:
            raise ValueError("topics must name at least one topic filter")
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        if not 1 <= receive_maximum <= 65535:
            raise ValueError(f"receive_maximum must be in 1..65535, got {receive_maximum}")
        if not 0 <= session_expiry_s <= 0xFFFFFFFF:
            raise ValueError(f"session_expiry_s must be in 0..4294967295, got {session_expiry_s}")
        if not 1 <= keepalive <= 65535:
            raise ValueError(f"keepalive must be in 1..65535 s, got {keepalive}")
        if max_packet_size < 1024:
            raise ValueError(f"max_packet_size must be >= 1024 bytes, got {max_packet_size}")
        self.host, self.port, self.client_id = host, port, client_id
        self.topics = list(topics)
        self.qos = qos
        self.receive_maximum = receive_maximum
        self.max_buffered_bytes = max_buffered_bytes
        self.read_pause = read_pause
        #: Connections re-established after the first (for logs and tests).
        self.reconnects = 0
        #: Messages received, including redeliveries.
        self.received = 0
        self._keepalive = keepalive
        security = security or MqttSecurity()
        self._tls: ssl.SSLContext | None = security.ssl_context()
        self._connect_bytes = connect_packet_v5(
            client_id,
            keepalive,
            security.username or None,
            security.password or None,
            session_expiry_s,
            receive_maximum,
            max_packet_size,
        )
        self._parser = PacketReader(max_packet_size)
        self._connection = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._inbox: list[InboundMessage] = []
        self._inbox_bytes = 0
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._subscribed = asyncio.Event()
        self._refused: ServiceError | None = None
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._last_write = 0.0
        self._next_mid = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self, timeout: float = 30.0, patient: bool = False) -> None:
        """Connect, subscribe and wait for the broker's SUBACK.

        With ``patient`` an unreachable broker is retried with back-off until it answers (a service that
        may start before its broker); a broker that refuses the connection or subscription still raises.

        Raises:
            ServiceError: the broker cannot be reached, refuses the connection (with what to check), or
                refuses the subscription, or does not answer within ``timeout`` seconds.
        """
        delay = 1.0
        while True:
            try:
                await asyncio.wait_for(self._connect(), timeout)
                break
            except (OSError, TimeoutError, MqttProtocolError) as exc:
                if not patient:
                    raise ServiceError(
                        f"MQTT broker at {self.host}:{self.port} not reachable: {exc or 'no answer'}; "
                        "is it running (and are the TLS settings right)?"
                    ) from None
                log.warning("mqtt connect failed error=%s retry_in=%.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        self._task = asyncio.create_task(self._run(), name=f"mqtt-sub-{self.client_id}")
        await self.wait_subscribed(timeout)

    async def wait_subscribed(self, timeout: float = 30.0) -> None:
        """Wait for the broker to grant every topic filter.

        Raises:
            ServiceError: the subscription was refused, or not confirmed within ``timeout`` seconds.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout)
        if self._refused is not None:
            raise self._refused
        if not self._subscribed.is_set():
            raise ServiceError(
                f"MQTT broker at {self.host}:{self.port} did not confirm the subscription to "
                f"{', '.join(self.topics)} within {timeout:.0f}s"
            )

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set() and self._refused is None and self._writer is not None

    async def close(self) -> None:
        """Disconnect normally (the session and its unacknowledged messages stay with the broker)."""
        self._closing = True
        self._room.set()
        self._arrived.set()
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(OSError, RuntimeError):
                writer.write(_DISCONNECT_NORMAL)
                await asyncio.wait_for(writer.drain(), 5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._drop()

    # ------------------------------------------------------------------ receiving and acknowledging

    async def receive(
        self, max_messages: int = 10_000, timeout: float | None = None, linger: float = 0.0
    ) -> list[InboundMessage]:
        """The messages received and not yet taken, up to ``max_messages``, in order; waits for one.

        With ``linger``, once there is a message but fewer than ``max_messages``, it waits ``linger``
        seconds more for others (fewer, larger batches). Returns an empty list after ``timeout`` seconds
        without a message, or once closed.
        """
        if not self._inbox and not self._closing:
            self._arrived.clear()
            if timeout is None:
                await self._arrived.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), timeout)
        if linger > 0 and 0 < len(self._inbox) < max_messages and not self._closing:
            await asyncio.sleep(linger)
        inbox = self._inbox
        if len(inbox) <= max_messages:
            batch, self._inbox = inbox, []
            self._inbox_bytes = 0
        else:
            batch = inbox[:max_messages]
            del inbox[:max_messages]
            self._inbox_bytes = max(0, self._inbox_bytes - sum(len(m.payload) for m in batch))
        if self._inbox_bytes < self.max_buffered_bytes:
            self._room.set()
        return batch

    def ack(self, messages: Sequence[InboundMessage]) -> int:
        """Acknowledge ``messages`` to the broker in one write; returns how many acknowledgements went out.

        QoS 1 gets PUBACK, QoS 2 PUBREC (the broker's PUBREL is answered with PUBCOMP on arrival), QoS 0
        nothing. Messages from an earlier connection are skipped: the broker sends them again.
        """
        writer, connection = self._writer, self._connection
        if writer is None:
            return 0
        ones = [m.mid for m in messages if m.qos == 1 and m.connection == connection]
        twos = [m.mid for m in messages if m.qos == 2 and m.connection == connection] if self.qos > 1 else []
        if not ones and not twos:
            return 0
        data = ack_packets(ones) if ones else b""
        if twos:
            data += ack_packets(twos, _PUBREC_WORD)
        self._write(data)
        return len(ones) + len(twos)

    # ------------------------------------------------------------------ the connection

    def _write(self, data: bytes) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            return
        try:
            writer.write(data)
        except (OSError, RuntimeError) as exc:  # the read loop sees the broken connection and reconnects
            log.warning("mqtt write failed error=%s", exc)
        self._last_write = time.monotonic()

    async def _connect(self) -> None:
        """Open the connection, send CONNECT and SUBSCRIBE, read the CONNACK.

        Raises:
            OSError, TimeoutError, MqttProtocolError: the network or the broker failed; try again later.
            ServiceError: the broker refused the connection.
        """
        reader, writer = await asyncio.open_connection(
            self.host,
            self.port,
            ssl=self._tls,
            server_hostname=self.host if self._tls is not None else None,
            limit=_READ_SIZE,
        )
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            writer.write(self._connect_bytes)
            await writer.drain()
            self._connection += 1
            self._parser.reset(self._connection)
            while True:
                data = await reader.read(_READ_SIZE)
                if not data:
                    raise OSError("the broker closed the connection before CONNACK; TLS settings?")
                messages, others = self._parser.feed(data, time.time())
                if others:
                    break
                if messages:
                    raise MqttProtocolError("PUBLISH before CONNACK")
            first, body = others[0]
            if first != _CONNACK or len(body) < 2:
                raise MqttProtocolError(f"expected CONNACK, got packet type {first:#x}")
            if body[1] >= 0x80:
                props = self._properties(body, 2)
                reason = REASONS.get(body[1], f"reason code {body[1]:#x}")
                detail = props.get(REASON_STRING, b"").decode("utf-8", "replace")
                raise ServiceError(
                    f"MQTT broker at {self.host}:{self.port} did not accept the connection: "
                    f"{refusal_hint(reason)}{f' ({detail})' if detail else ''}"
                )
            props = self._properties(body, 2)
            if props.get(MAXIMUM_QOS, 2) < self.qos:
                log.warning("mqtt broker grants QoS %d at most, asked %d", props[MAXIMUM_QOS], self.qos)
            self._keepalive = props.get(SERVER_KEEP_ALIVE, self._keepalive) or self._keepalive
            self._reader, self._writer = reader, writer
            self._next_mid = self._next_mid % 65535 + 1
            self._write(subscribe_packet_v5(self._next_mid, self.topics, self.qos))
            log.info(
                "mqtt connected host=%s port=%d session_present=%s subscribing=%s",
                self.host,
                self.port,
                bool(body[0] & 1),
                ",".join(self.topics),
            )
            # packets after the CONNACK in the same read (a resumed session's messages, the SUBACK)
            self._dispatch(messages, others[1:])
        except BaseException:
            self._reader = self._writer = None
            writer.close()
            raise

    def _properties(self, body: bytes, pos: int) -> dict[int, Any]:
        if pos >= len(body):
            return {}
        props, _ = parse_properties(body, pos, len(body))
        return props

    async def _run(self) -> None:
        """Read and dispatch until closed; re-connect with back-off whenever the connection ends."""
        while not self._closing:
            try:
                await self._read_loop()
                if not self._closing:
                    log.warning("mqtt connection closed by the broker; reconnecting")
            except MqttBrokerDisconnect as exc:
                if not self._subscribed.is_set():
                    # mosquitto ends the connection on a topic filter it cannot parse
                    self._refused = ServiceError(
                        f"MQTT broker at {self.host}:{self.port} ended the connection before confirming "
                        f"the subscription to {', '.join(self.topics)}: {exc}; check the topic filters"
                    )
                    self._subscribed.set()
                    return
                if not self._closing:
                    log.warning("mqtt connection lost error=%s; reconnecting", exc)
            except (OSError, MqttProtocolError, TimeoutError) as exc:
                if not self._closing:
                    log.warning("mqtt connection lost error=%s; reconnecting", exc)
            except Exception:  # whatever the broker sends, the client lives on: a new connection
                log.exception("mqtt unexpected error reading from the broker; reconnecting")
            if self._closing:
                return
            await self._drop()
            await self._reconnect()

    async def _reconnect(self) -> None:
        delay = 1.0
        while not self._closing:
            await asyncio.sleep(delay)
            try:
                await asyncio.wait_for(self._connect(), 30)
            except ServiceError as exc:
                log.error("mqtt reconnect refused: %s; retry_in=%.0fs", exc, delay)
            except (OSError, TimeoutError, MqttProtocolError) as exc:
                log.warning("mqtt reconnect failed error=%s retry_in=%.0fs", exc, delay)
            else:
                self.reconnects += 1
                return
            delay = min(delay * 2, 30.0)

    async def _drop(self) -> None:
        """Close the connection; messages not yet taken at QoS 1/2 are dropped (the broker resends them)."""
        writer, self._writer, self._reader = self._writer, None, None
        kept = [m for m in self._inbox if m.qos == 0]
        self._inbox = kept
        self._inbox_bytes = sum(len(m.payload) for m in kept)
        self._room.set()
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)

    async def _read_loop(self) -> None:
        reader = self._reader
        assert reader is not None
        half = self._keepalive / 2
        pinged = False
        while not self._closing:
            if not self._room.is_set():
                await self._room.wait()
                continue
            try:
                data = await asyncio.wait_for(reader.read(_READ_SIZE), half)
            except TimeoutError:
                if pinged:
                    raise TimeoutError(f"no answer to PINGREQ within {half:.0f}s") from None
                self._write(_PINGREQ)
                pinged = True
                continue
            if not data:
                return
            pinged = False
            self._dispatch(*self._parser.feed(data, time.time()))
            if time.monotonic() - self._last_write > half:
                self._write(_PINGREQ)
            if self.read_pause and len(data) < _READ_SIZE // 2:  # the broker sends less than we can take
                await asyncio.sleep(self.read_pause)

    def _dispatch(self, messages: list[InboundMessage], others: list[tuple[int, bytes]]) -> None:
        if messages:
            self.received += len(messages)
            self._inbox.extend(messages)
            self._inbox_bytes += sum(len(m.payload) for m in messages)
            if self._inbox_bytes >= self.max_buffered_bytes:
                self._room.clear()
            self._arrived.set()
        for first, body in others:
            kind = first & 0xF0
            if kind == _PUBREL:
                self._write(ack_packets([int.from_bytes(body[:2], "big")], _PUBCOMP_WORD))
            elif kind == _SUBACK:
                self._on_suback(body)
            elif kind == _PINGRESP:
                pass
            elif kind == _DISCONNECT:
                code = body[0] if body else 0
                props = self._properties(body, 1) if len(body) > 1 else {}
                detail = props.get(REASON_STRING, b"").decode("utf-8", "replace")
                raise MqttBrokerDisconnect(
                    f"the broker disconnected us: {REASONS.get(code, f'reason code {code:#x}')}"
                    f"{f' ({detail})' if detail else ''}"
                )
            else:
                raise MqttProtocolError(f"unexpected packet type {first:#x}")

    def _on_suback(self, body: bytes) -> None:
        if len(body) < 3:
            raise MqttProtocolError("malformed SUBACK")
        _, pos = parse_properties(body, 2, len(body))
        codes = body[pos:]
        refused = [(t, c) for t, c in zip(self.topics, codes, strict=False) if c >= 0x80]
        if refused:
            words = ", ".join(f"{t}: {REASONS.get(c, f'reason code {c:#x}')}" for t, c in refused)
            self._refused = ServiceError(
                f"MQTT broker at {self.host}:{self.port} refused the subscription ({words}); "
                "check the broker's ACL for this user"
            )
            log.error("mqtt subscribe refused %s", words)
            self._subscribed.set()  # wakes wait_subscribed, which raises
            return
        if any(c < self.qos for c in codes):
            log.warning("mqtt broker granted QoS %s, asked %d", list(codes), self.qos)
        log.info("mqtt subscribed topics=%s qos=%d", ",".join(self.topics), self.qos)
        self._refused = None
        self._subscribed.set()
