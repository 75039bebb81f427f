"""docker-compose.yml cannot run here (no Docker engine); check what can be checked without one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from typer.main import get_command

from wipwatch.cli import app
from wipwatch.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return data


def _wipwatch_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("build") == "."}


def test_every_wipwatch_service_runs_a_real_cli_command(compose: dict[str, Any]) -> None:
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    services = _wipwatch_services(compose)
    assert {"ingest", "processors", "simulator"} <= set(services)
    for name, service in services.items():
        assert service["command"][0] in commands, f"{name}: {service['command'][0]} is not a wipwatch command"


def test_environment_names_are_settings_and_values_parse(compose: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    for name, service in _wipwatch_services(compose).items():
        env = service["environment"]
        for key in env:
            assert key.startswith("WIPWATCH_") and key[9:].lower() in fields, f"{name}: unknown setting {key}"
        values = {
            k[9:].lower(): str(v).replace("${WIPWATCH_INFLUX_TOKEN:-wipwatch-dev-token}", "t")
            for k, v in env.items()
        }
        values["site_file"] = str(REPO_ROOT / "examples" / "lean-line.yaml")  # the image's path
        Settings(**values)  # type: ignore[arg-type]


def test_addresses_match_the_servers_they_name(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = _wipwatch_services(compose)["ingest"]["environment"]
    assert env["WIPWATCH_MQTT_HOST"] in services
    assert (
        f"listener {env['WIPWATCH_MQTT_PORT']}" in (REPO_ROOT / "docker/mosquitto/mosquitto.conf").read_text()
    )
    host, port = env["WIPWATCH_KAFKA_BOOTSTRAP"].split(":")
    assert f"PLAINTEXT://{host}:{port}" in services[host]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    influx = urlparse(env["WIPWATCH_INFLUX_URL"])
    assert influx.hostname in services and influx.port == 8086
    assert services["influxdb"]["environment"]["DOCKER_INFLUXDB_INIT_BUCKET"] == env["WIPWATCH_INFLUX_BUCKET"]
    assert services["influxdb"]["environment"]["DOCKER_INFLUXDB_INIT_ORG"] == env["WIPWATCH_INFLUX_ORG"]


def test_published_ports_bind_loopback_and_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for mapping in service.get("ports", []):
            assert mapping.startswith("127.0.0.1:"), f"{name} publishes {mapping} beyond loopback"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), f"{name} mounts missing {source}"
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for folder in ("wipwatch", "ingest", "processors", "dashboards", "simulators", "examples"):
        assert f"COPY {folder} {folder}" in dockerfile
    assert Path(REPO_ROOT / "docker/influxdb-init/dbrp.sh").stat().st_mode & 0o111


def test_compose_validates_with_docker_compose_config() -> None:
    """Compose's own parser and schema (docker-compose 1.29, installed by scripts/setup); needs no engine."""
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing: run scripts/setup"
    done = subprocess.run(
        [
            tool,
            "--project-directory",
            str(REPO_ROOT),
            "-f",
            str(REPO_ROOT / "docker-compose.yml"),
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
