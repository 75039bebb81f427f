"""Recording file formats: the one definition every wipwatch writer and reader uses (docs/record-replay.md).

``wipwatch record`` and ``wipwatch simulate --dry-run`` write through :class:`RecordingWriter`; ``replay``,
``up --replay`` and the tests read through :class:`RecordingReader`. Whatever one writes, the other reads
back with the same topic, payload, QoS, retain flag and time (to the microsecond).

Reading detects the format from the content (gzip by its magic bytes, then the first record), never from
the file name. A damaged file (cut mid-line, cut gzip stream, a line that is not a valid record) yields
every valid message and lists what it skipped with line numbers in :attr:`RecordingReader.skipped`; it
never raises for one bad line, and never drops one without listing it. Only a file whose format cannot be
recognised at all raises :class:`RecordingError`.

Formats, one message per line:

- ``native``: gzip; first line ``{"wipwatch_recording": 1, "started": <unix s>}`` (plus ``"site_file"``,
  the site file's path, and ``"site_yaml"``, its text, when the writer knew the site), then
  ``{"t": <receive time, unix s>, "topic": ..., "qos": 1, "retain": false, "payload": "<utf-8 text>"}``
  (``"payload_b64"`` instead of ``"payload"`` when the bytes are not UTF-8).
- ``csv``: mqtt-recorder 1.4: ``topic,payload,qos,retain,time,delta`` without a header row; ``retain`` is
  ``True``/``False``, ``time`` unix seconds, ``delta`` seconds since the previous message.
- ``jsonl``: ``mosquitto_sub -F %j``: ``{"tst": "2026-11-25T06:00:00.123456Z+0000", "topic": ..., "qos": 1,
  "retain": 0, "payloadlen": N, "payload": "<text>"}`` (``%J`` embeds JSON payloads unquoted; read too).
  ``tst`` is read with or without fractional seconds and in any ISO 8601 offset form.
- ``dry-run`` (read only): ``{"topic": ..., "qos": 1, "payload": "<text>"}`` without a time, what
  ``simulate --dry-run`` wrote before it wrote ``jsonl``.

A simulated event's time is its event time (:func:`event_message`), so a dry run replays paced like a
live recording.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import logging
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, Literal

import msgspec

from wipwatch.errors import RecordingError
from wipwatch.events import Event, encode_event, topic_for

log = logging.getLogger(__name__)

Format = Literal["native", "csv", "jsonl", "dry-run"]
WRITE_FORMATS: Final = ("native", "csv", "jsonl")
_GZIP_MAGIC: Final = b"\x1f\x8b"
_HEADER_KEY: Final = "wipwatch_recording"
_VERSION: Final = 1
#: Unparseable JSON lines tolerated at the start before the format is declared unknown.
_DETECT_ATTEMPTS: Final = 5


@dataclass(frozen=True, slots=True)
class Message:
    """One recorded MQTT message; ``time`` is when it was received (unix seconds), ``None`` if unknown."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    time: float | None = None


