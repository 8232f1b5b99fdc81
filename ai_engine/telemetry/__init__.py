"""Telemetry: the SQLite record of every decision, the shadow log, and the bus publishers."""

from ai_engine.telemetry.sqlite import SCHEMA_VERSION, TelemetryStore

__all__ = ["TelemetryStore", "SCHEMA_VERSION"]
