"""Self-contained HTML report: the text report plus figures embedded as base64 PNG (Agg backend)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from ai_engine.analysis.analyze import AnalysisResult
from ai_engine.analysis.metrics import HIST_EDGES, ModelAnalysis
from ai_engine.analysis.render import render_text
from ai_engine.exceptions import ConfigError

__all__ = ["write_html"]

_COLORS = {"SELL": "#d62728", "HOLD": "#7f7f7f", "BUY": "#2ca02c"}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _reliability(ax, m: ModelAnalysis) -> None:
    b = [x for x in m.buckets if x.accuracy.n]
    conf = np.array([x.mean_confidence for x in b])
    acc = np.array([x.accuracy.p for x in b])
    lo = np.array([x.accuracy.lo for x in b])
    hi = np.array([x.accuracy.hi for x in b])
    line = ax.plot(conf, acc, "o-", label=f"{m.model} (n={m.n_scored})")[0]
    ax.fill_between(conf, lo, hi, alpha=0.2, color=line.get_color())


def _timeline_x(m: ModelAnalysis) -> np.ndarray:
    e = np.asarray(m.timeline.edges_ms, dtype=np.float64)
    return ((e[:-1] + e[1:]) / 2 - e[0]) / 3_600_000


_CURVES = ("champion (as recorded)", "option A", "option B", "buy-and-hold")


def _edge_figures(result: AnalysisResult, plt) -> list[tuple[str, str]]:
    """Equity and drawdown of the champion, options A and B and buy-and-hold, and the cumulative
    return difference of A and B against the champion with a 95% band from its HAC variance."""
    e = result.edge
    by_name = {s.name: s for s in e.strategies}
    x = (np.arange(e.bars) * 1.0)
    out = []
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for name in _CURVES:
        s = by_name.get(name)
        if s is None:
            continue
        ax1.plot(x, s.equity, label=name, lw=1.2)
        peak = np.maximum.accumulate(np.concatenate([[1.0], s.equity]))[1:]
        ax2.plot(x, s.equity / peak - 1, lw=1)
    ax1.set(ylabel="equity (start 1)", title=f"Equity after costs ({e.execution.fee_bps:g} bps per side)")
    ax1.legend(fontsize=8)
    ax2.set(xlabel=f"bars of {e.interval} since the first decision", ylabel="drawdown")
    out.append(("Equity curves and drawdown", _png(fig)))
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    champ = by_name["champion (as recorded)"]
    for sc in e.scenarios[:2]:
        d = sc.money.returns - champ.returns
        cum = np.cumsum(d)
        line = ax.plot(x, cum, label=f"{sc.name} minus champion")[0]
        t = sc.vs_champion
        if t is not None and np.isfinite(t.se):
            band = 1.959964 * t.se * np.sqrt(t.n) * np.sqrt(np.arange(1, d.size + 1))
            ax.fill_between(x, -band, band, color=line.get_color(), alpha=0.12)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xlabel=f"bars of {e.interval}", ylabel="cumulative return difference",
           title="Counterfactual minus champion (95% band under no difference, HAC)")
    ax.legend(fontsize=8)
    out.append(("Cumulative paired difference", _png(fig)))
    plt.close(fig)
    return out


def write_html(result: AnalysisResult, path: Path | str) -> Path:
    """Write the report to ``path`` (no external resources); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--html {path} is a directory; give a file name such as report.html")
    figs: list[tuple[str, str]] = []

    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for m in result.models:
        _reliability(ax, m)
    ax.set(xlim=(0.3, 1), ylim=(0, 1), xlabel="mean confidence in bucket",
           ylabel="accuracy vs realised market return", title="Reliability diagram (95% Wilson bands)")
    ax.legend(loc="upper left")
    figs.append(("Reliability diagram", _png(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    w = HIST_EDGES[1] - HIST_EDGES[0]
    for k, m in enumerate(result.models):
        if m.confidence:
            ax.bar(np.asarray(HIST_EDGES[:-1]) + w * (0.5 + 0.4 * k - 0.2 * (len(result.models) - 1)),
                   m.confidence.hist_counts, width=w * 0.8 / len(result.models), label=m.model)
    ax.set(xlabel="confidence", ylabel="predictions", title="Confidence histogram")
    ax.legend()
    figs.append(("Confidence histogram", _png(fig)))
    plt.close(fig)

    fig, axes = plt.subplots(len(result.models), 1, figsize=(7, 3 * len(result.models)), squeeze=False)
    for ax, m in zip(axes[:, 0], result.models, strict=True):
        counts = np.asarray(m.timeline.actions, dtype=np.float64)
        tot = counts.sum(axis=1, keepdims=True)
        shares = np.divide(counts, tot, out=np.full_like(counts, np.nan), where=tot > 0)
        ax.stackplot(_timeline_x(m), shares.T, labels=("SELL", "HOLD", "BUY"),
                     colors=[_COLORS[a] for a in ("SELL", "HOLD", "BUY")])
        ax.set(ylim=(0, 1), ylabel="share", title=f"{m.model}: action shares over time")
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("hours since window start")
    figs.append(("Action shares over time", _png(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for m in result.models:
        n = np.asarray(m.timeline.actions).sum(axis=1)
        rate = np.divide(np.asarray(m.timeline.agree, dtype=np.float64), n, out=np.full(n.shape, np.nan), where=n > 0)
        ax.plot(_timeline_x(m), rate, "o-", label=m.model)
    ax.axhline(result.thresholds.min_agreement, color="k", ls="--", lw=1, label="gate 3 threshold")
    ax.set(ylim=(0, 1), xlabel="hours since window start", ylabel="agreement", title="Agreement with ensemble over time")
    ax.legend()
    figs.append(("Agreement over time", _png(fig)))
    plt.close(fig)

    if result.edge is not None and result.edge.bars > 1:
        figs += _edge_figures(result, plt)

    title = f"Shadow analysis — {result.primary.model}"
    body = "\n".join(f'<h2>{html.escape(t)}</h2>\n<img src="data:image/png;base64,{b}" alt="{html.escape(t)}">'
                     for t, b in figs)
    doc = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
           "<style>body{font-family:sans-serif;margin:2em}pre{background:#f6f6f6;padding:1em;overflow-x:auto}</style>"
           f"</head><body><h1>{html.escape(title)}</h1>\n<pre>{html.escape(render_text(result))}</pre>\n{body}\n"
           "</body></html>\n")
    try:
        path.write_text(doc, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--html {path} cannot be written: {exc.strerror}") from None
    return path
