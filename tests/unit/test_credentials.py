"""MQTT accounts, mosquitto's password hashes and ACL, and the client side's credential checks."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from wipwatch.credentials import acl_file_text, mqtt_accounts, password_env_name, password_hash
from wipwatch.errors import SettingsError
from wipwatch.mqtt import MqttSecurity

pytestmark = pytest.mark.unit


def _verify(stored: str, password: str) -> bool:
    """mosquitto's own check of a ``$7$`` hash: PBKDF2-SHA512 over the stored salt and iterations."""
    _, kind, iterations, salt, digest = stored.split("$")
    computed = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations))
    return kind == "7" and computed == base64.b64decode(digest)


def test_password_hash_has_mosquitto_passwds_format(tmp_path: Path) -> None:
    # the reference: what mosquitto_passwd itself writes for the same password
    reference = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(reference), "alice", "s3cret"], check=True)
    theirs = reference.read_text().strip().split(":", 1)[1]
    ours = password_hash("s3cret")
    assert _verify(theirs, "s3cret") and _verify(ours, "s3cret") and not _verify(ours, "s3cret!")
    assert [len(part) for part in ours.split("$")] == [len(part) for part in theirs.split("$")]
    assert password_hash("s3cret") != ours  # a fresh salt each time


def test_acl_grants_each_account_only_its_topics() -> None:
    accounts = mqtt_accounts(["plant-a", "plant-b"], {"ingest": "given"})
    by_user = {a.username: a for a in accounts}
    assert by_user["ingest"].password == "given" and len(by_user["recorder"].password) >= 32
    assert by_user["device-plant-a"].rights == (("write", "wipwatch/plant-a/+/+/+"),)
    assert by_user["processors"].rights == (("readwrite", "wipwatch/alerts/#"),)
    text = acl_file_text(accounts)
    assert "user device-plant-b\ntopic write wipwatch/plant-b/+/+/+\n" in text
    assert "pattern" not in text and "user " + "anonymous" not in text
    assert password_env_name("device-plant-a") == "MQTT_PASSWORD_DEVICE_PLANT_A"


@pytest.mark.parametrize("site", ["alerts", "a/b", "#", "+", "", "x y"])
def test_site_names_that_would_widen_a_device_right_are_refused(site: str) -> None:
    with pytest.raises(ValueError, match="cannot own MQTT topics"):
        mqtt_accounts([site], {})


def test_client_security_errors_name_the_setting(tmp_path: Path) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t")
    with pytest.raises(SettingsError, match="WIPWATCH_MQTT_USERNAME"):
        MqttSecurity(password="p").apply(client)
    with pytest.raises(SettingsError, match="WIPWATCH_MQTT_CA_FILE"):
        MqttSecurity(ca_file=tmp_path / "missing.crt").apply(client)
    with pytest.raises(SettingsError, match="go together"):
        MqttSecurity(ca_file=tmp_path / "x", cert_file=tmp_path / "c").apply(client)


def test_wipwatch_secrets_writes_once_and_rotates_only_when_asked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from wipwatch.cli.main import app

    first = CliRunner().invoke(app, ["secrets", "--dir", str(tmp_path)])
    assert first.exit_code == 0, first.output
    env = (tmp_path / ".env").read_text()
    assert "MQTT_PASSWORD_DEVICE_DEMO_PLANT=" in env and "BOARD_TOKEN=" in env
    assert "user device-demo-plant" in (tmp_path / "secrets/mosquitto/acl").read_text()
    again = CliRunner().invoke(app, ["secrets", "--dir", str(tmp_path)])
    assert again.exit_code != 0 and (tmp_path / ".env").read_text() == env
    rotated = CliRunner().invoke(app, ["secrets", "--dir", str(tmp_path), "--force"])
    assert rotated.exit_code == 0 and (tmp_path / ".env").read_text() != env
