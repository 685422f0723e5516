"""Pareto/NBD: the published CDNOW fit, the hypergeometric likelihood against
direct numerical integration, predictions against simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from published import cdnow_summary, sig3
from scipy import integrate, stats
from scipy.special import betaln, gammaln

from ltvcast.errors import ConvergenceError, DataError, NotFittedError
from ltvcast.models import ParetoNBD
from ltvcast.models.paretonbd import (
    _frac_rate,
    _log_tail_term,
    log_hyp2f1_a1,
    paretonbd_log_likelihood,
)

# Pareto/NBD on the CDNOW 1/10 sample, 39 weeks, as reported by Fader, Hardie & Lee (2005).
PUBLISHED = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
PUBLISHED_LL = -9595.0




@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return cdnow_summary()


@pytest.fixture(scope="module")
def fitted(cdnow: pd.DataFrame) -> ParetoNBD:
    return ParetoNBD().fit(cdnow)


def with_params(params: dict[str, float]) -> ParetoNBD:
    model = ParetoNBD()
    model.params_ = dict(params)
    return model


def rows(*triples: tuple[float, float, float]) -> pd.DataFrame:
    arr = np.array(triples, dtype=float)
    return pd.DataFrame({"frequency": arr[:, 0], "recency": arr[:, 1], "T": arr[:, 2]})


def mixture_integral(params: dict[str, float], integrand) -> float:
    """∫∫ integrand(λ, μ) g(λ | r, α) g(μ | s, β) dλ dμ by adaptive quadrature.

    Substituting w = λ^r, v = μ^s removes the density's singularity at 0:
    g(λ) dλ = α^r / Γ(r+1) · exp(−α w^(1/r)) dw.
    """
    r, alpha, s, beta = params["r"], params["alpha"], params["s"], params["beta"]
    const = np.exp(r * np.log(alpha) - gammaln(r + 1) + s * np.log(beta) - gammaln(s + 1))

    def f(v: float, w: float) -> float:
        lam, mu = w ** (1 / r), v ** (1 / s)
        if alpha * lam > 745 or beta * mu > 745:  # the gamma density underflows
            return 0.0
        return integrand(lam, mu) * np.exp(-alpha * lam - beta * mu)

    val, _ = integrate.dblquad(f, 0, np.inf, 0, np.inf, epsabs=0, epsrel=1e-10)
    return const * val


def individual(x: float, tx: float, T: float):
    """SMC 1987 / FH 2005 note, Section 3: individual likelihood split into
    "alive at T" and "died in (t_x, T]"."""

    def alive(lam: float, mu: float) -> float:
        return lam**x * np.exp(-(lam + mu) * T)

    def dead(lam: float, mu: float) -> float:
        k = lam + mu
        return lam**x * mu / k * (np.exp(-k * tx) - np.exp(-k * T))

    return alive, dead


def simulate(n: int, params: dict[str, float], T: np.ndarray, t: float, seed: int):
    """Forward simulation of the Pareto/NBD process; returns the summary, alive
    at T, and purchases in (T, T+t]."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    mu = rng.gamma(params["s"], 1.0 / params["beta"], n)
    tau = rng.exponential(1.0 / mu)
    horizon_alive = np.minimum(tau, T)
    x = rng.poisson(lam * horizon_alive)
    tx = np.where(x > 0, horizon_alive * rng.beta(np.maximum(x, 1), 1.0), 0.0)
    future = rng.poisson(lam * np.clip(np.minimum(tau, T + t) - T, 0.0, None))
    summary = pd.DataFrame({"frequency": x.astype(float), "recency": tx, "T": T})
    return summary, tau > T, future


# ---------------------------------------------------------------- the papers


def test_fit_reproduces_published_cdnow(fitted: ParetoNBD) -> None:
    for name, value in PUBLISHED.items():
        assert sig3(fitted.params_[name]) == sig3(value), (name, fitted.params_[name])
    assert fitted.log_likelihood_ == pytest.approx(PUBLISHED_LL, abs=0.1)


def test_fit_converges_from_default_start_without_penalty(fitted: ParetoNBD) -> None:
    assert fitted.converged_ and fitted.optimizer_result_.success
    assert np.max(np.abs(fitted.optimizer_result_.grad_check)) < 1e-5
    other = ParetoNBD(initial_params={"r": 2.0, "alpha": 1.0, "s": 0.1, "beta": 100.0}).fit(cdnow_summary())
    for name in PUBLISHED:
        assert other.params_[name] == pytest.approx(fitted.params_[name], rel=1e-3)


