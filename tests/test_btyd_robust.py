"""BTYD fits always answer, honestly (issue 10): boundary limits, MAP fallback, adequacy notes, finite outputs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import OptimizeResult, minimize
from scipy.special import gammaln

from ltvcast.errors import DataError
from ltvcast.models._mle import GRAD_TOL, diagnose, newton_gain
from ltvcast.models.bgnbd import BGNBD
from ltvcast.models.gammagamma import GammaGamma
from ltvcast.models.paretonbd import ParetoNBD

COUNT = {"bgnbd": BGNBD, "paretonbd": ParetoNBD}
LIMIT_KEY = {"bgnbd": "a", "paretonbd": "s"}


def b2b_summary(n: int = 2000, seed: int = 1, weeks: float = 52.0) -> pd.DataFrame:
    """A no-dropout B2B-like shop: Poisson purchases at rate λ ~ Gamma(0.8, 4 /week), nobody leaves;
    heavy-tailed (log-normal, sigma 1.5) spend; ids unsorted and non-contiguous."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(0.8, 1 / 4.0, n)
    T = np.round(rng.uniform(4.0, weeks, n) * 7) / 7
    x = rng.poisson(lam * T).astype(float)
    tx = np.array([rng.uniform(0, Ti, int(k)).max() if k else 0.0 for Ti, k in zip(T, x)])
    z = np.array([rng.lognormal(4.0, 1.5, int(k)).mean() if k else 0.0 for k in x])
    ids = rng.permutation(n) * 7 + 1000
    return pd.DataFrame({"customer_id": ids, "frequency": x, "recency": tx, "T": T, "monetary_value": z})


def dozen() -> pd.DataFrame:
    """12 customers, 3 with repeat purchases (weeks)."""
    x = [0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 5]
    tx = [0, 0, 0, 0, 0, 0, 0, 0, 0, 10.0, 3.0, 20.0]
    T = [30.0, 25, 20, 15, 10, 8, 6, 5, 4, 30, 12, 26]
    z = [0.0] * 9 + [40.0, 25.0, 60.0]
    return pd.DataFrame({"frequency": np.array(x, float), "recency": tx, "T": T, "monetary_value": z})


def heavy(n: int = 200, seed: int = 3) -> pd.DataFrame:
    """Customers with hundreds to thousands of repeat purchases, some of them silent for a while."""
    rng = np.random.default_rng(seed)
    x = rng.integers(200, 3000, n).astype(float)
    T = np.full(n, 52.0)
    tx = np.where(rng.random(n) < 0.3, rng.uniform(10, 40, n), rng.uniform(51.0, 52.0, n))
    z = rng.gamma(5.0, 10.0, n)
    return pd.DataFrame({"frequency": x, "recency": tx, "T": T, "monetary_value": z})


def assert_sane(model, summary: pd.DataFrame, t: float = 13.0) -> None:
    e = model.expected_transactions(summary, t)
    pa = model.p_alive(summary)
    p0 = model.p_no_purchase(summary, t)
    for arr in (e, pa, p0, model.log_likelihood(summary)):
        assert np.all(np.isfinite(arr))
    assert np.all(e >= 0) and np.all((pa >= 0) & (pa <= 1)) and np.all((p0 >= 0) & (p0 <= 1))


# ------------------------------------------------------------------ convergence on the scale of the log-likelihood


def test_newton_gain_is_in_total_log_likelihood_units() -> None:
    # g = (2e-5, 0), H = I, n = 1000 -> n/2 g'g = 2e-7
    assert newton_gain(np.array([2e-5, 0.0]), np.eye(2), 1000) == pytest.approx(2e-7)
    assert newton_gain(np.array([1.0, 0.0]), -np.eye(2), 10) == np.inf


def test_gradient_twice_the_tolerance_is_accepted_when_nothing_is_left_to_gain() -> None:
    c = np.array([0.3, -0.2])
    f = lambda z: 0.5 * float(np.sum((z - c) ** 2))  # noqa: E731
    z = c + np.array([2 * GRAD_TOL, 0.0])
    res = OptimizeResult(x=z, fun=f(z), success=True, message="ok", grad_check=z - c)
    ok = diagnose(res, f, jac=lambda v: v - c, model="M", names=("a", "b"),
                  to_params=lambda v: dict(zip("ab", np.exp(v))), n=1000)
    assert ok is None


