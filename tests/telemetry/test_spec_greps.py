"""The spec's journal greps, as written, on the log lines of a real engine run.

Each ``grep`` of the spec is applied with ``re`` (same meaning for these patterns; ``-i`` is
``re.I``) to the lines a real ``DecisionEngine`` logged while replaying real trained models,
formatted as the service formats them. In shadow mode ``grep "consensus_count.*4"`` ("if found,
shadow filtering broken - rollback immediately") must find nothing, however many 4s the rest of a
line holds; with four voters it must find exactly the lines of decisions where all four agreed.
Every fifth row each model's own output is turned to BUY (planted agreement: all four models
agree there, the shadow included), so both cases occur whatever the small models learnt.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter

import pytest

from ai_engine.engine import DecisionEngine
from ai_engine.governor import FileGovernorBackend, Governor
from ai_engine.model_slots import load_slots
from ai_engine.replay import replay_series
from ai_engine.telemetry.shadow_log import intent_line
from ai_engine.telemetry.sqlite import TelemetryStore
from ai_engine.types import Prediction
from tests.core.conftest import make_settings
from tests.helpers import AgentWrapper

SERVICE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # runtime.setup_logging
EMERGENCY = "consensus_count.*4"  # spec, debugging issue 2
SHADOW_LINE = re.compile(r"\[SHADOW\] PatchTST \| [A-Z]+ \| action=(BUY|SELL|HOLD) conf=\d\.\d{4} \| "
                         r"prob=\d\.\d{4} logit=-?\d+\.\d{4} \| mode=SHADOW_ONLY$")


def grep(lines: list[str], pattern: str, *, ignore_case: bool = False) -> list[str]:
    flags = re.IGNORECASE if ignore_case else 0
    return [ln for ln in lines if re.search(pattern, ln, flags)]


class Lines(logging.Handler):
    """Every log record of the run, formatted as the service's stdout (what journald keeps)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter(SERVICE_FORMAT))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class Agree(AgentWrapper):
    """A real agent whose every ``EVERY``-th output row says BUY: its own probabilities, reordered
    so that the largest is BUY's."""

    EVERY = 5

    def predict(self, X):
        preds = self._agent.predict(X)
        return [Prediction.from_probs(sorted(p.probs)) if i % self.EVERY == 0 else p for i, p in enumerate(preds)]


class Collect:
    """A sink of the engine's own kind (``notify(records)``): keeps every recorded decision."""

    def __init__(self) -> None:
        self.records = []

    def notify(self, records) -> None:
        self.records.extend(records)


def _run(home, models, series, **env):
    """Replay with a real engine: (its log lines, every decision record, intents in the store)."""
    settings, _ = make_settings(home, models, SHADOW_LOG_INTERVAL_S="0", ENSEMBLE_MIN_CONSENSUS="1", **env)
    handler, logger = Lines(), logging.getLogger("ai_engine")
    # the service's levels: ai_engine and its lines at INFO (a replay or backtest run in the same
    # process quiets ai_engine.intent, as those commands do)
    quiet = [logging.getLogger(n) for n in ("ai_engine.intent", "ai_engine.shadow")]
    levels = [logger.level] + [q.level for q in quiet]
    logger.addHandler(handler)
    for lg in (logger, *quiet):
        lg.setLevel(logging.INFO)
    try:
        slots = load_slots(settings)
        for slot in slots.values():
            slot.agent = Agree(slot.agent)
        store, sink = TelemetryStore(settings.store_path), Collect()
        engine = DecisionEngine(settings, store=store, governor=Governor(FileGovernorBackend(settings.governor_state_file)),
                                slots=slots, wait_for_shadow=True, sinks=[sink])
        try:
            replay_series(engine, series)
        finally:
            engine.close()
        intents = store.count("intents")
    finally:
        logger.removeHandler(handler)
        for lg, lv in zip((logger, *quiet), levels, strict=True):
            lg.setLevel(lv)
    return handler.lines, sink.records, intents


