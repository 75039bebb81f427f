"""Property tests (Hypothesis) on hostile input: the ingest validator and the line engine.

Whatever the bytes, the validator raises nothing but ``EventError``; whatever the field values, the engine
raises nothing, never counts ``internal`` (the catch-all stays unused), keeps its clock in range and its
state dumps and loads to the same bytes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.conftest import EXAMPLE_SITE
from wipwatch.errors import EventError, Rejection
from wipwatch.events import (
    EARLIEST_TS,
    LATEST_TS,
    MAX_QTY,
    Event,
    IngestValidator,
    PartIn,
    PartOut,
    StationState,
    _keys_once_by_count,  # ingest's fast path, tested on its own: a wrong True would hide behind no error
    _unchecked_decoder,
    check_duplicate_keys,
    validate_message,
)
from wipwatch.processors.metrics.line_state import EngineConfig, LineEngine
from wipwatch.site import load_site

pytestmark = pytest.mark.unit

SITE = load_site(EXAMPLE_SITE)
LINE = SITE.lines[0]
LOCATIONS = [loc.id for loc in LINE.locations]
TOPIC = f"wipwatch/{SITE.site}/{LINE.id}/{LOCATIONS[0]}/in"
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
CONFIG = EngineConfig(lateness_s=5, dedup_horizon_s=3600, max_ahead_s=300)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
any_int = st.integers(min_value=-(10**40), max_value=10**40)
any_time = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC) | st.none()
) | st.builds(lambda s: T0 + timedelta(seconds=s), st.floats(-1e6, 1e6))
any_text = st.text(max_size=200)
any_field = json_values | any_int | any_text


def valid_fields() -> dict[str, Any]:
    return {
        "kind": "in",
        "v": 1,
        "id": "e1",
        "time": "2026-11-25T06:00:00Z",
        "site": SITE.site,
        "line": LINE.id,
        "location": LOCATIONS[0],
        "part": "p1",
        "qty": 1,
    }


#: Ingest's validator, its identifier cache filled as the examples go (its fast path), and a new one
#: for every example (the strict way).
INGEST = IngestValidator(SITE, 300)


def check_validator(topic: str, payload: bytes) -> None:
    """validate_message raises nothing but EventError, and ingest's validator gives the same verdict."""
    ingest = [INGEST, IngestValidator(SITE, 300)]
    try:
        event = validate_message(topic, payload, SITE, received_at=T0.timestamp(), max_ahead_s=300)
    except EventError as exc:
        assert exc.reason and exc.kind
        for validator in ingest:
            with pytest.raises(EventError) as fast:
                validator.line_of(topic, payload, T0.timestamp())
            assert (fast.value.reason, fast.value.kind) == (exc.reason, exc.kind)
        return
    assert all(v.line_of(topic, payload, T0.timestamp()) == (event.site, event.line) for v in ingest)
    assert EARLIEST_TS <= event.timestamp <= T0.timestamp() + 300
    if isinstance(event, PartIn | PartOut):
        assert 1 <= event.qty <= MAX_QTY


@FUZZ
@given(topic=any_text, payload=st.binary(max_size=2000))
def test_validator_on_arbitrary_bytes(topic: str, payload: bytes) -> None:
    check_validator(topic, payload)


@FUZZ
@given(value=json_values)
def test_validator_on_arbitrary_json(value: Any) -> None:
    check_validator(TOPIC, json.dumps(value).encode())


@FUZZ
@given(
    changes=st.dictionaries(st.sampled_from([*valid_fields(), "extra"]), any_field, max_size=3),
    repeat=st.none() | st.sampled_from(list(valid_fields())),
)
def test_validator_on_a_valid_event_with_arbitrary_field_values(
    changes: dict[str, Any], repeat: str | None
) -> None:
    fields = {**valid_fields(), **changes}
    text = json.dumps(fields)
    if repeat is not None:  # the same key twice
        text = text[:-1] + f", {json.dumps(repeat)}: {json.dumps(fields.get(repeat))}" + "}"
    check_validator(TOPIC, text.encode())


def any_event() -> st.SearchStrategy[Event]:
    common = {
        "v": st.just(1) | any_int,
        "id": st.text(min_size=1, max_size=3) | any_text,
        "time": any_time,
        "site": st.just(SITE.site) | any_text,
        "line": st.just(LINE.id) | any_text,
        "location": st.sampled_from(LOCATIONS) | any_text,
    }
    movement = {
        "part": st.text(min_size=1, max_size=2) | any_text,
        "sku": any_text,
        "qty": st.just(1) | any_int,
    }
    sane = {**common, "site": st.just(SITE.site), "line": st.just(LINE.id), "v": st.just(1)}
    return st.one_of(
        st.builds(PartIn, **common, **movement),
        st.builds(PartOut, **common, **movement),
        st.builds(PartIn, **sane, part=st.sampled_from(["p1", "p2", "p3"]), qty=st.integers(1, 3)),
        st.builds(PartOut, **sane, part=st.sampled_from(["p1", "p2", "p3"]), qty=st.integers(1, 3)),
        st.builds(
            StationState,
            **common,
            state=st.sampled_from(["working", "down", "changeover", "idle"]) | any_text,
            part=st.none() | any_text,
        ),
    )


