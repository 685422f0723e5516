"""Posterior simulation of BTYD models: quantiles and next-purchase days (CDNOW sample)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ltvcast.data.datasets import open_history
from ltvcast.features import rfm_summary
from ltvcast.models import BGNBD, GammaGamma, Naive, ParetoNBD
from ltvcast.models.btyd import BTYDForecaster
from ltvcast.models.learned.btyd_sim import _g, simulate_btyd

CUTOFF = "1997-10-01"
H = 182.0


@pytest.fixture(scope="module")
def summary():
    tx = open_history(dataset="cdnow-sample").transactions
    return rfm_summary(tx, CUTOFF, unit="W")


@pytest.fixture(scope="module")
def fitted(summary):
    usable = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    return {
        "pnbd": ParetoNBD().fit(summary),
        "bgnbd": BGNBD().fit(summary),
        "gg": GammaGamma().fit(usable),
    }


def test_truncated_exponential_mean():
    # E[X | X < u] for X ~ Exp(1) is 1 - u e^-u / (1 - e^-u) = u g(u)
    for u in (1e-6, 1e-3, 0.3, 2.0, 40.0):
        exact = 1.0 - u * math.exp(-u) / (-math.expm1(-u))
        assert u * _g(np.array([u]))[0] == pytest.approx(exact, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("kind", ["pnbd", "bgnbd"])
def test_quantiles_agree_with_p_no_purchase(summary, fitted, kind):
    model = fitted[kind]
    sim = simulate_btyd(model, fitted["gg"], summary, H, n_draws=2000, seed=1)
    p_none = model.p_no_purchase(summary, H / 7.0)
    q10, q50, q90 = sim["pred_spend_p10"], sim["pred_spend_p50"], sim["pred_spend_p90"]
    assert (q10 <= q50).all() and (q50 <= q90).all() and (q10 >= 0).all()
    # well inside the zero mass: every quantile is 0; well outside: p10 > 0
    assert (q90[p_none > 0.93] == 0).all()
    assert (q10[p_none < 0.07] > 0).all()
    assert (q50[p_none > 0.55] == 0).all() and (q50[p_none < 0.45] > 0).all()
    days = sim["pred_next_purchase_days"]
    assert ((days >= 0) & (days <= H - 1)).all()
    # more frequent buyers (higher expected count) buy sooner
    exp_tx = model.expected_transactions(summary, H / 7.0)
    assert np.corrcoef(exp_tx, days)[0, 1] < -0.3


def test_simulation_is_deterministic_by_seed(summary, fitted):
    a = simulate_btyd(fitted["pnbd"], fitted["gg"], summary, H, n_draws=200, seed=3)
    b = simulate_btyd(fitted["pnbd"], fitted["gg"], summary, H, n_draws=200, seed=3)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_naive_next_purchase_closed_form(summary):
    model = Naive().fit(summary)
    sim = simulate_btyd(model, None, summary, H, n_draws=50, seed=0)
    rate = model.rate(summary)
    t = H / 7.0
    u = rate * t
    weeks = np.where(u > 0, 1.0 / np.where(u > 0, rate, 1.0) - t / np.expm1(np.where(u > 0, u, 1.0)), t / 2)
    np.testing.assert_allclose(sim["pred_next_purchase_days"], np.clip(weeks * 7 - 0.5, 0, H - 1), rtol=1e-6)


def test_btyd_forecasters_fill_quantiles_and_next_purchase():
    h = open_history(dataset="cdnow-sample")
    for name in ("naive", "bgnbd", "paretonbd"):
        p = BTYDForecaster(name, n_draws=200).fit(h, CUTOFF, H).predict(h, CUTOFF, H)
        cols = ["pred_spend_p10", "pred_spend_p50", "pred_spend_p90", "pred_next_purchase_days"]
        assert p[cols].notna().all().all(), name
        assert (p["pred_spend_p10"] <= p["pred_spend_p90"]).all()
    off = BTYDForecaster("bgnbd", n_draws=0).fit(h, CUTOFF, H).predict(h, CUTOFF, H)
    assert off["pred_spend_p50"].isna().all() and isinstance(off, pd.DataFrame)
