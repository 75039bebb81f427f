"""docker-compose.yml cannot run here (no Docker engine); check what can be checked without one."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from typer.main import get_command

from wipwatch.cli import app
from wipwatch.ingest import status_path
from wipwatch.settings import REPO_ROOT, Settings

GRAFANA_PROVISIONING = "/etc/grafana/provisioning"
SIXTEEN_MIB = 16 * 1024 * 1024

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return data


def _wipwatch_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("build") == "."}


def _bind_mounts(service: dict[str, Any]) -> dict[str, tuple[Path, str]]:
    """Container path -> (repo path, mode) of each ``./source:target[:mode]`` volume."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        if source.startswith("./"):
            mounts[target] = (REPO_ROOT / source, mode[0] if mode else "rw")
    return mounts


def _in_repo(service: dict[str, Any], container_path: str) -> Path:
    """The repo file or folder that ``container_path`` shows inside ``service``, through its bind mounts."""
    for target, (source, _mode) in _bind_mounts(service).items():
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / os.path.relpath(container_path, target)
    raise AssertionError(f"{container_path} is not inside any bind mount of the service")


def _interpolate(text: str, env: dict[str, Any]) -> str:
    """Expand ``$NAME`` / ``${NAME}`` the way the shell does, from ``env``."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in env, f"${name} is not set"
        return str(env[name])

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def test_every_wipwatch_service_runs_a_real_cli_command(compose: dict[str, Any]) -> None:
    commands: dict[str, Any] = get_command(app).commands  # type: ignore[attr-defined]
    services = _wipwatch_services(compose)
    assert {"ingest", "processors", "simulator", "board"} <= set(services)
    for name, service in services.items():
        command, *args = service["command"]
        assert command in commands, f"{name}: {command} is not a wipwatch command"
        options = {opt for param in commands[command].params for opt in param.opts}
        for arg in args:
            if arg.startswith("-"):
                assert arg in options, f"{name}: wipwatch {command} has no option {arg}"


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
    # the image itself: tests/unit/test_image_build.py
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


def test_startup_order_waits_for_ready_servers(compose: dict[str, Any]) -> None:
    services = compose["services"]

    def waits_for(name: str) -> dict[str, str]:
        depends = services[name].get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions, not a list"
        return {dep: spec["condition"] for dep, spec in depends.items()}

    assert waits_for("ingest") == {"mosquitto": "service_healthy", "kafka": "service_healthy"}
    assert waits_for("processors") == {"kafka": "service_healthy", "influxdb": "service_healthy"}
    assert waits_for("simulator") == {"ingest": "service_healthy"}
    assert waits_for("board") == {"influxdb": "service_healthy"}
    assert waits_for("grafana") == {"influxdb": "service_healthy"}
    for name in services:
        for dep, condition in waits_for(name).items():
            if condition == "service_healthy":
                assert services[dep].get("healthcheck", {}).get("test"), f"{dep} has no healthcheck"
    # healthy only after first-run setup: the image runs a temporary influxd on 9999 until then
    assert "http://localhost:8086" in services["influxdb"]["healthcheck"]["test"]
    assert "--bootstrap-server" in services["kafka"]["healthcheck"]["test"]


def _run_ingest_healthcheck(compose: dict[str, Any], run_dir: Path) -> int:
    kind, *argv = compose["services"]["ingest"]["healthcheck"]["test"]
    assert kind == "CMD" and argv[:2] == ["python", "-c"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIPWATCH_")}
    env["WIPWATCH_RUN_DIR"] = str(run_dir)
    return subprocess.run([sys.executable, *argv[1:]], env=env, timeout=60).returncode


def test_ingest_healthcheck_is_healthy_only_when_subscribed_and_fresh(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    status = status_path(tmp_path, Settings.model_fields["ingest_client_id"].default)
    assert _run_ingest_healthcheck(compose, tmp_path) == 1  # no status file yet
    status.parent.mkdir(parents=True)
    for subscribed, age, healthy in ((False, 0, False), (True, 60, False), (True, 0, True)):
        status.write_text(json.dumps({"pid": 1, "time": time.time() - age, "subscribed": subscribed}))
        assert _run_ingest_healthcheck(compose, tmp_path) == (0 if healthy else 1), (subscribed, age)


def test_kafka_accepts_records_of_16_mib(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= SIXTEEN_MIB
    # a follower must be able to fetch the largest record the leader accepts
    assert int(env["KAFKA_REPLICA_FETCH_MAX_BYTES"]) >= int(env["KAFKA_MESSAGE_MAX_BYTES"])


def test_board_listens_where_its_published_port_reaches_it(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("WIPWATCH_")]:
        monkeypatch.delenv(name)  # only the compose file's values count
    board = compose["services"]["board"]
    assert board["command"][0] == "board"
    settings = Settings(
        **{k[9:].lower(): v for k, v in board["environment"].items() if k != "WIPWATCH_SITE_FILE"}
    )
    # all interfaces inside the container; the host side stays on loopback (test_published_ports_bind_...)
    assert settings.board_host == "0.0.0.0"
    assert [m.rsplit(":", 1)[1] for m in board["ports"]] == [str(settings.board_port)]
    assert f"127.0.0.1:{settings.board_port}/healthz" in " ".join(board["healthcheck"]["test"])


def test_grafana_mounts_the_provisioning_folder(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    source, mode = _bind_mounts(grafana)[GRAFANA_PROVISIONING]
    assert source == REPO_ROOT / "dashboards" / "provisioning" and mode == "ro"
    datasources = [yaml.safe_load(p.read_text()) for p in sorted((source / "datasources").glob("*.yaml"))]
    providers = [yaml.safe_load(p.read_text()) for p in sorted((source / "dashboards").glob("*.yaml"))]
    assert datasources and all(d["apiVersion"] == 1 and d["datasources"] for d in datasources)
    assert providers and all(p["apiVersion"] == 1 and p["providers"] for p in providers)


def test_every_dashboard_the_provider_loads_exists_and_parses(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    source, _mode = _bind_mounts(grafana)[GRAFANA_PROVISIONING]
    uids = []
    for provider_file in sorted((source / "dashboards").glob("*.yaml")):
        for provider in yaml.safe_load(provider_file.read_text())["providers"]:
            assert provider["type"] == "file"
            folder = _in_repo(grafana, provider["options"]["path"])
            files = sorted(
                folder.glob("**/*.json" if provider["options"].get("foldersFromFilesStructure") else "*.json")
            )
            assert files, f"{provider['name']}: no dashboard JSON in {folder}"
            for path in files:
                model = json.loads(path.read_text())
                assert model["uid"] and model["title"] and model["panels"], path.name
                uids.append(model["uid"])
    assert len(uids) == len(set(uids)) == 3  # site overview, line detail, shift review


def _dbrp_mapping(influxdb: dict[str, Any]) -> dict[str, str]:
    """Database, retention policy and bucket name of the mapping docker/influxdb-init/dbrp.sh creates."""
    script = (REPO_ROOT / "docker/influxdb-init/dbrp.sh").read_text()
    env = influxdb["environment"]
    create = re.search(r"influx v1 dbrp create (.*)", script)
    bucket_list = re.search(r"influx bucket list --name (\S+)", script)
    assert create and bucket_list, "dbrp.sh no longer creates a mapping for a named bucket"
    flags = dict(re.findall(r"--(db|rp) (\S+)", create.group(1)))
    assert '--bucket-id "$bucket_id"' in create.group(1) and "bucket_id=$(influx bucket list" in script
    return {
        "db": _interpolate(flags["db"].strip('"'), env),
        "rp": flags["rp"],
        "bucket": _interpolate(bucket_list.group(1).strip('"'), env),
    }


def test_datasource_reaches_the_bucket_influxdb_is_initialised_with(compose: dict[str, Any]) -> None:
    services = compose["services"]
    influxdb, grafana = services["influxdb"], services["grafana"]
    init = influxdb["environment"]
    mapping = _dbrp_mapping(influxdb)
    assert mapping == {
        "db": init["DOCKER_INFLUXDB_INIT_BUCKET"],
        "rp": "autogen",
        "bucket": init["DOCKER_INFLUXDB_INIT_BUCKET"],
    }
    source_dir, _mode = _bind_mounts(grafana)[GRAFANA_PROVISIONING]
    (datasource,) = yaml.safe_load((source_dir / "datasources" / "wipwatch.yaml").read_text())["datasources"]
    assert datasource["jsonData"]["dbName"] == mapping["db"]
    url = urlparse(datasource["url"])
    assert url.hostname == "influxdb" and url.port == 8086
    # the token: Grafana's environment fills ${NAME} in the header with the token influxdb was set up with
    header = datasource["secureJsonData"]["httpHeaderValue1"]
    assert datasource["jsonData"]["httpHeaderName1"] == "Authorization" and header.startswith("Token ")
    assert _interpolate(header, grafana["environment"]) == f"Token {init['DOCKER_INFLUXDB_INIT_ADMIN_TOKEN']}"
    # wipwatch's services query the same database (InfluxQL on 2.x: the bucket name, InfluxTarget) with it
    for name, service in _wipwatch_services(compose).items():
        env = service["environment"]
        assert env["WIPWATCH_INFLUX_BUCKET"] == mapping["db"], name
        assert env["WIPWATCH_INFLUX_TOKEN"] == init["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"], name
