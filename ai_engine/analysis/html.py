"""Self-contained HTML report: the verdict and a gate summary first, the report's sections as HTML
tables, then the figures embedded as base64 PNG (Agg backend).

Fonts are ones a plain Linux, macOS or Windows machine has (DejaVu, Liberation, Helvetica,
Arial); the text report's emoji (✅ ❌ ⏳), which DejaVu lacks, become words and colours."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from ai_engine.analysis.analyze import AnalysisResult
from ai_engine.analysis.edge_render import edge_lines
from ai_engine.analysis.metrics import HIST_EDGES, ModelAnalysis
from ai_engine.analysis.render import (
    _data_section,
    _gate_cell,
    _gate_section,
    _sections,
    _Table,
    render_text,
    verdict_line,
)
from ai_engine.exceptions import ConfigError

__all__ = ["write_html"]

_COLORS = {"SELL": "#d62728", "HOLD": "#7f7f7f", "BUY": "#2ca02c"}
_STATUS_COLORS = {"PASS": "#1a7f37", "READY": "#1a7f37", "FAIL": "#cf222e", "NOT_READY": "#cf222e",
                  "INCONCLUSIVE": "#9a6700"}
_EMOJI = {"✅ ": "", "❌ ": "", "⏳ ": "", "✅": "", "❌": "", "⏳": ""}
_STYLE = """
body{font-family:"DejaVu Sans","Liberation Sans",Helvetica,Arial,sans-serif;margin:2em;max-width:75em;color:#1f2328}
code,pre,td.n{font-family:"DejaVu Sans Mono","Liberation Mono",Menlo,Consolas,monospace}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;white-space:pre}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #d0d7de;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f6f8fa}.verdict{padding:1em;border-radius:6px;color:#fff;
font-size:1.3em;font-weight:bold;margin:1em 0;overflow-wrap:anywhere}.why{font-size:.75em;font-weight:normal}
.status{font-weight:bold}p.note{margin:.2em 0;color:#57606a}img{max-width:100%}
"""


def _plain(text: str) -> str:
    for k, v in _EMOJI.items():
        text = text.replace(k, v)
    return html.escape(text)


def _status(s: str) -> str:
    return f'<span class="status" style="color:{_STATUS_COLORS.get(s, "#1f2328")}">{html.escape(s)}</span>'


def _head(result: AnalysisResult) -> str:
    """The verdict banner, the lines the text report puts before its verdict, the gate summary."""
    m = result.primary
    line = verdict_line(m)
    banner = (f'<div class="verdict" style="background:{_STATUS_COLORS[m.verdict]}">{html.escape(m.model)}: '
              f"{_plain(line.split(' (', 1)[0])}"
              + (f'<div class="why">({_plain(line.split(" (", 1)[1])}</div>' if " (" in line else "") + "</div>")
    rec = result.recommendation
    out = [banner]
    if rec is not None:
        out.append(f"<p><b>Recommendation: option {html.escape(rec.option)}</b>: {_plain(rec.reason)}</p>")
    text = render_text(result)
    verdict_area = text.split("\n── Edge:")[0].rstrip().rsplit("\n\n", 1)[-1].splitlines()
    out += [f'<p class="note"><b>{_plain(ln)}</b></p>' for ln in verdict_area[:-1]]  # synthetic, compared model
    rows = ["<tr><th>gate</th>" + "".join(f"<th>{html.escape(x.model)}</th>" for x in result.models) + "</tr>"]
    for k in range(4):
        g0 = m.gates[k]
        cells = "".join(f'<td>{_status(x.gates[k].status)} <code>{_plain(_gate_cell(x.gates[k]).rsplit("  ", 1)[0])}</code>'
                        f"<br><small>{_plain(x.gates[k].detail)}</small></td>" for x in result.models)
        rows.append(f"<tr><td>{k + 1}. {html.escape(g0.name)} ({html.escape(g0.metric)} {html.escape(g0.threshold)})"
                    f"</td>{cells}</tr>")
    rows.append("<tr><td>gates passed</td>" + "".join(f"<td>{x.gates_passed}/4 → {_status(x.verdict)}</td>"
                                                      for x in result.models) + "</tr>")
    out.append("<h2>Gate summary</h2>\n<table>" + "".join(rows) + "</table>")
    header = text.split("\n── ", 1)[0].splitlines()[2:]  # below the title and its underline
    out.append("<h2>Window</h2>\n" + "".join(f'<p class="note">{_plain(ln)}</p>' for ln in header if ln.strip()))
    return "\n".join(out)


def _spec_sections(result: AnalysisResult) -> str:
    """The report's sections from the same rows the text report pads into columns, as tables."""
    t = _Table(result.models)
    _data_section(t)
    _sections(t, {m.model: max(m.confidence.hist_counts) if m.confidence else 1 for m in result.models})
    _gate_section(t)
    out: list[str] = []
    rows: list[str] = []

    def flush() -> None:
        if rows:
            out.append("<table>" + "".join(rows) + "</table>")
            rows.clear()

    head = "<tr><th></th>" + "".join(f"<th>{html.escape(m.model)}</th>" for m in result.models) + "</tr>"
    for x in t.lines:
        if isinstance(x, tuple):
            rows.append(f"<tr><td>{_plain(x[0].strip())}</td>"
                        + "".join(f'<td class="n">{_plain(c)}</td>' for c in x[1]) + "</tr>")
        elif x.startswith("── "):
            flush()
            out.append(f"<h2>{_plain(x.strip('─ '))}</h2>")
            rows.append(head)
        elif x:
            flush()
            out.append(f'<p class="note">{_plain(x.strip())}</p>')
    flush()
    return "\n".join(out)


def _edge_sections(result: AnalysisResult) -> str:
    """The edge's sections: headings as HTML, each section's aligned table kept monospaced."""
    out: list[str] = []
    block: list[str] = []
    for ln in [*edge_lines(result), ""]:
        if ln.startswith("── ") or not ln.strip():
            if block:
                out.append(f"<pre>{_plain(chr(10).join(block))}</pre>")
                block = []
            if ln.startswith("── "):
                out.append(f"<h2>{_plain(ln.strip('─ '))}</h2>")
        else:
            block.append(ln)
    return "\n".join(out)


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
           f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n{_head(result)}\n"
           f"{_spec_sections(result)}\n{_edge_sections(result)}\n<h2>Figures</h2>\n{body}\n</body></html>\n")
    try:
        path.write_text(doc, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--html {path} cannot be written: {exc.strerror}") from None
    return path
