"""Shadow analysis: is a model ready to vote? Four gates, judged against the recorded market."""

from ai_engine.analysis.analyze import (
    PLAN_HOURS,
    PLAN_PREDICTIONS,
    AnalysisResult,
    analyze,
    analyze_challengers,
    shadows_in_force,
)
from ai_engine.analysis.gates import EXIT_CODES, Gate, Thresholds, verdict_for
from ai_engine.analysis.html import write_html
from ai_engine.analysis.labels import LabelSpec
from ai_engine.analysis.metrics import ModelAnalysis
from ai_engine.analysis.reader import parse_time
from ai_engine.analysis.render import render_text, to_json, verdict_line

__all__ = [
    "analyze",
    "analyze_challengers",
    "shadows_in_force",
    "AnalysisResult",
    "ModelAnalysis",
    "Thresholds",
    "Gate",
    "LabelSpec",
    "EXIT_CODES",
    "PLAN_HOURS",
    "PLAN_PREDICTIONS",
    "parse_time",
    "render_text",
    "to_json",
    "verdict_for",
    "verdict_line",
    "write_html",
]