@dataclass(frozen=True, slots=True)
class Skipped:
    """A part of a recording that could not be read: where (1-based line number) and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


# ---------------------------------------------------------------- reading


@dataclass
class RecordingReader:
    """Iterate the messages of a recording in file order; see the module docstring for the formats.

    ``format`` is known after the first message was read; ``skipped`` fills while iterating.
    ``position()`` is how far into the file (bytes on disk) reading got, for progress bars.
    """

    path: Path
    format: Format | None = None
    compressed: bool = False
    skipped: list[Skipped] = field(default_factory=list)
    #: The ``native`` header line (``started``, and ``site_file``/``site_yaml`` when the writer knew them).
    header: dict[str, Any] | None = None
    _raw: IO[bytes] | None = None

    def position(self) -> int:
        return self._raw.tell() if self._raw is not None and not self._raw.closed else 0

    def size(self) -> int:
        return self.path.stat().st_size

    def __iter__(self) -> Iterator[Message]:
        self.skipped.clear()
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 - closed in finally, tell() needed for progress
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot open recording: {exc.strerror}") from None
        self._raw = raw
        try:
            self.compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            stream: Iterable[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if self.compressed else raw
            yield from self._messages(stream)
        finally:
            raw.close()

    def detect(self) -> Format | None:
        """Read up to the first message to learn the format (``None`` for an empty file).

        Raises:
            RecordingError: the file cannot be opened or its format is unknown.
        """
        for _message in self:
            break
        return self.format

    def _lines(self, stream: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
        """Numbered lines; a cut or corrupt gzip stream ends the iteration with a ``Skipped`` entry."""
        number = 0
        try:
            for number, data in enumerate(stream, start=1):
                yield number, data
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            self.skipped.append(
                Skipped(number + 1, f"compressed stream ends early or is corrupt ({exc}); rest unreadable")
            )

    def _messages(self, stream: Iterable[bytes]) -> Iterator[Message]:
        parse: Any = None
        last_line = 0
        pending: list[str] = []  # a CSV record whose quoted payload spans lines
        for number, data in self._lines(stream):
            last_line = number
            text = data.strip()
            if not text and not pending:
                continue
            complete = data.endswith(b"\n")
            if parse is None:
                parse = self._detect(number, text)
                if parse is None:
                    continue
            try:
                message = parse(data, pending)
            except (ValueError, KeyError, TypeError, msgspec.DecodeError, csv.Error) as exc:
                pending.clear()
                where = "cut mid-line (last line has no newline)" if not complete else "not a valid record"
                self.skipped.append(Skipped(number, f"{where}: {_short(exc)}"))
                continue
            if message is not None:
                yield message
        if pending:
            self.skipped.append(Skipped(last_line, "file ends inside a quoted CSV field (cut mid-record)"))
        if parse is None and not self.skipped and last_line > 0:
            raise RecordingError(f"{self.path}: no recognisable record in {last_line} lines")
        for skip in self.skipped:
            log.debug("recording skipped path=%s %s", self.path, skip)

    def _detect(self, number: int, text: bytes) -> Any:
        """Pick the parser from the first non-empty line; raise if it matches no known format."""
        if text.startswith(b"{"):
            try:
                first = msgspec.json.decode(text)
            except msgspec.DecodeError as exc:
                if len(self.skipped) >= _DETECT_ATTEMPTS:
                    raise RecordingError(
                        f"{self.path}: lines 1-{number} hold no valid JSON record; not a wipwatch, "
                        "mosquitto_sub -F %j or dry-run recording"
                    ) from None
                self.skipped.append(Skipped(number, f"not a valid record: {_short(exc)}"))
                return None
            if not isinstance(first, dict):
                raise RecordingError(f"{self.path}: line {number} is JSON but not an object")
            if _HEADER_KEY in first:
                self.format = "native"
                self.header = first
                return _ignore_header(_parse_native)
            if "tst" in first and "topic" in first:
                self.format = "jsonl"
                return _parse_mosquitto
            if "t" in first and "topic" in first:
                self.format = "native"
                return _parse_native
            if "topic" in first and "payload" in first:
                self.format = "dry-run"
                return _parse_dry_run
            raise RecordingError(
                f"{self.path}: line {number} has keys {sorted(first)[:6]}; expected a wipwatch recording, "
                "mosquitto_sub -F %j or dry-run JSON lines"
            )
        try:
            row = next(csv.reader([text.decode("utf-8")]))
        except (UnicodeDecodeError, csv.Error):
            row = []
        unbalanced_quotes = text.count(b'"') % 2 == 1
        if (len(row) == 6 and row[2].strip().isdigit()) or (unbalanced_quotes and b"/" in text[:200]):
            self.format = "csv"
            return _parse_csv
        if [c.strip().lower() for c in row] == ["topic", "payload", "qos", "retain", "time", "delta"]:
            self.format = "csv"
            return _skip_once(_parse_csv)
        raise RecordingError(
            f"{self.path}: line {number} is neither JSON nor a 6-column mqtt-recorder CSV row "
            "(topic,payload,qos,retain,time,delta); unknown recording format"
        )


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


def _payload(record: dict[str, Any]) -> bytes:
    if "payload_b64" in record:
        return base64.b64decode(record["payload_b64"], validate=True)
    payload = record["payload"]
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if payload is None:
        return b""
    # mosquitto_sub -F %J embeds a JSON payload unquoted: re-encode it compactly
    return msgspec.json.encode(payload)


def _object(text: bytes) -> dict[str, Any]:
    record = msgspec.json.decode(text)
    if not isinstance(record, dict):
        raise ValueError("JSON but not an object")
    return record


def _qos(value: Any) -> int:
    qos = int(value)
    if qos not in (0, 1, 2):
        raise ValueError(f"qos {value!r} is not 0, 1 or 2")
    return qos


def _topic(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"topic {value!r} is not a non-empty string")
    return value


def _parse_native(text: bytes, _state: list[str]) -> Message:
    r = _object(text)
    t = r["t"]
    if not isinstance(t, int | float):
        raise ValueError(f"time {t!r} is not a number")
    return Message(_topic(r["topic"]), _payload(r), _qos(r.get("qos", 1)), bool(r.get("retain")), float(t))


def _ignore_header(parse: Any) -> Any:
    def parse_or_header(text: bytes, state: list[str]) -> Message | None:
        if text.startswith(b'{"' + _HEADER_KEY.encode()):
            return None
        return parse(text, state)  # type: ignore[no-any-return]

    return parse_or_header


def _skip_once(parse: Any) -> Any:
    seen = {"header": False}

    def parse_after_header(text: bytes, state: list[str]) -> Message | None:
        if not seen["header"]:
            seen["header"] = True
            return None
        return parse(text, state)  # type: ignore[no-any-return]

    return parse_after_header


def parse_mosquitto_time(tst: Any) -> float:
    """mosquitto_sub's ``tst`` (``2026-11-25T06:00:00.123456Z+0000``, ``...+0100``) → unix seconds.

    Fractional seconds are optional (any number of digits), and any ISO 8601 offset form is accepted
    (``Z``, ``+00:00``, ``+0000``); a time without an offset is an error, as its instant is unknown.

    Raises:
        ValueError: not a string, not ISO 8601, or no offset.
    """
    if not isinstance(tst, str):
        raise ValueError(f"tst {tst!r} is not a string")
    # mosquitto prints a literal 'Z' before the numeric offset when the offset is UTC
    text = tst.replace("Z+", "+").replace("Z-", "-")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"tst {tst!r} is not an ISO 8601 time like 2026-11-25T06:00:00.123456Z+0000"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"tst {tst!r} has no UTC offset")
    return moment.timestamp()


def _parse_mosquitto(text: bytes, _state: list[str]) -> Message:
    r = _object(text)
    return Message(
        _topic(r["topic"]),
        _payload(r),
        _qos(r.get("qos", 0)),
        bool(r.get("retain")),
        parse_mosquitto_time(r["tst"]),
    )


def _parse_dry_run(text: bytes, _state: list[str]) -> Message:
    r = _object(text)
    return Message(_topic(r["topic"]), _payload(r), _qos(r.get("qos", 1)), bool(r.get("retain")), None)


def _parse_csv(data: bytes, pending: list[str]) -> Message | None:
    pending.append(data.decode("utf-8"))
    record = "".join(pending)
    if record.count('"') % 2 == 1:
        return None  # a quoted field goes on in the next line
    pending.clear()
    rows = list(csv.reader(io.StringIO(record), strict=True))
    if len(rows) != 1 or len(rows[0]) != 6:
        got = len(rows[0]) if rows else 0
        raise ValueError(f"expected 6 CSV columns (topic,payload,qos,retain,time,delta), got {got}")
    topic, payload, qos, retain, t, _delta = rows[0]
    if retain not in ("True", "False", "0", "1", "true", "false"):
        raise ValueError(f"retain {retain!r} is not True or False")
    return Message(
        _topic(topic), payload.encode("utf-8"), _qos(qos), retain in ("True", "1", "true"), float(t)
    )


def read_recording(path: Path) -> RecordingReader:
    """A reader for ``path`` (any supported format); iterate it for the messages."""
    return RecordingReader(Path(path))


# ---------------------------------------------------------------- writing


def site_header(site_file: Path, scenario: str | None = None) -> dict[str, Any]:
    """``native`` header fields naming the site of the recorded events: its file's path and text.

    Raises:
        RecordingError: the site file cannot be read.
    """
    try:
        text = Path(site_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordingError(f"{site_file}: cannot read the site file for the recording: {exc}") from None
    header: dict[str, Any] = {"site_file": str(Path(site_file).resolve()), "site_yaml": text}
    if scenario is not None:
        header["scenario"] = scenario
    return header


def event_message(event: Event) -> Message:
    """The message an event is published as (its topic, v1 JSON, QoS 1), stamped with its event time."""
    return Message(topic_for(event), encode_event(event), 1, False, event.timestamp)


class RecordingWriter:
    """Append messages to a recording file in one of :data:`WRITE_FORMATS`.

    ``native`` is gzip-compressed; ``flush()`` ends a compressed block (``Z_SYNC_FLUSH``) so everything
    written before it can be read back even if the process is killed afterwards. ``jsonl`` stores a
    payload that is not UTF-8 as ``payload_b64``; ``csv`` cannot, and counts such messages in ``lossy``.
    Calling the writer with an event (an event sink, like ``MqttPublisher``) writes
    :func:`event_message` of it: that is ``simulate --dry-run``. ``header`` adds fields to the ``native``
    header line (``site_file``, ``site_yaml``: the site the events are of); the other formats have none.
    """

    def __init__(self, path: Path, fmt: str = "native", header: dict[str, Any] | None = None) -> None:
        if fmt not in WRITE_FORMATS:
            raise ValueError(f"fmt must be one of {', '.join(WRITE_FORMATS)}, got {fmt!r}")
        self.path = Path(path)
        self.format = fmt
        self.messages = 0
        self.lossy = 0
        self._previous: float | None = None
        try:
            self._file: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 - owned until close()
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot write recording: {exc.strerror}") from None
        self._gzip: gzip.GzipFile | None = None
        self._out: IO[bytes] | gzip.GzipFile = self._file
        if fmt == "native":
            self._gzip = gzip.GzipFile(fileobj=self._file, mode="wb", compresslevel=6)
            self._out = self._gzip
            first = {_HEADER_KEY: _VERSION, "started": time.time(), **(header or {})}
            self._out.write(msgspec.json.encode(first) + b"\n")
        self._encoder = msgspec.json.Encoder()
        self._csv_buffer = io.StringIO()
        self._csv = csv.writer(self._csv_buffer, lineterminator="\n")

    @property
    def bytes_written(self) -> int:
        """Bytes on disk so far (compressed for ``native``; exact after ``flush``)."""
        return self._file.tell()

    def __call__(self, event: Event) -> None:
        self.write(event_message(event))

    def write(self, message: Message) -> None:
        received = message.time if message.time is not None else time.time()
        if self.format == "native":
            record: dict[str, Any] = {"t": received, "topic": message.topic, "qos": message.qos}
            if message.retain:
                record["retain"] = True
            try:
                record["payload"] = message.payload.decode("utf-8")
            except UnicodeDecodeError:
                record["payload_b64"] = base64.b64encode(message.payload).decode()
            line = self._encoder.encode(record) + b"\n"
        elif self.format == "jsonl":
            line = self._encoder.encode(_mosquitto_record(message, received)) + b"\n"
        else:
            delta = 0.0 if self._previous is None else received - self._previous
            try:
                text = message.payload.decode("utf-8")
            except UnicodeDecodeError:
                self.lossy += 1
                text = message.payload.decode("utf-8", errors="replace")
            self._csv.writerow(
                [
                    message.topic,
                    text,
                    message.qos,
                    message.retain,
                    received,
                    delta,
                ]
            )
            line = self._csv_buffer.getvalue().encode("utf-8")
            self._csv_buffer.seek(0)
            self._csv_buffer.truncate()
        self._previous = received
        self._out.write(line)
        self.messages += 1

    def flush(self) -> None:
        if self._gzip is not None:
            self._gzip.flush(zlib.Z_SYNC_FLUSH)
        self._file.flush()

    def close(self) -> None:
        if self._gzip is not None:
            self._gzip.close()
        self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _mosquitto_record(message: Message, received: float) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(received).astimezone()
    offset = stamp.strftime("%z")
    # always six fractional digits, as mosquitto_sub prints them, whole seconds included
    tst = stamp.strftime("%Y-%m-%dT%H:%M:%S.%f") + ("Z" if offset == "+0000" else "") + offset
    record: dict[str, Any] = {
        "tst": tst,
        "topic": message.topic,
        "qos": message.qos,
        "retain": int(message.retain),
        "payloadlen": len(message.payload),
    }
    try:
        record["payload"] = message.payload.decode("utf-8")
    except UnicodeDecodeError:
        record["payload_b64"] = base64.b64encode(message.payload).decode()
    return record
