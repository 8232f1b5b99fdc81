"""The ensemble rule over recorded predictions, vectorised: what the engine would have decided
had the models voted with other roles and weights (the counterfactual activation).

It computes exactly what ``EnsembleManager.decide`` computes, in the same order of floating-point
operations (scores summed over the models in the engine's order; adding 0.0 for a model that does
not vote changes no bit), so re-voting a recorded configuration reproduces its decisions bit for
bit — the analysis checks that on every run — and a counterfactual equals a replay with those
weights (tests/analysis/test_counterfactual_replay.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Rule", "Vote", "revote"]

HOLD = 1  # CLASS_ORDER index


@dataclass(frozen=True, slots=True)
class Rule:
    """The ensemble's settings (``ENSEMBLE_MIN_CONSENSUS``, boost, cap, models configured)."""

    min_consensus: int = 3
    boost: float = 1.1
    cap: float = 0.95
    n_configured: int = 4


@dataclass(frozen=True, slots=True)
class Vote:
    """Per decision: action (CLASS_ORDER index), confidence, consensus count, voters, actionable, boosted."""

    action: np.ndarray  # int8
    confidence: np.ndarray  # float64
    consensus: np.ndarray  # int16
    total: np.ndarray  # int16
    actionable: np.ndarray  # bool
    boosted: np.ndarray  # bool


BLOCK = 131_072  # rows re-voted at a time: the temporaries stay in cache and memory stays flat


def revote(action: np.ndarray, confidence: np.ndarray, votes: np.ndarray, weights: np.ndarray,
           rule: Rule) -> Vote:
    """Decide every row from the models' predictions (each row on its own, in blocks of rows).

    Args:
        action: (N, M) CLASS_ORDER index of each model's prediction (any value where it does not vote).
        confidence: (N, M) the predictions' confidences.
        votes: (N, M) bool, the model votes on that row (a voter with a valid result).
        weights: (M,) or (N, M) voting weights, columns in the engine's model order.
        rule: the ensemble settings.
    """
    n = action.shape[0]
    w = np.asarray(weights, dtype=np.float64)
    if n <= BLOCK:
        return _revote(action, confidence, votes, w, rule)
    out = Vote(np.empty(n, dtype=np.int8), np.empty(n), np.empty(n, dtype=np.int16), np.empty(n, dtype=np.int16),
               np.empty(n, dtype=bool), np.empty(n, dtype=bool))
    for lo in range(0, n, BLOCK):
        rows = slice(lo, lo + BLOCK)
        part = _revote(action[rows], confidence[rows], votes[rows], w if w.ndim == 1 else w[rows], rule)
        for f in Vote.__slots__:
            getattr(out, f)[rows] = getattr(part, f)
    return out


def _revote(action: np.ndarray, confidence: np.ndarray, votes: np.ndarray, w: np.ndarray, rule: Rule) -> Vote:
    n, m = action.shape
    # one contiguous row per model (columns of an (N, M) array are strided and slow to stream)
    vt = np.ascontiguousarray(votes.T)
    at = np.where(vt, np.ascontiguousarray(action.T), -1).astype(np.int8)
    ct = np.where(vt, np.ascontiguousarray(confidence.T), 0.0)
    wt = [w[j] for j in range(m)] if w.ndim == 1 else list(np.ascontiguousarray(w.T))
    contrib = [wt[j] * ct[j] for j in range(m)]  # 0.0 where the model does not vote
    scores = [np.zeros(n), np.zeros(n), np.zeros(n)]
    for j in range(m):  # in model order, as the engine adds them; x * 1.0 and x + 0.0 change no bit
        for c in range(3):
            scores[c] += contrib[j] * (at[j] == c)
    top = np.maximum(np.maximum(scores[0], scores[1]), scores[2])
    n_top = (scores[0] == top).astype(np.int8) + (scores[1] == top) + (scores[2] == top)
    first = np.where(scores[0] == top, 0, np.where(scores[1] == top, 1, 2))  # argmax: the first of equal maxima
    winner = np.where((n_top == 1) & (top > 0), first, HOLD)
    wsum = np.zeros(n)
    csum = np.zeros(n)
    plain_sum = np.zeros(n)
    k = np.zeros(n, dtype=np.int16)
    for j in range(m):
        agree = at[j] == winner
        wsum += wt[j] * agree
        csum += contrib[j] * agree
        plain_sum += ct[j] * agree
        k += agree
    with np.errstate(invalid="ignore", divide="ignore"):
        plain = plain_sum / np.maximum(k, 1)
        out_conf = np.where(wsum > 0, csum / np.where(wsum > 0, wsum, 1.0), np.where(k > 0, plain, 0.0))
    n_votes = votes.sum(axis=1)
    unanimous = (n_votes == rule.n_configured) & (k == n_votes) & (n_votes > 0)
    boosted = unanimous & (rule.boost > 1.0) & (out_conf < rule.cap)
    out_conf = np.where(boosted, np.minimum(out_conf * rule.boost, rule.cap), out_conf)
    return Vote(
        action=winner.astype(np.int8),
        confidence=np.clip(out_conf, 0.0, 1.0),
        consensus=k.astype(np.int16),
        total=n_votes.astype(np.int16),
        actionable=(winner != HOLD) & (k >= rule.min_consensus),
        boosted=boosted,
    )
