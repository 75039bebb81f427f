"""Native servers as child processes: mosquitto, Apache Kafka (KRaft, one node) and influxd.

The one code path that starts and stops servers: ``wipwatch up`` and the test fixtures both use it. Each
server gets a generated config in the run directory, binds 127.0.0.1, is waited for by polling its protocol
with a deadline, and is stopped by its PID. Children are started with ``PR_SET_PDEATHSIG`` so a killed
parent leaves none behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
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
    """Start ``argv`` with output to ``log_dir/<name>.log``, in its own session, dying with its parent.

    Call it from a thread that outlives the child (the main thread): Linux sends the parent-death signal
    when the *thread* that started the child ends, so a child started from ``asyncio.to_thread`` or a
    short-lived worker thread is stopped as soon as that thread finishes.
    """
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


#: The Apache Kafka release of the embedded stack; docker-compose.yml pins the same image tag.
KAFKA_VERSION = "4.1.1"
#: Largest record the broker accepts: one line's whole processor state is one changelog record.
KAFKA_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Broker heap; the embedded broker holds a handful of topics (measured RSS in docs/operations.md).
KAFKA_HEAP = "384m"
_KAFKA_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.wipwatch</groupId>
  <artifactId>wipwatch-kafka-broker</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <!-- Kafka logs through slf4j 1.7; this routes it into the log4j2 the broker already depends on -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>2.24.3</version>
    </dependency>
  </dependencies>
</project>
"""
_KAFKA_LOG4J = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
"""


def kafka_home() -> Path:
    """Where set-up puts the broker's jars: ``WIPWATCH_KAFKA_HOME`` or the user's cache directory."""
    given = os.environ.get("WIPWATCH_KAFKA_HOME")
    if given:
        return Path(given)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "wipwatch" / f"kafka-{KAFKA_VERSION}"


def ensure_kafka_jars(quiet: bool = True) -> Path:
    """Resolve Apache Kafka's jars from Maven Central into :func:`kafka_home` once; return the libs dir.

    Raises:
        ServiceError: Java or Maven is missing, or Maven could not resolve the jars.
    """
    home = kafka_home()
    libs = home / "libs"
    done = home / ".resolved"
    if done.exists():
        return libs
    mvn = _find_binary("mvn", "install Maven (apt-get install maven; make setup does)")
    _find_binary("java", "install a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
    home.mkdir(parents=True, exist_ok=True)
    pom = home / "pom.xml"
    pom.write_text(_KAFKA_POM.format(version=KAFKA_VERSION))
    tmp = home / "libs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    argv = [mvn, "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
    if quiet:
        argv.insert(1, "-q")
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise ServiceError(f"Maven could not resolve Apache Kafka {KAFKA_VERSION}:\n{tail}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.replace(libs)
    done.write_text(KAFKA_VERSION + "\n")
    return libs


def _kafka_ready(bootstrap: str) -> bool:
    """True once the broker answers a metadata request naming itself (KRaft has elected its controller)."""
    from aiokafka.client import AIOKafkaClient

    async def probe() -> bool:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await client.bootstrap()
            return bool(client.cluster.brokers())
        except Exception:  # any failure means "not yet"; the deadline in wait_until bounds the wait
            return False
        finally:
            await client.close()

    if not port_in_use(int(bootstrap.rsplit(":", 1)[1])):
        return False
    return asyncio.run(probe())


def _kafka_properties(data: Path, port: int, controller_port: int) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data}",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "min.insync.replicas=1",
            # a single node: a group need not wait for more members before its first assignment
            "group.initial.rebalance.delay.ms=0",
            # wipwatch creates its topics itself, with their partitions and retention (wipwatch/kafka.py)
            "auto.create.topics.enable=false",
            f"message.max.bytes={KAFKA_MAX_MESSAGE_BYTES}",
            f"replica.fetch.max.bytes={KAFKA_MAX_MESSAGE_BYTES}",
            # smaller segments than the 1 GiB default, so time and size retention can delete on a small disk
            "log.segment.bytes=67108864",
            "log.retention.check.interval.ms=60000",
            # Durability: acks=all on one node means "in the broker's page cache"; the OS writes it out.
            # A killed broker loses nothing acknowledged; a power cut can (docs/architecture.md).
            "",
        ]
    )


def start_kafka(run_dir: Path, port: int) -> ChildProcess:
    """Apache Kafka in KRaft mode, one node, on 127.0.0.1; storage formatted on first start.

    The controller port is kept in the run directory so a restart finds the same quorum address.
    """
    libs = ensure_kafka_jars()
    java = _find_binary("java", "install a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
    home = run_dir / "kafka"
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    controller_file = home / "controller.port"
    controller_port = int(controller_file.read_text()) if controller_file.exists() else free_port()
    while controller_port == port:  # the caller's port may be free but not yet bound: never take it
        controller_port = free_port()
    if port_in_use(controller_port):
        raise ServiceError(
            f"Kafka controller port {controller_port} on 127.0.0.1 is in use ({controller_file})"
        )
    controller_file.write_text(str(controller_port))
    conf = home / "server.properties"
    conf.write_text(_kafka_properties(data, port, controller_port))
    log4j = home / "log4j2.properties"
    log4j.write_text(_KAFKA_LOG4J)
    jvm = [java, f"-Xmx{KAFKA_HEAP}", f"-Xms{KAFKA_HEAP}", "-XX:+UseG1GC", "-Djava.awt.headless=true"]
    # listen on plain IPv4 127.0.0.1, not on an IPv6-mapped address
    jvm.append("-Djava.net.preferIPv4Stack=true")
    jvm += [f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*"]
    if not (data / "meta.properties").exists():
        fmt = [
            *jvm,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={kafka_cluster_id()}",
            "-c",
            str(conf),
        ]
        result = subprocess.run(fmt, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceError(f"cannot format Kafka storage in {data}: {result.stdout}{result.stderr}")
    child = spawn("kafka", [*jvm, "kafka.Kafka", str(conf)], run_dir / "logs")
    bootstrap = f"127.0.0.1:{port}"
    wait_until(child, lambda: _kafka_ready(bootstrap), timeout=60.0)
    child.address = bootstrap
    return child


def kafka_cluster_id() -> str:
    """A random cluster id as Kafka's own ``Uuid.randomUuid`` makes it: base64url without padding, and never
    starting with "-" (the storage tool's argument parser would read such an id as an option; one start in
    64 failed that way in CI)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


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


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (sparse files count what they use), 0 if it is missing."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat().st_blocks * 512
    return total


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
    """The servers of the embedded default stack: mosquitto, Apache Kafka and influxd.

    ``kafka_external`` names a broker someone else runs (a plant's cluster, or the one broker a test session
    shares): the stack then starts no Kafka of its own and never stops that one.
    """

    run_dir: Path
    ports: Ports
    database: str = "wipwatch"
    kafka_external: str | None = None
    children: dict[str, ChildProcess] = field(default_factory=dict)
    #: Optional Prometheus Alertmanager: (port, config file); started after the others.
    alertmanager: tuple[int, Path] | None = None
    mqtt_auth: BrokerAuth | None = None

    @property
    def mqtt_port(self) -> int:
        return self.ports.mqtt

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_external or f"127.0.0.1:{self.ports.kafka}"

    @property
    def influx_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.influx}"

    def _starters(self) -> dict[str, Callable[[], ChildProcess]]:
        starters: dict[str, Callable[[], ChildProcess]] = {
            "mosquitto": lambda: start_mosquitto(self.run_dir, self.ports.mqtt, self.mqtt_auth),
            "kafka": lambda: start_kafka(self.run_dir, self.ports.kafka),
            "influxdb": lambda: start_influxdb(self.run_dir, self.ports.influx, self.database),
        }
        if self.kafka_external:
            del starters["kafka"]
        alertmanager = self.alertmanager
        if alertmanager is not None:
            starters["alertmanager"] = lambda: start_alertmanager(self.run_dir, *alertmanager)
        return starters

    def start(self) -> NativeStack:
        """Start every server; if one fails, stop the ones already running and raise."""
        ports = [self.ports.mqtt, self.ports.influx] + ([] if self.kafka_external else [self.ports.kafka])
        for port in ports:
            if port_in_use(port):
                raise ServiceError(
                    f"port {port} on 127.0.0.1 is in use; stop what holds it or choose other ports "
                    "(WIPWATCH_MQTT_PORT, WIPWATCH_KAFKA_BOOTSTRAP, WIPWATCH_INFLUX_URL)"
                )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            for name, starter in self._starters().items():
                self.children[name] = starter()
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, name: str) -> ChildProcess:
        """Stop and start one server on the same port and data (for outage and recovery tests)."""
        self.children[name].stop()
        self.children[name] = self._starters()[name]()
        return self.children[name]

    def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            child.stop()

    def disk_usage(self) -> dict[str, int]:
        """Bytes on disk per server's data directory (bounded by each server's retention)."""
        return {name: disk_usage(self.run_dir / name) for name in ("mosquitto", "kafka", "influxdb")}

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


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_alertmanager(run_dir: Path, port: int, config: Path) -> ChildProcess:
    """Prometheus Alertmanager with ``config`` (routes, receivers), its silences and state in the run
    directory, no cluster gossip port; ready when ``/-/ready`` answers."""
    if not config.is_file():
        raise ServiceError(f"Alertmanager config {config} not found (see examples/alertmanager.yml)")
    data = run_dir / "alertmanager"
    data.mkdir(parents=True, exist_ok=True)
    binary = _find_binary(
        "prometheus-alertmanager",
        "install it with `apt-get install prometheus-alertmanager` (make setup does)",
    )
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    child = spawn("alertmanager", argv, run_dir / "logs")
    url = f"http://127.0.0.1:{port}"
    wait_until(child, lambda: _http_ok(f"{url}/-/ready"))
    child.address = url
    return child
