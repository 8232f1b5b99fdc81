"""The walk-forward result as text tables, one PNG per metric across folds, or one self-contained
HTML page (the text and the figures embedded as base64 PNG, Agg backend: no display needed)."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

from ai_engine.evaluation.walkforward import WalkForwardResult

__all__ = ["PLOTTED", "render_text", "figures", "write_plots", "write_html"]

# (figure key, title, reference line or None); one plot each, a line per model across folds
PLOTTED: tuple[tuple[str, str, float | None], ...] = (
    ("balanced_accuracy", "balanced accuracy (chance 1/3)", 1 / 3),
    ("log_loss_skill", "log-loss skill against the prior (>= 0: no worse than class frequencies)", 0.0),
    ("brier_skill", "Brier skill against the prior", 0.0),
    ("ece", "expected calibration error (top label)", None),
    ("max_action_share", "largest action share", 0.7),
    ("confidence_std", "confidence spread (std)", 0.05),
    ("trade_share", "share of decisions that trade", None),
    ("money_net_return", "net return after fees (dashed: buy-and-hold)", 0.0),
    ("money_sharpe", "annualised Sharpe after fees", 0.0),
    ("money_max_drawdown", "maximum drawdown", None),
)

_COLUMNS = (("balanced_accuracy", "bal.acc", "{:.3f}"), ("log_loss_skill", "LL skill", "{:+.2%}"),
            ("brier_skill", "Brier skill", "{:+.2%}"), ("ece", "ECE", "{:.3f}"),
            ("max_action_share", "max action", "{:.1%}"), ("trade_share", "trading", "{:.1%}"),
            ("confidence_std", "conf std", "{:.3f}"), ("money_net_return", "net ret.", "{:+.1%}"),
            ("buy_and_hold_return", "B&H", "{:+.1%}"), ("money_sharpe", "Sharpe", "{:+.2f}"),
            ("money_max_drawdown", "max DD", "{:.1%}"), ("money_trades", "trades", "{:.0f}"))


def _fmt(fmt: str, v: float) -> str:
    return "—" if v is None or not math.isfinite(v) else fmt.format(v)


def _header(r: WalkForwardResult) -> list[str]:
    c = r.config
    ex = c.execution
    span = f"{r.folds[0].plan.to_json()['test_start']} .. {r.folds[-1].plan.to_json()['test_end']}"
    return [
        f"walk-forward {c.model} on {','.join(r.symbols)} {r.interval}{'  SYNTHETIC' if r.synthetic else ''}: "
        f"{c.folds} {c.window} folds, window {c.train_blocks} block(s) (last {c.cal_frac:.0%} calibrates), "
        f"test blocks {span}",
        f"labels {c.label_config.describe()}; money: {ex.fee_bps:g} bps fee + {ex.slippage_bps:g} bps slippage per "
        f"side, entry at the next open, held {ex.hold_bars} bars{', long only' if ex.long_only else ''}; "
        f"prior = the scored rows' class frequencies; spread = sample std over folds; {r.seconds:.0f} s",
    ]


def render_text(r: WalkForwardResult, *, width: int = 160) -> str:
    """Per outcome: one row per fold, the mean and spread (sample std) over folds, and the pooled test blocks;
    then every model fit (rows, seconds, guard)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=width, record=True, force_terminal=False, color_system=None, file=_Null())
    for line in _header(r):
        console.print(line, soft_wrap=True)
    for name in r.names:
        t = Table(title=name, title_justify="left")
        t.add_column("fold")
        t.add_column("test from")
        for _, head, _ in _COLUMNS:
            t.add_column(head, justify="right")
        for f, row in zip(r.folds, r.per_fold(name), strict=True):
            p = f.plan.to_json()
            t.add_row(str(f.plan.index + 1), p["test_start"][:10],
                      *[_fmt(fmt, row[k]) for k, _, fmt in _COLUMNS])
        s = r.summary(name)
        t.add_row("mean", "", *[_fmt(fmt, s[k]["mean"]) for k, _, fmt in _COLUMNS])
        t.add_row("std", "", *[_fmt(fmt.replace("+", ""), s[k]["std"]) for k, _, fmt in _COLUMNS])
        pooled = next(o for o in r.overall if o.name == name).figures()
        pooled["buy_and_hold_return"] = r.overall_buy_and_hold.net_return
        t.add_row("pooled", "all blocks", *[_fmt(fmt, pooled[k]) for k, _, fmt in _COLUMNS])
        console.print(t)
    fits = Table(title="fits (rows, seconds; guard = the degeneracy guard on the calibration part)",
                 title_justify="left")
    for head in ("fold", "model", "train rows", "cal rows", "train S/H/B", "fit s", "guard"):
        fits.add_column(head)
    for f in r.folds:
        for x in f.fits:
            fits.add_row(str(f.plan.index + 1), x.name, str(x.n_train), str(x.n_cal),
                         "/".join(f"{v:.0%}" for v in x.train_label_share), f"{x.seconds:.1f}",
                         "; ".join(x.guard) or "passes")
    console.print(fits)
    return console.export_text()


def figures(r: WalkForwardResult) -> list[tuple[str, str, bytes]]:
    """(key, title, PNG bytes) for every metric of ``PLOTTED``: a line per outcome across folds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [f.plan.index + 1 for f in r.folds]
    labels = [f.plan.to_json()["test_start"][:10] for f in r.folds]
    rows = {name: r.per_fold(name) for name in r.names}
    out = []
    for key, title, ref in PLOTTED:
        fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
        for name, per in rows.items():
            ax.plot(x, [p[key] for p in per], marker="o", label=name, linewidth=2.2 if name == "ensemble" else 1.2)
        if key == "money_net_return":
            ax.plot(x, [f.buy_and_hold.net_return for f in r.folds], "k--", marker="s", label="buy-and-hold")
        if ref is not None:
            ax.axhline(ref, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(x, [f"{i}\n{d}" for i, d in zip(x, labels, strict=True)], fontsize=7)
        ax.set_xlabel("fold (test block start)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        out.append((key, title, buf.getvalue()))
    return out


def write_plots(r: WalkForwardResult, directory: Path | str) -> list[Path]:
    """One ``<metric>.png`` per plotted metric in ``directory`` (created if missing)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, _, png in figures(r):
        p = d / f"{key}.png"
        p.write_bytes(png)
        paths.append(p)
    return paths


def write_html(r: WalkForwardResult, path: Path | str) -> Path:
    """One page: the text tables and every plot, embedded (no file beside it)."""
    body = "\n".join(
        f'<h2>{html.escape(title)}</h2>\n<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" '
        f'alt="{html.escape(key)}">' for key, title, png in figures(r))
    page = ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>walk-forward "
            f"{html.escape(r.config.model)}</title></head><body>\n<h1>walk-forward {html.escape(r.config.model)}</h1>\n"
            f"<pre>{html.escape(render_text(r))}</pre>\n{body}\n</body></html>\n")
    p = Path(path)
    p.write_text(page, encoding="utf-8")
    return p


class _Null:
    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass
