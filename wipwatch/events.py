"""Event schema v1: part movements and station state changes, and their MQTT topics.

A part movement says: part P (of SKU S, quantity q) moved into (``in``) or out of (``out``) location L on
line N of site S at event time t. A station state change says station L is now working, down, in
changeover or idle; starvation and blocking are derived by the processors. Every event carries a unique
``id`` for de-duplication and ``v`` = 1. The topic repeats the identity, unified-namespace style::

    wipwatch/<site>/<line>/<location>/<kind>        kind: in | out | state

On Kafka, one record of the events topic carries a JSON array of events of one line (``pack_events``):
a Faust stream pays ~90 µs per record here whatever its size (measured, docs/metrics.md), so ingest packs
the events it forwards together. ``decode_record`` also takes a record holding one event object.

msgspec decodes on the hot path (ingest and processors); ``docs/events.md`` has the schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, get_args

import msgspec

from wipwatch.errors import EventError, Rejection
from wipwatch.identifiers import IDENT_PATTERN
from wipwatch.site import Site

SCHEMA_VERSION: Final = 1
TOPIC_ROOT: Final = "wipwatch"
#: Topic filter that matches every event topic (and nothing of wipwatch's own deeper topics).
EVENT_TOPIC_FILTER: Final = f"{TOPIC_ROOT}/+/+/+/+"
#: wipwatch's own output (alerts) lives beside the events; ingest skips it.
ALERTS_TOPIC_ROOT: Final = f"{TOPIC_ROOT}/alerts"

# Limits (docs/events.md lists each and what happens beyond it). Every number must survive the whole
# pipeline: msgpack in the processors' state (64-bit integers), InfluxDB's time range, a Kafka record.
#: Largest MQTT payload ingest decodes; a valid event is under 1 KiB, the rest is room for whitespace.
MAX_PAYLOAD_BYTES: Final = 16 * 1024
#: Largest ``qty`` of one movement.
MAX_QTY: Final = 1_000_000
#: Event times must lie in [EARLIEST_TIME, LATEST_TIME).
EARLIEST_TIME: Final = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TIME: Final = datetime(2100, 1, 1, tzinfo=UTC)
EARLIEST_TS: Final = EARLIEST_TIME.timestamp()
LATEST_TS: Final = LATEST_TIME.timestamp()
#: How much of a topic or payload a rejection reason quotes.
_QUOTE = 120

#: msgspec matches with Python's ``re``, whose ``$`` also matches before a final newline ("l1\n" passed);
#: ``\Z`` does not. (The site file's pydantic uses a regex engine without that gap.)
Ident = Annotated[str, msgspec.Meta(pattern=IDENT_PATTERN.removesuffix("$") + r"\Z")]
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
PartId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
EventTime = Annotated[datetime, msgspec.Meta(tz=True)]
#: The states a station reports, most productive first (a station of several machines shows the first
#: state any of its machines is in, docs/simulators.md).
StationStateName = Literal["working", "changeover", "down", "idle"]
STATION_STATES: Final[tuple[StationStateName, ...]] = get_args(StationStateName)
#: States in which a station is *active* in the active-period method (docs/metrics.md, "Bottleneck").
ACTIVE_STATES: frozenset[StationStateName] = frozenset({"working", "changeover", "down"})
#: What the processors (and the simulator's ground truth) split a station's time into: its reported state
#: while active; while idle, ``blocked`` holding parts, else ``starved`` on shift, else ``off_shift``
#: (docs/simulators.md, "Station states, starved and blocked").
StationCategory = Literal["working", "changeover", "down", "blocked", "starved", "off_shift"]
STATION_CATEGORIES: Final[tuple[StationCategory, ...]] = get_args(StationCategory)


Sku = Annotated[str, msgspec.Meta(max_length=64)]
Qty = Annotated[int, msgspec.Meta(ge=1, le=MAX_QTY)]


class _EventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", forbid_unknown_fields=True):
    v: Literal[1]
    id: EventId
    time: EventTime
    site: Ident
    line: Ident
    location: Ident

    @property
    def timestamp(self) -> float:
        """Event time as POSIX seconds."""
        return self.time.timestamp()


class _PartMovement(_EventBase, frozen=True, kw_only=True):
    part: PartId
    sku: Sku = ""
    qty: Qty = 1


class PartIn(_PartMovement, frozen=True, kw_only=True, tag="in"):
    """Part ``part`` arrived at ``location``."""


class PartOut(_PartMovement, frozen=True, kw_only=True, tag="out"):
    """Part ``part`` left ``location``."""


class StationState(_EventBase, frozen=True, kw_only=True, tag="state"):
    """Station ``location`` changed state (working, down, changeover, idle)."""

    state: StationStateName
    part: PartId | None = None


Event = PartIn | PartOut | StationState
EVENT_KINDS: Final = ("in", "out", "state")


# The same schema with the identifiers as plain strings, for ingest (``IngestValidator``). msgspec checks
# an ``Ident`` by calling Python's ``re`` on each of the three: ~3 of the ~4 µs a strict decode took here
# (issue #16, bench/ingest_cpu.py). Ingest decodes with these and compares the identifiers against those
# the strict decoder has already accepted (``_IdentCache``); any other message is decoded strictly again,
# so its verdict and reason are the strict decoder's. tests/unit/test_events.py keeps the two schemas
# equal but for the patterns.
class _UncheckedBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", forbid_unknown_fields=True):
    v: Literal[1]
    id: EventId
    time: EventTime
    site: str
    line: str
    location: str

    @property
    def timestamp(self) -> float:
        return self.time.timestamp()


class _UncheckedMovement(_UncheckedBase, frozen=True, kw_only=True):
    part: PartId
    sku: Sku = ""
    qty: Qty = 1


class _UncheckedIn(_UncheckedMovement, frozen=True, kw_only=True, tag="in"):
    pass


class _UncheckedOut(_UncheckedMovement, frozen=True, kw_only=True, tag="out"):
    pass


class _UncheckedState(_UncheckedBase, frozen=True, kw_only=True, tag="state"):
    state: StationStateName
    part: PartId | None = None


_Decoded = Event | _UncheckedIn | _UncheckedOut | _UncheckedState
_KIND_OF: Final[dict[type, str]] = {
    PartIn: "in",
    PartOut: "out",
    StationState: "state",
    _UncheckedIn: "in",
    _UncheckedOut: "out",
    _UncheckedState: "state",
}

_decoder = msgspec.json.Decoder(Event)
_unchecked_decoder = msgspec.json.Decoder(_UncheckedIn | _UncheckedOut | _UncheckedState)
_list_decoder = msgspec.json.Decoder(list[Event])
_encoder = msgspec.json.Encoder()


def topic_for(event: Event) -> str:
    """The MQTT topic an event is published on."""
    return f"{TOPIC_ROOT}/{event.site}/{event.line}/{event.location}/{event_kind(event)}"


def event_kind(event: Event) -> str:
    return _KIND_OF[type(event)]


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def _quote(text: str) -> str:
    return repr(text if len(text) <= _QUOTE else text[:_QUOTE] + "…")


def decode_event(payload: bytes) -> Event:
    """Decode one JSON payload; no topic, size, duplicate-key or range checks (``validate_message`` has them).

    Raises:
        EventError: the payload is not a valid v1 event; the reason names the field.
    """
    try:
        event: Event = _decoder.decode(payload)
        return event
    except msgspec.ValidationError as exc:
        raise EventError(f"schema: {exc}", Rejection.SCHEMA) from None
    except msgspec.DecodeError as exc:
        raise EventError(f"not JSON: {exc}", Rejection.NOT_JSON) from None
    except RecursionError:
        raise EventError("too deep: JSON nested deeper than the decoder allows", Rejection.TOO_DEEP) from None


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise EventError(f"duplicate key: {key!r} given twice", Rejection.DUPLICATE_KEY)
        seen.add(key)


#: Every key an event may have, as it appears in a payload without escapes.
_QUOTED_KEYS: Final = tuple(
    sorted(
        f'"{name}"'.encode()
        for name in {"kind", *(f for cls in (PartIn, PartOut, StationState) for f in cls.__struct_fields__)}
    )
)


def _keys_at_most_once(payload: bytes) -> bool:
    """True when no key can appear twice; False when unsure (then the caller looks closer).

    Without a backslash, no string can hold a quote or spell a key with escapes, so every key appears
    as ``"name"``, never right after a colon; a value spelling a key (``"kind":"state"``) does.
    """
    if b"\\" in payload:
        return False
    for key in _QUOTED_KEYS:
        n = payload.count(key)
        if n > 1 and n - payload.count(b":" + key) > 1:
            return False
    return True


def _keys_once_by_count(payload: bytes, event: _Decoded) -> bool:
    """True when ``payload``, which decoded as ``event``, provably names no key twice; False when unsure.

    Without a backslash every ``"`` delimits a string, so the payload holds ``count('"') / 2`` strings,
    each a key or a value (the object is flat: an event has no nested field). The decoded event gives a
    lower bound on the distinct keys (the required ones; an optional one whose value is not its default,
    or spelled ``"name":``: a closing quote is never followed by a letter, and only a key by a colon)
    and on the string values (msgspec decodes a string, a datetime or a string literal only from a JSON
    string, so each key present whose value decoded as one holds a string). Keys = strings - string
    values <= strings - their lower bound; when that is at most the distinct keys' lower bound, every key
    appears once. msgspec's own encoding (wipwatch's publisher, simulators, replays) always proves here;
    a payload with a backslash, or an optional key written ``"sku" :`` at its default, falls back.
    """
    if b"\\" in payload:
        return False
    # required keys: kind v id time site line location, and state or part; their string values: all but v.
    # msgspec's encoding ends with `"part":null}` or `"qty":1}`: a look at the end is cheaper than a scan
    keys, values = 8, 7
    if type(event) is StationState or type(event) is _UncheckedState:
        if event.part is not None:
            keys, values = 9, 8
        elif payload.endswith(b'"part":null}') or b'"part":' in payload:
            keys += 1
    else:
        if event.sku or b'"sku":' in payload:  # type: ignore[union-attr]
            keys, values = keys + 1, values + 1
        if event.qty != 1 or payload.endswith(b'"qty":1}') or b'"qty":' in payload:  # type: ignore[union-attr]
            keys += 1
    return payload.count(b'"') // 2 - values <= keys


def check_duplicate_keys(payload: bytes, event: _Decoded | None = None) -> None:
    """Refuse a JSON object that names a key twice (msgspec, like most decoders, keeps the last one).

    Only for payloads that decoded as an event (so every key is one of ``_QUOTED_KEYS``), given as
    ``event`` for the cheapest exact check (``_keys_once_by_count``, ~0.3 µs). When it is unsure, a fast
    exact scan (~1.5 µs); when that is unsure, the json module lists the keys (~5 µs; msgspec's whole
    decode: ~1.1 µs).

    Raises:
        EventError: a key appears twice.
    """
    if event is not None and _keys_once_by_count(payload, event):
        return
    if _keys_at_most_once(payload):
        return
    try:
        json.loads(payload, object_pairs_hook=_refuse_duplicate_keys)
    except RecursionError:
        raise EventError("too deep: JSON nested deeper than the decoder allows", Rejection.TOO_DEEP) from None
    except ValueError as exc:  # msgspec accepted it; only a json-module quirk lands here
        raise EventError(f"not JSON: {exc}", Rejection.NOT_JSON) from None


def check_time(event: _Decoded, received_at: float | None = None, max_ahead_s: float = float("inf")) -> None:
    """Refuse an event time outside [EARLIEST_TIME, LATEST_TIME) or ``max_ahead_s`` ahead of ``received_at``.

    Raises:
        EventError: the time is out of range (``out_of_range``) or ahead of the receiver's clock (``ahead``).
    """
    t = event.timestamp
    if not EARLIEST_TS <= t < LATEST_TS:
        raise EventError(
            f"out of range: time {event.time.isoformat()} is not in "
            f"[{EARLIEST_TIME.date()}, {LATEST_TIME.date()}) - at `$.time`",
            Rejection.OUT_OF_RANGE,
        )
    if received_at is not None and t > received_at + max_ahead_s:
        raise EventError(
            f"ahead: time {event.time.isoformat()} is {t - received_at:.0f} s ahead of the clock at "
            f"receipt (limit {max_ahead_s:g} s) - at `$.time`",
            Rejection.AHEAD,
        )


def pack_events(payloads: list[bytes]) -> bytes:
    """One Kafka record value from already validated JSON event payloads: a JSON array, in order."""
    return b"[" + b",".join(payloads) + b"]"


def line_key(site: str, line: str) -> bytes:
    """Kafka key of a line's events: ``<site>/<line>``."""
    return f"{site}/{line}".encode()


