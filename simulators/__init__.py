"""SimPy value-stream simulators driven by the site file; they publish v1 events over MQTT.

``simulate_site`` runs a site and returns its :class:`GroundTruth`. The event sinks are
``wipwatch.mqtt.MqttPublisher`` (in the core: replay publishes too) and :class:`JsonLinesSink`.
"""

from wipwatch.simulators.line import LineModel, simulate_site
from wipwatch.simulators.recording import JsonLinesSink
from wipwatch.simulators.truth import GroundTruth

__all__ = ["GroundTruth", "JsonLinesSink", "LineModel", "simulate_site"]
