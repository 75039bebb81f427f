"""Event schema v1: round trips, topics, Kafka line keys, and the reasons invalid messages are rejected."""

from datetime import UTC, datetime

import msgspec
import pytest

from wipwatch.errors import EventError
from wipwatch.events import (
    PartIn,
    PartOut,
    StationState,
    decode_event,
    encode_event,
    line_key,
    parse_line_key,
    topic_for,
    validate_message,
)
from wipwatch.site import parse_site

pytestmark = pytest.mark.unit

SITE = parse_site({"site": "p1", "lines": [{"id": "l1", "locations": [{"id": "b1", "kind": "buffer"}]}]})
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def _in(**kw: object) -> PartIn:
    fields = {"v": 1, "id": "e1", "time": T0, "site": "p1", "line": "l1", "location": "b1", "part": "P1"}
    fields.update(kw)
    return PartIn(**fields)  # type: ignore[arg-type]


def test_round_trip_and_topic() -> None:
    event = _in(qty=3)
    assert topic_for(event) == "wipwatch/p1/l1/b1/in"
    decoded = validate_message(topic_for(event), encode_event(event), SITE)
    assert decoded == event
    assert decoded.timestamp == T0.timestamp()


def test_out_and_state_kinds() -> None:
    out = PartOut(v=1, id="e2", time=T0, site="p1", line="l1", location="b1", part="P1")
    state = StationState(v=1, id="e3", time=T0, site="p1", line="l1", location="b1", state="down")
    assert topic_for(out).endswith("/out") and topic_for(state).endswith("/state")
    assert isinstance(decode_event(encode_event(state)), StationState)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("wipwatch/p1/l1/b1/in", b"{not json", "not JSON"),
        ("wipwatch/p1/l1/b1/in", b'{"kind":"in","v":2}', "schema"),
        ("wipwatch/p1/l1/b1/in", encode_event(_in(time=datetime(2026, 1, 1))).replace(b"Z", b""), "timezone"),
        ("wipwatch/p1/l1/b1/out", encode_event(_in()), "does not match topic"),
        ("wipwatch/p1/l1/b2/in", encode_event(_in(location="b2")), "unknown location l1/b2"),
        ("wipwatch/p1/l1/b1/moved", encode_event(_in()), "kind 'moved'"),
        ("factory/p1/l1/b1/in", encode_event(_in()), "is not wipwatch/"),
        ("wipwatch/p1/l1/b1/in", encode_event(_in()).replace(b'"qty":1', b'"qty":0'), "qty"),
    ],
)
def test_invalid_messages_name_the_reason(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(EventError, match=reason):
        validate_message(topic, payload, SITE)


def test_unknown_field_is_rejected() -> None:
    payload = encode_event(_in())[:-1] + b',"colour":"red"}'
    with pytest.raises(EventError, match="colour"):
        decode_event(payload)


def test_line_keys_round_trip_and_a_key_without_a_slash_is_named() -> None:
    assert line_key("p1", "l1") == b"p1/l1"
    assert parse_line_key(b"p1/l1") == ("p1", "l1")
    assert parse_line_key(line_key("p1", "l.2-x")) == ("p1", "l.2-x")
    with pytest.raises(EventError, match="b'p1l1' is not <site>/<line>"):
        parse_line_key(b"p1l1")


@pytest.mark.parametrize("field", ["site", "line", "location"])
def test_an_identifier_with_a_trailing_newline_is_rejected_like_the_site_file_does(field: str) -> None:
    payload = encode_event(_in(**{field: "l1\n"}))
    with pytest.raises(EventError, match=f"schema: Expected `str` matching regex .* - at `\\$.{field}`"):
        decode_event(payload)


def test_ingests_unchecked_schema_is_the_event_schema_but_for_the_identifier_patterns() -> None:
    """IngestValidator decodes with copies of the event classes whose identifiers are plain strings."""
    from wipwatch.events import _UncheckedIn, _UncheckedOut, _UncheckedState

    def described(cls: type) -> list[tuple[str, object, object]]:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        fields = []
        for f in info.fields:
            kind = repr(f.type)
            if f.name in ("site", "line", "location"):
                assert isinstance(f.type, msgspec.inspect.StrType)
                kind = repr(msgspec.inspect.StrType())  # the one difference: no pattern
            fields.append((f.name, kind, f.default))
        return [("tag", info.tag_field, info.tag), ("forbid", "", info.forbid_unknown_fields), *fields]

    for strict, unchecked in (
        (PartIn, _UncheckedIn),
        (PartOut, _UncheckedOut),
        (StationState, _UncheckedState),
    ):
        assert described(strict) == described(unchecked)
        assert msgspec.inspect.type_info(strict).fields[3].type.pattern  # type: ignore[attr-defined]
