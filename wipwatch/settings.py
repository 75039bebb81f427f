"""The one settings object: defaults < ``WIPWATCH_*`` environment variables < CLI flags.

The embedded stack uses its own ports (18830, 19092, 18086) so it can run beside a system mosquitto or
InfluxDB that Debian starts on the standard ports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from wipwatch.errors import SettingsError

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The example sites ship as package data (``wipwatch.examples``, installed as ``wipwatch/examples``); in a
#: source checkout, where ``examples/`` is beside ``wipwatch/``, that folder is used.
_INSTALLED_EXAMPLES = Path(__file__).resolve().parent / "examples"
EXAMPLES_DIR = _INSTALLED_EXAMPLES if _INSTALLED_EXAMPLES.is_dir() else REPO_ROOT / "examples"
DEFAULT_SITE_FILE = EXAMPLES_DIR / "lean-line.yaml"


class Settings(BaseSettings):
    """Where every part of wipwatch finds its peers, and how it behaves."""

    model_config = SettingsConfigDict(env_prefix="WIPWATCH_", frozen=True, extra="forbid")

    site_file: Path = DEFAULT_SITE_FILE
    run_dir: Path = Path(".wipwatch")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(18830, ge=1, le=65535)
    mqtt_qos: Literal[1, 2] = 1
    #: Credentials and TLS of every wipwatch MQTT client (wipwatch/mqtt.py ``MqttSecurity``).
    mqtt_username: str = ""
    mqtt_password: SecretStr = SecretStr("")
    mqtt_tls: bool = False
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    #: ``wipwatch up``: run mosquitto with a password file and ACL (wipwatch/credentials.py), each child
    #: with its own account, as docker-compose does. Off: anonymous on 127.0.0.1.
    mqtt_auth: bool = False

    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_partitions: int = Field(4, ge=1, le=256)
    #: Events and dead letters are kept this long, and at most this many bytes per partition (retention).
    kafka_retention_hours: float = Field(168.0, gt=0)
    kafka_retention_bytes: int = Field(1024**3, ge=1024 * 1024)
    events_topic: str = "wipwatch-events"
    deadletter_topic: str = "wipwatch-deadletter"

    influx_url: str = "http://127.0.0.1:18086"
    influx_version: Literal["auto", "1", "2"] = "auto"
    influx_db: str = "wipwatch"
    influx_org: str = "wipwatch"
    influx_bucket: str = "wipwatch"
    influx_token: SecretStr = SecretStr("")
    #: A v1-style account (InfluxDB 1.x users, or 2.x v1-compatible authorizations): HTTP basic auth.
    influx_username: str = ""
    influx_password: SecretStr = SecretStr("")
    #: InfluxDB 1.x lifecycle (wipwatch/retention.py): raw points, then 1-minute rollups, kept this long.
    influx_raw_retention: str = Field("30d", pattern=r"^(INF|\d+[mhdw])$")
    influx_rollup_retention: str = Field("400d", pattern=r"^(INF|\d+[mhdw])$")
    influx_batch_size: int = Field(5000, ge=1)
    influx_flush_seconds: float = Field(0.5, gt=0)

    #: How far an event time may be ahead of the wall clock at receipt (clock skew of the floor's clocks);
    #: later events are dead-lettered as ``ahead`` (docs/events.md). ``inf`` turns the check off.
    max_clock_ahead_s: float = Field(300.0, gt=0)

    ingest_client_id: str = "wipwatch-ingest-1"
    ingest_share_group: str = "wipwatch-ingest"
    #: Events of one line packed into one Kafka record at most (the processors' per-record cost dominates).
    ingest_events_per_record: int = Field(500, ge=1)
    #: How long mosquitto keeps a stopped ingest instance's session (MQTT v5 session expiry; 4294967295 =
    #: never). Meanwhile it queues that instance's share of the shared subscription for it; at expiry the
    #: queued share is dropped, not dealt to the live instances (measured, docs/operations.md).
    ingest_session_expiry_s: int = Field(0xFFFFFFFF, ge=0, le=0xFFFFFFFF)
    #: Messages mosquitto may have in flight to one ingest instance unacknowledged (MQTT v5 Receive
    #: Maximum): what ingest holds until Kafka confirms, and what a killed instance holds until it returns.
    ingest_receive_maximum: int = Field(65535, ge=1, le=65535)
    #: Seconds ingest lets messages gather before it validates and forwards a batch that is not full: fewer,
    #: larger batches cost ingest, Kafka and mosquitto less CPU per event (docs/architecture.md).
    ingest_linger_s: float = Field(0.05, ge=0, le=1)

    processor_id: str = "wipwatch-processors"
    processor_web: bool = False
    processor_web_port: int = Field(6066, ge=1, le=65535)
    #: Kafka records per Faust batch (each record packs up to ``ingest_events_per_record`` events).
    processor_batch_size: int = Field(100, ge=1)
    processor_batch_seconds: float = Field(0.2, gt=0)
    #: Seconds an event may arrive out of order and still be put in its place: behind the line's newest
    #: event, and for a live line behind the wall clock too (docs/metrics.md, "Live latency and the
    #: release policy": 2 s chosen from bench/latency.py).
    processor_lateness_s: float = Field(2.0, ge=0)
    #: Wall seconds a line must be quiet before the events waiting for the lateness are applied anyway.
    processor_idle_release_s: float = Field(2.0, gt=0)
    processor_throughput_window_s: float = Field(3600.0, gt=0)
    processor_growth_window_s: float = Field(900.0, gt=0)
    #: Event ids remembered per line for de-duplication: this much event time, at most this many.
    processor_dedup_horizon_s: float = Field(3600.0, ge=0)
    processor_dedup_max_ids: int = Field(20_000, ge=1)
    #: Event-time resolution of the points: each line's figures once per this many seconds of event time
    #: (docs/metrics.md, "When points are written"); the same at any replay speed.
    processor_point_interval_s: float = Field(60.0, gt=0)
    #: Kafka consumer-group session timeout: how soon a dead worker's partitions move to the others.
    processor_session_timeout_s: float = Field(10.0, ge=6, le=300)

    #: Alert delivery (docs/alerts.md): Alertmanager's URL (empty: none), retained MQTT state on or off,
    #: seconds between re-posts of firing alerts, wall seconds between checks of silent lines.
    alertmanager_url: str = ""
    alerts_mqtt: bool = True
    alerts_resend_s: float = Field(60.0, gt=0)
    alerts_check_s: float = Field(5.0, gt=0)

    #: The built-in live board (``wipwatch board``): where it listens and how often it pushes a snapshot.
    board_host: str = "127.0.0.1"
    board_port: int = Field(18088, ge=1, le=65535)
    board_interval: float = Field(1.0, gt=0, le=60)
    #: Live-update (SSE) connections the board serves at once; more get 503.
    board_max_streams: int = Field(100, ge=1, le=10_000)
    #: Required when the board binds beyond loopback: browsers open ``/?token=...`` once (then a cookie),
    #: scripts send ``Authorization: Bearer ...``.
    board_token: SecretStr = SecretStr("")
    #: Host header values the board answers (comma-separated; ``*`` any), against DNS rebinding.
    board_allowed_hosts: str = "127.0.0.1,localhost,::1"

    #: Where a Grafana with wipwatch's dashboards answers, for the links ``up --replay`` prints.
    grafana_url: str = "http://127.0.0.1:3000"

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def with_overrides(self, **overrides: Any) -> Settings:
        """Return a copy with the non-``None`` overrides applied (CLI flags beat the environment)."""
        given = {key: value for key, value in overrides.items() if value is not None}
        return load_settings(**{**self.model_dump(), **given})


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment, with ``overrides`` on top.

    Raises:
        SettingsError: a value has the wrong type or is out of range; names the variable.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = [
            f"WIPWATCH_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        ]
        raise SettingsError("bad setting: " + "; ".join(problems)) from None
