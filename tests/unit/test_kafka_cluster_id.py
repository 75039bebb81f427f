"""The embedded Kafka's cluster id: one in 64 random ids starts with "-", which the storage tool's argument
parser read as an option (a CI run failed on it)."""

import uuid

import pytest

from wipwatch import services


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x10" + b"\x00" * 15)])
    monkeypatch.setattr(services.uuid, "uuid4", lambda: next(drawn))
    cluster_id = services.kafka_cluster_id()
    assert cluster_id == "EAAAAAAAAAAAAAAAAAAAAA"
    assert len(cluster_id) == 22


def test_random_cluster_ids_are_base64url_of_16_bytes() -> None:
    for _ in range(500):
        cluster_id = services.kafka_cluster_id()
        assert not cluster_id.startswith("-")
        assert len(cluster_id) == 22
