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

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Final, Literal, get_args

import msgspec

from wipwatch.errors import EventError
from wipwatch.site import IDENT_PATTERN, Site

SCHEMA_VERSION: Final = 1
TOPIC_ROOT: Final = "wipwatch"
#: Topic filter that matches every event topic (and nothing of wipwatch's own deeper topics).
EVENT_TOPIC_FILTER: Final = f"{TOPIC_ROOT}/+/+/+/+"
#: wipwatch's own output (alerts) lives beside the events; ingest skips it.
ALERTS_TOPIC_ROOT: Final = f"{TOPIC_ROOT}/alerts"

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
    sku: Annotated[str, msgspec.Meta(max_length=64)] = ""
    qty: Annotated[int, msgspec.Meta(ge=1)] = 1


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

_decoder = msgspec.json.Decoder(Event)
_list_decoder = msgspec.json.Decoder(list[Event])
_encoder = msgspec.json.Encoder()


def topic_for(event: Event) -> str:
    """The MQTT topic an event is published on."""
    return f"{TOPIC_ROOT}/{event.site}/{event.line}/{event.location}/{event_kind(event)}"


def event_kind(event: Event) -> str:
    return "in" if isinstance(event, PartIn) else "out" if isinstance(event, PartOut) else "state"


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(payload: bytes) -> Event:
    """Decode one JSON payload without topic or site checks.

    Raises:
        EventError: the payload is not a valid v1 event; the reason names the field.
    """
    try:
        event: Event = _decoder.decode(payload)
        return event
    except msgspec.ValidationError as exc:
        raise EventError(f"schema: {exc}") from None
    except msgspec.DecodeError as exc:
        raise EventError(f"not JSON: {exc}") from None


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
        raise EventError(f"schema: {exc}") from None
    except msgspec.DecodeError as exc:
        raise EventError(f"not JSON: {exc}") from None


def validate_message(topic: str, payload: bytes, site: Site | None = None) -> Event:
    """Decode an MQTT message and check it against its topic and, if given, the site file.

    Raises:
        EventError: with the reason a dead-letter record carries.
    """
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != TOPIC_ROOT:
        raise EventError(f"topic {topic!r} is not {TOPIC_ROOT}/<site>/<line>/<location>/<kind>")
    _, site_id, line_id, location_id, kind = parts
    if kind not in EVENT_KINDS:
        raise EventError(f"topic {topic!r}: kind {kind!r} is not one of {', '.join(EVENT_KINDS)}")
    event = decode_event(payload)
    said = (event.site, event.line, event.location, event_kind(event))
    if said != (site_id, line_id, location_id, kind):
        raise EventError(f"payload identity {'/'.join(said)} does not match topic {topic!r}")
    if site is not None:
        if event.site != site.site:
            raise EventError(f"unknown site {event.site!r} (site file describes {site.site!r})")
        if not site.has_location(event.line, event.location):
            raise EventError(f"unknown location {event.line}/{event.location} in site {site.site!r}")
    return event
