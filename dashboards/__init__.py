"""Views: Grafana dashboards as code, their provisioning and publishing, and the built-in live board."""
