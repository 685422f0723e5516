"""BG/NBD: the published CDNOW fit, closed forms against independent routes,
and a forward simulation of the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from published import cdnow_summary, sig3
from scipy import integrate, stats

from ltvcast.errors import ConvergenceError, DataError, NotFittedError
from ltvcast.models import BGNBD
from ltvcast.models.bgnbd import bgnbd_log_likelihood

# Fader, Hardie & Lee (2005), Marketing Science 24(2), CDNOW 1/10 sample, 39 weeks.
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_LL = -9582.4




@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return cdnow_summary()


@pytest.fixture(scope="module")
def fitted(cdnow: pd.DataFrame) -> BGNBD:
    return BGNBD().fit(cdnow)


def with_params(params: dict[str, float]) -> BGNBD:
    model = BGNBD()
    model.params_ = dict(params)
    return model


def one(x: float, tx: float, T: float) -> pd.DataFrame:
    return pd.DataFrame({"frequency": [float(x)], "recency": [float(tx)], "T": [float(T)]})


def simulate(n: int, params: dict[str, float], T: np.ndarray, t: float, seed: int):
    """Forward simulation of the BG/NBD process (FHL 2005 assumptions i-v).

    Returns the summary plus, per customer, whether they are alive at T and
    the number of purchases in (T, T+t].
    """
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    p = rng.beta(params["a"], params["b"], n)
    k = rng.geometric(p)  # index of the repeat purchase after which the customer drops out
    n1 = rng.poisson(lam * T)  # Poisson arrivals in (0, T] had the customer stayed
    x = np.minimum(n1, k)
    # the x-th of n1 uniform arrival times on (0, T]
    tx = np.where(x > 0, T * rng.beta(np.maximum(x, 1), np.maximum(n1 - x + 1, 1)), 0.0)
    alive = k > n1
    future = np.where(alive, np.minimum(rng.poisson(lam * t), k - n1), 0)
    summary = pd.DataFrame({"frequency": x.astype(float), "recency": tx, "T": T})
    return summary, alive, future


# ---------------------------------------------------------------- the papers


def test_fit_reproduces_fhl_2005_cdnow(fitted: BGNBD) -> None:
    for name, value in PUBLISHED.items():
        assert sig3(fitted.params_[name]) == sig3(value), (name, fitted.params_[name])
    assert fitted.log_likelihood_ == pytest.approx(PUBLISHED_LL, abs=0.1)
    assert fitted.n_customers_ == 2357


def test_fit_converges_from_default_start_without_penalty(fitted: BGNBD) -> None:
    res = fitted.optimizer_result_
    assert fitted.converged_ and res.success
    # gradient of the mean log-likelihood w.r.t. log-parameters is ~0 at the optimum
    assert np.max(np.abs(res.grad_check)) < 1e-5
    # the optimum does not depend on the start
    other = BGNBD(initial_params={"r": 3.0, "alpha": 0.5, "a": 0.2, "b": 10.0}).fit(cdnow_summary())
    for name in PUBLISHED:
        assert other.params_[name] == pytest.approx(fitted.params_[name], rel=1e-4)


def test_log_likelihood_per_customer_sums_to_total(fitted: BGNBD, cdnow: pd.DataFrame) -> None:
    ll = fitted.log_likelihood(cdnow)
    assert ll.shape == (len(cdnow),)
    assert ll.sum() == pytest.approx(fitted.log_likelihood_, abs=1e-8)
    # the published parameters give the published log-likelihood too
    published_ll = bgnbd_log_likelihood(
        *PUBLISHED.values(), cdnow["frequency"], cdnow["recency"], cdnow["T"]
    ).sum()
    assert published_ll == pytest.approx(PUBLISHED_LL, abs=0.1)


def test_conditional_expectation_published_example() -> None:
    # FHL 2005: E[Y(39) | x=2, t_x=30.43, T=38.86] = 1.226 at the published parameters.
    value = with_params(PUBLISHED).expected_transactions(one(2, 30.43, 38.86), 39.0)
    assert value.shape == (1,)
    assert round(float(value[0]), 3) == 1.226


# ------------------------------------------------------- closed-form checks


def test_p_alive_hand_computed() -> None:
    model = with_params(PUBLISHED)
    # x = 0: no repeat purchase, no chance to drop out yet (BG/NBD convention)
    assert model.p_alive(one(0, 0, 38.86))[0] == 1.0
    # 1 / (1 + a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)) with the numbers written out
    odds = 0.793 / (2.426 + 2 - 1) * ((4.414 + 38.86) / (4.414 + 30.43)) ** (0.243 + 2)
    assert odds == pytest.approx(0.376314, abs=1e-6)
    assert model.p_alive(one(2, 30.43, 38.86))[0] == pytest.approx(1 / (1 + odds), rel=1e-12)
    assert model.p_alive(one(2, 30.43, 38.86))[0] == pytest.approx(0.726579, abs=1e-6)


@pytest.mark.parametrize("x, tx, T, t", [(2, 30.43, 38.86, 39.0), (0, 0.0, 30.0, 52.0), (12, 5.0, 35.0, 10.0),
                                          (40, 36.0, 38.0, 200.0)])
def test_conditional_expectation_matches_quadrature(x: int, tx: float, T: float, t: float) -> None:
    # Given alive at T: p ~ Beta(a, b+x), lambda ~ Gamma(r+x, alpha+T) independently and
    # E[Y(t) | lambda, p] = (1 - exp(-lambda p t)) / p (the BG/NBD individual-level mean, restarted at T).
    r, alpha, a, b = PUBLISHED.values()
    model = with_params(PUBLISHED)
    pa = model.p_alive(one(x, tx, T))[0]

    def integrand(p: float) -> float:
        e_quiet = (1.0 + p * t / (alpha + T)) ** (-(r + x))
        return (1.0 - e_quiet) / p * stats.beta.pdf(p, a, b + x)

    expected = pa * integrate.quad(integrand, 0.0, 1.0, epsabs=0.0, epsrel=1e-11, limit=400)[0]
    assert model.expected_transactions(one(x, tx, T), t)[0] == pytest.approx(expected, rel=1e-8)


def test_population_expectation_matches_quadrature() -> None:
    # E[X(t)] = E_p[(1 - (alpha/(alpha + p t))^r) / p], p ~ Beta(a, b): the individual-level
    # mean integrated numerically; FHL 2005 eq. 9 is its closed form
    r, alpha, a, b = PUBLISHED.values()
    model = with_params(PUBLISHED)
    ts = np.array([0.0, 1.0, 39.0, 78.0, 500.0])
    got = model.population_expected_transactions(ts)
    for t, g in zip(ts, got):
        want = integrate.quad(
            lambda p, t=t: (1.0 - (alpha / (alpha + p * t)) ** r) / p * stats.beta.pdf(p, a, b),
            0.0, 1.0, epsabs=0.0, epsrel=1e-11, limit=400,
        )[0]
        assert g == pytest.approx(want, rel=1e-8, abs=1e-14)


def test_expectation_at_a_equal_one_is_continuous() -> None:
    base = {"r": 0.5, "alpha": 5.0, "b": 2.0}
    row = one(3, 20.0, 30.0)
    at_one = with_params({**base, "a": 1.0}).expected_transactions(row, 26.0)[0]
    below = with_params({**base, "a": 1.0 - 1e-4}).expected_transactions(row, 26.0)[0]
    above = with_params({**base, "a": 1.0 + 1e-4}).expected_transactions(row, 26.0)[0]
    assert np.isfinite(at_one)
    assert at_one == pytest.approx(0.5 * (below + above), rel=1e-6)


def test_p_no_purchase_limits_and_monotonicity() -> None:
    model = with_params(PUBLISHED)
    rows = pd.concat([one(0, 0, 38.86), one(2, 30.43, 38.86), one(7, 10.0, 35.0)], ignore_index=True)
    pa = model.p_alive(rows)
    assert np.allclose(model.p_no_purchase(rows, 0.0), 1.0)
    # the approach is slow ((alpha+T)/(alpha+T+t))^(r+x) with r = 0.243), hence t = 1e300
    assert np.allclose(model.p_no_purchase(rows, 1e300), 1.0 - pa, atol=1e-12)
    ts = np.linspace(0.0, 200.0, 41)
    curves = np.array([model.p_no_purchase(rows, t) for t in ts])
    assert np.all(np.diff(curves, axis=0) < 0)
    # closed form with numbers for the x = 0 customer: P(alive) = 1, ((alpha+T)/(alpha+T+t))^r
    assert curves[ts == 40.0][0][0] == pytest.approx(((4.414 + 38.86) / (4.414 + 38.86 + 40.0)) ** 0.243)


def test_predictions_agree_with_forward_simulation() -> None:
    # Customers simulated from the model with known parameters: for any group of
    # customers, mean(outcome) - mean(prediction given their data) has mean 0, so it
    # must lie within a few standard errors (seeded, n = 200,000).
    params = {"r": 0.5, "alpha": 6.0, "a": 0.9, "b": 3.0}
    n, t = 200_000, 26.0
    rng = np.random.default_rng(1)
    T = rng.uniform(20.0, 52.0, n)
    summary, alive, future = simulate(n, params, T, t, seed=2)
    model = with_params(params)
    checks = {
        "p_alive": (alive.astype(float), model.p_alive(summary)),
        "p_no_purchase": ((future == 0).astype(float), model.p_no_purchase(summary, t)),
        "expected_transactions": (future.astype(float), model.expected_transactions(summary, t)),
    }
    groups = {"all": np.ones(n, bool), "x=0": summary["frequency"].to_numpy() == 0,
              "x>=3": summary["frequency"].to_numpy() >= 3}
    for what, (outcome, pred) in checks.items():
        for gname, g in groups.items():
            diff = outcome[g] - pred[g]
            se = diff.std() / np.sqrt(g.sum())
            assert abs(diff.mean()) <= 4 * se + 1e-12, (what, gname, diff.mean(), se)


def test_fit_recovers_simulated_parameters() -> None:
    params = {"r": 0.5, "alpha": 6.0, "a": 0.9, "b": 3.0}
    n = 30_000
    T = np.random.default_rng(3).uniform(20.0, 52.0, n)
    summary, _, _ = simulate(n, params, T, 1.0, seed=4)
    model = BGNBD().fit(summary)
    # standard errors of the log-parameters from the observed information (~2-8 % here)
    se = np.sqrt(np.diag(np.linalg.inv(model.optimizer_result_.hess_check)) / n)
    assert np.all(se < 0.1)
    for (name, value), sd in zip(params.items(), se):
        assert abs(np.log(model.params_[name] / value)) < 4 * sd, (name, model.params_, se)


def test_compression_does_not_change_the_fit(cdnow: pd.DataFrame, fitted: BGNBD) -> None:
    shuffled = cdnow.sample(frac=1.0, random_state=0)
    again = BGNBD().fit(shuffled)
    assert again.log_likelihood_ == pytest.approx(fitted.log_likelihood_, abs=1e-6)


def test_time_unit_rescaling(cdnow: pd.DataFrame, fitted: BGNBD) -> None:
    days = cdnow.assign(recency=cdnow["recency"] * 7, T=cdnow["T"] * 7)
    in_days = BGNBD().fit(days)
    assert in_days.params_["alpha"] == pytest.approx(fitted.params_["alpha"] * 7, rel=1e-4)
    assert in_days.params_["r"] == pytest.approx(fitted.params_["r"], rel=1e-4)
    # density of purchase times: ln L changes by -sum(x) ln 7
    shift = -cdnow["frequency"].sum() * np.log(7)
    assert in_days.log_likelihood_ == pytest.approx(fitted.log_likelihood_ + shift, abs=1e-3)
    assert in_days.expected_transactions(days.head(5), 7 * 39.0) == pytest.approx(
        fitted.expected_transactions(cdnow.head(5), 39.0), rel=1e-4
    )


def test_horizon_array_and_shapes(fitted: BGNBD, cdnow: pd.DataFrame) -> None:
    head = cdnow.head(4)
    per_row = fitted.expected_transactions(head, np.array([0.0, 1.0, 10.0, 39.0]))
    assert per_row.shape == (4,)
    assert per_row[0] == 0.0
    assert per_row[3] == pytest.approx(fitted.expected_transactions(head, 39.0)[3])


# ----------------------------------------------------------------- errors


def test_missing_columns_named() -> None:
    bad = pd.DataFrame({"customer_id": ["a"], "frequency": [1.0], "T": [3.0]})
    with pytest.raises(DataError, match=r"lacks column\(s\) \['recency'\].*customer_id.*frequency.*T"):
        BGNBD().fit(bad)


def test_invalid_rows_named_by_customer_id() -> None:
    bad = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3", "c4", "c5"],
            "frequency": [1.0, 0.0, 2.0, 1.0, np.nan],
            "recency": [5.0, 0.0, 9.0, 0.0, 1.0],
            "T": [6.0, 4.0, 8.0, 3.0, 2.0],
        }
    )
    with pytest.raises(DataError) as err:
        BGNBD().fit(bad)
    msg = str(err.value)
    assert "recency > T: 1 row(s) (customer_id: 'c3')" in msg
    assert "frequency > 0 with recency 0: 1 row(s) (customer_id: 'c4')" in msg
    assert "NaN or infinite" in msg and "'c5'" in msg
    assert "'c1'" not in msg and "'c2'" not in msg


def test_invalid_rows_named_by_index_without_customer_id() -> None:
    bad = pd.DataFrame({"frequency": [1.0, -1.0], "recency": [1.0, 0.0], "T": [2.0, 3.0]}, index=[10, 11])
    with pytest.raises(DataError, match=r"negative frequency/recency/T: 1 row\(s\) \(row index: 11\)"):
        BGNBD().fit(bad)


def test_methods_before_fit_raise() -> None:
    model = BGNBD()
    row = one(1, 1, 2)
    for call in (
        lambda: model.p_alive(row),
        lambda: model.expected_transactions(row, 1.0),
        lambda: model.p_no_purchase(row, 1.0),
        lambda: model.log_likelihood(row),
        lambda: model.population_expected_transactions(1.0),
    ):
        with pytest.raises(NotFittedError):
            call()


def test_bad_horizon(fitted: BGNBD) -> None:
    with pytest.raises(DataError, match="horizon"):
        fitted.expected_transactions(one(1, 1, 2), -1.0)
    with pytest.raises(DataError, match="shape"):
        fitted.p_no_purchase(one(1, 1, 2), np.array([1.0, 2.0]))


def test_optimiser_failure_raises_convergence_error(cdnow: pd.DataFrame) -> None:
    # one iteration per optimiser run cannot reach the optimum: a clear error, not a silent fit
    with pytest.raises(ConvergenceError) as err:
        BGNBD(maxiter=1).fit(cdnow)
    msg = str(err.value)
    assert msg.startswith("BG/NBD: maximum-likelihood fit did not converge")
    assert "ITERATIONS REACHED LIMIT" in msg and "last parameters {r=" in msg and "log-likelihood -" in msg


def test_unidentified_parameters_fall_back_to_priors() -> None:
    # Nobody ever repeats: the likelihood rises towards its supremum as r/alpha -> 0 and
    # a, b do not enter it at all, so there is no maximum: the fit is MAP with weak priors, said so
    # (issue 10; this test asserted a ConvergenceError before).
    summary = pd.DataFrame({"frequency": np.zeros(50), "recency": np.zeros(50), "T": np.linspace(5, 30, 50)})
    model = BGNBD().fit(summary)
    assert model.fit_method_ == "map"
    assert "50 customers and none with a repeat purchase" in model.notes_[0]
    assert model.params_["a"] == pytest.approx(0.793, rel=1e-3)  # not in the likelihood: the prior's centre


def test_fitted_hessian_is_positive_definite(fitted: BGNBD) -> None:
    assert np.linalg.eigvalsh(fitted.optimizer_result_.hess_check).min() > 1e-4


def test_analytic_gradient_matches_finite_differences() -> None:
    from ltvcast.models._mle import central_gradient
    from ltvcast.models.bgnbd import _ll_and_grad

    x = np.array([0.0, 1.0, 2.0, 10.0])
    tx = np.array([0.0, 0.3, 0.8, 0.9])
    T = np.array([0.5, 1.0, 1.0, 0.95])
    z = np.log([0.3, 0.2, 0.8, 2.5])
    _, grad = _ll_and_grad(z, x, tx, T)
    numeric = central_gradient(lambda v: float(np.sum(_ll_and_grad(v, x, tx, T)[0])), z, h=1e-6)
    assert grad.sum(axis=0) == pytest.approx(numeric, rel=1e-6)


def test_bad_initial_params() -> None:
    from ltvcast.errors import LtvcastError

    with pytest.raises(LtvcastError, match=r"missing \['alpha', 'a', 'b'\], invalid \[\]"):
        BGNBD(initial_params={"r": 1.0}).fit(one(1, 1, 2))
    with pytest.raises(LtvcastError, match=r"invalid \['a'\]"):
        BGNBD(initial_params={"r": 1.0, "alpha": 1.0, "a": -1.0, "b": 1.0}).fit(one(1, 1, 2))


def test_expectation_stays_finite_where_hyp2f1_overflows():
    """A dropout probability fitted as nearly fixed (a, b ~ 1e5, 1e6, seen on simulated
    shops) overflows scipy's hyp2f1; the quadrature fallback must give the limit of a
    fixed p = a / (a + b): E = P(alive) · (1 − ((α+T)/(α+T+p·t))^(r+x)) / p."""
    model = BGNBD()
    model.params_ = {"r": 0.564, "alpha": 8.58, "a": 75369.7, "b": 1284465.2}
    summary = pd.DataFrame({"frequency": [0.0, 3.0, 20.0], "recency": [0.0, 16.0, 30.0], "T": [20.0, 20.0, 38.0]})
    t = 90 / 7
    got = model.expected_transactions(summary, t)
    p = 75369.7 / (75369.7 + 1284465.2)
    x, T = summary["frequency"].to_numpy(), summary["T"].to_numpy()
    limit = model.p_alive(summary) * -np.expm1(-(0.564 + x) * np.log1p(p * t / (8.58 + T))) / p
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, limit, rtol=1e-4)
