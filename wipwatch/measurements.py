"""The InfluxDB measurements wipwatch writes and reads: one name each (the contract in docs/metrics.md).

The processors write them (``processors/points.py``); the dashboards, the live board and the CLI query
them. Tags and fields are listed per measurement in docs/metrics.md.
"""

from __future__ import annotations

from typing import Final

WIP: Final = "wip"
QUEUE: Final = "queue"
THROUGHPUT: Final = "throughput"
FLOW_TIME: Final = "flow_time"
LEAD_TIME: Final = "lead_time"
BOTTLENECK: Final = "bottleneck"
STATION: Final = "station"
COST: Final = "cost"
DATA_QUALITY: Final = "data_quality"
#: Alert transitions (docs/alerts.md).
ALERTS: Final = "alerts"

#: Every measurement, in the order docs/metrics.md lists them.
ALL: Final = (WIP, QUEUE, THROUGHPUT, FLOW_TIME, LEAD_TIME, BOTTLENECK, STATION, COST, DATA_QUALITY, ALERTS)
