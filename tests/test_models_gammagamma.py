"""Gamma-Gamma spend model: the published CDNOW fit, closed forms, simulation, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from published import cdnow_summary, sig3
from scipy import integrate

from ltvcast.errors import DataError, LtvcastError, NotFittedError
from ltvcast.models import BGNBD, GammaGamma
from ltvcast.models.gammagamma import _grad, gammagamma_log_likelihood

# Fader, Hardie & Lee (2005), JMR 42(4): the 946 repeat buyers of the CDNOW 1/10 sample.
PUBLISHED = {"p": 6.25, "q": 3.74, "gamma": 15.44}
PUBLISHED_LL = -4055.9




@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return cdnow_summary()


@pytest.fixture(scope="module")
def fitted(cdnow: pd.DataFrame) -> GammaGamma:
    return GammaGamma().fit(cdnow)


def with_params(params: dict[str, float]) -> GammaGamma:
    model = GammaGamma()
    model.params_ = dict(params)
    return model


def test_fit_reproduces_fhl_2005_jmr(fitted: GammaGamma) -> None:
    assert fitted.n_customers_ == 946
    for name, value in PUBLISHED.items():
        assert sig3(fitted.params_[name]) == sig3(value), (name, fitted.params_[name])
    # On the 2-decimal zbar values of the distributed summary: -4055.92.
    assert fitted.log_likelihood_ == pytest.approx(PUBLISHED_LL, abs=0.1)


def test_fit_converges_from_default_and_other_start(fitted: GammaGamma, cdnow: pd.DataFrame) -> None:
    assert fitted.converged_ and fitted.optimizer_result_.success
    assert np.max(np.abs(fitted.optimizer_result_.grad_check)) < 1e-5
    other = GammaGamma(initial_params={"p": 0.5, "q": 10.0, "gamma": 500.0}).fit(cdnow)
    for name in PUBLISHED:
        assert other.params_[name] == pytest.approx(fitted.params_[name], rel=1e-4)


def test_published_parameters_give_published_log_likelihood(cdnow: pd.DataFrame) -> None:
    rep = cdnow[cdnow["frequency"] > 0]
    ll = gammagamma_log_likelihood(*PUBLISHED.values(), rep["frequency"], rep["monetary_value"]).sum()
    assert ll == pytest.approx(PUBLISHED_LL, abs=0.1)


def test_log_likelihood_per_customer(fitted: GammaGamma, cdnow: pd.DataFrame) -> None:
    ll = fitted.log_likelihood(cdnow)
    assert ll.shape == (len(cdnow),)
    assert np.isnan(ll[cdnow["frequency"].to_numpy() == 0]).all()
    assert np.nansum(ll) == pytest.approx(fitted.log_likelihood_, abs=1e-8)


@pytest.mark.parametrize("x", [1, 3, 12])
def test_density_of_mean_spend_integrates_to_one(x: int) -> None:
    # f(z̄ | x) is a density in z̄: this checks the normalising constant incl. the x^(px) term
    total = integrate.quad(
        lambda z: np.exp(gammagamma_log_likelihood(*PUBLISHED.values(), np.array(float(x)), np.array(z))),
        0, np.inf, epsabs=0, epsrel=1e-11, limit=500,
    )[0]
    assert total == pytest.approx(1.0, abs=1e-9)


def test_analytic_gradient_matches_finite_differences() -> None:
    from ltvcast.models._mle import central_gradient

    x = np.array([1.0, 2.0, 7.0])
    z = np.array([0.4, 1.3, 2.0])
    th = np.log([6.0, 3.5, 0.5])
    numeric = central_gradient(lambda v: float(np.sum(gammagamma_log_likelihood(*np.exp(v), x, z))), th, h=1e-6)
    assert _grad(th, x, z).sum(axis=0) == pytest.approx(numeric, rel=1e-6)


def test_conditional_expected_value_hand_computed() -> None:
    model = with_params(PUBLISHED)
    data = pd.DataFrame({"frequency": [2.0, 0.0], "monetary_value": [22.35, 0.0]})
    got = model.conditional_expected_value(data)
    # FHL 2005 JMR eq. 5: p (gamma + x zbar) / (p x + q - 1) = 6.25 * (15.44 + 44.70) / 15.24
    assert got[0] == pytest.approx(24.663714, abs=1e-6)
    # ... a weighted mean of the population mean and the customer's own mean
    w = (3.74 - 1) / (6.25 * 2 + 3.74 - 1)
    assert got[0] == pytest.approx(w * 6.25 * 15.44 / 2.74 + (1 - w) * 22.35, rel=1e-12)
    # frequency 0: population mean p gamma / (q - 1) = 35.21898
    assert got[1] == pytest.approx(35.218978, abs=1e-6)
    assert model.population_mean() == pytest.approx(35.218978, abs=1e-6)


def test_conditional_expectation_agrees_with_simulation() -> None:
    # Simulate customers from the model; E[true mean spend p/nu | data] is the conditional
    # expectation, so the two averages agree within a few standard errors (q > 2: finite variance).
    rng = np.random.default_rng(5)
    p, q, gamma = PUBLISHED.values()
    n = 100_000
    nu = rng.gamma(q, 1.0 / gamma, n)
    x = rng.integers(1, 8, n).astype(float)
    zbar = rng.gamma(p * x, 1.0 / nu) / x  # mean of x Gamma(p, nu) values
    data = pd.DataFrame({"frequency": x, "monetary_value": zbar})
    diff = p / nu - with_params(PUBLISHED).conditional_expected_value(data)
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(n)
    fit = GammaGamma().fit(data)
    # asymptotic SEs here are ~1-3 %; 10 % still rejects a wrong likelihood
    for name, value in PUBLISHED.items():
        assert fit.params_[name] == pytest.approx(value, rel=0.1), (name, fit.params_)


def test_expected_spend_is_count_times_value(cdnow: pd.DataFrame, fitted: GammaGamma) -> None:
    bg = BGNBD().fit(cdnow)
    spend = fitted.expected_spend(bg, cdnow, 39.0)
    assert spend.shape == (len(cdnow),)
    assert spend == pytest.approx(bg.expected_transactions(cdnow, 39.0) * fitted.conditional_expected_value(cdnow))


def test_money_scale_equivariance(cdnow: pd.DataFrame, fitted: GammaGamma) -> None:
    cents = GammaGamma().fit(cdnow.assign(monetary_value=cdnow["monetary_value"] * 100))
    assert cents.params_["gamma"] == pytest.approx(fitted.params_["gamma"] * 100, rel=1e-5)
    assert cents.params_["p"] == pytest.approx(fitted.params_["p"], rel=1e-5)


# ----------------------------------------------------------------- errors


def test_non_positive_monetary_value_names_customers() -> None:
    data = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "frequency": [2.0, 1.0, 0.0, 3.0, 1.0],
            "monetary_value": [10.0, 0.0, 0.0, -5.0, np.nan],
        }
    )
    with pytest.raises(DataError) as err:
        GammaGamma().fit(data)
    msg = str(err.value)
    assert "3 row(s) (customer_id: 'b', 'd', 'e')" in msg  # 'c' has frequency 0: ignored
    assert "'a'" not in msg and "'c'" not in msg


def test_non_positive_monetary_value_names_row_index_without_ids() -> None:
    data = pd.DataFrame({"frequency": [2.0, 1.0], "monetary_value": [10.0, -1.0]}, index=[7, 9])
    with pytest.raises(DataError, match=r"1 row\(s\) \(row index: 9\)"):
        GammaGamma().fit(data)


def test_missing_columns_and_no_repeat_buyers() -> None:
    with pytest.raises(DataError, match=r"lacks column\(s\) \['monetary_value'\]; columns found: \['frequency'\]"):
        GammaGamma().fit(pd.DataFrame({"frequency": [1.0]}))
    with pytest.raises(DataError, match="no customer with frequency > 0"):
        GammaGamma().fit(pd.DataFrame({"frequency": [0.0, 0.0], "monetary_value": [0.0, 0.0]}))


def test_mean_must_exist() -> None:
    model = with_params({"p": 2.0, "q": 0.8, "gamma": 10.0})
    data = pd.DataFrame({"frequency": [1.0], "recency": [1.0], "T": [2.0], "monetary_value": [5.0]})
    for call in (model.population_mean, lambda: model.conditional_expected_value(data),
                 lambda: model.expected_spend(BGNBD(), data, 1.0)):
        with pytest.raises(LtvcastError, match="does not exist"):
            call()


def test_methods_before_fit_raise() -> None:
    model = GammaGamma()
    data = pd.DataFrame({"frequency": [1.0], "monetary_value": [5.0]})
    for call in (model.population_mean, lambda: model.conditional_expected_value(data),
                 lambda: model.log_likelihood(data)):
        with pytest.raises(NotFittedError):
            call()