# ------------------------------------------------------------------ a no-dropout B2B shop: the NBD limit


@pytest.fixture(scope="module")
def shop() -> pd.DataFrame:
    return b2b_summary()


@pytest.fixture(scope="module")
def nbd_by_hand(shop: pd.DataFrame) -> dict[str, float]:
    """Maximum-likelihood NBD fit, written out here: ln L = lnΓ(r+x) − lnΓ(r) + r ln α − (r+x) ln(α+T)."""
    x, T = shop["frequency"].to_numpy(), shop["T"].to_numpy()

    def nll(z):
        r, a = np.exp(z)
        return -np.sum(gammaln(r + x) - gammaln(r) + r * np.log(a) - (r + x) * np.log(a + T))

    res = minimize(nll, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 5000})
    r, a = np.exp(res.x)
    return {"r": r, "alpha": a}


@pytest.fixture(scope="module")
def shop_fits(shop: pd.DataFrame) -> dict:
    return {name: cls(time_unit="weeks").fit(shop) for name, cls in COUNT.items()}


@pytest.mark.parametrize("name", ["bgnbd", "paretonbd"])
def test_no_dropout_shop_is_fitted_as_the_nbd_limit(name, shop, shop_fits, nbd_by_hand) -> None:
    model = shop_fits[name]
    assert model.fit_method_ == "boundary"
    assert model.params_[LIMIT_KEY[name]] == 0.0
    assert any("boundary" in n and "reduces to the NBD" in n for n in model.notes_)
    assert model.params_["r"] == pytest.approx(nbd_by_hand["r"], rel=1e-4)
    assert model.params_["alpha"] == pytest.approx(nbd_by_hand["alpha"], rel=1e-4)
    assert_sane(model, shop)
    r, a = nbd_by_hand["r"], nbd_by_hand["alpha"]
    x, T, t = shop["frequency"].to_numpy(), shop["T"].to_numpy(), 26.0
    # NBD posterior (Gamma-Poisson conjugacy): λ | x, T ~ Gamma(r+x, α+T)
    np.testing.assert_allclose(model.expected_transactions(shop, t), (r + x) / (a + T) * t, rtol=1e-4)
    np.testing.assert_allclose(model.p_no_purchase(shop, t), ((a + T) / (a + T + t)) ** (r + x), rtol=1e-4)
    assert np.all(model.p_alive(shop) == 1.0)
    assert model.population_expected_transactions(10.0) == pytest.approx(r / a * 10.0, rel=1e-4)


def test_no_dropout_shop_spend_is_fitted(shop) -> None:
    gg = GammaGamma().fit(shop)
    value = gg.conditional_expected_value(shop)
    assert gg.fit_method_ in ("mle", "map") and np.all(np.isfinite(value)) and np.all(value > 0)


# ------------------------------------------------------------------ a dozen customers: MAP with priors


@pytest.mark.parametrize("name", ["bgnbd", "paretonbd"])
def test_a_dozen_customers_fit_with_priors_and_say_so(name) -> None:
    data = dozen()
    model = COUNT[name]().fit(data)
    assert model.fit_method_ == "map"
    assert any("12 customers, 3 with repeat purchases: too few to estimate" in n and "weak priors" in n
               for n in model.notes_)
    assert_sane(model, data)


def test_a_dozen_repeat_buyers_fit_spend_with_priors() -> None:
    data = pd.DataFrame({"frequency": [1.0, 2, 3, 1, 5, 2, 1, 4, 2, 1, 3, 6],
                         "monetary_value": [20.0, 35, 18, 60, 25, 40, 15, 30, 22, 80, 28, 33]})
    gg = GammaGamma().fit(data)
    assert gg.fit_method_ == "map" and "12 repeat buyers: too few" in gg.notes_[0]
    value = gg.conditional_expected_value(data)
    assert np.all(np.isfinite(value)) and np.all(value > 0)


# ------------------------------------------------------------------ every customer bought once


@pytest.mark.parametrize("name", ["bgnbd", "paretonbd"])
def test_every_customer_bought_once(name) -> None:
    data = pd.DataFrame({"frequency": np.zeros(500), "recency": np.zeros(500), "T": np.linspace(1, 52, 500)})
    model = COUNT[name]().fit(data)
    assert model.fit_method_ == "map"
    assert any("500 customers and none with a repeat purchase" in n for n in model.notes_)
    assert_sane(model, data)
    # nobody came back in up to a year: few purchases expected, fewer the longer the silence
    e = model.expected_transactions(data, 52.0)
    assert e.max() < 1.0 and np.all(np.diff(e) <= 1e-12)


