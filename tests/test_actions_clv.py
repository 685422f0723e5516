"""Discounted long-horizon CLV with margin (ltvcast.actions.clv): closed forms and invariants."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ltvcast.actions.clv import (
    CLVSettings,
    customer_clv,
    customer_margins,
    discount_factors,
    period_grid,
    read_margin_table,
)
from ltvcast.cli import app
from ltvcast.data.datasets import open_history
from ltvcast.errors import CutoffError, DataError
from ltvcast.models.btyd import BTYDForecaster
from ltvcast.schema.predictions import predictions_frame

CUTOFF = "1997-10-01"


@pytest.fixture(scope="module")
def shop():
    return open_history(dataset="cdnow-sample")


@pytest.fixture(scope="module")
def bgnbd(shop):
    return BTYDForecaster("bgnbd", n_draws=100).fit(shop, CUTOFF)


@pytest.fixture(scope="module")
def nbd_limit(shop):
    """BG/NBD at its no-dropout limit (a = 0) with known r, alpha and 50 per occasion: a constant rate per customer."""
    fc = BTYDForecaster("bgnbd", n_draws=0).fit(shop, CUTOFF)
    fc.count_model_.params_ = {"r": 2.0, "alpha": 10.0, "a": 0.0, "b": 1.0}
    fc.spend_model_ = None
    fc.fill_value_ = 50.0
    return fc


# ------------------------------------------------------------------ pure math
def test_period_grid():
    starts, ends = period_grid(100.0, 30.0)
    assert list(ends) == [30.0, 60.0, 90.0, 100.0] and list(starts) == [0.0, 30.0, 60.0, 90.0]
    # 3 years = 1096 days = 36 months of 30.4375 days + 0.25 day: the remainder joins the last month
    _, ends = period_grid(1096.0, 30.4375)
    assert len(ends) == 36 and ends[-1] == 1096.0 and ends[-2] == pytest.approx(35 * 30.4375)
    with pytest.raises(DataError):
        period_grid(0.0, 30.0)


def test_discount_factors_by_hand():
    s, e = np.array([0.0, 365.25]), np.array([365.25, 730.5])
    np.testing.assert_allclose(discount_factors(s, e, 0.1, "period"), [1 / 1.1, 1 / 1.21])
    # continuous: the mean of exp(-0.1 t) over [0, 1] and [1, 2] years
    np.testing.assert_allclose(
        discount_factors(s, e, 0.1, "continuous"),
        [(1 - np.exp(-0.1)) / 0.1, (np.exp(-0.1) - np.exp(-0.2)) / 0.1],
    )
    for mode in ("period", "continuous"):
        np.testing.assert_array_equal(discount_factors(s, e, 0.0, mode), [1.0, 1.0])
    with pytest.raises(DataError):
        discount_factors(s, e, -0.1)
    with pytest.raises(DataError, match="discounting"):
        discount_factors(s, e, 0.1, "yearly")


def test_settings_are_checked():
    for bad, match in (
        (CLVSettings(years=0), "--years"),
        (CLVSettings(margin=1.5), "--margin"),
        (CLVSettings(discount_rate=-0.1), "--discount-rate"),
        (CLVSettings(period="day"), "--period"),
    ):
        with pytest.raises(DataError, match=match):
            bad.check()


# ------------------------------------------------------------------ BTYD: closed form at the NBD limit
def _rate_per_week(fc, shop):
    s = fc.inputs(shop, CUTOFF)
    return s["customer_id"].to_numpy(str), (2.0 + s["frequency"].to_numpy()) / (10.0 + s["T"].to_numpy())


def test_nbd_limit_continuous_discounting_equals_the_integral(nbd_limit, shop):
    """Constant rate λ (Gamma-Poisson posterior mean (r+x)/(α+T)): ∫_0^H λ e^{-δt} dt = λ (1 − e^{-δH}) / δ."""
    ids, lam = _rate_per_week(nbd_limit, shop)
    settings = CLVSettings(years=3, margin=0.3, discount_rate=0.1, discounting="continuous")
    out = customer_clv(nbd_limit, shop, CUTOFF, settings).set_index("customer_id").loc[ids]
    h_years = 1096 / 365.25
    per_year = lam * 365.25 / 7.0 * 50.0
    expected = 0.3 * per_year * (1 - np.exp(-0.1 * h_years)) / 0.1
    np.testing.assert_allclose(out["clv"].to_numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(out["pred_spend"].to_numpy(), per_year * h_years, rtol=1e-10)


def test_nbd_limit_period_discounting_by_hand(nbd_limit, shop):
    """One year in quarters: Σ_k λ Δ_k (1.1)^(−e_k / 365.25), the four terms written out."""
    ids, lam = _rate_per_week(nbd_limit, shop)
    out = customer_clv(nbd_limit, shop, CUTOFF, CLVSettings(years=1, margin=1.0, discount_rate=0.1, period="quarter"))
    out = out.set_index("customer_id").loc[ids]
    q = 91.3125
    terms = (q * 1.1 ** (-q / 365.25) + q * 1.1 ** (-2 * q / 365.25) + q * 1.1 ** (-3 * q / 365.25)
             + (365 - 3 * q) * 1.1 ** (-365 / 365.25))
    np.testing.assert_allclose(out["clv"].to_numpy(), lam / 7.0 * 50.0 * terms, rtol=1e-10)
    assert (out["periods"] == 4).all()


# ------------------------------------------------------------------ invariants on a fitted BG/NBD
@pytest.fixture(scope="module")
def by_rate(bgnbd, shop):
    return {
        rate: customer_clv(bgnbd, shop, CUTOFF, CLVSettings(years=3, margin=0.3, discount_rate=rate))
        for rate in (0.0, 0.05, 0.1, 0.3)
    }


def test_rate_zero_equals_the_horizon_prediction(by_rate, bgnbd, shop):
    pred = bgnbd.predict(shop, CUTOFF, 1096.0).sort_values("customer_id")
    out = by_rate[0.0]
    assert (out["customer_id"].to_numpy() == pred["customer_id"].to_numpy()).all()
    np.testing.assert_allclose(out["clv"].to_numpy(), 0.3 * pred["pred_spend"].to_numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out["discount_ratio"], 1.0)


def test_clv_falls_with_the_rate_and_scales_with_margin(by_rate, bgnbd, shop):
    clv = np.column_stack([by_rate[r]["clv"].to_numpy() for r in (0.0, 0.05, 0.1, 0.3)])
    buyers = clv[:, 0] > 1e-9
    assert buyers.mean() > 0.9
    assert np.all(np.diff(clv[buyers], axis=1) < 0)  # strictly decreasing in the rate
    # ratio at 10 %: between a flat 3-year annuity's and the first period's discount
    ratio = by_rate[0.1]["discount_ratio"]
    assert ratio.between(1.1 ** -3, 1.1 ** (-30.4375 / 365.25)).all()
    full = customer_clv(bgnbd, shop, CUTOFF, CLVSettings(years=3, margin=1.0, discount_rate=0.1))
    np.testing.assert_allclose(by_rate[0.1]["clv"], 0.3 * full["clv"], rtol=1e-12)


def test_interval_is_one_row_per_customer_and_ordered(by_rate):
    out = by_rate[0.1]
    assert out["customer_id"].is_unique and len(out) == 2357
    assert out[["clv_p10", "clv_p90"]].notna().all().all()
    assert (out["clv_p10"] <= out["clv_p90"]).all() and (out["clv_p10"] >= 0).all()


# ------------------------------------------------------------------ learned models: differencing, trajectory
class _Cumulative:
    """A forecaster whose cumulative spend is c_i (1 − e^{−h/100}); customer 'z' dips at day 60 (made monotone)."""

    name = "fake"
    horizon_days_ = 400.0

    def inputs(self, data, cutoff, horizon_days):
        return pd.DataFrame({"customer_id": pd.array(["a", "b", "z"], dtype="string"), "c": [100.0, 10.0, 50.0]})

    def predict_inputs(self, inputs, cutoff, horizon_days):
        c = inputs["c"].to_numpy()
        spend = c * (1 - np.exp(-horizon_days / 100.0))
        if horizon_days == 60.0:
            spend[2] = 0.0  # a non-monotone cumulative curve
        return predictions_frame(inputs["customer_id"], self.name, cutoff, horizon_days, pred_spend=spend,
                                 pred_spend_p10=0.5 * spend, pred_spend_p90=2 * spend)


def test_differencing_horizons_by_hand():
    fc = _Cumulative()
    settings = CLVSettings(years=300 / 365.25, margin=1.0, discount_rate=0.0, period="month")
    # 300 days = periods ending 30.4375, 60.875, ..., 300 (10 months: 9 full + 26.06 days)
    out = customer_clv(fc, None, CUTOFF, settings).set_index("customer_id")
    assert out.loc["a", "pred_spend"] == pytest.approx(100 * (1 - np.exp(-3.0)))
    assert out.loc["a", "clv_p90"] == pytest.approx(2 * 100 * (1 - np.exp(-3.0)))
    rated = customer_clv(fc, None, CUTOFF, CLVSettings(years=300 / 365.25, discount_rate=0.1, period="month"))
    assert (rated["clv"] < out["clv"].to_numpy()).all()
    with pytest.raises(CutoffError, match="fitted for a 400-day horizon"):
        customer_clv(fc, None, CUTOFF, CLVSettings(years=3))


class _Trajectory:
    """A deep-like forecaster: 2 customers, 3 periods of 100 days."""

    name = "deep"

    def predict_trajectory(self, data, cutoff, horizon_days):
        return pd.DataFrame({
            "customer_id": pd.array(["a"] * 3 + ["b"] * 3, dtype="string"),
            "period": [1, 2, 3] * 2,
            "period_days": [100.0, 100.0, 100.0] * 2,
            "pred_spend": [30.0, 20.0, 10.0, 0.0, 0.0, 0.0],
        })

    def predict(self, data, cutoff, horizon_days):
        return predictions_frame(pd.Series(["a", "b"]), "deep", cutoff, 300.0, pred_spend=np.array([60.0, 0.0]),
                                 pred_spend_p10=np.array([6.0, 0.0]), pred_spend_p90=np.array([120.0, 0.0]))


def test_trajectory_periods_by_hand():
    out = customer_clv(_Trajectory(), None, CUTOFF, CLVSettings(years=300 / 365.25, margin=0.5, discount_rate=0.1))
    a = out.set_index("customer_id").loc["a"]
    expected = 0.5 * (30 * 1.1 ** (-100 / 365.25) + 20 * 1.1 ** (-200 / 365.25) + 10 * 1.1 ** (-300 / 365.25))
    assert a["clv"] == pytest.approx(expected, rel=1e-12)
    assert a["clv_p90"] == pytest.approx(0.5 * 120 * expected / (0.5 * 60), rel=1e-12)
    assert out.set_index("customer_id").loc["b", "clv"] == 0.0


# ------------------------------------------------------------------ margins
def test_category_margins_by_hand(tmp_path):
    orders = pd.DataFrame({
        "order_id": ["o1", "o2", "o3"], "customer_id": ["a", "a", "b"],
        "timestamp": pd.to_datetime(["1997-01-05", "1997-02-01", "1997-12-01"], utc=True),
    })
    items = pd.DataFrame({
        "order_id": ["o1", "o1", "o2", "o2", "o3"], "amount": [60.0, 20.0, 20.0, 10.0, 10.0],
        "category": ["music", "books", None, None, "music"], "product_id": ["p1", "p2", "p2", "p9", "p1"],
    })
    products = pd.DataFrame({"product_id": ["p1", "p2"], "category": ["music", "books"]})
    tables = {"orders": orders, "order_items": items, "products": products}
    history = SimpleNamespace(store=SimpleNamespace(table=lambda name: tables[name]))
    m = customer_margins(history, CUTOFF, pd.Series(["a", "b", "c"]), {"music": 0.5, "books": 0.2}, 0.3)
    # a: (60·0.5 + 20·0.2 + 20·0.2 [p2's category: books] + 10·0.3 [p9: unknown]) / 110 = 41/110;
    # b's only order is after the cutoff; c has none
    np.testing.assert_allclose(m, [41 / 110, 0.3, 0.3])
    path = tmp_path / "m.csv"
    path.write_text("category,margin\nmusic,0.5\nbooks,2\n")
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        read_margin_table(path)
    empty = SimpleNamespace(store=SimpleNamespace(table=lambda name: items.iloc[:0]))
    with pytest.raises(DataError, match="use --margin"):
        customer_margins(empty, CUTOFF, pd.Series(["a"]), {"music": 0.5}, 0.3)
    # a table whose categories all miss the store's (a typo, another case) silently gave everybody the default
    with pytest.raises(DataError, match="case included"):
        customer_margins(history, CUTOFF, pd.Series(["a"]), {"Music": 0.5, "Books": 0.2}, 0.3)
    with pytest.raises(DataError, match="case included"):
        customer_margins(history, CUTOFF, pd.Series(["a"]), {}, 0.3)


# ------------------------------------------------------------------ the command
def test_clv_command(tmp_path):
    runner = CliRunner()
    reg = tmp_path / "models"
    result = runner.invoke(app, ["train", "--dataset", "cdnow-sample", "--models", "bgnbd", "--cutoff", CUTOFF,
                                 "--name", "cd", "--registry", str(reg)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "clv.parquet"
    result = runner.invoke(app, ["clv", "--model", "cd", "--dataset", "cdnow-sample", "--cutoff", CUTOFF,
                                 "--years", "3", "--margin", "0.3", "--discount-rate", "0.1",
                                 "--registry", str(reg), "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert len(frame) == 2357 and frame["customer_id"].is_unique
    assert (frame["model"] == "cd:1").all() and (frame["periods"] == 36).all()
    assert (frame["clv"] <= 0.3 * frame["pred_spend"] + 1e-9).all()
    result = runner.invoke(app, ["clv", "--model", "cd", "--dataset", "cdnow-sample", "--cutoff", CUTOFF,
                                 "--margin", "2", "--registry", str(reg)])
    assert result.exit_code == 2 and "--margin" in result.output
