"""`ai-engine backtest`: the decision path over real candles, then the money view and the edge, in
one command that never touches the engine's own store or governor."""

from __future__ import annotations

import json

import pytest

from ai_engine.cli.main import main
from tests.reliability.conftest import engine_env

pytestmark = pytest.mark.slow


def _env_file(tmp_path, models, **extra):
    env = engine_env(tmp_path / "home", models, PATCHTST_SHADOW_ONLY="true", **extra)
    path = tmp_path / "ai-engine.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return path


def test_backtest_on_real_candles_reports_money_and_edge(tmp_path, models, candles_dir, capsys):
    env = _env_file(tmp_path, models)
    kept = tmp_path / "bt.sqlite"
    rc = main(["backtest", "--data", str(candles_dir), "--symbols", "BTCUSDT,ETHUSDT", "--env-file", str(env),
               "--start", "2023-12-20", "--store", str(kept), "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    d = json.loads(out)
    e = d["edge"]
    assert e["challenger"] == "patchtst" and e["revote_mismatches"] == 0 and not e["synthetic"]
    assert e["decisions"] == d["n_decisions"] > 400  # ~10 days x 24 h x 2 symbols
    assert {"champion (as recorded)", "option A", "option B", "patchtst alone (challenger)", "xgb alone",
            "buy-and-hold", "flat"} <= set(e["strategies"])
    assert e["verdict"] in ("BETTER", "WORSE", "NOT DISTINGUISHABLE YET")
    assert d["recommendation"]["option"] in ("A", "B", "C")
    # its own store and governor: the engine's home was never created
    assert kept.is_file() and not (tmp_path / "home" / "telemetry.sqlite").exists()
    assert not (tmp_path / "home" / "governor.json").exists()
    # and it refuses to mix its decisions into an existing store
    assert main(["backtest", "--data", str(candles_dir), "--env-file", str(env), "--store", str(kept)]) == 2
    assert "exists" in capsys.readouterr().err
