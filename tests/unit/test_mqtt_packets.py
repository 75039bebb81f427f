"""MQTT 3.1.1 packets of the publisher, against bytes written out by hand from the spec."""

from __future__ import annotations

import pytest

from wipwatch.mqtt import connect_packet, publish_packet

pytestmark = pytest.mark.unit


def test_connect_with_clean_session_and_keepalive() -> None:
    # 0x10, remaining 6 + 1 + 1 + 2 + 4 = 14: "MQTT", level 4, flags 0x02 (clean session),
    # keepalive 30, client id "ab"
    assert connect_packet("ab", 30, None, None) == b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x1e\x00\x02ab"


def test_connect_with_user_name_and_password() -> None:
    packet = connect_packet("c", 60, "u", "pw")
    assert packet[9] == 0xC2, "user name 0x80 + password 0x40 + clean session 0x02"
    assert packet.endswith(b"\x00\x01c\x00\x01u\x00\x02pw")
    assert packet[1] == len(packet) - 2


def test_publish_qos1_carries_the_packet_id() -> None:
    # 0x32 (PUBLISH, QoS 1), remaining 2+3+2+2 = 9, topic "a/b", id 0x0102, payload "hi"
    assert publish_packet(b"a/b", b"hi", 1, 258) == b"\x32\x09\x00\x03a/b\x01\x02hi"


def test_publish_qos0_has_no_packet_id() -> None:
    assert publish_packet(b"t", b"x", 0, 7) == b"\x30\x04\x00\x01tx"


@pytest.mark.parametrize(
    ("size", "encoded"),
    [(127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (16_384, b"\x80\x80\x01")],
)
def test_remaining_length_is_the_spec_variable_byte_integer(size: int, encoded: bytes) -> None:
    # topic "t" (3 bytes with its length) + packet id (2): payload fills the rest
    packet = publish_packet(b"t", b"x" * (size - 5), 1, 1)
    assert packet[1 : 1 + len(encoded)] == encoded
    assert len(packet) == 1 + len(encoded) + size


def test_retained_publish_sets_the_retain_bit() -> None:
    assert publish_packet(b"t", b"x", 1, 1, retain=True)[0] == 0x33
    assert publish_packet(b"t", b"x", 0, 0, retain=True)[0] == 0x31
