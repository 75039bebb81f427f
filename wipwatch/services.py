"""Native servers as child processes: mosquitto, the noida-db Kafka-protocol broker, and influxd.

The one code path that starts and stops servers: ``wipwatch up`` and the test fixtures both use it. Each
server gets a generated config in the run directory, binds 127.0.0.1, is waited for by polling its protocol
with a deadline, and is stopped by its PID. Children are started with ``PR_SET_PDEATHSIG`` so a killed
parent leaves none behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import getpass
import importlib.resources
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wipwatch.credentials import BrokerAuth
from wipwatch.errors import ServiceError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _die_with_parent() -> None:
    """Runs in the child before exec: deliver SIGTERM to it when the parent dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ChildProcess:
    """A process wipwatch started and will stop by PID."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    address: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Idempotent."""
        if not self.alive():
            return
        log.info("stopping name=%s pid=%d", self.name, self.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning(
                "kill name=%s pid=%d reason=no exit %.0fs after SIGTERM", self.name, self.pid, timeout
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL, for crash tests."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(
    name: str,
    argv: Sequence[str],
    log_dir: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> ChildProcess:
    """Start ``argv`` with output to ``log_dir/<name>.log``, in its own session, dying with its parent."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as out:
        try:
            process = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            raise ServiceError(f"cannot start {name} ({argv[0]}): {exc.strerror}") from None
    log.info("started name=%s pid=%d log=%s", name, process.pid, log_path)
    return ChildProcess(name, process, log_path)


def wait_until(child: ChildProcess, ready: Callable[[], bool], timeout: float = START_TIMEOUT) -> None:
    """Poll ``ready`` until it is true; fail early if the child exits, late if the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise ServiceError(
                f"{child.name} exited with code {child.process.returncode} while starting; "
                f"log {child.log_path}:\n{child.log_tail()}"
            )
        if ready():
            return
        time.sleep(0.05)
    child.stop()
    raise ServiceError(
        f"{child.name} not ready after {timeout:.0f}s; log {child.log_path}:\n{child.log_tail()}"
    )


def _find_binary(name: str, hint: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        raise ServiceError(f"{name} not found; {hint}")
    return path


def noida_binary() -> Path:
    """The Kafka-protocol broker binary bundled in the noida-db wheel (run directly, not its wrapper)."""
    try:
        path = Path(str(importlib.resources.files("noida_db") / "noida-db"))
    except ModuleNotFoundError:
        raise ServiceError("noida-db is not installed; run `make setup`") from None
    if not path.exists():
        raise ServiceError(f"noida-db wheel has no broker binary at {path}")
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def start_mosquitto(run_dir: Path, port: int, auth: BrokerAuth | None = None) -> ChildProcess:
    """mosquitto with QoS 1 persistence and queues sized for a fast simulator (see docs/operations.md).

    Anonymous on 127.0.0.1 unless ``auth`` gives a password file and ACL (and maybe TLS) from
    wipwatch/credentials.py.
    """
    data = run_dir / "mosquitto"
    data.mkdir(parents=True, exist_ok=True)
    conf = data / "mosquitto.conf"
    access = auth.mosquitto_conf() if auth is not None else "allow_anonymous true\n"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        f"{access}"
        # started as root, mosquitto would switch to user 'mosquitto' and fail to write its persistence
        f"user {getpass.getuser()}\n"
        "persistence true\n"
        f"persistence_location {data}/\n"
        "autosave_interval 30\n"
        # A fast publisher overruns a Python subscriber; queue for persistent sessions instead of dropping.
        "max_inflight_messages 1000\n"
        "max_queued_messages 1000000\n"
        "max_queued_bytes 0\n"
        "log_dest stdout\n"
        "log_type error\nlog_type warning\nlog_type notice\n"
    )
    binary = _find_binary("mosquitto", "install it with `apt-get install mosquitto` (make setup does)")
    child = spawn("mosquitto", [binary, "-c", str(conf)], run_dir / "logs")
    wait_until(child, lambda: port_in_use(port))
    child.address = f"mqtt://127.0.0.1:{port}"
    return child


def start_kafka(run_dir: Path, port: int) -> ChildProcess:
    """The noida-db broker with only its Kafka protocol enabled; data persists in the run directory."""
    data = run_dir / "kafka"
    data.mkdir(parents=True, exist_ok=True)
    argv = [str(noida_binary()), "start", "--data-dir", str(data), "--host", "127.0.0.1"]
    argv += ["--only", "kafka", "--kafka-port", str(port)]
    child = spawn("kafka", argv, run_dir / "logs")
    wait_until(child, lambda: port_in_use(port))
    child.address = f"127.0.0.1:{port}"
    return child


def _influx_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=1) as response:
            return bool(response.status == 204)
    except (urllib.error.URLError, OSError):
        return False


def start_influxdb(run_dir: Path, port: int, database: str) -> ChildProcess:
    """influxd 1.x with its own data, meta and WAL directories, reporting off, database created."""
    data = run_dir / "influxdb"
    data.mkdir(parents=True, exist_ok=True)
    conf = data / "influxdb.conf"
    conf.write_text(
        "reporting-disabled = true\n"
        f'bind-address = "127.0.0.1:{free_port()}"\n'
        f'[meta]\n  dir = "{data}/meta"\n'
        f'[data]\n  dir = "{data}/data"\n  wal-dir = "{data}/wal"\n  query-log-enabled = false\n'
        "[monitor]\n  store-enabled = false\n"
        f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
        "[continuous_queries]\n  log-enabled = false\n"
    )
    binary = _find_binary("influxd", "install it with `apt-get install influxdb` (make setup does)")
    child = spawn("influxdb", [binary, "-config", str(conf)], run_dir / "logs")
    url = f"http://127.0.0.1:{port}"
    wait_until(child, lambda: _influx_ready(url))
    body = urllib.parse.urlencode({"q": f'CREATE DATABASE "{database}"'}).encode()
    with urllib.request.urlopen(f"{url}/query", data=body, timeout=10) as response:
        response.read()
    child.address = url
    return child


@dataclass
class Ports:
    mqtt: int
    kafka: int
    influx: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port())


