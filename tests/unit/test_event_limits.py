"""Every limit of docs/events.md: what the validator refuses, with which reason kind; the dead letter."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from wipwatch.errors import EventError, Rejection
from wipwatch.events import MAX_PAYLOAD_BYTES, MAX_QTY, IngestValidator, validate_message
from wipwatch.ingest.bridge import DEADLETTER_PAYLOAD_BYTES, deadletter_record

pytestmark = pytest.mark.unit

TOPIC = "wipwatch/demo-plant/line1/b-cut/in"
NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC).timestamp()


STATE = (
    b'{"kind":"state","v":1,"id":"e1","time":"2026-11-25T06:00:00Z","site":"demo-plant","line":"line1",'
    b'"location":"b-cut","state":"idle","part":null}'
)


def payload(**fields: object) -> bytes:
    event: dict[str, object] = {
        "kind": "in",
        "v": 1,
        "id": "e1",
        "time": "2026-11-25T06:00:00Z",
        "site": "demo-plant",
        "line": "line1",
        "location": "b-cut",
        "part": "p1",
        "qty": 1,
    }
    event.update(fields)
    return json.dumps(event).encode()


def rejection(topic: str, data: bytes, **kwargs: float) -> EventError:
    """validate_message's error; ingest's validator, with the identifiers seen before, gives the same."""
    with pytest.raises(EventError) as caught:
        validate_message(topic, data, None, **kwargs)
    ingest = IngestValidator(None, kwargs.get("max_ahead_s", float("inf")))
    assert ingest.line_of(TOPIC, payload(), NOW) == ("demo-plant", "line1")  # now on its fast path
    with pytest.raises(EventError) as fast:
        ingest.line_of(topic, data, kwargs.get("received_at", NOW))
    assert (fast.value.reason, fast.value.kind) == (caught.value.reason, caught.value.kind)
    return caught.value


def test_a_valid_event_passes_every_limit() -> None:
    event = validate_message(TOPIC, payload(qty=MAX_QTY), received_at=NOW, max_ahead_s=300)
    assert event.qty == MAX_QTY  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "kind", "text"),
    [
        (payload(qty=MAX_QTY + 1), Rejection.SCHEMA, "<= 1000000 - at `$.qty`"),
        (payload(qty=10**30), Rejection.SCHEMA, "at `$.qty`"),
        (payload(qty=0), Rejection.SCHEMA, ">= 1 - at `$.qty`"),
        (payload(time="2999-01-01T00:00:00Z"), Rejection.OUT_OF_RANGE, "2999-01-01"),
        (payload(time="1970-01-01T00:00:00Z"), Rejection.OUT_OF_RANGE, "1970-01-01"),
        (payload(time="2026-11-25T06:06:00Z"), Rejection.AHEAD, "360 s ahead"),
        (b'{"kind":"in","qty":1,"qty":2}', Rejection.SCHEMA, "missing required field"),
        (payload()[:-1] + b', "qty": 7}', Rejection.DUPLICATE_KEY, "'qty' given twice"),
        (payload()[:-1] + b', "q\\u0074y": 7}', Rejection.DUPLICATE_KEY, "'qty' given twice"),
        (payload(sku="a")[:-1] + b', "sku" : "b"}', Rejection.DUPLICATE_KEY, "'sku' given twice"),
        (payload(qty=2)[:-1] + b',"qty":2}', Rejection.DUPLICATE_KEY, "'qty' given twice"),
        (payload(sku="")[:-1] + b',"sku":""}', Rejection.DUPLICATE_KEY, "'sku' given twice"),
        (payload()[:-1] + b',"kind":"in"}', Rejection.DUPLICATE_KEY, "'kind' given twice"),
        (payload()[:-1] + b',"line":"line1"}', Rejection.DUPLICATE_KEY, "'line' given twice"),
        (STATE[:-1] + b',"part":null}', Rejection.DUPLICATE_KEY, "'part' given twice"),
        (STATE.replace(b'"part":null', b'"part":"p1","part":"p1"'), Rejection.DUPLICATE_KEY, "'part' given"),
        (b"[" * 20_000 + b"]" * 20_000, Rejection.TOO_LARGE, f"at most {MAX_PAYLOAD_BYTES}"),
        (b'{"x":' + b"[" * 8000 + b"]" * 8000 + b',"kind":"in"}', Rejection.TOO_DEEP, "too deep"),
        (b"\xff\xfe", Rejection.NOT_JSON, "not JSON"),
    ],
)
def test_each_limit_is_refused_with_its_kind(data: bytes, kind: Rejection, text: str) -> None:
    error = rejection(TOPIC, data, received_at=NOW, max_ahead_s=300)
    assert error.kind is kind, error.reason
    assert text in error.reason


@pytest.mark.parametrize(
    ("topic", "data", "kind"),
    [
        ("wipwatch/demo-plant/line1\n/b-cut/in", payload(line="line1\n"), Rejection.SCHEMA),
        ("wipwatch/demo-plant/line1/-cut/in", payload(location="-cut"), Rejection.SCHEMA),
        ("wipwatch/demo-plant/line1/b/cut/in", payload(location="b/cut"), Rejection.TOPIC),
    ],
)
def test_an_identifier_off_its_pattern_is_refused_without_a_site_file(
    topic: str, data: bytes, kind: Rejection
) -> None:
    """Without a site file only the pattern guards the identifiers, whatever ingest has seen before."""
    assert rejection(topic, data).kind is kind


def test_a_value_that_spells_a_key_is_no_duplicate() -> None:
    event = validate_message(TOPIC, payload(sku="qty", part="part"))
    assert (event.sku, event.part) == ("qty", "part")  # type: ignore[union-attr]


def test_a_time_within_the_skew_and_an_old_time_pass() -> None:
    validate_message(TOPIC, payload(time="2026-11-25T06:04:59Z"), received_at=NOW, max_ahead_s=300)
    validate_message(TOPIC, payload(time="2001-01-01T00:00:00Z"), received_at=NOW, max_ahead_s=300)


def test_a_huge_topic_is_quoted_short_in_the_reason() -> None:
    error = rejection("x" * 60_000, payload())
    assert error.kind is Rejection.TOPIC
    assert len(error.reason) < 300


def test_the_reason_kinds_are_a_fixed_set_whatever_the_topics() -> None:
    kinds = {rejection(f"wipwatch/s{i}/l/loc/bad{i}", payload()).kind for i in range(50)}
    kinds |= {rejection(f"bad{i}/x", payload()).kind for i in range(50)}
    assert kinds == {Rejection.TOPIC}


def test_dead_letter_of_an_oversized_payload_is_truncated_with_size_and_hash() -> None:
    big = b"a" * (2 * 1024 * 1024)
    record = json.loads(deadletter_record("t" * 5000, big, "too large", NOW, "ingest-1", Rejection.TOO_LARGE))
    assert record["truncated"] is True
    assert record["size"] == len(big)
    assert record["sha256"] == hashlib.sha256(big).hexdigest()
    assert len(record["payload"]) == DEADLETTER_PAYLOAD_BYTES
    assert len(record["topic"]) == 1024
    assert record["kind"] == "too_large"


def test_dead_letter_of_a_small_payload_keeps_it_whole() -> None:
    record = json.loads(
        deadletter_record(TOPIC, b"\xff\x00", "not JSON", NOW, "ingest-1", Rejection.NOT_JSON)
    )
    assert (record["truncated"], record["size"], record["payload_encoding"]) == (False, 2, "base64")
