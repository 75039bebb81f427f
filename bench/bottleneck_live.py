"""How far the live bottleneck answers are from the active-period method (docs/metrics.md, "Bottleneck").

An accuracy report, not a timing: the baseline is the method itself, applied after the run with every
period known whole. For each example site and seed (8 simulated hours), on every line:

- ``agreement``: share of the observed time in which the live signal (``longest_running``, the station
  whose running period started first) is one of the method's bottlenecks at that instant (sampled each
  second);
- ``longest_running_error``: per-station gap, in percentage points, between the share of time a station
  was the longest running and its method share (what crediting the live signal would report: the
  wipwatch of issue #14), and how often the top station differs;
- ``provisional_error``: per-station gap between the shares the processors write at each whole hour
  (periods still running cut at that hour) and the method's shares of [start, that hour] known in
  hindsight (periods crossing the hour taken whole, their credit clipped at the hour).

Gaps are printed as the largest and the mean over stations (and hours), then over lines.

Run: .venv/bin/python bench/bottleneck_live.py [--seeds N]; writes bench/results/bottleneck_live.json.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from wipwatch.events import ACTIVE_STATES, Event, StationState
from wipwatch.processors.metrics.bottleneck import ActivePeriods, Credit
from wipwatch.settings import REPO_ROOT
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

SITES = ("mass-production.yaml", "lean-pull.yaml", "lean-line.yaml", "multi-line-site.yaml")
HOURS = 8
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC).timestamp()


def _calls(events: list[Event], line: str) -> list[tuple[float, str, bool]]:
    return [
        (e.timestamp, e.location, e.state in ACTIVE_STATES)
        for e in events
        if isinstance(e, StationState) and e.line == line
    ]


def _hindsight(calls: list[tuple[float, str, bool]], end: float) -> ActivePeriods:
    """The method over the whole run, every credit kept (a window longer than the run)."""
    walk = ActivePeriods(window_s=10 * HOURS * 3600)
    for t, station, active in calls:
        walk.set_active(t, station, active)
    walk.advance(end)
    return walk


def _credited(credits: list[Credit], stations: dict[str, float], until: float) -> dict[str, float]:
    out = dict.fromkeys(stations, 0.0)
    for start, end, station, _ in credits:
        out[station] += max(0.0, min(end, until) - start)
    return out


def measure_line(calls: list[tuple[float, str, bool]], end: float) -> dict[str, float]:
    final = _hindsight(calls, end)
    credits = final.timeline(end)
    live = ActivePeriods()
    longest_s = dict.fromkeys(final.sole_s, 0.0)
    agree = total = 0
    provisional: list[float] = []
    i, c = 0, 0
    sample = T0
    hour = T0 + 3600
    while sample < end:
        while i < len(calls) and calls[i][0] <= sample:
            live.set_active(*calls[i])
            i += 1
        longest = live.longest_running(sample)
        for station in longest:
            longest_s[station] += 1.0 / len(longest)
        while c < len(credits) and credits[c][1] <= sample:
            c += 1
        at_sample = {s for a, b, s, _ in credits[c : c + 8] if a <= sample < b}
        if at_sample:
            total += 1
            agree += bool(longest & at_sample)
        if sample >= hour:
            online = live.shares(sample)
            known = _credited(credits, final.sole_s, sample)
            observed = sample - T0
            provisional += [abs(share - known[s] / observed) for s, (share, _, _) in online.items()]
            hour += 3600
        sample += 1.0
    method = final.shares(end)
    observed = end - T0
    gaps = [abs(longest_s[s] / observed - method[s][0]) for s in method]
    top_differs = max(method, key=lambda s: method[s][0]) != max(longest_s, key=lambda s: longest_s[s])
    return {
        "agreement": agree / total if total else 1.0,
        "longest_running_error_max": max(gaps),
        "longest_running_error_mean": sum(gaps) / len(gaps),
        "top_differs": float(top_differs),
        "provisional_error_max": max(provisional),
        "provisional_error_mean": sum(provisional) / len(provisional),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for name in SITES:
        site = load_site(REPO_ROOT / "examples" / name)
        for seed in range(1, args.seeds + 1):
            events: list[Event] = []
            simulate_site(
                site, events.append, seed=seed, duration=HOURS * 3600, start=datetime.fromtimestamp(T0, UTC)
            )
            for line in site.lines:
                figures = measure_line(_calls(events, line.id), T0 + HOURS * 3600)
                rows.append({"site": name, "seed": seed, "line": line.id, **figures})
    n = len(rows)
    summary = {
        "agreement_mean": sum(r["agreement"] for r in rows) / n,
        "agreement_min": min(r["agreement"] for r in rows),
        "longest_running_error_max": max(r["longest_running_error_max"] for r in rows),
        "longest_running_error_mean": sum(r["longest_running_error_mean"] for r in rows) / n,
        "top_station_differs": sum(r["top_differs"] for r in rows) / n,
        "provisional_error_max": max(r["provisional_error_max"] for r in rows),
        "provisional_error_mean": sum(r["provisional_error_mean"] for r in rows) / n,
    }
    for key, value in summary.items():
        unit = "fraction" if key.startswith(("agreement", "top")) else "points"
        shown = value if unit == "fraction" else value * 100
        equal = "1" if key.startswith("agreement") else "0"
        print(f"{key}: {shown:.3f} {unit} (the method itself: {equal})")
    print(f"lines: {n}")
    out = Path(__file__).resolve().parent / "results" / "bottleneck_live.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "lines": rows}, indent=1))


if __name__ == "__main__":
    main()
