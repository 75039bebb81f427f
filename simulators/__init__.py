"""SimPy value-stream simulators driven by the site file; they publish v1 events over MQTT.

``simulate_site`` runs a site and returns its :class:`GroundTruth`; ``MqttPublisher``
(``wipwatch.simulators.publisher``) and :class:`JsonLinesSink` are the two event sinks.
"""

from wipwatch.simulators.line import LineModel, simulate_site
from wipwatch.simulators.recording import JsonLinesSink
from wipwatch.simulators.truth import GroundTruth

__all__ = ["GroundTruth", "JsonLinesSink", "LineModel", "simulate_site"]
