"""The horizon's distribution of BTYD models: spend quantiles and next-purchase days (CDNOW sample)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ltvcast.data.datasets import open_history
from ltvcast.features import rfm_summary
from ltvcast.models import BGNBD, GammaGamma, Naive, ParetoNBD
from ltvcast.models.btyd import BTYDForecaster
from ltvcast.models.btyd_dist import _g, btyd_horizon, count_pmf

CUTOFF = "1997-10-01"
H = 182.0
COLS = ["pred_spend_p10", "pred_spend_p50", "pred_spend_p90", "pred_next_purchase_days"]


@pytest.fixture(scope="module")
def summary():
    tx = open_history(dataset="cdnow-sample").transactions
    return rfm_summary(tx, CUTOFF, unit="W")


@pytest.fixture(scope="module")
def fitted(summary):
    usable = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    return {"pnbd": ParetoNBD().fit(summary), "bgnbd": BGNBD().fit(summary), "gg": GammaGamma().fit(usable),
            "naive": Naive().fit(summary)}


def test_truncated_exponential_mean():
    # E[X | X < u] for X ~ Exp(1) is 1 - u e^-u / (1 - e^-u) = u g(u)
    for u in (1e-6, 1e-3, 0.3, 2.0, 40.0):
        exact = 1.0 - u * math.exp(-u) / (-math.expm1(-u))
        assert u * _g(np.array([u]))[0] == pytest.approx(exact, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("kind", ["pnbd", "bgnbd", "naive"])
def test_count_pmf_matches_closed_forms(summary, fitted, kind):
    # P(N = 0) is p_no_purchase and the pmf's mean is expected_transactions (independent formulas)
    model, t = fitted[kind], H / 7.0
    x, T = summary["frequency"].to_numpy(), summary["T"].to_numpy()
    pa = np.ones(len(x)) if kind == "naive" else model.p_alive(summary)
    p_none, mean = model.p_no_purchase(summary, t), model.expected_transactions(summary, t)
    for xv in (0.0, 1.0, 4.0, float(x.max())):
        rows = np.flatnonzero(x == xv)
        pmf, _ = count_pmf(model, xv, T[rows], t)
        assert pmf.sum(axis=1) == pytest.approx(1.0, abs=1e-7)
        np.testing.assert_allclose(1 - pa[rows] + pa[rows] * pmf[:, 0], p_none[rows], atol=1e-10)
        np.testing.assert_allclose(pa[rows] * (pmf @ np.arange(pmf.shape[1])), mean[rows], rtol=1e-6, atol=1e-9)


def _simulate(model, gg, x, tx, T, z, t, n, rng):
    """Monte-Carlo futures of one customer (the generative model, written out plainly)."""
    par = model.params_
    alive = rng.random(n) < model.p_alive(pd.DataFrame({"frequency": [x], "recency": [tx], "T": [T]}))[0]
    lam = rng.gamma(par["r"] + x, 1.0 / (par["alpha"] + T), n)
    if isinstance(model, ParetoNBD):
        life = rng.exponential(1.0, n) / rng.gamma(par["s"], 1.0 / (par["beta"] + T), n)
        span = np.minimum(life, t)
        counts = rng.poisson(lam * span)
        first = rng.exponential(1.0, n) / lam  # the first arrival counts if it comes before the span ends
        first = np.where(first < span, first, np.nan)
    else:
        span = np.full(n, t)
        counts = np.minimum(rng.poisson(lam * t), rng.geometric(rng.beta(par["a"], par["b"] + x, n)))
        first = rng.exponential(1.0, n) / lam
        first = np.where(first < t, first, np.nan)
    counts = np.where(alive, counts, 0)
    use = x > 0 and z > 0
    nu = rng.gamma(gg["q"] + (gg["p"] * x if use else 0.0), 1.0 / (gg["gamma"] + (x * z if use else 0.0)), n)
    spend = np.where(counts > 0, rng.gamma(np.maximum(gg["p"] * counts, 1e-12), 1.0) / nu, 0.0)
    return spend, first[alive & ~np.isnan(first)]


@pytest.mark.parametrize("kind", ["pnbd", "bgnbd"])
def test_quantiles_and_next_purchase_match_monte_carlo(summary, fitted, kind):
    model, gg, t = fitted[kind], fitted["gg"].params_, H / 7.0
    # a one-off buyer, light, medium and heavy repeat buyers
    picks = [int(np.flatnonzero(summary["frequency"] == f)[0]) for f in (0, 1, 3)]
    picks.append(int(np.argmax(summary["frequency"].to_numpy())))
    sub = summary.iloc[picks].reset_index(drop=True)
    out = btyd_horizon(model, fitted["gg"], sub, H)
    rng = np.random.default_rng(7)
    for i, row in sub.iterrows():
        spend, first = _simulate(model, gg, row["frequency"], row["recency"], row["T"], row["monetary_value"],
                                 t, 200_000, rng)
        for level in (0.1, 0.5, 0.9):
            q = out[f"pred_spend_p{int(level * 100)}"][i]
            if q == 0:
                assert np.mean(spend == 0) >= level - 0.005
            else:  # the simulated distribution function at our quantile is the level
                assert np.mean(spend <= q) == pytest.approx(level, abs=0.005), (i, level)
        # E[first purchase | one in the horizon]: days = weeks * 7 - 0.5
        mc_days = np.mean(first) * 7.0 - 0.5
        assert out["pred_next_purchase_days"][i] == pytest.approx(mc_days, rel=0.02, abs=0.5), i


@pytest.mark.parametrize("kind", ["pnbd", "bgnbd"])
def test_quantiles_agree_with_p_no_purchase(summary, fitted, kind):
    model = fitted[kind]
    out = btyd_horizon(model, fitted["gg"], summary, H)
    p_none = model.p_no_purchase(summary, H / 7.0)
    q10, q50, q90 = out["pred_spend_p10"], out["pred_spend_p50"], out["pred_spend_p90"]
    assert (q10 <= q50).all() and (q50 <= q90).all() and (q10 >= 0).all()
    # a level at or below P(no purchase) is 0, above it positive: exactly, no sampling noise
    for q, level in ((q10, 0.1), (q50, 0.5), (q90, 0.9)):
        assert ((q == 0) == (p_none >= level - 1e-12)).all()
    days = out["pred_next_purchase_days"]
    assert ((days >= 0) & (days <= H - 1)).all()
    exp_tx = model.expected_transactions(summary, H / 7.0)
    assert np.corrcoef(exp_tx, days)[0, 1] < -0.3


def test_rows_are_independent_of_batch_and_order(summary, fitted):
    whole = btyd_horizon(fitted["pnbd"], fitted["gg"], summary, H)
    order = np.random.default_rng(0).permutation(len(summary))[:500]
    part = btyd_horizon(fitted["pnbd"], fitted["gg"], summary.iloc[order], H)
    for key in whole:
        np.testing.assert_array_equal(part[key], whole[key][order])


def test_fixed_value_per_occasion_gives_count_quantiles(summary, fitted):
    # without a spend model, spend = N * value: the quantiles are count quantiles times the value
    model, t = fitted["bgnbd"], H / 7.0
    value = np.full(len(summary), 10.0)
    out = btyd_horizon(model, None, summary, H, value=value)
    counts = out["pred_spend_p90"] / 10.0
    np.testing.assert_array_equal(counts, np.round(counts))
    heavy = int(np.argmax(summary["frequency"].to_numpy()))
    pmf, _ = count_pmf(model, float(summary["frequency"].iloc[heavy]), summary["T"].to_numpy()[[heavy]], t)
    pa = model.p_alive(summary)[heavy]
    cdf = 1 - pa + pa * np.cumsum(pmf[0])
    assert counts[heavy] == np.argmax(cdf >= 0.9)


def test_naive_next_purchase_closed_form(summary, fitted):
    model = fitted["naive"]
    out = btyd_horizon(model, None, summary, H)
    rate = model.rate(summary)
    t = H / 7.0
    u = rate * t
    weeks = np.where(u > 0, 1.0 / np.where(u > 0, rate, 1.0) - t / np.expm1(np.where(u > 0, u, 1.0)), t / 2)
    np.testing.assert_allclose(out["pred_next_purchase_days"], np.clip(weeks * 7 - 0.5, 0, H - 1), rtol=1e-6)


def test_btyd_forecasters_fill_quantiles_and_next_purchase():
    h = open_history(dataset="cdnow-sample")
    for name in ("naive", "bgnbd", "paretonbd"):
        p = BTYDForecaster(name, n_draws=200).fit(h, CUTOFF, H).predict(h, CUTOFF, H)
        assert p[COLS].notna().all().all(), name
        assert (p["pred_spend_p10"] <= p["pred_spend_p90"]).all()
    off = BTYDForecaster("bgnbd", n_draws=0).fit(h, CUTOFF, H).predict(h, CUTOFF, H)
    assert off["pred_spend_p50"].isna().all() and isinstance(off, pd.DataFrame)
