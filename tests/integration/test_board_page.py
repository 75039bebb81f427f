"""The live board in headless chromium over every measurement: layout, values, bottleneck, staleness."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from tests.browser import ARTIFACTS, chromium_page
from tests.conftest import EXAMPLE_SITE
from tests.integration.test_view_queries import MINUTE, T0, WIP_LATE, _write, contract_lines
from tests.polling import eventually
from wipwatch.dashboards.board.app import create_app
from wipwatch.dashboards.board.snapshot import SnapshotSource
from wipwatch.influx import line
from wipwatch.services import NativeStack, free_port
from wipwatch.site import Site, load_site, parse_site

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STALE_AFTER_S = 2.0


@pytest.fixture
def board(stack: NativeStack) -> Iterator[tuple[str, uvicorn.Server]]:
    site = load_site(EXAMPLE_SITE)
    target = _write(stack, contract_lines(site))
    port = free_port()
    app = create_app(SnapshotSource(site, target, stale_after_s=STALE_AFTER_S), interval=0.5)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, bool, timeout=10, what="board started")
    try:
        yield f"http://127.0.0.1:{port}/", server
    finally:
        server.should_exit = True
        thread.join(10)


def test_board_draws_value_stream_with_values_bottleneck_and_no_data_state(
    board: tuple[str, uvicorn.Server], tmp_path: Path
) -> None:
    board_url, server = board
    site = load_site(EXAMPLE_SITE)
    with chromium_page(tmp_path / "chromium") as page:
        page.goto(board_url)
        cards = page.locator('[data-testid="location"]')
        eventually(cards.count, lambda n: n == 11, timeout=15, what="11 location cards")
        order = [cards.nth(i).get_attribute("data-location") for i in range(cards.count())]
        assert order == [loc.id for loc in site.lines[0].locations]
        expected = [str(WIP_LATE.get(loc_id, 0)) for loc_id in order]
        eventually(
            lambda: [cards.nth(i).locator(".wip").inner_text() for i in range(11)],
            lambda got: got == expected,
            timeout=15,
            what=f"WIP numbers {expected}",
        )
        flow = page.locator(".flow").inner_text()
        assert (
            flow.index("Supplier")
            < flow.index("Raw material")
            < flow.index("Packing")
            < flow.index("Customer")
        )
        bottlenecks = page.locator(".loc.bottleneck")
        assert bottlenecks.count() == 1 and bottlenecks.get_attribute("data-location") == "press"
        # active alerts (contract: line silent since minute 16, b-press over its cap; b-cut's resolved)
        alerts = page.locator('[data-testid="alert"]')
        assert [alerts.nth(i).get_attribute("data-location") for i in range(alerts.count())] == [
            "_line",
            "b-press",
        ]
        assert "CRITICAL line-silent at _line" in alerts.nth(0).inner_text()
        marked = page.locator(".loc.alert-warning")
        assert marked.count() == 1 and marked.get_attribute("data-location") == "b-press"
        assert page.locator('section.line[data-line="line1"]').get_attribute("data-alert") == "critical"
        b_press = page.locator('.loc[data-location="b-press"]')
        assert "▲ +1.0/h" in b_press.locator(".growth").inner_text()  # growth_per_hour = index 4 - 3
        assert b_press.locator(".fill").get_attribute("class") == "fill warn"  # 18 of cap 20: amber
        assert "€162" in b_press.locator(".money").inner_text()  # 18 parts x 9.0 EUR
        assert page.locator("#total-wip").inner_text() == "36"
        assert page.locator(".lead-littles").inner_text() == "45.0 min"  # 2700 s
        assert page.locator(".lead-va").inner_text() == "4.0 min"  # 0.08 x 3000 s
        fg = page.locator('.loc[data-location="fg"]')
        assert fg.locator(".age").inner_text() == "oldest 1.8 min"  # 100 + index 10 = 110 s
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "board-contract.png"), full_page=True)
        # nothing new arrives: the board must say so rather than look live
        status = page.locator("#status")
        eventually(status.inner_text, lambda text: text.startswith("no data for"), timeout=15, what="stale")
        assert status.get_attribute("data-state") == "stale"
        # the board server itself goes away: the page must not keep showing the last numbers as current
        server.should_exit = True
        eventually(
            lambda: status.get_attribute("data-state"), lambda state: state == "down", timeout=15, what="down"
        )
        assert status.inner_text() == "reconnecting…" or "disconnected" in status.inner_text()


def _big_site() -> Site:
    """Three lines of twelve locations each: store, then station/buffer pairs, then finished goods."""
    lines = []
    for n in range(3):
        locations: list[dict[str, object]] = [{"id": "raw", "kind": "store", "unit_value": 1.0}]
        for i in range(5):
            locations.append({"id": f"s{i}", "kind": "station", "process_time": {"mean": 10}})
            locations.append({"id": f"b{i}", "kind": "buffer", "cap": 10, "unit_value": 2.0})
        locations.append({"id": "fg", "kind": "store", "unit_value": 3.0})
        lines.append({"id": f"line{n}", "name": f"Line {n}", "locations": locations})
    return parse_site({"site": "big", "name": "Big plant", "lines": lines})


def test_board_stays_usable_with_36_locations(stack: NativeStack, tmp_path: Path) -> None:
    site = _big_site()
    points = [
        line(
            "wip",
            {"site": "big", "line": ln.id, "location": loc.id, "kind": loc.kind.value},
            {"parts": (i * 5 + n * 4) % 14, "value": 1.0},
            T0 + i * MINUTE,
        )
        for n, ln in enumerate(site.lines)
        for i, loc in enumerate(ln.locations)
    ]
    target = _write(stack, points)
    port = free_port()
    app = create_app(SnapshotSource(site, target), interval=0.5)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        eventually(lambda: server.started, bool, timeout=10, what="board started")
        with chromium_page(tmp_path / "chromium", width=1366, height=768) as page:
            page.goto(f"http://127.0.0.1:{port}/")
            cards = page.locator('[data-testid="location"]')
            eventually(cards.count, lambda count: count == 36, timeout=15, what="36 location cards")
            want = [
                str((i * 5 + n * 4) % 14) for n, ln in enumerate(site.lines) for i in range(len(ln.locations))
            ]
            eventually(
                lambda: page.locator('[data-testid="location"] .wip').all_inner_texts(),
                lambda got: got == want,
                timeout=15,
                what="36 WIP numbers",
            )
            # the value stream wraps inside the window instead of scrolling sideways
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            assert page.locator("section.line h2").all_inner_texts() == ["Line 0", "Line 1", "Line 2"]
            red = page.locator(".fill.bad")  # parts >= cap 10 on a buffer
            over = [w for w, loc in zip(want, [loc for ln in site.lines for loc in ln.locations], strict=True)
                    if loc.cap and int(w) >= loc.cap]  # fmt: skip
            assert red.count() == len(over) > 0
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "board-36-locations.png"), full_page=True)
    finally:
        server.should_exit = True
        thread.join(10)
