"""MQTT clients: credentials and TLS from the settings, and publishing (QoS 1) with back-pressure.

Every wipwatch MQTT client (ingest, recorder, simulator, replay, processors' alerts) takes its username,
password and TLS files from :class:`MqttSecurity`, so there is one place that builds them. Shared by the
services (services import the core, never each other).

The publisher writes MQTT 3.1.1 on the socket rather than through paho: profiled (docs/architecture.md,
"Where the time goes"), paho's network thread spends most of a fast publish in ``_update_inflight``, which
walks every message in flight on each PUBACK (quadratic in the window), and in a socket-pair wake-up per
publish; one paho connection topped out at 3,000-7,000 msg/s. Here the publishing thread writes the
PUBLISH packet itself and one reader thread parses the acknowledgements in bulk, so the broker's window
can stay full. What the wire needs of MQTT 3.1.1 for a publisher is small (CONNECT, PUBLISH, PUBACK,
PUBREC/PUBREL/PUBCOMP, PINGREQ, DISCONNECT); everything unacknowledged is kept and sent again, DUP set,
after a reconnect. With TLS the reader reads under the write lock, as one OpenSSL connection must not
read and write at once (measured: 45,800 msg/s over TLS on loopback).

Packets are not written one by one: ``publish`` appends to a write buffer that a writer thread sends as
one ``sendall`` as soon as it runs (or ``publish`` itself once 64 KiB are waiting). A publisher alone on
the loop sends one message per write, as before; one publishing as fast as it can sends hundreds, which
cost the publisher ~6 us a message instead of 20-34 and mosquitto ~10 instead of 14-16 (measured,
``bench/mqtt_hop.py``; docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt

from wipwatch.errors import ServiceError, SettingsError
from wipwatch.events import Event, encode_event, topic_for
from wipwatch.settings import Settings

log = logging.getLogger(__name__)

_CONNECT: Final = 0x10
_CONNACK: Final = 0x20
_PUBLISH: Final = 0x30
_PUBACK: Final = 0x40
_PUBREC: Final = 0x50
_PUBREL: Final = 0x62
_PUBCOMP: Final = 0x70
_PINGREQ: Final = b"\xc0\x00"
_PINGRESP: Final = 0xD0
_DISCONNECT: Final = b"\xe0\x00"
_DUP: Final = 0x08
_MAX_MID: Final = 65535
#: Bytes waiting in the write buffer at which ``publish`` writes them itself rather than leave them to
#: the writer thread.
_WRITE_CHUNK: Final = 64 * 1024
_CONNACK_REASONS: Final = {
    1: "unacceptable protocol version",
    2: "client id rejected",
    3: "server unavailable",
    4: "bad user name or password (not authorized)",
    5: "not authorized",
}


@dataclass(frozen=True)
class MqttSecurity:
    """How a client proves who it is and checks the broker: username/password, TLS with a CA, client cert.

    ``tls`` with no ``ca_file`` trusts the system's CAs; a ``ca_file`` turns TLS on by itself.
    """

    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MqttSecurity:
        return cls(
            settings.mqtt_username,
            settings.mqtt_password.get_secret_value(),
            settings.mqtt_tls,
            settings.mqtt_ca_file,
            settings.mqtt_cert_file,
            settings.mqtt_key_file,
        )

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.ca_file is not None or self.cert_file is not None

    def _check(self) -> None:
        if self.password and not self.username:
            raise SettingsError("WIPWATCH_MQTT_PASSWORD is set but WIPWATCH_MQTT_USERNAME is empty")
        if not self.uses_tls:
            return
        if (self.cert_file is None) != (self.key_file is None):
            raise SettingsError("WIPWATCH_MQTT_CERT_FILE and WIPWATCH_MQTT_KEY_FILE go together: set both")
        for name, path in (("CA", self.ca_file), ("CERT", self.cert_file), ("KEY", self.key_file)):
            if path is not None and not path.is_file():
                raise SettingsError(f"WIPWATCH_MQTT_{name}_FILE: {path} is not a file")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of a socket-level client (the publisher), or ``None`` without TLS.

        Raises:
            SettingsError: as :meth:`apply`.
        """
        self._check()
        if not self.uses_tls:
            return None
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            if self.cert_file is not None and self.key_file is not None:
                context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (ssl.SSLError, ValueError, OSError) as exc:
            raise SettingsError(f"MQTT TLS files cannot be used: {exc}") from None
        return context

    def apply(self, client: mqtt.Client) -> None:
        """Set credentials and TLS on ``client`` before it connects.

        Raises:
            SettingsError: a TLS file is missing, or a client certificate comes without its key.
        """
        self._check()
        if self.username:
            client.username_pw_set(self.username, self.password or None)
        if not self.uses_tls:
            return
        try:
            client.tls_set(
                ca_certs=str(self.ca_file) if self.ca_file else None,
                certfile=str(self.cert_file) if self.cert_file else None,
                keyfile=str(self.key_file) if self.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (ssl.SSLError, ValueError) as exc:
            raise SettingsError(f"MQTT TLS files cannot be used: {exc}") from None


def refusal_hint(reason: Any) -> str:
    """A CONNACK refusal in words, with what to check."""
    text = str(reason)
    if "authori" in text.lower() or "password" in text.lower():
        return f"{text}; check WIPWATCH_MQTT_USERNAME / WIPWATCH_MQTT_PASSWORD and the broker's password file"
    return text


def encode_varint(n: int) -> bytes:
    """An MQTT variable byte integer (remaining length, property lengths)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"variable byte integer out of range: {n}")
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_string(text: str | bytes) -> bytes:
    """An MQTT UTF-8 string (or binary data): two-byte length, then the bytes."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > 65535:
        raise ValueError(f"MQTT string longer than 65535 bytes: {len(raw)}")
    return struct.pack("!H", len(raw)) + raw


def connect_packet(client_id: str, keepalive: int, username: str | None, password: str | None) -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session (the publisher keeps its own unacknowledged messages)."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + struct.pack("!H", keepalive) + encode_string(client_id)
    if username is not None:
        body += encode_string(username)
    if password is not None:
        body += encode_string(password)
    return bytes([_CONNECT]) + encode_varint(len(body)) + body


def publish_packet(topic: bytes, payload: bytes, qos: int, mid: int, retain: bool = False) -> bytes:
    """One PUBLISH packet; ``mid`` is ignored at QoS 0."""
    head = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"")
    first = _PUBLISH | qos << 1 | (1 if retain else 0)
    return bytes([first]) + encode_varint(len(head) + len(payload)) + head + payload


