"""Sensors that replace ADF storage event triggers: folders of blobs become runs once complete."""

from orchestration.sensors.factory import AREAS, WatchedArea, build_sensor, build_sensors, requested_run_keys

__all__ = ["AREAS", "WatchedArea", "build_sensor", "build_sensors", "requested_run_keys"]
