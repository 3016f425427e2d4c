"""Sensors that replace ADF storage event triggers: folders of blobs become runs once complete."""

from orchestration.sensors.factory import SensorSettings, build_sensors, requested_run_keys

__all__ = ["SensorSettings", "build_sensors", "requested_run_keys"]