class MqttPublisher:
    """Publish at QoS ``qos`` with at most ``max_outstanding`` messages unacknowledged (the back-pressure).

    One TCP connection; ``publish`` may be called from one thread or several. A lost connection is
    re-established with back-off and every unacknowledged message sent again, so nothing published is lost
    while the process lives (the processors drop the duplicates by event id).

    ``security`` gives the credentials and TLS files (:class:`MqttSecurity`); ``ssl_context``, if given,
    replaces the TLS context built from it.

    Raises:
        ServiceError: the broker is not reachable or refuses the first connection.
        SettingsError: ``security`` names TLS files that cannot be used.
    """

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        qos: int = 1,
        max_outstanding: int = 20_000,
        security: MqttSecurity | None = None,
        keepalive: int = 30,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        if not 1 <= max_outstanding <= 60_000:
            raise ValueError(
                f"max_outstanding must be in 1..60000 (MQTT has 65535 ids), got {max_outstanding}"
            )
        if keepalive < 1:
            raise ValueError(f"keepalive must be >= 1 s, got {keepalive}")
        self.host, self.port, self.client_id = host, port, client_id
        self.qos = qos
        self.published = 0
        #: Connections re-established after the first (for logs and tests).
        self.reconnects = 0
        self._max = max_outstanding
        self._keepalive = keepalive
        security = security or MqttSecurity()
        self._tls = ssl_context or security.ssl_context()
        self._connect_bytes = connect_packet(
            client_id, keepalive, security.username or None, security.password or None
        )
        # mid -> PUBLISH packet, in sending order; QoS 2 ids move to _released after PUBREC.
        self._unacked: dict[int, bytes] = {}
        self._released: dict[int, None] = {}
        self._next_mid = 0
        self._write = threading.Lock()
        self._room = threading.Event()
        # packets published and not yet written (under _write); the writer thread sends them
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._wake_writer = threading.Event()
        self._closing = False
        self._sock: socket.socket | None = None
        try:
            self._sock = self._open()
        except OSError as exc:
            raise ServiceError(f"MQTT broker at {host}:{port} not reachable: {exc}") from None
        self._reader = threading.Thread(target=self._read_loop, name=f"mqtt-pub-{client_id}", daemon=True)
        self._reader.start()
        self._writer = threading.Thread(
            target=self._write_loop, name=f"mqtt-pub-write-{client_id}", daemon=True
        )
        self._writer.start()

    def _open(self) -> socket.socket:
        """Connect and wait for CONNACK; OSError if the network fails, ServiceError if the broker refuses."""
        sock = socket.create_connection((self.host, self.port), timeout=30)
        try:
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(self._connect_bytes)
            ack = b""
            while len(ack) < 4:
                chunk = sock.recv(4 - len(ack))
                if not chunk:
                    raise OSError("connection closed before the broker answered; TLS settings?")
                ack += chunk
            if ack[0] != _CONNACK or ack[3] != 0:
                reason = refusal_hint(_CONNACK_REASONS.get(ack[3], f"code {ack[3]}"))
                raise ServiceError(
                    f"MQTT broker at {self.host}:{self.port} did not accept the connection: {reason}"
                )
            sock.settimeout(self._keepalive / 2)
        except BaseException:
            sock.close()
            raise
        return sock

    def __call__(self, event: Event) -> None:
        self.publish(topic_for(event), encode_event(event))

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Send one message; blocks while ``max_outstanding`` messages wait for their acknowledgement."""
        if self.qos == 0:
            with self._write:
                if self._sock is not None:
                    self._queue(publish_packet(topic.encode(), payload, 0, 0, retain))
                self.published += 1
            return
        while len(self._unacked) + len(self._released) >= self._max:
            self._room.clear()
            if len(self._unacked) + len(self._released) < self._max:
                break
            self._room.wait(1.0)
        with self._write:
            mid = self._next_mid
            while True:
                mid = mid % _MAX_MID + 1
                if mid not in self._unacked and mid not in self._released:
                    break
            self._next_mid = mid
            packet = publish_packet(topic.encode(), payload, self.qos, mid, retain)
            self._unacked[mid] = packet
            if self._sock is not None:  # else the reader reconnects and sends it with the unacknowledged
                self._queue(packet)
            self.published += 1

    def _queue(self, packet: bytes) -> None:
        """Add ``packet`` to the write buffer (under ``_write``); written at once if the buffer is full."""
        self._pending.append(packet)
        self._pending_bytes += len(packet)
        if self._pending_bytes >= _WRITE_CHUNK:
            self._write_pending()
        elif not self._wake_writer.is_set():
            self._wake_writer.set()

    def _write_pending(self) -> None:
        """Send the write buffer as one write (under ``_write``); a failure drops the connection, and the
        reader's reconnect sends every unacknowledged packet again."""
        pending = self._pending
        if not pending:
            return
        self._pending, self._pending_bytes = [], 0
        if self._sock is not None:
            try:
                self._sock.sendall(pending[0] if len(pending) == 1 else b"".join(pending))
            except OSError:
                self._drop_socket()

    def _write_loop(self) -> None:
        while not self._closing:
            self._wake_writer.wait()
            self._wake_writer.clear()
            with self._write:
                self._write_pending()

    def flush(self) -> None:
        """Write what ``publish`` buffered now (the writer thread would do so as soon as it runs)."""
        with self._write:
            self._write_pending()

    def _send(self, packet: bytes) -> None:
        with self._write:
            self._write_pending()  # in order: a PUBREL after the packets published before it
            if self._sock is not None:
                try:
                    self._sock.sendall(packet)
                except OSError:
                    self._drop_socket()

    def _drop_socket(self) -> None:
        # what was buffered for this connection: the unacknowledged are sent again after the reconnect
        self._pending, self._pending_bytes = [], 0
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _read_loop(self) -> None:
        buf = b""
        while not self._closing:
            sock = self._sock
            data: bytes | None = b""
            if sock is not None:
                try:
                    data = self._recv(sock)
                except TimeoutError:
                    self._send(_PINGREQ)
                    continue
                except OSError:
                    data = b""
                if data is None:
                    continue
            if not data:
                if self._closing:
                    return
                buf = b""
                self._reconnect()
                continue
            buf = self._handle(buf + data if buf else data)

    def _recv(self, sock: socket.socket) -> bytes | None:
        """Bytes from the broker; ``None`` when nothing came in this round; TimeoutError when idle.

        A TLS connection must not read and write at the same time (one OpenSSL object), so with TLS the
        reader waits for data outside the write lock and reads under it.
        """
        if not isinstance(sock, ssl.SSLSocket):
            return sock.recv(262144)
        if not sock.pending():
            readable, _, _ = select.select([sock], [], [], self._keepalive / 2)
            if not readable:
                raise TimeoutError
        with self._write:
            if self._sock is not sock:
                return None
            try:
                return sock.recv(262144)
            except (ssl.SSLWantReadError, TimeoutError):
                return None

    def _handle(self, buf: bytes) -> bytes:
        """Apply every complete acknowledgement in ``buf``; return the incomplete rest."""
        unacked, released = self._unacked, self._released
        i, n = 0, len(buf)
        while i + 2 <= n:
            kind, length = buf[i], buf[i + 1]
            if length & 0x80:  # nothing a broker sends a publisher is this long: resynchronise
                log.error("mqtt publisher got an unexpected packet type=%#x; reconnecting", kind)
                with self._write:
                    self._drop_socket()
                return b""
            if i + 2 + length > n:
                break
            if kind in (_PUBACK, _PUBCOMP):
                (mid,) = struct.unpack_from("!H", buf, i + 2)
                unacked.pop(mid, None)
                released.pop(mid, None)
            elif kind == _PUBREC:
                (mid,) = struct.unpack_from("!H", buf, i + 2)
                if unacked.pop(mid, None) is not None:
                    released[mid] = None
                self._send(bytes([_PUBREL, 2]) + buf[i + 2 : i + 4])
            elif kind != _PINGRESP:
                log.warning("mqtt publisher ignored packet type=%#x", kind)
            i += 2 + length
        if len(unacked) + len(released) < self._max:
            self._room.set()
        return buf[i:]

    def _reconnect(self) -> None:
        delay = 1.0
        while not self._closing:
            with self._write:
                self._drop_socket()
                try:
                    sock = self._open()
                except (OSError, ServiceError) as exc:
                    log.warning("mqtt publisher reconnect failed error=%s retry_in=%.0fs", exc, delay)
                else:
                    try:
                        for mid in self._released:
                            sock.sendall(bytes([_PUBREL, 2]) + struct.pack("!H", mid))
                        for packet in list(self._unacked.values()):
                            sock.sendall(bytes([packet[0] | _DUP]) + packet[1:])
                    except OSError as exc:
                        sock.close()
                        log.warning("mqtt publisher resend failed error=%s", exc)
                    else:
                        self._sock = sock
                        self.reconnects += 1
                        log.info(
                            "mqtt publisher reconnected resent=%d", len(self._unacked) + len(self._released)
                        )
                        return
            time.sleep(delay)
            delay = min(delay * 2, 30.0)

    @property
    def outstanding(self) -> int:
        """Messages sent and not yet acknowledged by the broker."""
        return len(self._unacked) + len(self._released)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until the broker acknowledged everything published; False on timeout."""
        self.flush()
        deadline = time.monotonic() + timeout
        while self.outstanding:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def close(self) -> None:
        self.drain()
        self._closing = True
        with self._write:
            self._write_pending()  # QoS 0: nothing to drain, but the buffer goes out before DISCONNECT
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.sendall(_DISCONNECT)
            self._drop_socket()
        self._wake_writer.set()
        self._reader.join(5)
        self._writer.join(5)
