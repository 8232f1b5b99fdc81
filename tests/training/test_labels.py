from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_engine.exceptions import ConfigError, DataError
from ai_engine.training import UNLABELLED, LabelConfig, make_labels, volatility_band


def _walk(n: int, seed: int = 0, vol: float = 0.01) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(rng.normal(0, vol, n)))


def test_fixed_band_labels_match_forward_returns_and_tail_is_unlabelled():
    close = np.array([100, 101, 100, 99, 99.1, 100, 100, 100.0])
    cfg = LabelConfig(horizon=2, fee_band=0.005, mode="fixed")
    y = make_labels(close, cfg)
    r = np.log(close[2:] / close[:-2])
    expected = np.where(r > 0.005, 2, np.where(r < -0.005, 0, 1))
    np.testing.assert_array_equal(y[:-2], expected)
    np.testing.assert_array_equal(y[-2:], [UNLABELLED, UNLABELLED])


def test_band_has_no_look_ahead():
    close = _walk(600)
    cfg = LabelConfig(horizon=4, vol_window=48, k=1.0)
    band = volatility_band(close, cfg)
    t = 300
    future_changed = close.copy()
    future_changed[t + 1 :] *= np.exp(np.random.default_rng(1).normal(0, 0.2, 600 - t - 1))
    np.testing.assert_array_equal(volatility_band(future_changed, cfg)[: t + 1], band[: t + 1])
    # and the band does react to the past: a volatile stretch widens it
    assert not np.array_equal(volatility_band(future_changed, cfg)[t + 10 :], band[t + 10 :])


def test_vol_band_uses_past_sigma_and_respects_the_fee_floor():
    close = np.concatenate([_walk(300, vol=0.001), _walk(300, seed=2, vol=0.03) * 1.0])
    cfg = LabelConfig(horizon=4, vol_window=100, k=0.5, fee_band=0.002)
    band = volatility_band(close, cfg)
    assert np.all(band >= 0.002)
    assert band[250] == pytest.approx(0.002)  # calm: the fee floor binds
    r1 = np.diff(np.log(close))
    expected = 0.5 * np.std(r1[599 - 100 : 599], ddof=1) * 2  # sqrt(4) = 2
    assert band[599] == pytest.approx(expected, rel=1e-6)


def test_labels_across_a_gap_are_unknown():
    close = _walk(20)
    t = np.arange(20, dtype=np.int64) * 3_600_000
    t[10:] += 3_600_000  # one missing bar between rows 9 and 10
    y = make_labels(close, LabelConfig(horizon=2, mode="fixed"), open_time=t, interval_ms=3_600_000)
    assert list(np.flatnonzero(y == UNLABELLED)) == [8, 9, 18, 19]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 80), h=st.integers(1, 6), seed=st.integers(0, 1000))
def test_labels_are_classes_or_unlabelled(n, h, seed):
    y = make_labels(_walk(n, seed), LabelConfig(horizon=h, vol_window=10))
    assert y.shape == (n,)
    assert set(np.unique(y)) <= {UNLABELLED, 0, 1, 2}
    assert np.all(y[max(n - h, 0) :] == UNLABELLED)
    assert np.all(y[: max(n - h, 0)] != UNLABELLED)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"horizon": 0}, "horizon"), ({"fee_band": -1.0}, "fee_band"), ({"mode": "wide"}, "band mode"),
     ({"vol_window": 1}, "vol_window"), ({"mode": "fixed", "fee_band": 0.0}, "--band")],
)
def test_bad_label_config_names_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        LabelConfig(**kwargs).validate()


def test_bad_prices_are_a_data_error():
    with pytest.raises(DataError, match="row 2"):
        make_labels(np.array([1.0, 2.0, -3.0, 4.0]), LabelConfig())


def test_label_config_round_trips_through_dict():
    cfg = LabelConfig(horizon=6, fee_band=0.003, k=0.7, vol_window=72, mode="vol")
    assert LabelConfig.from_dict(cfg.to_dict()) == cfg
