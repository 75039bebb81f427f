"""Integration tests: real mosquitto, Apache Kafka and influxd on free loopback ports (tests/conftest.py)."""