def test_every_customer_bought_once_has_no_spend_to_fit() -> None:
    data = pd.DataFrame({"frequency": np.zeros(5), "monetary_value": np.zeros(5)})
    with pytest.raises(DataError, match="no customer with frequency > 0"):
        GammaGamma().fit(data)


def test_identical_spend_is_a_clear_error() -> None:
    data = pd.DataFrame({"frequency": [1.0, 2, 3, 4] * 10, "monetary_value": [20.0] * 40})
    with pytest.raises(DataError, match="same mean repeat value 20"):
        GammaGamma().fit(data)


# ------------------------------------------------------------------ heavy buyers: log space


@pytest.mark.parametrize("name", ["bgnbd", "paretonbd"])
def test_heavy_buyers_give_finite_outputs(name) -> None:
    data = heavy()
    model = COUNT[name]().fit(data)
    assert_sane(model, data)
    # one customer, thousands of purchases, silent for the last 30 weeks: P(alive) a tiny number, not NaN
    one = pd.DataFrame({"frequency": [5000.0], "recency": [22.0], "T": [52.0]})
    assert_sane(model, one)


def test_heavy_buyers_spend_is_finite() -> None:
    data = heavy()
    gg = GammaGamma().fit(data)
    value = gg.conditional_expected_value(data)
    assert np.all(np.isfinite(value)) and np.all(value > 0)


# ------------------------------------------------------------------ span shorter than the unit


@pytest.mark.parametrize("name", ["bgnbd", "paretonbd"])
def test_three_weeks_in_months_gives_the_span_note(name) -> None:
    rng = np.random.default_rng(5)
    n = 300
    T = rng.integers(1, 22, n) / 30.4375  # days -> months; span 3 weeks
    x = rng.poisson(2.0 * T * 4).astype(float)
    tx = np.where(x > 0, T * rng.uniform(0.5, 1.0, n), 0.0)
    data = pd.DataFrame({"frequency": x, "recency": tx, "T": T})
    model = COUNT[name](time_unit="months").fit(data)
    assert any("data span 0.69 months is shorter than one month; use a smaller time unit (days or weeks)" in n
               for n in model.notes_)
    assert_sane(model, data, t=1.0)


# ------------------------------------------------------------------ unsorted, non-contiguous ids


@pytest.mark.parametrize("name", ["bgnbd", "paretonbd"])
def test_row_order_and_ids_do_not_change_predictions(name) -> None:
    data = b2b_summary(n=300, seed=11)
    ordered = data.sort_values("customer_id").reset_index(drop=True)
    shuffled = data.sample(frac=1.0, random_state=1).set_index(np.arange(300) * 3 + 17)
    a, b = COUNT[name]().fit(ordered), COUNT[name]().fit(shuffled)
    pa = pd.Series(a.expected_transactions(ordered, 10.0), index=ordered["customer_id"])
    pb = pd.Series(b.expected_transactions(shuffled, 10.0), index=shuffled["customer_id"])
    np.testing.assert_allclose(pa.sort_index(), pb.sort_index(), rtol=1e-8)


# ------------------------------------------------------------------ the forecasters in a backtest


def shop_transactions(template: pd.DataFrame, n: int = 400, seed: int = 2) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Daily transactions of a no-dropout shop over 2 years (canonical frame like ``template``)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2022-01-01", tz="UTC")
    rows = []
    for i in range(n):
        first = rng.integers(0, 300)
        lam = rng.gamma(0.8, 1 / 30.0)  # per day
        days = [first] + sorted(first + rng.integers(1, 730 - first, rng.poisson(lam * (730 - first))))
        for d in days:
            rows.append((f"c{(i * 37) % 1009:05d}", start + pd.Timedelta(days=int(d)), float(rng.lognormal(4, 1.5))))
    tx = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])
    tx["order_id"] = [f"o{k}" for k in range(len(tx))]
    out = pd.concat([template.iloc[:0], tx], ignore_index=True).astype(template.dtypes.to_dict())
    return out, start + pd.Timedelta(days=729)