@FUZZ
@given(
    records=st.lists(st.lists(any_event(), max_size=6), max_size=6),
    received=st.lists(st.none() | st.floats(EARLIEST_TS, LATEST_TS), min_size=6, max_size=6),
)
def test_engine_survives_any_field_values_and_its_state_round_trips(
    records: list[list[Event]], received: list[float | None]
) -> None:
    engine = LineEngine(LINE, SITE.site, CONFIG)
    for offset, events in enumerate(records):
        engine.offer(events, partition=0, offset=offset, received_at=received[offset])
        engine.release()
        blob = engine.dump()
        engine = LineEngine.load(LINE, SITE.site, CONFIG, blob)
        assert engine.dump() == blob
    engine.release(everything=True)
    state = engine.state
    assert "internal" not in state.quality, state.quality
    for t in (state.started, state.released, state.watermark):
        assert t is None or EARLIEST_TS <= t < LATEST_TS
    assert all(loc.wip >= 0 for loc in state.locations.values())
    assert LineEngine.load(LINE, SITE.site, CONFIG, engine.dump()).dump() == engine.dump()


def test_a_naive_or_odd_offset_time_is_handled() -> None:
    engine = LineEngine(LINE, SITE.site, CONFIG)
    odd = timezone(timedelta(hours=23, minutes=59))
    for i, when in enumerate([datetime(2026, 11, 25), datetime(2026, 11, 25, tzinfo=odd)]):
        event = PartIn(
            v=1, id=str(i), time=when, site=SITE.site, line=LINE.id, location=LOCATIONS[0], part="p"
        )
        engine.offer([event], partition=0, offset=i)
    engine.release(everything=True)
    assert engine.state.quality == {"invalid": 1}
    assert engine.state.locations[LOCATIONS[0]].wip == 1


def _has_duplicate(payload: bytes) -> bool:
    seen: list[list[str]] = []
    json.loads(payload, object_pairs_hook=lambda pairs: seen.append([k for k, _ in pairs]))
    return any(len(keys) != len(set(keys)) for keys in seen)


@FUZZ
@given(
    pairs=st.lists(
        st.tuples(
            st.sampled_from([*valid_fields(), "q\\u0074y"]),
            st.sampled_from(['"state"', '"qty"', '"in"', "1", "null", '"a\\"b"', '"kind"']),
        ),
        max_size=12,
    ),
    space=st.sampled_from(["", " "]),
)
def test_the_fast_duplicate_key_check_agrees_with_the_json_module(
    pairs: list[tuple[str, str]], space: str
) -> None:
    payload = ("{" + ",".join(f'"{k}"{space}:{space}{v}' for k, v in pairs) + "}").encode()
    try:
        check_duplicate_keys(payload)
    except EventError as exc:
        assert exc.kind is Rejection.DUPLICATE_KEY
        assert _has_duplicate(payload)
    else:
        assert not _has_duplicate(payload)


@FUZZ
@given(
    event=any_event(),
    order=st.permutations(range(11)),
    repeats=st.lists(st.tuples(st.integers(0, 10), st.booleans()), max_size=2),
    space=st.sampled_from(["", " "]),
)
def test_the_counting_proof_of_unique_keys_never_passes_a_repeated_key(
    event: Event, order: list[int], repeats: list[tuple[int, bool]], space: str
) -> None:
    """``_keys_once_by_count`` (ingest's fast path) is True only without a repeated key, and always True
    for a compact payload without one (the encoding of wipwatch's publishers)."""
    fields = msgspec.to_builtins(event)  # the tag first; optional keys at their default kept or dropped
    for key, default in (("sku", ""), ("qty", 1), ("part", None)):
        if key in fields and fields[key] == default and order[0] % 2:
            del fields[key]
    items = [list(fields.items())[i] for i in order if i < len(fields)]
    for index, same in repeats:
        key, value = items[index % len(items)]
        other = value if same else ("x" if isinstance(value, str) else value)
        items.insert(index % (len(items) + 1), (key, other))
    text = "{" + ",".join(
        f"{json.dumps(k)}{space}:{space}{json.dumps(v, ensure_ascii=False)}" for k, v in items
    )
    payload = (text + "}").encode()
    try:
        decoded = _unchecked_decoder.decode(payload)
    except msgspec.ValidationError:
        assume(False)
    if _keys_once_by_count(payload, decoded):
        assert not _has_duplicate(payload)
    else:
        assert repeats or space or b"\\" in payload
