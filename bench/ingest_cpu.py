"""Ingest's CPU per event, this tree's code beside a baseline commit's, alternated on one running stack.

One mosquitto and one Apache Kafka (native, as in ``wipwatch up``) serve every round. A round starts one
ingest process (``python -m wipwatch ingest``) of one variant, waits until it is subscribed, publishes a
whole simulated shift of the 3-line bench site (bench/sites/three-lines.yaml; 12 h = 147,456 events) at
QoS 1 and waits until ingest's status file counts every event accepted. It reads, from /proc, the CPU
seconds (user + system) ingest, the Kafka broker and mosquitto used from the subscription to the last
event, and prints them per event:

- ``<variant>_ingest_us_per_event``: the figure this bench is for (the publisher runs in this process and
  is not counted);
- ``<variant>_kafka_us_per_event``, ``<variant>_mosquitto_us_per_event``: what the variant's way of
  sending costs the servers (larger Kafka batches cost the broker less per event, compression more);
- ``<variant>_rate``: events per second over the round (set by the publisher as much as by ingest);
- ``events_per_batch``, ``events_per_record`` (branch only): how many events ingest took from the
  subscriber at once and packed into one Kafka record, on average (as of its last status file, which is
  rewritten every second).

Variants: ``branch`` is the code of this tree; ``baseline`` is ``--baseline`` (a git commit, by default
the last one before issue #16's ingest work), extracted with ``git archive`` and imported through
``PYTHONPATH`` arranged as pyproject's ``package-dir`` maps it. Rounds alternate baseline, branch,
baseline, ... (``--rounds`` each) so that the machine's load falls on both alike; each figure is the
median of a variant's rounds, and the ratio is branch / baseline. Each round uses its own topics and
share group, so no round sees another's records or session.

A first round of the branch warms the stack up (Kafka's JIT, topic creation) and is not counted.

Run: ``.venv/bin/python bench/ingest_cpu.py [--hours 12] [--rounds 3] [--baseline REF] [--profile DIR]``.
``--profile`` samples each round's ingest with py-spy (``pip install py-spy``) into
``DIR/<round>-<variant>.txt`` and prints where it spent its time (sampling costs ingest CPU: profile
runs are for the shares, not the figures). Settings reach both variants' ingest through the environment,
e.g. ``WIPWATCH_INGEST_LINGER_S=0`` (the baseline has no such setting and ignores it). Writes
bench/results/ingest_cpu.json too.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

from mqtt_hop import cpu_seconds, hotspots  # bench/ is the script's directory: on sys.path

from wipwatch.events import encode_event, topic_for
from wipwatch.ingest import read_status, wait_subscribed
from wipwatch.mqtt import MqttPublisher
from wipwatch.services import free_port, python_module_argv, spawn, start_kafka, start_mosquitto
from wipwatch.settings import REPO_ROOT
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

SITE_FILE = REPO_ROOT / "bench" / "sites" / "three-lines.yaml"
RESULTS = REPO_ROOT / "bench" / "results" / "ingest_cpu.json"
#: main before issue #16's ingest work (bench/mqtt_hop.py's CPU budget: ingest 27 us an event).
BASELINE_REF = "941945d"


def extract(ref: str, into: Path) -> Path:
    """Check out ``ref`` into ``into`` and return a directory to put on PYTHONPATH for it.

    The services live in top-level folders that install as ``wipwatch.<name>`` (pyproject's
    ``package-dir``); a symlink in the extracted ``wipwatch/`` for each gives the same import names.
    """
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", ref], check=True, capture_output=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    mapping = tomllib.loads((into / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in mapping.items():
        parts = package.split(".")
        link = into.joinpath(*parts)
        if len(parts) == 2 and not link.exists():
            link.symlink_to(into / folder, target_is_directory=True)
    return into


def py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` at 200 Hz until interrupted (SIGINT), raw stacks into ``out``."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [binary, "record", "--pid", str(pid), "-r", "200", "-f", "raw", "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def one_round(
    variant: str,
    pythonpath: Path | None,
    index: int,
    servers: dict[str, int],
    mqtt_port: int,
    kafka: str,
    messages: list[tuple[str, bytes]],
    work: Path,
    profile: Path | None = None,
) -> dict[str, float]:
    run = work / f"run-{index}-{variant}"
    cid = f"ingest-{index}-{variant}"
    env = {
        "WIPWATCH_SITE_FILE": str(SITE_FILE),
        "WIPWATCH_RUN_DIR": str(run),
        "WIPWATCH_MQTT_PORT": str(mqtt_port),
        "WIPWATCH_KAFKA_BOOTSTRAP": kafka,
        "WIPWATCH_LOG_LEVEL": "WARNING",
        "WIPWATCH_EVENTS_TOPIC": f"events-{index}",
        "WIPWATCH_DEADLETTER_TOPIC": f"deadletter-{index}",
        "WIPWATCH_INGEST_SHARE_GROUP": f"group-{index}",
        "WIPWATCH_INGEST_CLIENT_ID": cid,
    }
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    child = spawn(cid, python_module_argv("ingest"), run / "logs", env, cwd=pythonpath)
    try:
        wait_subscribed(child, run, cid)
        spy = py_spy(child.pid, profile / f"{index}-{variant}.txt") if profile is not None else None
        before = {name: cpu_seconds(pid) for name, pid in {**servers, "ingest": child.pid}.items()}
        began = time.perf_counter()
        publisher = MqttPublisher("127.0.0.1", mqtt_port, f"bench-{index}")
        for topic, payload in messages:
            publisher.publish(topic, payload)
        publisher.close()
        deadline = began + 600
        while int((status := read_status(run, cid) or {}).get("accepted", 0)) < len(messages):
            if not child.alive() or time.perf_counter() > deadline:
                sys.exit(f"{variant} ingest did not finish; log {child.log_path}:\n{child.log_tail()}")
            time.sleep(0.02)
        wall = time.perf_counter() - began
        used = {
            name: cpu_seconds(pid) - before[name] for name, pid in {**servers, "ingest": child.pid}.items()
        }
        if spy is not None and profile is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            print("\n".join(hotspots(profile / f"{index}-{variant}.txt")))
    finally:
        child.stop()
    n = len(messages)
    figures = {"rate": n / wall, **{f"{name}_us_per_event": used[name] / n * 1e6 for name in used}}
    if status.get("batches"):  # counted since the branch (the status file is rewritten every second)
        figures["events_per_batch"] = n / status["batches"]
        figures["events_per_record"] = n / status["records"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=12.0, help="simulated hours of the 3-line site")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each variant, alternated")
    parser.add_argument("--baseline", default=BASELINE_REF, help="git commit of the baseline variant")
    parser.add_argument("--profile", type=Path, help="py-spy each round's ingest into this directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    site = load_site(SITE_FILE)
    messages: list[tuple[str, bytes]] = []
    simulate_site(
        site,
        lambda e: messages.append((topic_for(e), encode_event(e))),
        seed=5,
        duration=args.hours * 3600,
        start=datetime(2026, 11, 25, 6, tzinfo=UTC),
    )
    rounds: dict[str, list[dict[str, float]]] = {"baseline": [], "branch": []}
    with tempfile.TemporaryDirectory(prefix="wipwatch-bench-ingest-cpu-") as tmp:
        work = Path(tmp)
        baseline_path = extract(args.baseline, work / "baseline")
        mqtt_port, kafka_port = free_port(), free_port()
        mosquitto = start_mosquitto(work / "stack", mqtt_port)
        broker = None
        try:
            broker = start_kafka(work / "stack", kafka_port)
            servers = {"kafka": broker.pid, "mosquitto": mosquitto.pid}
            kafka = f"127.0.0.1:{kafka_port}"
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
            one_round("warmup", None, 0, servers, mqtt_port, kafka, messages, work)
            for index in range(1, 2 * args.rounds + 1):
                variant = ("branch", "baseline")[index % 2]
                path = baseline_path if variant == "baseline" else None
                figures = one_round(
                    variant, path, index, servers, mqtt_port, kafka, messages, work, args.profile
                )
                rounds[variant].append(figures)
                print(
                    f"round {index} {variant}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()),
                    flush=True,
                )
        finally:
            if broker is not None:
                broker.stop()
            mosquitto.stop()
    result: dict[str, object] = {
        "bench": "ingest_cpu",
        "events": len(messages),
        "baseline_ref": args.baseline,
        "rounds": rounds,
    }
    print(f"events: {len(messages)} a round; {args.rounds} rounds each; baseline {args.baseline}")
    for name in ("ingest_us_per_event", "kafka_us_per_event", "mosquitto_us_per_event", "rate"):
        base = statistics.median(r[name] for r in rounds["baseline"])
        mine = statistics.median(r[name] for r in rounds["branch"])
        unit = "events/s" if name == "rate" else "us"
        print(f"baseline_{name}: {base:.1f} {unit}")
        print(f"branch_{name}: {mine:.1f} {unit}, ratio {mine / base:.2f} of baseline")
        result[f"baseline_{name}"], result[f"branch_{name}"] = round(base, 2), round(mine, 2)
        result[f"ratio_{name}"] = round(mine / base, 3)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
