#!/bin/bash
# Least privilege for the InfluxQL clients: a write-only account for the processors, a read-only one for
# Grafana and the live board. 1.x-compatible authorizations take a chosen password, so `wipwatch secrets`
# generates them beforehand with everything else (2.x creates API tokens itself). The admin token
# (DOCKER_INFLUXDB_INIT_ADMIN_TOKEN) stays inside this container. Runs once, at first start, after
# lifecycle.sh (the rollup bucket).
set -o errexit -o pipefail -o nounset
bucket_id=$(influx bucket list --name "$DOCKER_INFLUXDB_INIT_BUCKET" --hide-headers | cut -f1)
rollup_id=$(influx bucket list --name "${DOCKER_INFLUXDB_INIT_BUCKET}_rollup_1m" --hide-headers | cut -f1)
influx v1 auth create --username wipwatch-writer --password "$INFLUX_WRITER_PASSWORD" \
  --write-bucket "$bucket_id" --description "wipwatch processors: write only"
influx v1 auth create --username wipwatch-reader --password "$INFLUX_READER_PASSWORD" \
  --read-bucket "$bucket_id" --read-bucket "$rollup_id" --description "Grafana and the live board: read only"