@dataclass
class NativeStack:
    """The three servers of the embedded default stack."""

    run_dir: Path
    ports: Ports
    database: str = "wipwatch"
    children: dict[str, ChildProcess] = field(default_factory=dict)
    mqtt_auth: BrokerAuth | None = None

    @property
    def mqtt_port(self) -> int:
        return self.ports.mqtt

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports.kafka}"

    @property
    def influx_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.influx}"

    def start(self) -> NativeStack:
        """Start all three; if one fails, stop the ones already running and raise."""
        for port in (self.ports.mqtt, self.ports.kafka, self.ports.influx):
            if port_in_use(port):
                raise ServiceError(
                    f"port {port} on 127.0.0.1 is in use; stop what holds it or choose other ports "
                    "(WIPWATCH_MQTT_PORT, WIPWATCH_KAFKA_BOOTSTRAP, WIPWATCH_INFLUX_URL)"
                )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.children["mosquitto"] = start_mosquitto(self.run_dir, self.ports.mqtt, self.mqtt_auth)
            self.children["kafka"] = start_kafka(self.run_dir, self.ports.kafka)
            self.children["influxdb"] = start_influxdb(self.run_dir, self.ports.influx, self.database)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, name: str) -> ChildProcess:
        """Stop and start one server on the same port and data (for outage and recovery tests)."""
        self.children[name].stop()
        starters: dict[str, Callable[[], ChildProcess]] = {
            "mosquitto": lambda: start_mosquitto(self.run_dir, self.ports.mqtt, self.mqtt_auth),
            "kafka": lambda: start_kafka(self.run_dir, self.ports.kafka),
            "influxdb": lambda: start_influxdb(self.run_dir, self.ports.influx, self.database),
        }
        self.children[name] = starters[name]()
        return self.children[name]

    def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            child.stop()

    @contextlib.contextmanager
    def running(self) -> Iterator[NativeStack]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


def python_module_argv(*args: str) -> list[str]:
    """argv that runs the wipwatch CLI with this interpreter (children of ``wipwatch up`` and tests)."""
    return [sys.executable, "-m", "wipwatch", *args]
