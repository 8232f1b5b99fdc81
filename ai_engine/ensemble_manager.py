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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ai_engine.enums import CLASS_ORDER, Action
from ai_engine.types import EnsembleDecision, ModelResult

__all__ = ["EnsembleManager"]


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
