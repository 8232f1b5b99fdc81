"""Which decisions a budgeted shadow predicts on (``SHADOW_SAMPLE``, ``SHADOW_<MODEL>_<TAG>_SAMPLE``).

A decision is sampled for a shadow when a hash of its event id and the shadow's key falls below
the fraction: no state and no random seed, so a replay, a restart and a second instance pick the
same decisions, and two shadows at one fraction see independent sets (their inference load
spreads over the candles instead of piling onto the same ones). A decision not sampled runs no
inference for that shadow and is recorded as ``unsampled``, so the analysis knows exactly which
decisions each challenger saw.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

__all__ = ["sample_mask", "sampled"]

_SCALE = float(2**64)


def sampled(event_id: str, key: str, fraction: float) -> bool:
    """Whether the decision ``event_id`` is in the sample of the shadow ``key`` at ``fraction``."""
    if fraction >= 1.0:
        return True
    digest = hashlib.blake2b(f"{key}|{event_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * _SCALE


def sample_mask(event_ids: Sequence[str], key: str, fraction: float) -> np.ndarray:
    """``sampled`` for each event id, as a bool array."""
    return np.fromiter((sampled(e, key, fraction) for e in event_ids), dtype=bool, count=len(event_ids))
