#!/bin/bash
# Storage lifecycle on InfluxDB 2.x (wipwatch/retention.py does the same on 1.x): raw points in the
# bucket set up with DOCKER_INFLUXDB_INIT_RETENTION, one point per minute and series in the rollup
# bucket, kept WIPWATCH_ROLLUP_RETENTION. InfluxQL reads the rollups as retention policy rollup_1m of
# database wipwatch (the shift-review dashboard's $retention). Same names as on 1.x: each field keeps its
# last value of the minute, data_quality counts are summed. Runs once, at first start, after dbrp.sh.
set -o errexit -o pipefail -o nounset
raw="$DOCKER_INFLUXDB_INIT_BUCKET"
rollup="${raw}_rollup_1m"
influx bucket create --name "$rollup" --retention "$WIPWATCH_ROLLUP_RETENTION"
rollup_id=$(influx bucket list --name "$rollup" --hide-headers | cut -f1)
influx v1 dbrp create --db "$raw" --rp rollup_1m --bucket-id "$rollup_id"
task=$(mktemp)
cat > "$task" <<FLUX
option task = {name: "wipwatch rollup 1m", every: 1m, offset: 10s}

// the last 10 minutes every minute, like the 1.x continuous queries' RESAMPLE FOR 10m: late batches land
raw = from(bucket: "$raw") |> range(start: -10m)
raw
  |> filter(fn: (r) => not (r._measurement == "data_quality" and r._field == "count"))
  |> aggregateWindow(every: 1m, fn: last, createEmpty: false, timeSrc: "_start")
  |> to(bucket: "$rollup")
raw
  |> filter(fn: (r) => r._measurement == "data_quality" and r._field == "count")
  |> aggregateWindow(every: 1m, fn: sum, createEmpty: false, timeSrc: "_start")
  |> to(bucket: "$rollup")
FLUX
influx task create --file "$task"
rm -f "$task"
