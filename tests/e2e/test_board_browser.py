"""The live board end to end in headless chromium: simulator → MQTT → ingest → Kafka → Faust → InfluxDB →
``wipwatch board`` (a child process) → SSE → the page. The numbers on the page must equal InfluxDB's."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.browser import ARTIFACTS, chromium_page
from tests.conftest import EXAMPLE_SITE, stack_env, stack_settings
from tests.polling import eventually
from wipwatch.dashboards.export import build_all
from wipwatch.dashboards.influxql import expand
from wipwatch.influx import InfluxTarget, query, rows
from wipwatch.ingest import wait_subscribed
from wipwatch.mqtt import MqttPublisher
from wipwatch.services import ChildProcess, NativeStack, free_port, python_module_argv, spawn
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site
from wipwatch.views import wip_snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture
def pipeline(stack: NativeStack, tmp_path: Path) -> Iterator[tuple[list[ChildProcess], str]]:
    env = stack_env(stack, tmp_path / "run")
    port = free_port()
    children = [
        spawn("ingest", python_module_argv("ingest"), tmp_path / "logs", env),
        spawn("processors", python_module_argv("process"), tmp_path / "logs", env),
        spawn(
            "board",
            python_module_argv("board", "--port", str(port), "--interval", "0.5"),
            tmp_path / "logs",
            env,
        ),
    ]
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_subscribed(children[0], tmp_path / "run", "wipwatch-ingest-1")
        eventually(lambda: _answers(url + "healthz"), bool, timeout=30, what=f"board at {url}")
        yield children, url
    finally:
        for child in children:
            child.stop()


def test_board_shows_the_processors_wip_in_flow_order(
    stack: NativeStack, pipeline: tuple[list[ChildProcess], str], tmp_path: Path
) -> None:
    children, url = pipeline
    settings = stack_settings(stack, tmp_path / "run")
    site = load_site(EXAMPLE_SITE)
    publisher = MqttPublisher(settings.mqtt_host, settings.mqtt_port, "e2e-board-sim")
    start = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
    truth = simulate_site(site, publisher, seed=11, duration=3 * 3600, speed=None, start=start)
    publisher.close()
    flow = [f"{line.id}/{loc.id}" for line, loc in site.iter_locations()]
    expected = {key: truth.wip.get(key, 0) for key in flow}
    assert any(expected.values()), "a run that ends with an empty line proves little"

    def influx_wip() -> dict[str, int]:
        for child in children:
            assert child.alive(), f"{child.name} died: {child.log_tail(30)}"
        return {f"{loc['line']}/{loc['location']}": loc["wip"] for loc in wip_snapshot(settings)["locations"]}

    # the reference is InfluxDB, which the processors filled; it must also match the simulator
    reference = eventually(influx_wip, lambda got: got == expected, timeout=120, what=f"WIP {expected}")

    # the Grafana panels read the same numbers from the real pipeline's points
    overview = build_all(site)["wipwatch-site-overview"]
    target = InfluxTarget.from_settings(settings)
    variables = {"site": site.site, "line": "line1"}
    for bar in overview["panels"][0]["targets"]:
        found = rows(query(target, expand(bar["query"], variables)))
        assert [r["parts"] for r in found] == [reference[bar["alias"]]], bar["alias"]

    with chromium_page(tmp_path / "chromium") as page:
        page.goto(url)
        cards = page.locator('[data-testid="location"]')
        eventually(cards.count, lambda n: n == len(flow), timeout=20, what=f"{len(flow)} location cards")
        shown_order = [
            f"{cards.nth(i).get_attribute('data-line')}/{cards.nth(i).get_attribute('data-location')}"
            for i in range(cards.count())
        ]
        assert shown_order == flow
        want = [str(reference[key]) for key in flow]
        eventually(
            lambda: [cards.nth(i).locator(".wip").inner_text() for i in range(len(flow))],
            lambda got: got == want,
            timeout=20,
            what=f"WIP on the page {want}",
        )
        assert page.locator("#total-wip").inner_text() == str(sum(reference.values()))
        assert page.locator("#status").get_attribute("data-state") in ("live", "stale")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "board-e2e.png"), full_page=True)
