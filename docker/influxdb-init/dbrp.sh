#!/bin/bash
# InfluxQL (used by wipwatch and its Grafana dashboards) reaches a 2.x bucket through a DBRP mapping.
set -o errexit -o pipefail -o nounset
bucket_id=$(influx bucket list --name "$DOCKER_INFLUXDB_INIT_BUCKET" --hide-headers | cut -f1)
influx v1 dbrp create --db "$DOCKER_INFLUXDB_INIT_BUCKET" --rp autogen --bucket-id "$bucket_id" --default
