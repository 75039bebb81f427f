"""The simulators publish through the core's back-pressured MQTT publisher (moved to wipwatch/mqtt.py)."""

from wipwatch.mqtt import MqttPublisher

__all__ = ["MqttPublisher"]
