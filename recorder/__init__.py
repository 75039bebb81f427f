"""Record MQTT traffic to a file and replay it at any speed, event times preserved."""
