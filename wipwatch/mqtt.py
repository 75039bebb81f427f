"""MQTT clients: credentials and TLS from the settings, and publishing (QoS 1) with back-pressure.

Every wipwatch MQTT client (ingest, recorder, simulator, replay, processors' alerts) takes its username,
password and TLS files from :class:`MqttSecurity`, so there is one place that builds them. Shared by the
services (services import the core, never each other).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from wipwatch.errors import ServiceError, SettingsError
from wipwatch.events import Event, encode_event, topic_for
from wipwatch.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MqttSecurity:
    """How a client proves who it is and checks the broker: username/password, TLS with a CA, client cert.

    ``tls`` with no ``ca_file`` trusts the system's CAs; a ``ca_file`` turns TLS on by itself.
    """

    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MqttSecurity:
        return cls(
            settings.mqtt_username,
            settings.mqtt_password.get_secret_value(),
            settings.mqtt_tls,
            settings.mqtt_ca_file,
            settings.mqtt_cert_file,
            settings.mqtt_key_file,
        )

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.ca_file is not None or self.cert_file is not None

    def apply(self, client: mqtt.Client) -> None:
        """Set credentials and TLS on ``client`` before it connects.

        Raises:
            SettingsError: a TLS file is missing, or a client certificate comes without its key.
        """
        if self.password and not self.username:
            raise SettingsError("WIPWATCH_MQTT_PASSWORD is set but WIPWATCH_MQTT_USERNAME is empty")
        if self.username:
            client.username_pw_set(self.username, self.password or None)
        if not self.uses_tls:
            return
        if (self.cert_file is None) != (self.key_file is None):
            raise SettingsError("WIPWATCH_MQTT_CERT_FILE and WIPWATCH_MQTT_KEY_FILE go together: set both")
        for name, path in (("CA", self.ca_file), ("CERT", self.cert_file), ("KEY", self.key_file)):
            if path is not None and not path.is_file():
                raise SettingsError(f"WIPWATCH_MQTT_{name}_FILE: {path} is not a file")
        try:
            client.tls_set(
                ca_certs=str(self.ca_file) if self.ca_file else None,
                certfile=str(self.cert_file) if self.cert_file else None,
                keyfile=str(self.key_file) if self.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (ssl.SSLError, ValueError) as exc:
            raise SettingsError(f"MQTT TLS files cannot be used: {exc}") from None


def refusal_hint(reason: Any) -> str:
    """A CONNACK refusal in words, with what to check."""
    text = str(reason)
    if "authori" in text.lower() or "password" in text.lower():
        return f"{text}; check WIPWATCH_MQTT_USERNAME / WIPWATCH_MQTT_PASSWORD and the broker's password file"
    return text


class MqttPublisher:
    """A paho client that caps unacknowledged publishes at ``max_outstanding`` by waiting for PUBACKs."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        qos: int = 1,
        max_outstanding: int = 5000,
        security: MqttSecurity | None = None,
    ) -> None:
        if max_outstanding < 1:
            raise ValueError(f"max_outstanding must be >= 1, got {max_outstanding}")
        self.qos = qos
        self._max = max_outstanding
        self._outstanding = 0
        self._cond = threading.Condition()
        self.published = 0
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self._client.max_inflight_messages_set(min(1000, max_outstanding))
        self._client.max_queued_messages_set(0)
        self._client.on_publish = self._on_publish
        self._connected = threading.Event()
        self._refused: Any = None
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.reconnect_delay_set(1, 30)
        (security or MqttSecurity()).apply(self._client)
        try:
            self._client.connect(host, port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise ServiceError(f"MQTT broker at {host}:{port} not reachable: {exc}") from None
        self._client.loop_start()
        if not self._connected.wait(30) or self._refused is not None:
            self._client.loop_stop()
            why = refusal_hint(self._refused) if self._refused is not None else "no answer within 30 s"
            raise ServiceError(f"MQTT broker at {host}:{port} did not accept the connection: {why}")

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._refused = reason
            self._client.disconnect()  # do not retry with credentials the broker refused
        self._connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not self._connected.is_set():  # closed before any CONNACK: a TLS or protocol mismatch
            self._refused = f"connection closed before the broker answered ({reason}); TLS settings?"
            self._client.disconnect()
            self._connected.set()

    def _on_publish(self, *_args: Any) -> None:
        with self._cond:
            self._outstanding -= 1
            self._cond.notify_all()

    def __call__(self, event: Event) -> None:
        self.publish(topic_for(event), encode_event(event))

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        with self._cond:
            while self._outstanding >= self._max:
                self._cond.wait(1.0)
            self._outstanding += 1
        if self.qos == 0:
            self._on_publish()
        self._client.publish(topic, payload, qos=self.qos, retain=retain)
        self.published += 1

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until the broker acknowledged everything published; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._outstanding > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
        return True

    def close(self) -> None:
        self.drain()
        self._client.disconnect()
        self._client.loop_stop()
