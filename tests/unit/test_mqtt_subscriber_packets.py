"""MQTT v5 packets of the subscriber, against bytes written out by hand from the spec (v5.0, chapter 3).

The parser must give the same messages however the socket cuts the stream, and stop (for a reconnect)
on anything malformed rather than guess.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wipwatch.mqtt import encode_varint
from wipwatch.mqtt_subscriber import (
    MqttProtocolError,
    PacketReader,
    ack_packets,
    connect_packet_v5,
    parse_properties,
    subscribe_packet_v5,
)

pytestmark = pytest.mark.unit


def publish_v5(topic: bytes, payload: bytes, qos: int, mid: int, props: bytes = b"", flags: int = 0) -> bytes:
    """A PUBLISH as a broker sends it: topic, packet id (QoS > 0), properties, payload."""
    head = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"")
    body = head + encode_varint(len(props)) + props + payload
    return bytes([0x30 | qos << 1 | flags]) + encode_varint(len(body)) + body


def test_publish_qos1_by_hand() -> None:
    # 0x32, remaining 2+3 (topic "a/b") + 2 (id 0x0102) + 1 (no properties) + 2 ("hi") = 10
    raw = b"\x32\x0a\x00\x03a/b\x01\x02\x00hi"
    assert publish_v5(b"a/b", b"hi", 1, 258) == raw
    messages, others = PacketReader().feed(raw, 12.5)
    assert others == []
    [m] = messages
    assert (m.topic, m.payload, m.qos, m.mid, m.retain, m.dup, m.received_at) == (
        "a/b",
        b"hi",
        1,
        258,
        False,
        False,
        12.5,
    )


def test_properties_of_a_publish_are_skipped_whatever_they_hold() -> None:
    # payload format indicator 1, message expiry 60 s, a user property ("k", "v"), subscription id 300
    props = b"\x01\x01" + b"\x02\x00\x00\x00\x3c" + b"\x26\x00\x01k\x00\x01v" + b"\x0b\xac\x02"
    [m], _ = PacketReader().feed(publish_v5(b"t/x", b"payload", 1, 7, props))
    assert (m.topic, m.payload, m.mid) == ("t/x", b"payload", 7)
    parsed, end = parse_properties(encode_varint(len(props)) + props, 0, 1 + len(props))
    assert parsed == {0x01: 1, 0x02: 60, 0x26: [(b"k", b"v")], 0x0B: 300}
    assert end == 1 + len(props)


def test_dup_retain_and_qos_flags() -> None:
    raw = publish_v5(b"t", b"x", 1, 9, flags=0x08 | 0x01)
    assert raw[0] == 0x3B  # PUBLISH, DUP, QoS 1, RETAIN
    [m], _ = PacketReader().feed(raw)
    assert (m.dup, m.retain, m.qos) == (True, True, 1)
    [q0], _ = PacketReader().feed(publish_v5(b"t", b"x", 0, 0))
    assert (q0.qos, q0.mid, q0.payload) == (0, 0, b"x")


def test_a_redelivered_message_comes_again_with_its_packet_id() -> None:
    # after a reconnect the broker sends an unacknowledged message again, DUP set, same id
    first, again = publish_v5(b"t", b"e1", 1, 42), publish_v5(b"t", b"e1", 1, 42, flags=0x08)
    reader = PacketReader()
    [m1], _ = reader.feed(first)
    reader.reset(connection=2)
    [m2], _ = reader.feed(again)
    assert (m1.mid, m1.dup, m1.connection) == (42, False, 0)
    assert (m2.mid, m2.dup, m2.connection, m2.payload) == (42, True, 2, b"e1")


@pytest.mark.parametrize(
    ("size", "encoded"),
    [
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_152, b"\x80\x80\x80\x01"),
    ],
)
def test_multi_byte_remaining_length(size: int, encoded: bytes) -> None:
    assert encode_varint(size) == encoded
    # topic "t" (3) + id (2) + properties length (1): the payload fills the rest
    raw = publish_v5(b"t", b"p" * (size - 6), 1, 1)
    assert raw[1 : 1 + len(encoded)] == encoded
    [m], _ = PacketReader(max_packet_size=4 * 1024 * 1024).feed(raw)
    assert len(m.payload) == size - 6


def test_packets_cut_anywhere_across_reads_give_the_same_messages() -> None:
    stream = b"".join(publish_v5(f"w/{i}".encode(), b"x" * (i * 37 % 300), 1, i + 1) for i in range(200))
    stream += b"\x90\x04\x00\x01\x00\x01"  # a SUBACK in between: id 1, no properties, QoS 1 granted
    whole, whole_others = PacketReader().feed(stream)
    assert len(whole) == 200 and whole_others == [(0x90, b"\x00\x01\x00\x01")]
    for step in (1, 2, 3, 7, 100, 4096):
        reader, got, others = PacketReader(), [], []
        for i in range(0, len(stream), step):
            messages, more = reader.feed(stream[i : i + step])
            got += messages
            others += more
        assert [(m.topic, m.payload, m.mid) for m in got] == [(m.topic, m.payload, m.mid) for m in whole]
        assert others == whole_others


@given(st.lists(st.integers(min_value=1, max_value=5000), max_size=30), st.binary(max_size=400))
def test_any_cutting_of_a_stream_is_parsed_alike(cuts: list[int], payload: bytes) -> None:
    stream = publish_v5(b"a/b", payload, 1, 5) + publish_v5(b"c", payload[::-1], 2, 6) + b"\xd0\x00"
    reader, got, others = PacketReader(), [], []
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    for a, b in itertools.pairwise(points):
        messages, more = reader.feed(stream[a:b])
        got += messages
        others += more
    assert [(m.topic, m.payload, m.qos, m.mid) for m in got] == [
        ("a/b", payload, 1, 5),
        ("c", payload[::-1], 2, 6),
    ]
    assert others == [(0xD0, b"")]


def test_a_topic_that_is_not_utf8_is_kept_as_bytes() -> None:
    [m], _ = PacketReader().feed(publish_v5(b"wipwatch/\xff", b"x", 1, 3))
    assert m.raw_topic == b"wipwatch/\xff"
    with pytest.raises(UnicodeDecodeError):
        _ = m.topic


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (b"\x36\x05\x00\x01t\x00\x01", "QoS 3"),
        (b"\x32\x04\x00\x01t\x00", "no room for the packet id"),
        (b"\x32\x06\x00\x01t\x00\x00\x00", "packet id 0"),
        (b"\x32\x06\x00\x09t\x00\x01\x00", "topic longer than the packet"),
        (b"\x32\x06\x00\x01t\x00\x01\x05", "properties longer than the packet"),
        (b"\x30\xff\xff\xff\xff\x01", "remaining length of five bytes"),
    ],
)
def test_malformed_packets_raise_for_a_reconnect(raw: bytes, what: str) -> None:
    with pytest.raises(MqttProtocolError):
        PacketReader().feed(raw)


def test_a_packet_over_the_maximum_size_is_refused_before_it_is_read() -> None:
    reader = PacketReader(max_packet_size=2048)
    with pytest.raises(MqttProtocolError, match="over 2048"):
        reader.feed(publish_v5(b"t", b"x" * 5000, 1, 1)[:10])


def test_connect_v5_resumes_the_session_with_its_properties() -> None:
    packet = connect_packet_v5("ab", 30, "u", "pw", 120, 65535, 1 << 24)
    props = b"\x11\x00\x00\x00\x78" + b"\x21\xff\xff" + b"\x27\x01\x00\x00\x00"
    body = b"\x00\x04MQTT\x05\xc0\x00\x1e" + bytes([len(props)]) + props + b"\x00\x02ab\x00\x01u\x00\x02pw"
    # flags 0xc0: user name and password, Clean Start off (the session is resumed)
    assert packet == b"\x10" + bytes([len(body)]) + body


def test_subscribe_v5_by_hand() -> None:
    # 0x82, packet id 1, no properties, "$share/g/a/#" with options QoS 1
    topic = b"$share/g/a/#"
    assert (
        subscribe_packet_v5(1, ["$share/g/a/#"], 1)
        == b"\x82" + bytes([2 + 1 + 2 + len(topic) + 1]) + b"\x00\x01\x00\x00\x0c" + topic + b"\x01"
    )


def test_acknowledgements_are_written_in_one_buffer() -> None:
    assert ack_packets([1, 0x1234]) == b"\x40\x02\x00\x01\x40\x02\x12\x34"
    assert ack_packets([]) == b""
