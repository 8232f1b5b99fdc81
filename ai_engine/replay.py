"""Replay: the decision path over recorded candles, as fast as it goes.

Features are computed in batch (the same code as streaming; a test proves the values equal) and
rows are decided in time-ordered chunks across symbols, so each model runs one batched forward per
chunk. Every candle is recorded so the analysis can score outcomes against the market.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ai_engine.engine import DecisionEngine, DecisionInputs
from ai_engine.enums import ModelStatus

__all__ = ["ReplaySummary", "replay_series"]

log = logging.getLogger("ai_engine.replay")


@dataclass(slots=True)
class ReplaySummary:
    """Counts over a replay, printed by ``replay`` and ``demo``."""

    decisions: int = 0
    warmup_rows: int = 0
    skipped_existing: int = 0
    actionable: int = 0
    published: int = 0
    consensus: Counter = field(default_factory=Counter)
    actions: Counter = field(default_factory=Counter)
    blocked: Counter = field(default_factory=Counter)
    model_actions: dict[str, Counter] = field(default_factory=dict)
    model_status: dict[str, Counter] = field(default_factory=dict)
    model_roles: dict[str, str] = field(default_factory=dict)
    synthetic: bool = False
    first_time: int | None = None
    last_time: int | None = None

    def add(self, rec) -> None:
        d = rec.decision
        self.decisions += 1
        self.actionable += d.actionable
        self.published += rec.published
        self.consensus[d.consensus_count] += 1
        self.actions[d.action.value] += 1
        if rec.blocked_reason:
            self.blocked[rec.blocked_reason] += 1
        for r in d.results:
            if r.model not in self.model_status:
                self.model_roles[r.model] = r.role.value
                self.model_status[r.model], self.model_actions[r.model] = Counter(), Counter()
            self.model_status[r.model][r.status] += 1
            if r.prediction is not None and r.status is ModelStatus.OK:
                self.model_actions[r.model][r.prediction.action] += 1
        self.synthetic |= rec.synthetic
        self.first_time = rec.candle_open_time if self.first_time is None else min(self.first_time, rec.candle_open_time)
        self.last_time = rec.candle_open_time if self.last_time is None else max(self.last_time, rec.candle_open_time)


def _decision_order(
    frames: Mapping[str, object], seq_len: int, start_after: Mapping[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(times, symbol index, row index) of every decidable row, sorted by (time, symbol).

    ``seq_len`` is the history the voters need (``EngineState.decide_len``)."""
    syms = sorted(frames)
    t_all, s_all, r_all, warm = [], [], [], 0
    for si, sym in enumerate(syms):
        f = frames[sym]
        ok = f.valid.copy()
        if seq_len:  # the whole window must be valid history, exactly as the streaming path requires
            ok &= f.valid_windows(seq_len)
        warm += int((~ok).sum())
        if sym in start_after:
            ok &= f.open_time > start_after[sym]
        rows = np.flatnonzero(ok)
        t_all.append(f.open_time[rows])
        s_all.append(np.full(len(rows), si))
        r_all.append(rows)
    t, s, r = (np.concatenate(x) if x else np.empty(0, dtype=np.int64) for x in (t_all, s_all, r_all))
    order = np.lexsort((s, t))
    return t[order], s[order], r[order], warm


def _masked_sequence(frame, seq_len: int) -> np.ndarray:
    """The frame's sequence rows with invalid (warm-up) rows as NaN, front-padded by ``seq_len``
    NaN rows: windows over it equal the streaming path's, which never holds warm-up values."""
    seq = np.where(frame.valid[:, None], frame.sequence, np.nan).astype(np.float32)
    return np.concatenate([np.full((seq_len, seq.shape[1]), np.nan, dtype=np.float32), seq])


def _chunks(frames, series, syms, sidx, ridx, seq_len: int, chunk: int) -> Iterator[DecisionInputs]:
    """Engine batches of ``chunk`` rows in decision order, built lazily from the feature frames."""
    from ai_engine.features import sequence_windows

    padded = {si: _masked_sequence(frames[sym], seq_len) for si, sym in enumerate(syms)} if seq_len else {}
    for lo in range(0, len(sidx), chunk):
        hi = min(lo + chunk, len(sidx))
        cs, cr = sidx[lo:hi], ridx[lo:hi]
        candles = [series[syms[si]].candle(int(ri)) for si, ri in zip(cs, cr, strict=True)]
        tab = np.empty((hi - lo, len(frames[syms[0]].tabular[0])), dtype=np.float64)
        win = None
        for si in np.unique(cs):
            pos = np.flatnonzero(cs == si)
            frame = frames[syms[si]]
            tab[pos] = frame.tabular[cr[pos]]
            if seq_len:
                w = sequence_windows(padded[si], cr[pos] + seq_len, seq_len)
                if win is None:
                    win = np.empty((hi - lo, seq_len, w.shape[2]), dtype=np.float32)
                win[pos] = w
        yield DecisionInputs(candles=candles, tabular=tab, windows=win)


def replay_series(
    engine: DecisionEngine,
    series: Mapping[str, object],
    *,
    jsonl: Path | None = None,
    chunk: int = 512,
    resume: bool = False,
    start_ms: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReplaySummary:
    """Decide every row of ``series`` ({symbol: CandleSeries}) in time order through ``engine``.

    Rows before ``start_ms`` only warm the features up; with ``resume``, rows already decided in the
    store are skipped (re-deciding them would be harmless: ids are deterministic) and ``jsonl``,
    which holds the earlier run's decisions, is appended to.
    """
    from ai_engine.features import compute_features

    summary = ReplaySummary()
    frames = {sym: compute_features(s) for sym, s in series.items()}
    for s in series.values():
        engine.store.record_candles(s.candle(i) for i in range(len(s)))
    start_after = {sym: start_ms - 1 for sym in series} if start_ms is not None else {}
    if resume:
        for sym, s in series.items():
            last = engine.store.last_decision_time(sym, s.interval)
            if last is not None:
                start_after[sym] = max(last, start_after.get(sym, last))
    seq_len = engine.state.seq_len
    times, sidx, ridx, summary.warmup_rows = _decision_order(frames, engine.state.decide_len, start_after)
    if resume:
        summary.skipped_existing = sum(int(((frames[s].open_time <= t) & frames[s].valid).sum()) for s, t in start_after.items())
    syms = sorted(frames)
    out = jsonl.open("a" if resume else "w", encoding="utf-8") if jsonl else None
    done = 0
    try:
        with engine.pipelined():  # chunk k is written while chunk k+1 is decided
            total = len(times)
            for records in engine.decide_stream(_chunks(frames, series, syms, sidx, ridx, seq_len, chunk)):
                for rec in records:
                    summary.add(rec)
                    if out:
                        out.write(json.dumps(rec.to_json(), separators=(",", ":")) + "\n")
                done += len(records)
                if progress:
                    progress(done, total)
    finally:
        if out:
            out.close()
    return summary
