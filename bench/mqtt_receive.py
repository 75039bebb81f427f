"""Receiving at QoS 1 with acknowledgement by the caller: wipwatch's subscriber, gmqtt, mosquitto_sub.

Each client gets the same messages, queued beforehand by mosquitto on its persistent session, and is timed
from connecting until it has received (and acknowledged) every one. The acknowledgement comes 5 ms after a
batch arrives, standing for Kafka's confirmation, as in ingest:
- ``c_sub_rate``: ``mosquitto_sub -c -q 1`` (the baseline: the broker and its C client, no Python; it
  acknowledges on receipt);
- ``wipwatch_rate``: :class:`wipwatch.mqtt_subscriber.MqttSubscriber`, ``receive`` in batches, ``ack``
  each batch once its stand-in confirmation is done (``--receive-maximum``);
- ``gmqtt_rate``: gmqtt (``pip install gmqtt``; skipped if absent) with ``optimistic_acknowledgement=False``:
  its ``on_message`` coroutine waits for the stand-in confirmation of its batch, and gmqtt sends the PUBACK
  when it returns (one task and one write per message).

Run: ``.venv/bin/python bench/mqtt_receive.py [--messages 100000] [--receive-maximum 65535]``. Writes
bench/results/mqtt_receive.json too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from wipwatch.mqtt import MqttPublisher
from wipwatch.mqtt_subscriber import InboundMessage, MqttSubscriber
from wipwatch.services import free_port, start_mosquitto
from wipwatch.settings import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results" / "mqtt_receive.json"
TOPIC = "bench/#"
PAYLOAD = (
    b'{"v":1,"id":"6f4c76e4-7f0c-5007-9df4-5797c476547d","kind":"in","time":"2026-11-25T06:00:00Z",'
    b'"site":"demo-plant","line":"line1","location":"raw","part":"p-12345"}'
)
CONFIRM_S = 0.005


def queue_messages(port: int, n: int) -> None:
    publisher = MqttPublisher("127.0.0.1", port, "bench-receive-pub")
    for i in range(n):
        publisher.publish(f"bench/line{i % 3}/x", PAYLOAD)
    publisher.close()


def c_sub(port: int, n: int, subscribe_only: bool) -> float:
    argv = ["mosquitto_sub", "-p", str(port), "-V", "mqttv5", "-c", "-i", "bench-c", "-q", "1", "-t", TOPIC]
    argv += ["-x", "600"]  # session expiry: kept between the two runs
    argv += ["-E"] if subscribe_only else ["-C", str(n)]
    began = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=600)
    return n / (time.perf_counter() - began)


async def wipwatch_sub(port: int, n: int, receive_maximum: int, subscribe_only: bool) -> float:
    sub = MqttSubscriber(
        "127.0.0.1", port, "bench-wipwatch", [TOPIC], session_expiry_s=600, receive_maximum=receive_maximum
    )
    began = time.perf_counter()
    await sub.start()
    if subscribe_only:
        await sub.close()
        return 0.0

    async def confirm(batch: list[InboundMessage]) -> None:
        await asyncio.sleep(CONFIRM_S)
        sub.ack(batch)

    got, pending = 0, []
    while got < n:
        batch = await sub.receive(5000, timeout=60)
        if not batch:
            raise SystemExit(f"wipwatch subscriber: {got} of {n} messages")
        got += len(batch)
        pending.append(asyncio.ensure_future(confirm(batch)))
    await asyncio.gather(*pending)
    rate = n / (time.perf_counter() - began)
    await sub.close()
    return rate


async def gmqtt_sub(port: int, n: int, receive_maximum: int, subscribe_only: bool) -> float:
    import gmqtt  # type: ignore[import-not-found]  # optional: only this comparison needs it

    loop = asyncio.get_running_loop()
    done, subscribed = asyncio.Event(), asyncio.Event()
    got = 0
    batch: list[asyncio.Future[None]] = []

    async def release() -> None:
        nonlocal batch
        while True:
            await asyncio.sleep(CONFIRM_S)
            ready, batch = batch, []
            for future in ready:
                future.set_result(None)

    async def on_message(_client: Any, _topic: str, _payload: bytes, _qos: int, _props: Any) -> int:
        nonlocal got
        got += 1
        if got >= n:
            done.set()
        future = loop.create_future()
        batch.append(future)
        await future
        return 0

    client = gmqtt.Client(
        "bench-gmqtt",
        clean_session=False,
        optimistic_acknowledgement=False,
        session_expiry_interval=600,
        receive_maximum=receive_maximum,
    )
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    releaser = asyncio.ensure_future(release())
    began = time.perf_counter()
    await client.connect("127.0.0.1", port, version=gmqtt.constants.MQTTv50)
    try:
        if subscribe_only:
            client.subscribe(TOPIC, qos=1)
            await asyncio.wait_for(subscribed.wait(), 30)
            return 0.0
        await asyncio.wait_for(done.wait(), 600)
        await asyncio.sleep(CONFIRM_S * 2)  # the last acknowledgements
        return n / (time.perf_counter() - began)
    finally:
        releaser.cancel()
        await client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--receive-maximum", type=int, default=65535)
    args = parser.parse_args()
    n, rm = args.messages, args.receive_maximum
    try:
        import gmqtt  # noqa: F401

        clients = ["c", "wipwatch", "gmqtt"]
    except ImportError:
        clients = ["c", "wipwatch"]
    figures: dict[str, float] = {"messages": n, "receive_maximum": rm}
    with tempfile.TemporaryDirectory(prefix="wipwatch-bench-receive-") as tmp:
        port = free_port()
        broker = start_mosquitto(Path(tmp), port)
        try:
            for name in clients:
                for subscribe_only in (True, False):
                    if not subscribe_only:
                        queue_messages(port, n)
                    if name == "c":
                        rate = c_sub(port, n, subscribe_only)
                    elif name == "wipwatch":
                        rate = asyncio.run(wipwatch_sub(port, n, rm, subscribe_only))
                    else:
                        rate = asyncio.run(gmqtt_sub(port, n, rm, subscribe_only))
                figures[f"{name}_sub_rate" if name == "c" else f"{name}_rate"] = rate
        finally:
            broker.stop()
    c = figures["c_sub_rate"]
    print(f"messages: {n} queued on each client's session; receive_maximum: {rm}")
    print(f"c_sub_rate: {c:.0f} msg/s (baseline: mosquitto_sub -c -q 1)")
    for name in ("wipwatch_rate", "gmqtt_rate"):
        if name in figures:
            print(f"{name}: {figures[name]:.0f} msg/s, ratio {figures[name] / c:.3f} of c_sub_rate")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"name": "mqtt_receive", **figures}, indent=1) + "\n")


if __name__ == "__main__":
    main()
