"""The ensemble rule: weighted vote among voters, consensus gate, agreement boost.

Shadow, disabled and failed models are in ``results`` for telemetry but never in the vote, on
every path (failure modes 2 and 4): only ``ModelResult.votes`` is consulted, and that is true only
for a healthy model whose role is ``voter``.

Rule, for the models that actually voted (``total_models`` of them):
* score(a) = Σ weight_i · confidence_i over voters predicting a; the winner is the top score
  (a tie between actions resolves to HOLD: no clear direction);
* ``consensus_count`` = voters predicting the winner;
* confidence = weighted mean confidence of the agreeing voters;
* actionable = winner is BUY or SELL and consensus_count ≥ ``min_consensus``;
* when every configured model voted and all agree, confidence ×= ``boost``, capped at ``cap`` < 1.

``decide_many`` runs the same rule over a batch with one numpy pass per model instead of a Python
loop per row (at 400 symbols the per-row ``decide`` calls were ~3 ms of the decision); it adds the
same floats in the same order, so each decision is bit for bit ``decide``'s (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ai_engine.enums import CLASS_ORDER, Action
from ai_engine.types import EnsembleDecision, ModelResult

_INDEX = {a: k for k, a in enumerate(CLASS_ORDER)}
_HOLD = CLASS_ORDER.index(Action.HOLD)

__all__ = ["BatchVote", "EnsembleManager"]


@dataclass(frozen=True, slots=True)
class EnsembleManager:
    """Combines per-model results into one decision.

    Args:
        min_consensus: voters that must agree for a BUY/SELL to be actionable (spec: 3).
        boost: confidence factor when all configured models vote and agree (spec: 4/4 boosts).
        cap: upper bound of the boosted confidence; below 1.
        n_configured: number of models in the ensemble (spec: 4); the boost needs all of them.
    """

    min_consensus: int = 3
    boost: float = 1.1
    cap: float = 0.95
    n_configured: int = 4

    def decide(self, results: Sequence[ModelResult]) -> EnsembleDecision:
        voters = [r for r in results if r.votes]
        scores = [0.0, 0.0, 0.0]
        for r in voters:
            scores[CLASS_ORDER.index(r.prediction.action)] += r.weight * r.prediction.confidence
        top = max(scores)
        leaders = [a for a, s in zip(CLASS_ORDER, scores, strict=True) if s == top]
        action = leaders[0] if len(leaders) == 1 and top > 0 else Action.HOLD
        agreeing = [r for r in voters if r.prediction.action is action]
        wsum = sum(r.weight for r in agreeing)
        if wsum > 0:
            confidence = sum(r.weight * r.prediction.confidence for r in agreeing) / wsum
        elif agreeing:
            confidence = sum(r.prediction.confidence for r in agreeing) / len(agreeing)
        else:
            confidence = 0.0
        unanimous = len(voters) == self.n_configured and len(agreeing) == len(voters) and len(voters) > 0
        boosted = unanimous and self.boost > 1.0 and confidence < self.cap
        if boosted:
            confidence = min(confidence * self.boost, self.cap)
        return EnsembleDecision(
            action=action,
            confidence=min(max(confidence, 0.0), 1.0),
            consensus_count=len(agreeing),
            total_models=len(voters),
            actionable=action is not Action.HOLD and len(agreeing) >= self.min_consensus,
            boosted=boosted,
            scores=(scores[0], scores[1], scores[2]),
            results=tuple(results),
        )

    def decide_many(self, columns: Sequence[Sequence[ModelResult]], n: int) -> BatchVote:
        """The rule over a batch of ``n`` rows: ``decide_many(columns, n).decisions()`` is ``[decide(row)
        for row in zip(*columns)]``. ``columns`` holds each model's ``n`` results (one sequence per
        model, in the order ``decide`` gets them); with none, every row is a HOLD of no voters."""
        m = len(columns)
        votes = np.zeros((m, n), dtype=bool)
        weight = np.zeros((m, n))
        action = np.full((m, n), -1, dtype=np.int8)
        conf = np.zeros((m, n))
        for j, col in enumerate(columns):
            arrays = getattr(col, "vote_arrays", None)  # a model_calls.ResultColumn: read as arrays
            if arrays is not None:
                votes[j], action[j], conf[j] = arrays()
                weight[j] = col.weight
                continue
            votes[j] = [r.votes for r in col]
            weight[j] = [r.weight for r in col]
            for i in np.flatnonzero(votes[j]).tolist():
                p = col[i].prediction
                action[j, i], conf[j, i] = _INDEX[p.action], p.confidence
        contrib = weight * conf  # 0.0 where a model does not vote: adding it changes no bit
        scores = np.zeros((3, n))
        for j in range(m):  # in model order, as decide adds them
            for k in range(3):
                scores[k] += np.where(action[j] == k, contrib[j], 0.0)
        top = scores.max(axis=0)
        is_top = scores == top
        winner = np.where((is_top.sum(axis=0) == 1) & (top > 0), is_top.argmax(axis=0), _HOLD)
        agree = action == winner  # (m, n): never true where a model does not vote (-1)
        wsum, csum, plain = np.zeros(n), np.zeros(n), np.zeros(n)
        for j in range(m):
            wsum += np.where(agree[j], weight[j], 0.0)
            csum += np.where(agree[j], contrib[j], 0.0)
            plain += np.where(agree[j], conf[j], 0.0)
        k_agree = agree.sum(axis=0)
        n_votes = votes.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            confidence = np.where(wsum > 0, csum / wsum, np.where(k_agree > 0, plain / np.maximum(k_agree, 1), 0.0))
        unanimous = (n_votes == self.n_configured) & (k_agree == n_votes) & (n_votes > 0)
        boosted = unanimous & (self.boost > 1.0) & (confidence < self.cap)
        confidence = np.where(boosted, np.minimum(confidence * self.boost, self.cap), confidence)
        confidence = np.minimum(np.maximum(confidence, 0.0), 1.0)
        actionable = (winner != _HOLD) & (k_agree >= self.min_consensus)
        return BatchVote(winner, confidence, k_agree, n_votes, actionable, boosted, scores, columns)


@dataclass(frozen=True, slots=True)
class BatchVote:
    """A batch's decisions as arrays (``EnsembleManager.decide_many``). The governor needs only
    ``actionable``; the per-row ``EnsembleDecision`` records (about 5 µs each) are built by
    ``decisions()`` once the decision is ready, off its latency."""

    action: np.ndarray  # CLASS_ORDER index per row
    confidence: np.ndarray
    consensus_count: np.ndarray
    total_models: np.ndarray
    actionable: np.ndarray  # bool
    boosted: np.ndarray  # bool
    scores: np.ndarray  # (3, n), CLASS_ORDER
    columns: Sequence[Sequence[ModelResult]]

    def decisions(self) -> list[EnsembleDecision]:
        return [
            EnsembleDecision(CLASS_ORDER[a], c, k, t, ok, b, (s0, s1, s2), row)
            for a, c, k, t, ok, b, s0, s1, s2, row in zip(
                self.action.tolist(), self.confidence.tolist(), self.consensus_count.tolist(),
                self.total_models.tolist(), self.actionable.tolist(), self.boosted.tolist(), *self.scores.tolist(),
                zip(*self.columns, strict=True) if self.columns else [()] * self.action.size, strict=True)
        ]
