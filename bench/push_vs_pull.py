"""Mass production vs lean pull: the two shipped scenarios of one line over one 8-hour shift.

Both files describe the same line, stations, shift and customer demand; only release and supply differ.
Pull is the baseline: each push figure is printed with its ratio to pull. Seeds 1-10 by default, so one
lucky shift does not decide; the figures are the means over the seeds.

Run: .venv/bin/python bench/push_vs_pull.py [--seeds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from wipwatch.settings import REPO_ROOT
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

SCENARIOS = {"push": "mass-production.yaml", "pull": "lean-pull.yaml"}
FIGURES = {
    "orders": "orders",
    "shipped": "parts",
    "throughput_per_hour": "parts/h",
    "avg_wip": "parts",
    "mean_lead_time_s": "s",
    "max_lead_time_s": "s",
    "mean_cycle_time_s": "s",
}
RESULTS = Path(__file__).parent / "results" / "push_vs_pull.json"


def run(file: str, seeds: int) -> dict[str, float]:
    site = load_site(REPO_ROOT / "examples" / file)
    line = site.lines[0].id
    per_seed = [
        simulate_site(site, lambda e: None, seed=seed, duration=8 * 3600).line_summary(line)
        for seed in range(1, seeds + 1)
    ]
    return {name: statistics.mean(s[name] for s in per_seed) for name in FIGURES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    seeds = parser.parse_args().seeds
    results = {name: run(file, seeds) for name, file in SCENARIOS.items()}
    for name, unit in FIGURES.items():
        push, pull = results["push"][name], results["pull"][name]
        ratio = push / pull if pull else float("nan")
        print(f"pull_{name}: {pull:.1f} {unit}")
        print(f"push_{name}: {push:.1f} {unit} (push/pull {ratio:.2f})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"bench": "push_vs_pull", "seeds": seeds, **results}, indent=1))


if __name__ == "__main__":
    main()