def test_log_likelihood_per_customer(fitted: ParetoNBD, cdnow: pd.DataFrame) -> None:
    ll = fitted.log_likelihood(cdnow)
    assert ll.shape == (len(cdnow),)
    assert ll.sum() == pytest.approx(fitted.log_likelihood_, abs=1e-8)
    published = paretonbd_log_likelihood(*PUBLISHED.values(), cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert published.sum() == pytest.approx(PUBLISHED_LL, abs=0.1)


# --------------------------------------------------- numerics of the likelihood

CASES = [(0, 0.0, 38.86), (2, 30.43, 38.86), (5, 2.0, 30.0), (1, 38.0, 38.5), (25, 37.0, 38.0)]
PARAM_SETS = [
    PUBLISHED,  # alpha < beta
    {"r": 0.553, "alpha": 11.669, "s": 0.606, "beta": 10.578},  # alpha > beta
    {"r": 1.5, "alpha": 8.0, "s": 2.0, "beta": 8.0},  # alpha == beta
    {"r": 0.2, "alpha": 80.0, "s": 1.2, "beta": 0.5},  # alpha >> beta: 2F1 argument near 1
    {"r": 0.5, "alpha": 1.0, "s": 0.8, "beta": 300.0},  # beta >> alpha + T: likewise
]


@pytest.mark.parametrize("params", PARAM_SETS)
def test_likelihood_and_p_alive_match_double_integral(params: dict[str, float]) -> None:
    model = with_params(params)
    ll = model.log_likelihood(rows(*CASES))
    pa = model.p_alive(rows(*CASES))
    for i, (x, tx, T) in enumerate(CASES):
        alive, dead = individual(x, tx, T)
        l_alive = mixture_integral(params, alive)
        l_dead = mixture_integral(params, dead) if tx < T else 0.0
        assert ll[i] == pytest.approx(np.log(l_alive + l_dead), abs=1e-8), (x, tx, T)
        assert pa[i] == pytest.approx(l_alive / (l_alive + l_dead), rel=1e-8), (x, tx, T)


@pytest.mark.parametrize(
    "r, alpha, s, beta, x, t",
    [(0.55, 10.6, 0.6, 11.7, 0, 0.0), (0.55, 11.7, 0.6, 10.6, 5, 3.0), (2.0, 1.0, 0.1, 50.0, 40, 30.0),
     (0.2, 50.0, 3.0, 1.0, 40, 0.5), (0.2, 0.01, 3.0, 100.0, 0, 0.0), (0.9, 3.0, 0.01, 3000.0, 150, 1.0)],
)
def test_hypergeometric_tail_term_matches_quadrature(r, alpha, s, beta, x, t) -> None:
    # (r+s+x) ∫_t^∞ (α+τ)^−(r+x) (β+τ)^−(s+1) dτ  — the integral behind each A0 term
    got = np.exp(_log_tail_term(r, alpha, s, beta, np.array(float(x)), np.array(t)))
    want = (r + s + x) * integrate.quad(
        lambda u: (alpha + u) ** -(r + x) * (beta + u) ** -(s + 1), t, np.inf, epsabs=0, epsrel=1e-12, limit=500
    )[0]
    assert got == pytest.approx(want, rel=1e-10)


def test_recency_equal_T_has_no_death_term() -> None:
    model = with_params(PUBLISHED)
    # x purchases with the last one at T: the customer is certainly alive
    assert model.p_alive(rows((3, 20.0, 20.0)))[0] == pytest.approx(1.0, abs=1e-15)


# ------------------------------------------------------------- predictions


@pytest.mark.parametrize("k, m, c", [(0.5, 0.6, 3.0), (2.5, 0.6, 0.2), (30.0, 1.5, 1.0), (1.0, 0.1, 1e-4),
                                     (0.3, 4.0, 1e3)])
def test_fraction_of_rates_matches_quadrature(k: float, m: float, c: float) -> None:
    assert _frac_rate(np.array(k), m, np.array(c), np.array(1.0)) == pytest.approx(beta_mean_ratio(k, m, c), rel=1e-9)


def beta_mean_ratio(k: float, m: float, c: float) -> float:
    """E[λ/(λ+μ)], λ ~ Gamma(k, rate c), μ ~ Gamma(m, rate 1): with U ~ Beta(k, m),
    λ/(λ+μ) = U/(U + c(1−U)); quadrature with the Beta weight built in."""
    val = integrate.quad(lambda u: u / (u + c * (1 - u)), 0, 1, weight="alg", wvar=(k - 1, m - 1),
                         epsabs=0, epsrel=1e-13, limit=500)[0]
    return val / np.exp(betaln(k, m))


def positive_series(b: float, c: float, z: float) -> float:
    """ln Σ (b)_n/(c)_n z^n summed directly (positive terms, no cancellation)."""
    n = np.arange(2_000_000, dtype=float)
    log_terms = np.concatenate([[0.0], np.cumsum(np.log((b + n[:-1]) * z / (c + n[:-1])))])
    assert log_terms[-1] < -45, "reference series did not converge"
    return float(np.log(np.sum(np.exp(log_terms[log_terms > -45])[::-1])))


@pytest.mark.parametrize(
    "b, c, z",
    [
        (0.5, 101.5, 0.999),  # scipy.special.hyp2f1 returns inf here
        (10.0, 111.0, 0.9999),  # ... and nan here
        (2.654196863899888, 5.654196863899887, 0.9995416016492309),  # c-b-1 = 2: scipy off by 1e-5
        (68.02357009729441, 70.02357009829441, 0.9997470597714968),  # c-b-1 ≈ 1: scipy off by 4e-6
        (0.3, 1.2, 0.95),  # c-b < 1: diverges as z -> 1
        (3000.0, 3040.0, 0.99),
        (0.05, 0.06 + 1.0, 0.5),  # below the switch: scipy's own series
    ],
)
def test_log_hyp2f1_a1_against_direct_series(b: float, c: float, z: float) -> None:
    assert log_hyp2f1_a1(b, c, z) == pytest.approx(positive_series(b, c, z), abs=1e-10)


def test_log_hyp2f1_a1_continuous_at_the_switch() -> None:
    z = np.array([0.9 - 1e-12, 0.9 + 1e-12])
    for b, c in [(0.7, 2.3), (25.0, 26.5), (1.2, 80.0)]:
        lo, hi = log_hyp2f1_a1(b, c, z)
        # scipy's series just below the switch is good to ~1e-11 (quadrature: ~1e-15 here)
        assert hi == pytest.approx(lo, abs=1e-10)
        assert hi == pytest.approx(positive_series(b, c, z[1]), abs=1e-13)


def test_p_no_purchase_limits() -> None:
    model = with_params(PUBLISHED)
    data = rows(*CASES)
    pa = model.p_alive(data)
    assert np.allclose(model.p_no_purchase(data, 0.0), 1.0, atol=1e-14)
    # t -> ∞: (1 − P(alive)) + P(alive) E[μ/(λ+μ)] with λ ~ Gamma(r+x, α+T), μ ~ Gamma(s, β+T)
    r, alpha, s, beta = PUBLISHED.values()
    limit = []
    for (x, _, T), p in zip(CASES, pa):
        e_frac = beta_mean_ratio(r + x, s, (alpha + T) / (beta + T))
        limit.append((1 - p) + p * (1 - e_frac))
    assert model.p_no_purchase(data, 1e300) == pytest.approx(np.array(limit), rel=1e-9)
    ts = np.linspace(0, 300, 31)
    curves = np.array([model.p_no_purchase(data, t) for t in ts])
    steps = np.diff(curves, axis=0)
    assert np.all(steps <= 1e-15)  # non-increasing in t ...
    assert np.all(steps[0] < 0)  # ... and strictly decreasing at first


@pytest.mark.parametrize("x, tx, T, t", [(0, 0.0, 38.86, 39.0), (2, 30.43, 38.86, 39.0), (6, 4.0, 35.0, 10.0)])
def test_p_no_purchase_matches_double_integral(x, tx, T, t) -> None:
    # P = [∫∫ alive(λ,μ) (μ/(λ+μ) + λ/(λ+μ) e^−(λ+μ)t) + dead(λ,μ)] / L
    alive, dead = individual(x, tx, T)

    def quiet_and_alive(lam: float, mu: float) -> float:
        k = lam + mu
        return alive(lam, mu) * (mu / k + lam / k * np.exp(-k * t))

    l_alive_quiet = mixture_integral(PUBLISHED, quiet_and_alive)
    l_dead = mixture_integral(PUBLISHED, dead) if tx < T else 0.0
    l_total = np.exp(paretonbd_log_likelihood(*PUBLISHED.values(), np.array(float(x)), np.array(tx), np.array(T)))
    want = (l_alive_quiet + l_dead) / l_total
    assert with_params(PUBLISHED).p_no_purchase(rows((x, tx, T)), t)[0] == pytest.approx(want, rel=1e-8)


def test_p_no_purchase_matches_posterior_monte_carlo() -> None:
    # Draw (alive, λ, μ) from the posterior and simulate the next t weeks. Standard error of
    # a probability with 400,000 draws is at most 0.5/sqrt(4e5) = 0.0008; we allow 4 SE.
    model = with_params(PUBLISHED)
    r, alpha, s, beta = PUBLISHED.values()
    rng = np.random.default_rng(7)
    n, t = 400_000, 39.0
    for x, tx, T in [(0, 0.0, 38.86), (2, 30.43, 38.86), (6, 4.0, 35.0)]:
        pa = model.p_alive(rows((x, tx, T)))[0]
        alive = rng.random(n) < pa
        lam = rng.gamma(r + x, 1 / (alpha + T), n)
        mu = rng.gamma(s, 1 / (beta + T), n)
        life = rng.exponential(1 / mu)  # memoryless: remaining lifetime after T
        purchases = rng.poisson(lam * np.minimum(life, t))
        quiet = ~alive | (purchases == 0)
        se = quiet.std() / np.sqrt(n)
        assert model.p_no_purchase(rows((x, tx, T)), t)[0] == pytest.approx(quiet.mean(), abs=4 * se)


def test_expected_transactions_formula_and_population() -> None:
    model = with_params(PUBLISHED)
    r, alpha, s, beta = PUBLISHED.values()
    x, tx, T, t = 2, 30.43, 38.86, 39.0
    pa = model.p_alive(rows((x, tx, T)))[0]
    hand = (r + x) * (beta + T) / ((alpha + T) * (s - 1)) * (1 - ((beta + T) / (beta + T + t)) ** (s - 1)) * pa
    assert model.expected_transactions(rows((x, tx, T)), t)[0] == pytest.approx(hand, rel=1e-12)
    # population: E[X(t)] = E_μ[(λ/μ)(1 − e^−μt)] by 1-D quadrature over μ ~ Gamma(s, β)
    for t in (1.0, 39.0, 78.0):
        want = r / alpha * integrate.quad(
            lambda m, t=t: (1 - np.exp(-m * t)) / m * stats.gamma.pdf(m, s, scale=1 / beta),
            0, np.inf, epsabs=0, epsrel=1e-11, limit=500,
        )[0]
        assert model.population_expected_transactions(t) == pytest.approx(want, rel=1e-7)


def test_expected_transactions_at_s_equal_one_is_continuous() -> None:
    data = rows((3, 20.0, 30.0))
    base = {"r": 0.6, "alpha": 8.0, "beta": 9.0}
    at = with_params({**base, "s": 1.0}).expected_transactions(data, 26.0)[0]
    near = with_params({**base, "s": 1.0 + 1e-7}).expected_transactions(data, 26.0)[0]
    assert at == pytest.approx(near, rel=1e-6)


def test_predictions_agree_with_forward_simulation() -> None:
    params = {"r": 0.6, "alpha": 9.0, "s": 0.7, "beta": 12.0}
    n, t = 200_000, 26.0
    T = np.random.default_rng(11).uniform(20.0, 52.0, n)
    summary, alive, future = simulate(n, params, T, t, seed=12)
    model = with_params(params)
    checks = {
        "p_alive": (alive.astype(float), model.p_alive(summary)),
        "p_no_purchase": ((future == 0).astype(float), model.p_no_purchase(summary, t)),
        "expected_transactions": (future.astype(float), model.expected_transactions(summary, t)),
    }
    x = summary["frequency"].to_numpy()
    groups = {"all": np.ones(n, bool), "x=0": x == 0, "x>=3": x >= 3}
    for what, (outcome, pred) in checks.items():
        for gname, g in groups.items():
            diff = outcome[g] - pred[g]
            se = diff.std() / np.sqrt(g.sum())
            assert abs(diff.mean()) <= 4 * se + 1e-12, (what, gname, diff.mean(), se)
    # population expectation against the simulated customers' first 26 weeks (T >= 20 here,
    # so use the complete 20-week window): E[X(20)]
    sub, _, _ = simulate(n, params, np.full(n, 20.0), 0.0, seed=13)
    counts = sub["frequency"].to_numpy()
    assert model.population_expected_transactions(20.0) == pytest.approx(
        counts.mean(), abs=4 * counts.std() / np.sqrt(n)
    )


def test_fit_recovers_simulated_parameters() -> None:
    params = {"r": 0.6, "alpha": 9.0, "s": 0.7, "beta": 12.0}
    n = 15_000
    T = np.random.default_rng(21).integers(140, 365, n) / 7.0  # whole days, as in real data
    summary, _, _ = simulate(n, params, T, 1.0, seed=22)
    model = ParetoNBD().fit(summary)
    # standard errors of the log-parameters from the observed information at the optimum
    # (s and beta are the least determined: ~10 % and ~17 % here); allow 4 of them
    se = np.sqrt(np.diag(np.linalg.inv(model.optimizer_result_.hess_check)) / n)
    assert np.all(se < 0.25)
    for (name, value), sd in zip(params.items(), se):
        assert abs(np.log(model.params_[name] / value)) < 4 * sd, (name, model.params_, se)


def test_fit_where_hypergeometric_arguments_approach_one() -> None:
    # alpha >> beta + T: every x = 0 row's 2F1 argument is (alpha - beta)/alpha ≈ 0.97, beyond
    # the range where scipy's hyp2f1 is used, so the quadrature path carries the fit.
    params = {"r": 1.0, "alpha": 60.0, "s": 1.0, "beta": 2.0}
    n = 20_000
    T = np.random.default_rng(5).integers(140, 365, n) / 7.0
    summary, _, _ = simulate(n, params, T, 1.0, seed=6)
    model = ParetoNBD().fit(summary)
    # only ~7 % repeat buyers: r and alpha are loosely determined (SE ~10-15 %)
    for name, value in params.items():
        assert model.params_[name] == pytest.approx(value, rel=0.35), (name, model.params_)
    assert model.log_likelihood_ >= paretonbd_log_likelihood(
        *params.values(), summary["frequency"], summary["recency"], summary["T"]
    ).sum()


# ----------------------------------------------------------------- errors


def test_missing_columns_named() -> None:
    with pytest.raises(DataError, match=r"Pareto/NBD: summary lacks column\(s\) \['recency', 'T'\]"):
        ParetoNBD().fit(pd.DataFrame({"frequency": [1.0], "t_x": [1.0]}))


def test_invalid_rows_named() -> None:
    bad = pd.DataFrame({"customer_id": ["a", "b"], "frequency": [1.5, 0.0], "recency": [1.0, 2.0], "T": [3.0, 3.0]})
    with pytest.raises(DataError) as err:
        ParetoNBD().fit(bad)
    assert "frequency not a whole number: 1 row(s) (customer_id: 'a')" in str(err.value)
    assert "frequency 0 with recency > 0: 1 row(s) (customer_id: 'b')" in str(err.value)


def test_methods_before_fit_raise() -> None:
    model = ParetoNBD()
    data = rows((1, 1, 2))
    for call in (
        lambda: model.p_alive(data),
        lambda: model.expected_transactions(data, 1.0),
        lambda: model.p_no_purchase(data, 1.0),
        lambda: model.log_likelihood(data),
        lambda: model.population_expected_transactions(1.0),
    ):
        with pytest.raises(NotFittedError):
            call()


def test_optimiser_failure_raises_convergence_error(cdnow: pd.DataFrame) -> None:
    with pytest.raises(ConvergenceError, match=r"^Pareto/NBD: maximum-likelihood fit did not converge.*s="):
        ParetoNBD(maxiter=1).fit(cdnow)


def test_unidentified_parameters_fall_back_to_priors() -> None:
    # issue 10: no repeat purchase anywhere -> MAP with weak priors and a note (was a ConvergenceError)
    summary = pd.DataFrame({"frequency": np.zeros(40), "recency": np.zeros(40), "T": np.linspace(5, 30, 40)})
    model = ParetoNBD().fit(summary)
    assert model.fit_method_ == "map"
    assert "40 customers and none with a repeat purchase" in model.notes_[0]