def test_backtest_on_a_no_dropout_shop_keeps_every_model() -> None:
    from ltvcast.data.datasets import open_history
    from ltvcast.evaluate.backtest import run_backtest

    cdnow = open_history(dataset="cdnow")
    tx, end = shop_transactions(cdnow.transactions)
    data = replace(cdnow, transactions=tx, observation_end=end, origin="test shop")
    bt = run_backtest(data, "2023-07-01", 90.0, ["naive", "bgnbd", "paretonbd"])
    assert list(bt.metrics["model"]) == ["naive", "bgnbd", "paretonbd"]
    p = bt.predictions
    assert np.all(np.isfinite(p[["pred_transactions", "pred_spend", "p_churn"]].to_numpy(float)))
    assert p["p_churn"].between(0, 1).all()
    assert p.loc[p["model"] != "naive", "p_alive"].between(0, 1).all()


# ------------------------------------------------------------------ the simulator, small to medium shops
@pytest.mark.parametrize(("customers", "seed"), [(20, 1), (20, 2), (60, 3), (300, 4)])
def test_simulated_shops_from_20_customers_get_finite_btyd_predictions(tmp_path, customers, seed) -> None:
    """Issue 10's goal: every BTYD model answers on the simulator at several seeds and sizes from 20 customers up."""
    from ltvcast.data.datasets import open_history
    from ltvcast.ingest.config import load_config
    from ltvcast.ingest.multisource import ingest_sources
    from ltvcast.models.catalog import make_forecaster
    from ltvcast.simulate import simulate_shop
    from ltvcast.store import Store

    simulate_shop(tmp_path / "sim", customers=customers, months=12, seed=seed)
    db = tmp_path / "shop.duckdb"
    with Store.open(db) as store:
        ingest_sources(load_config(tmp_path / "sim" / "sources.yaml"), store)
    history = open_history(db=db)
    cutoff = (history.observation_end - pd.Timedelta(days=90)).strftime("%Y-%m-%d")
    for name in ("bgnbd", "paretonbd"):
        model = make_forecaster(name).fit(history, cutoff, 90.0)
        p = model.predict(history, cutoff, 90.0)
        assert len(p) > 0, name
        values = p[["pred_transactions", "pred_spend", "p_churn", "p_alive"]].to_numpy(float)
        assert np.isfinite(values).all(), (name, customers, seed)
        assert p["p_churn"].between(0, 1).all() and p["p_alive"].between(0, 1).all(), name
        if customers < 100:
            assert any("too few" in n for n in model.notes_), (name, model.notes_)


def test_backtest_on_a_one_time_buyers_shop_keeps_every_model() -> None:
    """No repeat buyer before the cutoff: naive (was "no mean monetary_value was learned") and the BTYD models answer."""
    from ltvcast.data.datasets import open_history
    from ltvcast.evaluate.backtest import run_backtest

    cdnow = open_history(dataset="cdnow-sample")
    rng = np.random.default_rng(5)
    start = pd.Timestamp("2023-01-01", tz="UTC")
    days = np.concatenate([rng.integers(0, 300, 150), rng.integers(300, 400, 40)])  # 40 customers also after
    ids = np.concatenate([np.arange(150), rng.choice(150, 40, replace=False)])
    tx = pd.DataFrame({"customer_id": [f"c{i:03d}" for i in ids], "timestamp": start + pd.to_timedelta(days, "D"),
                       "amount": rng.lognormal(3, 0.5, len(ids))})
    tx = pd.concat([cdnow.transactions.iloc[:0], tx], ignore_index=True).astype(cdnow.transactions.dtypes.to_dict())
    data = replace(cdnow, transactions=tx, observation_end=start + pd.Timedelta(days=399), origin="one-time shop")
    bt = run_backtest(data, "2023-10-28", 90.0, ["naive", "bgnbd", "paretonbd"])
    assert list(bt.metrics["model"]) == ["naive", "bgnbd", "paretonbd"]
    p = bt.predictions
    assert np.isfinite(p[["pred_transactions", "pred_spend", "p_churn"]].to_numpy(float)).all()
    naive = p[p["model"] == "naive"]
    mean_first = float(tx.loc[tx["timestamp"] < pd.Timestamp("2023-10-28", tz="UTC"), "amount"].mean())
    ratio = naive["pred_spend"] / naive["pred_transactions"]
    assert np.allclose(ratio[naive["pred_transactions"] > 0], mean_first, rtol=1e-9)
    assert any("no repeat buyer before the cutoff" in n for n in bt.notes)