def parse_line_key(key: bytes) -> tuple[str, str]:
    """``(site, line)`` of a Kafka key built by ``line_key``.

    Raises:
        EventError: the key has no ``/``.
    """
    site, slash, line = key.decode(errors="replace").partition("/")
    if not slash:
        raise EventError(f"Kafka key {key!r} is not <site>/<line>")
    return site, line


def pack_by_line(events: Iterable[Event], per_record: int) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` records as ingest builds them: consecutive events of one line, ``per_record`` at most.

    Raises:
        ValueError: ``per_record`` is below 1.
    """
    if per_record < 1:
        raise ValueError(f"per_record must be >= 1, got {per_record}")
    records: list[tuple[bytes, bytes]] = []
    packs: dict[bytes, list[bytes]] = {}
    for event in events:
        key = line_key(event.site, event.line)
        pack = packs.setdefault(key, [])
        pack.append(encode_event(event))
        if len(pack) == per_record:
            records.append((key, pack_events(pack)))
            packs[key] = []
    return records + [(key, pack_events(pack)) for key, pack in packs.items() if pack]


def decode_record(value: bytes) -> list[Event]:
    """Decode an events-topic record: a JSON array of events (``pack_events``) or one event object.

    Raises:
        EventError: the record is not valid; the reason names the field (a bad element fails the record).
    """
    try:
        if value[:1] == b"[":
            events: list[Event] = _list_decoder.decode(value)
            return events
        return [_decoder.decode(value)]
    except msgspec.ValidationError as exc:
        raise EventError(f"schema: {exc}", Rejection.SCHEMA) from None
    except msgspec.DecodeError as exc:
        raise EventError(f"not JSON: {exc}", Rejection.NOT_JSON) from None
    except RecursionError:
        raise EventError("too deep: JSON nested deeper than the decoder allows", Rejection.TOO_DEEP) from None


class _IdentCache:
    """Identifiers the strict decoder has accepted (``Ident``), so that ingest need not test them again.

    Filled only from events the strict decoder returned, so a name in here passed msgspec's own check.
    Bounded: a publisher inventing names fills it once, then its new names go the strict way each time.
    """

    LIMIT: Final = 10_000

    def __init__(self) -> None:
        self.names: set[str] = set()

    def decode(self, payload: bytes) -> _Decoded:
        """``decode_event``'s result and errors, without its pattern checks for identifiers seen before."""
        try:
            event: _Decoded = _unchecked_decoder.decode(payload)
        except (msgspec.DecodeError, RecursionError):
            return decode_event(payload)  # it fails too, with the strict decoder's reason
        names = self.names
        if event.site in names and event.line in names and event.location in names:
            return event
        strict = decode_event(payload)
        if len(names) < self.LIMIT:
            names.update((strict.site, strict.line, strict.location))
        return strict


def _check(
    topic: str,
    payload: bytes,
    site: Site | None,
    received_at: float | None,
    max_ahead_s: float,
    decode: Callable[[bytes], _Decoded],
) -> _Decoded:
    """``validate_message``'s checks, in its order, with ``decode`` for the payload."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != TOPIC_ROOT:
        raise EventError(
            f"topic {_quote(topic)} is not {TOPIC_ROOT}/<site>/<line>/<location>/<kind>", Rejection.TOPIC
        )
    _, site_id, line_id, location_id, kind = parts
    if kind not in EVENT_KINDS:
        raise EventError(
            f"topic {_quote(topic)}: kind {_quote(kind)} is not one of {', '.join(EVENT_KINDS)}",
            Rejection.TOPIC,
        )
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise EventError(
            f"too large: payload of {len(payload)} bytes, at most {MAX_PAYLOAD_BYTES}", Rejection.TOO_LARGE
        )
    event = decode(payload)
    check_duplicate_keys(payload, event)
    check_time(event, received_at, max_ahead_s)
    said = (event.site, event.line, event.location, _KIND_OF[type(event)])
    if said != (site_id, line_id, location_id, kind):
        raise EventError(
            f"payload identity {'/'.join(said)} does not match topic {_quote(topic)}", Rejection.IDENTITY
        )
    if site is not None:
        if event.site != site.site:
            raise EventError(
                f"unknown site {event.site!r} (site file describes {site.site!r})", Rejection.UNKNOWN_SITE
            )
        if not site.has_location(event.line, event.location):
            raise EventError(
                f"unknown location {event.line}/{event.location} in site {site.site!r}",
                Rejection.UNKNOWN_LOCATION,
            )
    return event


class IngestValidator:
    """``validate_message`` for a stream of messages, as ingest runs it: the same verdicts and reasons.

    A message that provably passes every check of ``validate_message`` is accepted on a fast path; any
    other goes through ``validate_message``'s own checks (``_check``), which accept it or raise its
    error. The fast path (issue #16, bench/ingest_cpu.py): the schema without the identifier patterns,
    with the identifiers looked up among those the strict decoder accepted before (``_IdentCache``); the
    duplicate-key proof by counting (``_keys_once_by_count``); the topic compared whole with the one the
    event names (the identifiers hold no ``/``, so it splits into the same five parts); and no nested
    calls.

    Args:
        site: the site file; without it any site, line and location are accepted.
        max_ahead_s: allowed clock skew of the floor's clocks (``WIPWATCH_MAX_CLOCK_AHEAD_S``).
    """

    def __init__(self, site: Site | None = None, max_ahead_s: float = float("inf")) -> None:
        self.site = site
        self.max_ahead_s = max_ahead_s
        self._idents = _IdentCache()
        self._site_id = site.site if site is not None else None
        self._locations = (
            frozenset((line.id, loc.id) for line, loc in site.iter_locations()) if site is not None else None
        )

    def line_of(self, topic: str, payload: bytes, received_at: float) -> tuple[str, str]:
        """The (site, line) of a valid message received at ``received_at`` (POSIX seconds).

        Raises:
            EventError: with the reason ``validate_message`` gives and its ``kind``.
        """
        event: _Decoded | None
        try:
            event = _unchecked_decoder.decode(payload) if len(payload) <= MAX_PAYLOAD_BYTES else None
        except (msgspec.DecodeError, RecursionError):
            event = None  # _check names the error
        if event is not None:
            names = self._idents.names
            site_id, line_id, location_id = event.site, event.line, event.location
            t = event.time.timestamp()
            if (
                site_id in names
                and line_id in names
                and location_id in names
                and EARLIEST_TS <= t < LATEST_TS
                and t <= received_at + self.max_ahead_s
                and topic == f"{TOPIC_ROOT}/{site_id}/{line_id}/{location_id}/{_KIND_OF[type(event)]}"
                and (
                    self._locations is None
                    or (site_id == self._site_id and (line_id, location_id) in self._locations)
                )
                and _keys_once_by_count(payload, event)
            ):
                return site_id, line_id
        checked = _check(topic, payload, self.site, received_at, self.max_ahead_s, self._idents.decode)
        return checked.site, checked.line


def validate_message(
    topic: str,
    payload: bytes,
    site: Site | None = None,
    received_at: float | None = None,
    max_ahead_s: float = float("inf"),
) -> Event:
    """Decode an MQTT message and check it against its topic, the limits and, if given, the site file.

    Args:
        topic: the MQTT topic it came on.
        payload: the raw payload.
        site: the site file; without it any site, line and location are accepted.
        received_at: wall-clock POSIX seconds at receipt; with it, an event time more than
            ``max_ahead_s`` later is refused as ``ahead``.
        max_ahead_s: allowed clock skew of the floor's clocks (``WIPWATCH_MAX_CLOCK_AHEAD_S``).

    Raises:
        EventError: with the reason a dead-letter record carries and its ``kind``.
    """
    event = _check(topic, payload, site, received_at, max_ahead_s, decode_event)
    assert not isinstance(event, _UncheckedBase)  # decode_event returns the strict classes
    return event
