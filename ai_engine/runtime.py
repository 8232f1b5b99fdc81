"""Wiring: from Settings to a ready DecisionEngine (store, governor backend, bus sinks)."""

from __future__ import annotations

import gc
import logging

from ai_engine.config import Settings
from ai_engine.engine import DecisionEngine
from ai_engine.governor import FileGovernorBackend, Governor, GovernorBackend
from ai_engine.telemetry.sqlite import TelemetryStore

__all__ = ["governor_backend", "open_engine", "settle_heap", "setup_logging"]


def settle_heap() -> None:
    """Collect, then move everything alive (models, history, feature state) out of the garbage
    collector's reach; objects made later are collected as usual.

    Why: these live as long as the service, and a full collection scans them all. At 400 symbols
    such a collection held every thread for up to 168 ms (``bench_latency`` with a gc callback,
    10 in 60 closing times), long enough for a shadow result to miss its deadline and for a
    decision to take 26 ms instead of 14. Called once the history is primed.
    """
    gc.collect()
    gc.freeze()


def setup_logging(level: str = "INFO") -> None:
    """Plain lines to stdout (journald adds its own timestamps when run under systemd)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def governor_backend(settings: Settings) -> GovernorBackend:
    use_redis = settings.governor_backend == "redis" or (settings.governor_backend == "auto" and settings.redis_url)
    if use_redis:
        from ai_engine.telemetry.redis_governor import RedisGovernorBackend

        return RedisGovernorBackend(settings.redis_url, prefix=settings.redis_prefix)
    return FileGovernorBackend(settings.governor_state_file)


def open_engine(settings: Settings, *, wait_for_shadow: bool = False) -> DecisionEngine:
    """Open the store (with the bus outbox when Redis is configured) and build the engine."""
    store = TelemetryStore(settings.store_path, outbox=bool(settings.redis_url), max_pending_rows=settings.store_buffer_rows)
    sinks = []
    if settings.redis_url:
        from ai_engine.telemetry.redis_streams import RedisPublisher

        sinks.append(RedisPublisher.from_settings(settings, store))
    return DecisionEngine(
        settings, store=store, governor=Governor(governor_backend(settings)), sinks=sinks, wait_for_shadow=wait_for_shadow
    )
