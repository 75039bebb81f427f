"""SimPy value-stream simulators driven by the site file; they publish v1 events over MQTT.

``simulate_site`` runs a site and returns its :class:`GroundTruth`. An event sink is any callable taking
an event: ``wipwatch.mqtt.MqttPublisher`` (in the core: replay publishes too), or, for
``simulate --dry-run``, the recorder's ``RecordingWriter`` (the CLI wires it: one definition of each
recording format, docs/record-replay.md).
"""

from wipwatch.simulators.line import LineModel, simulate_site
from wipwatch.simulators.truth import GroundTruth

__all__ = ["GroundTruth", "LineModel", "simulate_site"]
