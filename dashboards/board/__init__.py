"""The built-in live value-stream board: a Starlette app streaming InfluxDB snapshots over SSE."""
