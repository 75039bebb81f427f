"""Grafana dashboards as code, publishing, and the built-in live board."""