def _payload(line: str) -> dict:
    return json.loads(line.split("Publishing trade.intent ", 1)[1])


@pytest.fixture(scope="module")
def shadow_run(tmp_path_factory, synthetic_models, synthetic_series):
    """PatchTST in shadow (ENSEMBLE_MIN_CONSENSUS=1: decisions agreed by 1 or 2 voters publish too)."""
    return _run(tmp_path_factory.mktemp("shadow"), synthetic_models, synthetic_series, PATCHTST_SHADOW_ONLY="true")


def test_emergency_grep_finds_nothing_in_shadow_mode(shadow_run):
    """No publish line of a shadow run matches ``consensus_count.*4``, though nearly all hold a 4
    somewhere (ids, prices, times); nor does the line of any decision, for every count it had."""
    lines, records, intents = shadow_run
    published = grep(lines, "Publishing trade.intent")
    assert len(published) == intents >= 100
    counts = Counter(_payload(ln)["consensus_count"] for ln in published)
    assert set(counts) <= {1, 2, 3} and counts[3] >= 50, counts  # 3: the planted rows, shadow agreeing
    assert sum("4" in ln.split("consensus_count")[0] for ln in published) >= 0.9 * len(published)
    assert grep(lines, EMERGENCY) == []
    # every decision of the run (HOLD included), as its publish line would read: never a match
    every = [intent_line(r) for r in records]
    assert len(every) > 1000 and grep(every, EMERGENCY) == []


def test_the_other_spec_greps_on_a_shadow_run(shadow_run):
    """Steps 3-4 and the immediate checks give the answers the spec expects."""
    lines, records, intents = shadow_run
    loaded = grep(lines, "PatchTST.*SHADOW|PATCHTST_MODEL_PATH")  # step 3, grep -E
    assert any("Using PATCHTST_MODEL_PATH env var:" in ln for ln in loaded)
    assert any("[PatchTST] ✅ Model weights loaded from" in ln and "SHADOW" in ln for ln in loaded)
    shadow = [ln for ln in grep(lines, "SHADOW") if "[SHADOW]" in ln]  # step 3, the rate-limited line
    assert len(shadow) >= 20 and all(SHADOW_LINE.search(ln) for ln in shadow), shadow[:3]
    breakdown = grep(lines, "model_breakdown")  # step 4: each payload holds the shadow entry ...
    assert breakdown == grep(lines, "Publishing trade.intent") == grep(lines, "trade.intent")
    for ln in breakdown:
        p = _payload(ln)
        assert p["model_breakdown"]["patchtst"]["shadow"] is True
        agree = sum(1 for e in p["model_breakdown"].values()
                    if not e["shadow"] and e["status"] == "ok" and e["action"] == p["side"])
        assert p["consensus_count"] == agree <= 3  # ... and a consensus that never counts it
        assert re.search(r'"consensus_count":[123]}$', ln)
    assert grep(lines, "error", ignore_case=True) == []  # immediate check 2: no error spam
    assert grep(lines, "patchtst.*error", ignore_case=True) == []  # debugging issue 3


def test_emergency_grep_finds_exactly_the_four_voter_lines(tmp_path, synthetic_models, synthetic_series):
    """With PatchTST voting, ``consensus_count.*4`` matches the publish lines of 4/4 decisions and no others."""
    lines, records, intents = _run(tmp_path, synthetic_models, synthetic_series)
    published = grep(lines, "Publishing trade.intent")
    assert len(published) == intents
    counts = Counter(_payload(ln)["consensus_count"] for ln in published)
    assert counts[4] >= 50 and set(counts) - {4}, counts
    assert grep(lines, EMERGENCY) == [ln for ln in published if _payload(ln)["consensus_count"] == 4]
    assert grep(lines, "SHADOW") == [] and grep(lines, "PatchTST.*SHADOW") == []
    every = [intent_line(r) for r in records]
    assert grep(every, EMERGENCY) == [ln for ln, r in zip(every, records, strict=True)
                                      if r.decision.consensus_count == 4]
