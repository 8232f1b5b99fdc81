"""Quantum AI engine: candles → features → agents → ensemble → governor → telemetry."""

__version__ = "0.1.0"
