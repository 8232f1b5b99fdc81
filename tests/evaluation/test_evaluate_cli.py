"""`ai-engine evaluate` end to end on the synthetic market: one fast model and the ensemble, two folds,
every figure in the JSON and the tables; the money wiring on a hand-computed case; bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from ai_engine.cli.evaluate_commands import register
from ai_engine.evaluation.render import PLOTTED
from ai_engine.money import Execution

SYN = ("--synthetic", "--symbols", "AAAUSDT,BBBUSDT", "--synthetic-bars", "1500", "--folds", "2", "--threads", "1",
       "--quiet")
SCORES = ("n", "balanced_accuracy", "log_loss", "log_loss_prior", "log_loss_skill", "brier", "brier_prior",
          "brier_skill", "ece", "label_share")
DECISIONS = ("n", "action_share", "trade_share", "confidence_mean", "confidence_std", "trade_hit_rate")
MONEY = ("periods", "net_return", "sharpe", "psr", "max_drawdown", "turnover", "trades", "hit_rate", "avg_trade",
         "exposure")


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps `evaluate` a subcommand
    return app


def _run(app, *args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _check_outcome(o: dict) -> None:
    assert set(SCORES) <= set(o["scores"]) and set(DECISIONS) <= set(o["decisions"]) and set(MONEY) <= set(o["money"])
    s = o["scores"]
    assert s["n"] > 100 and 0 <= s["balanced_accuracy"] <= 1 and 0 <= s["ece"] <= 1
    assert math.isclose(s["log_loss_skill"], 1 - s["log_loss"] / s["log_loss_prior"], rel_tol=1e-9)
    assert math.isclose(s["brier_skill"], 1 - s["brier"] / s["brier_prior"], rel_tol=1e-9)
    # the prior is the scored rows' own class frequencies: its log loss is their entropy
    p = np.array(s["label_share"])
    assert math.isclose(s["log_loss_prior"], -np.sum(p[p > 0] * np.log(p[p > 0])), rel_tol=1e-9)
    assert math.isclose(sum(o["decisions"]["action_share"]), 1.0)
    assert 0 <= o["decisions"]["trade_share"] <= 1 and o["decisions"]["confidence_std"] >= 0
    assert o["money"]["periods"] > 0 and o["money"]["net_return"] is not None


@pytest.mark.parametrize("model", ["xgb", "ensemble"])
def test_evaluate_json_holds_every_figure(app, model, tmp_path):
    extra = ("--epochs", "1") if model == "ensemble" else ("--epochs", "40")
    code, out, err = _run(app, "evaluate", model, *SYN, *extra, "--json", "--html", tmp_path / "wf.html")
    assert code == 0, err
    doc = json.loads(out)
    names = ["ensemble", "xgb", "lgbm", "nhits", "patchtst"] if model == "ensemble" else ["xgb"]
    assert len(doc["folds"]) == 2
    for fold in doc["folds"]:
        assert fold["train_start"] < fold["cal_start"] < fold["test_start"] < fold["test_end"]
        assert [o["name"] for o in fold["outcomes"]] == names
        assert {f["name"] for f in fold["fits"]} == set(names) - {"ensemble"}
        assert fold["buy_and_hold"]["periods"] > 0
        for o in fold["outcomes"]:
            _check_outcome(o)
    assert doc["folds"][0]["test_end"] == doc["folds"][1]["test_start"]
    for o in doc["overall"]["outcomes"]:
        _check_outcome(o)
    assert [o["name"] for o in doc["overall"]["outcomes"]] == names
    for name in names:
        summary = doc["summary"][name]
        for key in ("balanced_accuracy", "log_loss_skill", "brier_skill", "ece", "max_action_share", "confidence_std",
                    "money_net_return", "buy_and_hold_return"):
            assert set(summary[key]) == {"mean", "std", "min", "max"}
            assert summary[key]["min"] <= summary[key]["mean"] <= summary[key]["max"]
    assert doc["config"]["execution"]["hold_bars"] == doc["config"]["label_config"]["horizon"]
    page = (tmp_path / "wf.html").read_text()
    assert page.count("data:image/png;base64,") == len(PLOTTED) and "pooled" in page


def test_evaluate_text_and_plots(app, tmp_path):
    code, out, err = _run(app, "evaluate", "lgbm", *SYN, "--epochs", "30", "--window", "expanding", "--long-only",
                          "--fee-bps", "5", "--plot-dir", tmp_path / "plots")
    assert code == 0, err
    for word in ("walk-forward lgbm", "expanding", "long only", "5 bps", "bal.acc", "LL skill", "Brier skill",
                 "ECE", "max action", "conf std", "net ret.", "B&H", "mean", "std", "pooled", "guard"):
        assert word in out, word
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == sorted(f"{key}.png" for key, _, _ in PLOTTED)
    assert all((tmp_path / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("evaluate", "xgb", *SYN[:-3], "--folds", "1"), "folds must be"),
        (("evaluate", "xgb", "--symbols", "BTCUSDT", "--data", "/nonexistent/candles"), "/nonexistent/candles"),
        (("evaluate", "xgb", *SYN, "--fee-bps", "-1"), "fee_bps"),
        (("evaluate", "xgb", *SYN, "--synthetic-bars", "40"), "usable"),
        (("evaluate", "xgb", *SYN, "--html", "/proc/no/such/dir/x.html"), "--html"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(app, args, needle):
    code, out, err = _run(app, *args)
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert "Traceback" not in err + out


def test_money_wiring_on_a_hand_computed_case():
    """A BUY decided on bar 2's candle enters at bar 3's open and is held 4 bars, after 10 bps per side."""
    from ai_engine.data import CandleSeries
    from ai_engine.evaluation.walkforward import _Block, _grid, _outcome, _Symbol

    h = 3_600_000
    t = np.arange(12, dtype=np.int64) * h
    opens = 100.0 * 1.01 ** np.arange(12)
    s = CandleSeries("AAAUSDT", "1h", t, opens, opens * 1.02, opens * 0.99, opens * 1.005, np.ones(12))
    grid = _grid({"AAAUSDT": _Symbol(s, None, np.zeros(12, dtype=np.int64))}, 0, 12 * h, h)
    block = _Block(sym=np.zeros(1, dtype=np.int64), t=np.array([2 * h]), y=np.array([2]),
                   probs=np.array([[[0.1, 0.2, 0.7]]]), action=np.array([[2]]), conf=np.array([[0.7]]),
                   votes=np.array([[True]]))
    o = _outcome("xgb", block, 0, grid, Execution(fee_bps=10, hold_bars=4))
    # long over bars 3..6 (open of bar 3 to open of bar 7, +1% a bar); entry paid on bar 3, exit on bar 7
    assert o.money.trades == 1
    assert math.isclose(o.money.net_return, (1.01 - 0.001) * 1.01 ** 3 * (1 - 0.001) - 1, rel_tol=1e-12)
    assert o.decisions.trade_share == 1.0 and o.decisions.trade_hit_rate == 1.0
