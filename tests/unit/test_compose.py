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

from wipwatch.cli.main import app
from wipwatch.credentials import (
    INFLUX_READER_USER,
    INFLUX_WRITER_USER,
    ComposeSecrets,
    mqtt_accounts,
    password_env_name,
    write_compose_secrets,
)
from wipwatch.ingest import status_path
from wipwatch.retention import RESAMPLE_FOR, ROLLUP_POLICY, SUMMED
from wipwatch.settings import DEFAULT_SITE_FILE, REPO_ROOT, Settings
from wipwatch.site import load_site

GRAFANA_PROVISIONING = "/etc/grafana/provisioning"
#: ``${NAME}``, ``${NAME:?message}``, ``${NAME:-default}``, ``$NAME`` (not ``$$``, compose's escape).
_VARIABLE = re.compile(r"(?<!\$)\$\{(\w+)(?:(:?[-?])([^}]*))?\}|(?<!\$)\$(\w+)")
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
    """Expand ``$NAME``, ``${NAME}`` and ``${NAME:?message}`` as the shell and compose do, from ``env``."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        assert name in env, f"${name} is not set"
        return str(env[name])

    return _VARIABLE.sub(value, text)


@pytest.fixture(scope="module")
def secrets_env() -> dict[str, str]:
    """What `wipwatch secrets` puts in .env for the packaged example site (the compose simulator's)."""
    return ComposeSecrets.generate([load_site(DEFAULT_SITE_FILE).site]).env()


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


def test_environment_names_are_settings_and_values_parse(
    compose: dict[str, Any], secrets_env: dict[str, str]
) -> None:
    fields = set(Settings.model_fields)
    for name, service in _wipwatch_services(compose).items():
        env = service["environment"]
        for key in env:
            assert key.startswith("WIPWATCH_") and key[9:].lower() in fields, f"{name}: unknown setting {key}"
        Settings(**{k[9:].lower(): _interpolate(str(v), secrets_env) for k, v in env.items()})  # type: ignore[arg-type]


def test_no_secret_has_a_default_and_wipwatch_secrets_provides_each(
    compose: dict[str, Any], secrets_env: dict[str, str]
) -> None:
    lines = (REPO_ROOT / "docker-compose.yml").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    referenced = set()
    for match in _VARIABLE.finditer(text):
        name, operator = match.group(1) or match.group(4), match.group(2)
        # every variable is required: compose stops with the message instead of starting on a default
        assert operator == ":?", f"${{{name}}} must be ${{{name}:?...}}, not {match.group(0)}"
        assert "wipwatch secrets" in match.group(3), f"{name}: the message must say how to create it"
        referenced.add(name)
    assert referenced <= set(secrets_env), "compose needs secrets `wipwatch secrets` does not write"
    # the recorder runs outside compose (`wipwatch record` from an operator's machine)
    assert set(secrets_env) - referenced == {password_env_name("recorder")}
    secret_like = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY\b")
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if secret_like.search(key):
                assert _VARIABLE.fullmatch(str(value)), f"{name}: {key} is a literal, not a secret from .env"
    for path in (REPO_ROOT / "dashboards/provisioning").rglob("*.yaml"):
        for key, value in re.findall(
            r"^\s*(\w*(?:password|token|Value\d)\w*):\s*(\S+)", path.read_text(), re.M
        ):
            assert _VARIABLE.fullmatch(value), f"{path.name}: {key} holds a literal secret"


def test_each_wipwatch_service_gets_only_its_own_mqtt_account(
    compose: dict[str, Any], secrets_env: dict[str, str]
) -> None:
    site = load_site(DEFAULT_SITE_FILE).site
    accounts = {a.username: a for a in mqtt_accounts([site], {})}
    expected = {"ingest": "ingest", "processors": "processors", "simulator": f"device-{site}", "board": None}
    for name, user in expected.items():
        env = _wipwatch_services(compose)[name]["environment"]
        assert env.get("WIPWATCH_MQTT_USERNAME") == user, name
        if user is not None:
            assert user in accounts
            assert env["WIPWATCH_MQTT_PASSWORD"].startswith(f"${{{password_env_name(user)}:?"), name
    mosquitto = compose["services"]["mosquitto"]
    conf = (REPO_ROOT / "docker/mosquitto/mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "allow_anonymous true" not in conf
    for option, file_name in (("password_file", "passwd"), ("acl_file", "acl")):
        (container_path,) = re.findall(rf"^{option} (\S+)$", conf, re.M)
        source = _in_repo(mosquitto, container_path)
        # the mounted folder is what `wipwatch secrets` writes
        assert source.relative_to(REPO_ROOT) == Path("secrets/mosquitto") / file_name
    health = " ".join(mosquitto["healthcheck"]["test"])
    assert "-u healthcheck" in health and "$$MQTT_PASSWORD_HEALTHCHECK" in health
    assert mosquitto["environment"]["MQTT_PASSWORD_HEALTHCHECK"].startswith("${MQTT_PASSWORD_HEALTHCHECK:?")


def test_wipwatch_secrets_writes_every_file_compose_mounts(tmp_path: Path, compose: dict[str, Any]) -> None:
    env_path, broker = write_compose_secrets(tmp_path, [load_site(DEFAULT_SITE_FILE).site])
    assert env_path.stat().st_mode & 0o777 == 0o600
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./secrets"):
                assert (tmp_path / source).exists(), source
    assert (
        broker.password_file.read_text().count("$7$101$")
        == len(broker.acl_file.read_text().split("user ")) - 1
    )
    with pytest.raises(FileExistsError, match="--force"):
        write_compose_secrets(tmp_path, ["demo-plant"])
    before = env_path.read_text()
    write_compose_secrets(tmp_path, ["demo-plant"], force=True)
    assert env_path.read_text() != before  # rotated


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
    # InfluxQL through the 1.x-compatible API: the database is the DBRP name of the bucket (dbrp.sh)
    assert env["WIPWATCH_INFLUX_VERSION"] == "1"
    assert services["influxdb"]["environment"]["DOCKER_INFLUXDB_INIT_BUCKET"] == env["WIPWATCH_INFLUX_DB"]


def test_published_ports_bind_loopback_and_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for mapping in service.get("ports", []):
            assert mapping.startswith("127.0.0.1:"), f"{name} publishes {mapping} beyond loopback"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and not source.startswith("./secrets/"):  # secrets: `wipwatch secrets`
                assert (REPO_ROOT / source).exists(), f"{name} mounts missing {source}"
    # the image itself: tests/unit/test_image_build.py
    for script in (REPO_ROOT / "docker/influxdb-init").iterdir():
        assert script.stat().st_mode & 0o111, f"{script.name} is not executable"


def _compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing: run scripts/setup"
    argv = [tool, "--project-directory", str(REPO_ROOT), "-f", str(REPO_ROOT / "docker-compose.yml")]
    environ = {k: v for k, v in os.environ.items() if not re.search(r"PASSWORD|TOKEN", k)}
    return subprocess.run(
        [*argv, "--env-file", str(env_file), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )


def test_compose_validates_with_docker_compose_config(tmp_path: Path) -> None:
    """Compose's own parser and schema (docker-compose 1.29, installed by scripts/setup); needs no engine."""
    env_path, _broker = write_compose_secrets(tmp_path, [load_site(DEFAULT_SITE_FILE).site])
    done = _compose_config(env_path)
    assert done.returncode == 0, done.stderr


def test_compose_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    done = _compose_config(empty)
    assert done.returncode != 0 and "run `wipwatch secrets` first" in done.stderr, done.stderr


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


def test_kafka_image_is_the_release_the_embedded_stack_runs(compose: dict[str, Any]) -> None:
    from wipwatch.services import KAFKA_VERSION

    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"


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
    # wipwatch's services query the same database through the 1.x-compatible API
    for name, service in _wipwatch_services(compose).items():
        assert service["environment"]["WIPWATCH_INFLUX_DB"] == mapping["db"], name


def _v1_authorizations() -> dict[str, dict[str, Any]]:
    """Username -> password expression and bucket rights of each ``influx v1 auth create`` of the init."""
    found: dict[str, dict[str, Any]] = {}
    for script in sorted((REPO_ROOT / "docker/influxdb-init").glob("*.sh")):
        text = script.read_text().replace("\\\n", " ")
        for args in re.findall(r"influx v1 auth create (.*)", text):
            flags = re.findall(r"--([\w-]+) (\"[^\"]*\"|\S+)", args)
            user = next(v for k, v in flags if k == "username")
            found[user] = {
                "password": next(v for k, v in flags if k == "password").strip('"'),
                "rights": {k for k, _v in flags if k in ("read-bucket", "write-bucket")},
            }
    return found


def test_influxdb_accounts_are_least_privilege(compose: dict[str, Any]) -> None:
    services = compose["services"]
    init = services["influxdb"]["environment"]
    auths = _v1_authorizations()
    assert auths[INFLUX_WRITER_USER]["rights"] == {"write-bucket"}
    assert auths[INFLUX_READER_USER]["rights"] == {"read-bucket"}
    # the scripts' passwords are the variables compose gives influxdb, from .env
    for user, variable in (
        (INFLUX_WRITER_USER, "INFLUX_WRITER_PASSWORD"),
        (INFLUX_READER_USER, "INFLUX_READER_PASSWORD"),
    ):
        assert auths[user]["password"] == f"${variable}"
        assert init[variable].startswith(f"${{{variable}:?")
    # the processors write as the writer; the board and Grafana read as the reader; nobody has the admin token
    wipwatch = _wipwatch_services(compose)
    assert wipwatch["processors"]["environment"]["WIPWATCH_INFLUX_USERNAME"] == INFLUX_WRITER_USER
    assert wipwatch["processors"]["environment"]["WIPWATCH_INFLUX_PASSWORD"] == init["INFLUX_WRITER_PASSWORD"]
    assert wipwatch["board"]["environment"]["WIPWATCH_INFLUX_USERNAME"] == INFLUX_READER_USER
    assert wipwatch["board"]["environment"]["WIPWATCH_INFLUX_PASSWORD"] == init["INFLUX_READER_PASSWORD"]
    for name in ("ingest", "simulator"):
        assert "WIPWATCH_INFLUX_PASSWORD" not in wipwatch[name]["environment"], name
    grafana = services["grafana"]
    source_dir, _mode = _bind_mounts(grafana)[GRAFANA_PROVISIONING]
    (datasource,) = yaml.safe_load((source_dir / "datasources" / "wipwatch.yaml").read_text())["datasources"]
    assert datasource["user"] == INFLUX_READER_USER
    assert (
        _interpolate(datasource["secureJsonData"]["password"], grafana["environment"])
        == init["INFLUX_READER_PASSWORD"]
    )
    admin = init["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    for name, service in services.items():
        if name != "influxdb":
            assert admin not in [str(v) for v in (service.get("environment") or {}).values()], name


def test_influxdb_2_lifecycle_matches_the_native_one(compose: dict[str, Any]) -> None:
    """lifecycle.sh (2.x buckets and a task) keeps what wipwatch/retention.py keeps on 1.x."""
    script = (REPO_ROOT / "docker/influxdb-init/lifecycle.sh").read_text()
    init = compose["services"]["influxdb"]["environment"]
    assert (
        f"--rp {ROLLUP_POLICY}" in script
        and "every: 1m" in script
        and f"range(start: -{RESAMPLE_FOR})" in script
    )
    for measurement, field in SUMMED:
        assert f'r._measurement == "{measurement}" and r._field == "{field}"' in script
    defaults = Settings.model_fields
    assert init["DOCKER_INFLUXDB_INIT_RETENTION"] == defaults["influx_raw_retention"].default
    assert init["WIPWATCH_ROLLUP_RETENTION"] == defaults["influx_rollup_retention"].default
    # init scripts run in name order: the rollup bucket exists before v1-auth.sh grants reading it
    names = sorted(p.name for p in (REPO_ROOT / "docker/influxdb-init").glob("*.sh"))
    assert names.index("dbrp.sh") < names.index("lifecycle.sh") < names.index("v1-auth.sh")
