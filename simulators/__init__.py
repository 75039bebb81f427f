"""SimPy value-stream simulators driven by the site file; they publish v1 events over MQTT."""

from wipwatch.simulators.line import GroundTruth, LineModel, simulate_site

__all__ = ["GroundTruth", "LineModel", "simulate_site"]
