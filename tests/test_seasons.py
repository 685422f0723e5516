"""Seasons and the level (issue 13): the simulator's calendar, same-season windows, the top-down level."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ltvcast.evaluate.backtest import BacktestResult, level_context
from ltvcast.models.learned.calibration import LevelCalibration, PlattCalibration
from ltvcast.models.learned.examples import (
    SEASONAL_INDEX,
    calibration_windows,
    seasonal_windows,
    window_plan,
)
from ltvcast.models.level import forecast_total, reconcile, seasonal_index, top_down_level
from ltvcast.simulate.seasons import Seasons, true_level

# ---------------------------------------------------------------- the simulator's calendar


def test_default_calendar_has_the_q4_peak_lull_and_strength_is_an_exponent():
    days = pd.DatetimeIndex(["2024-01-15", "2024-11-10", "2024-12-10", "2024-12-24", "2024-12-28"])
    assert Seasons().season(days).tolist() == [0.85, 1.45, 1.95, 0.6, 1.0]
    assert np.allclose(Seasons(strength=2.0).season(days), [0.85**2, 1.45**2, 1.95**2, 0.36, 1.0])
    assert np.allclose(Seasons(strength=0.0).season(days), 1.0)
    with pytest.raises(ValueError):
        Seasons(strength=-1.0)


def test_true_level_is_the_mean_intensity_of_the_window():
    days = pd.date_range("2024-01-01", "2024-12-31", freq="D")
    cal = Seasons(promo_day_p=0.0).draw(np.random.default_rng(0), days)
    h2 = true_level(cal.day_mult, days, "2024-07-01", 184)
    h1 = true_level(cal.day_mult, days, "2024-01-01", 182)
    assert h2 == pytest.approx(np.mean(cal.day_mult[182:]))
    assert h2 / h1 > 1.15  # July–December holds the Q4 peak
    with pytest.raises(ValueError):
        true_level(cal.day_mult, days, "2024-12-01", 60)


# ---------------------------------------------------------------- same-season windows


def test_seasonal_windows_sit_364_days_before_the_horizon():
    assert seasonal_windows("2024-07-01", 184, years=2, first_day="2022-01-01") == [
        (pd.Timestamp("2023-07-03", tz="UTC"), 1),
        (pd.Timestamp("2022-07-04", tz="UTC"), 2),
    ]
    # 28 days of history needed before the window's cutoff
    assert seasonal_windows("2024-07-01", 184, years=1, first_day="2023-06-10") == []
    plan = window_plan("2024-07-01", 184, n_windows=2, recent=False, first_day="2022-01-01", seasonal_years=1)
    assert [w.index for w in plan] == [0, 1, SEASONAL_INDEX + 1]
    assert plan[-1].is_seasonal and plan[-1].years_before == 1 and plan[-1].label_days == 184
    idx, weights, note = calibration_windows(
        window_plan("2024-07-01", 184, n_windows=2, recent=False, first_day="2022-01-01", seasonal_years=2)
    )
    assert idx == [SEASONAL_INDEX + 1, SEASONAL_INDEX + 2] and weights == [1.0, 0.5] and "same-season" in note
    assert calibration_windows(plan[:2])[:2] == ([0], [1.0])


def test_weighted_level_and_platt_calibrations():
    level = LevelCalibration(max_factor=10).fit([2.0, 6.0], [1.0, 1.0], sample_weight=[1.0, 0.0])
    assert level.factor_ == pytest.approx(2.0)  # Σ w·y / Σ w·ŷ = 2 / 1
    p = np.array([0.2, 0.4, 0.6, 0.8] * 50)
    y = (np.arange(p.size) % 5 == 0).astype(float)
    a = PlattCalibration().fit(y, p)
    b = PlattCalibration().fit(y, p, sample_weight=np.full(p.size, 3.0))
    assert (a.a_, a.b_) == pytest.approx((b.a_, b.b_), abs=1e-6)  # a constant weight changes nothing


# ---------------------------------------------------------------- the top-down level


def _series_tx(values: np.ndarray, start: str = "2021-01-04") -> pd.DataFrame:
    days = pd.date_range(start, periods=values.size, freq="D", tz="UTC")
    return pd.DataFrame(
        {
            "customer_id": [f"c{i % 50}" for i in range(values.size)],
            "timestamp": days + pd.Timedelta(hours=12),
            "amount": values,
        }
    )


def _seasonal_values(n_days: int, start: str = "2021-01-04") -> np.ndarray:
    days = pd.date_range(start, periods=n_days, freq="D")
    season = Seasons(promo_day_p=0.0).draw(np.random.default_rng(0), days).day_mult
    growth = 1.0 + 0.2 * np.arange(n_days) / 365.0
    return 1000.0 * season * growth


def test_top_down_level_reproduces_a_known_seasonal_series():
    values = _seasonal_values(1400)
    tx = _series_tx(values)
    cutoff = pd.Timestamp("2021-01-04") + pd.Timedelta(days=1200)
    h = 91
    truth = values[1200 : 1200 + h].sum()
    lf = top_down_level(tx, cutoff.date(), h)
    assert lf.method in ("seasonal_naive", "holt_winters")
    assert lf.total == pytest.approx(truth, rel=0.04)
    assert lf.low < truth < lf.high
    assert not lf.short_history
    trailing = forecast_total(
        lf_rev := tx.set_index("timestamp")["amount"].resample("D").sum().tz_localize(None), cutoff, h, "trailing"
    )
    assert abs(trailing / truth - 1) > abs(lf.total / truth - 1)  # the season matters here
    assert seasonal_index(lf_rev, cutoff, h) == pytest.approx(lf.seasonal_index)


def test_top_down_level_never_reads_the_horizon_and_short_history_widens_the_interval():
    values = _seasonal_values(1400)
    tx = _series_tx(values)
    cutoff = (pd.Timestamp("2021-01-04") + pd.Timedelta(days=1200)).date()
    base = top_down_level(tx, cutoff, 91)
    changed = tx.copy()
    after = changed["timestamp"] >= pd.Timestamp(cutoff, tz="UTC")
    changed.loc[after, "amount"] *= 7.0
    again = top_down_level(changed, cutoff, 91)
    assert (again.total, again.existing_total, again.method) == (base.total, base.existing_total, base.method)
    short = top_down_level(tx.iloc[:300], (pd.Timestamp("2021-01-04") + pd.Timedelta(days=300)).date(), 91)
    assert short.short_history and np.isnan(short.seasonal_index)
    assert (short.high - short.low) / short.total > (base.high - base.low) / base.total
    rec = reconcile(
        tx.iloc[:300],
        "UTC",
        (pd.Timestamp("2021-01-04") + pd.Timedelta(days=300)).date(),
        91,
        5e4,
        val_cutoff="2021-08-01",
        val_bottom_up=1.0,
        val_actual=2.0,
    )
    assert rec.factor == 1.0 and not rec.reconciled  # never with less than a year and a quarter


def test_report_context_shows_the_seasonal_index_and_both_totals():
    values = _seasonal_values(1400)
    cutoff = (pd.Timestamp("2021-01-04") + pd.Timedelta(days=1200)).date()
    lf = top_down_level(_series_tx(values), cutoff, 91)
    preds = pd.DataFrame({"model": ["gbm", "gbm", "auto"], "pred_spend": [1.0, 2.0, 4.0]})
    result = BacktestResult(preds, pd.DataFrame(), pd.DataFrame(), pd.Timestamp(cutoff), 91.0, [], lf)
    ctx = level_context(result)
    assert ctx["Seasonal index of the horizon"] == f"{lf.seasonal_index:.2f}"
    assert ctx["Top-down total (shop)"].startswith(f"{lf.total:,.0f}")
    assert ctx["Bottom-up totals"] == "gbm 3, auto 4"


# ---------------------------------------------------------------- a seasonal simulated shop, known truth


@pytest.fixture(scope="module")
def seasonal_shop(tmp_path_factory):
    from ltvcast.data.datasets import open_history
    from ltvcast.ingest.config import load_config
    from ltvcast.ingest.multisource import ingest_sources
    from ltvcast.simulate import simulate_shop
    from ltvcast.store import Store

    out = tmp_path_factory.mktemp("seasons")
    simulate_shop(
        out / "sim",
        customers=1500,
        months=36,
        seed=5,
        start="2022-01-01",
        dirty_rate=0.0,
        seasons=Seasons(strength=1.5),
    )
    db = out / "shop.duckdb"
    with Store.open(db) as store:
        ingest_sources(load_config(out / "sim" / "sources.yaml"), store)
    return open_history(db=db)


def test_same_season_window_fixes_the_level_on_a_seasonal_shop(seasonal_shop):
    from ltvcast.evaluate.backtest import horizon_actuals
    from ltvcast.models.learned.gbm import GBMForecaster

    data, cutoff, h = seasonal_shop, "2024-07-01", 184.0
    small = dict(n_windows=3, recent_windows=False, spend_loss="tweedie", max_rounds=60, reconcile="off")
    errors = {}
    for years in (0, 1):
        model = GBMForecaster(seasonal_years=years, **small).fit(data, cutoff, h)
        pred = model.predict(data, cutoff, h)
        actual = horizon_actuals(data, pred["customer_id"], cutoff, h)["actual_spend"].clip(lower=0).sum()
        errors[years] = pred["pred_spend"].sum() / actual - 1.0
        if years:
            assert any("same-season" in n for n in model.notes_)
    # the most-recent-window rule calibrates on January–June and misses the Q4 horizon's level
    assert errors[0] < -0.15
    assert abs(errors[1]) < abs(errors[0]) - 0.10
