"""ZILN loss, gradient, mean and quantiles against hand-computed values (Wang, Liu & Miao 2019)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import lognorm

from ltvcast.models.learned.ziln import (
    SIGMA_MAX,
    ZILNObjective,
    ziln_grad_hess,
    ziln_init_score,
    ziln_loss,
    ziln_mean,
    ziln_params,
    ziln_quantile,
)


def test_loss_by_hand():
    # f_p = 0 -> p = 0.5; mu = 1; sigma = exp(0) = 1
    raw = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    y = np.array([0.0, math.e**2])  # ln y = 2
    # zero: -ln(1 - 0.5) = ln 2
    # positive: -ln 0.5 + [ln y + ln sigma + 0.5 ln(2 pi) + (ln y - mu)^2 / (2 sigma^2)]
    expected_pos = math.log(2) + 2.0 + 0.0 + 0.5 * math.log(2 * math.pi) + 0.5
    np.testing.assert_allclose(ziln_loss(y, raw), [math.log(2), expected_pos], rtol=1e-12)


def test_loss_matches_scipy_lognormal_density():
    rng = np.random.default_rng(1)
    raw = np.column_stack([rng.normal(size=20), rng.normal(2, 1, size=20), rng.normal(-0.3, 0.3, size=20)])
    y = np.exp(rng.normal(2, 1, size=20))
    p, mu, sigma = ziln_params(raw)
    ref = -np.log(p) - lognorm.logpdf(y, s=sigma, scale=np.exp(mu))
    np.testing.assert_allclose(ziln_loss(y, raw), ref, rtol=1e-10)


def test_non_positive_values_count_as_zero():
    raw = np.array([[0.3, 1.0, 0.2]] * 3)
    y = np.array([0.0, -5.0, -0.01])
    loss = ziln_loss(y, raw)
    np.testing.assert_allclose(loss, np.full(3, -math.log(1 - 1 / (1 + math.exp(-0.3)))), rtol=1e-12)
    g, h = ziln_grad_hess(y, raw)
    assert np.all(g[:, 1:] == 0) and np.all(np.isfinite(h)) and np.all(h > 0)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    n = 12
    raw = np.column_stack([rng.normal(size=n), rng.normal(2, 1, size=n), rng.normal(-0.2, 0.3, size=n)])
    y = np.where(rng.random(n) < 0.5, 0.0, np.exp(rng.normal(2, 1, size=n)))
    g, h = ziln_grad_hess(y, raw)
    eps = 1e-6
    for j in range(3):
        e = np.zeros_like(raw)
        e[:, j] = eps
        num = (ziln_loss(y, raw + e) - ziln_loss(y, raw - e)) / (2 * eps)
        np.testing.assert_allclose(g[:, j], num, rtol=1e-5, atol=1e-7)
    # exact Hessians of the logit and mu parts; the ln sigma part is the Fisher information 2z
    p = 1 / (1 + np.exp(-raw[:, 0]))
    np.testing.assert_allclose(h[:, 0], p * (1 - p), rtol=1e-12)
    z = y > 0
    np.testing.assert_allclose(h[z, 1], 1 / np.exp(raw[z, 2]) ** 2, rtol=1e-12)
    np.testing.assert_allclose(h[z, 2], 2.0)


def test_mean_and_quantiles_by_hand():
    # p = 0.8 (f_p = ln 4), mu = 3, sigma = 0.5
    raw = np.array([[math.log(4.0), 3.0, math.log(0.5)]])
    assert ziln_mean(raw)[0] == pytest.approx(0.8 * math.exp(3 + 0.125), rel=1e-12)
    # q <= 1 - p = 0.2: zero
    assert ziln_quantile(raw, 0.1)[0] == 0.0
    assert ziln_quantile(raw, 0.2)[0] == 0.0
    # q = 0.6: conditional level (0.6 - 0.2) / 0.8 = 0.5 -> the lognormal median e^mu
    assert ziln_quantile(raw, 0.6)[0] == pytest.approx(math.exp(3.0), rel=1e-12)
    # q = 0.9: conditional level 0.875
    expected = lognorm.ppf(0.875, s=0.5, scale=math.exp(3.0))
    assert ziln_quantile(raw, 0.9)[0] == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError):
        ziln_quantile(raw, 1.0)


def test_sigma_is_bounded_so_the_mean_stays_finite():
    raw = np.array([[5.0, 10.0, 50.0]])
    _, _, sigma = ziln_params(raw)
    assert sigma[0] == pytest.approx(SIGMA_MAX)
    assert np.isfinite(ziln_mean(raw)).all()
    with pytest.raises(ValueError):
        ziln_params(np.zeros((3, 2)))


def test_init_score_minimises_the_constant_loss():
    y = np.array([0.0, 0.0, 0.0, 1.0, math.e, math.e**2, -3.0])
    init = ziln_init_score(y)
    # 3 of 7 positive; ln y = 0, 1, 2 -> mean 1, sd sqrt(2/3)
    assert init[0] == pytest.approx(math.log(3 / 4))
    assert init[1] == pytest.approx(1.0)
    assert init[2] == pytest.approx(0.5 * math.log(2 / 3))
    base = ziln_loss(y, np.tile(init, (7, 1))).mean()
    for j in range(3):
        for d in (-0.05, 0.05):
            moved = init.copy()
            moved[j] += d
            assert ziln_loss(y, np.tile(moved, (7, 1))).mean() > base


def test_objective_built_once_serves_every_round():
    # the label terms are cached; what depends on the raw scores must not be
    rng = np.random.default_rng(5)
    n = 10
    y = np.where(rng.random(n) < 0.4, 0.0, np.exp(rng.normal(2, 1, size=n)))
    w = rng.random(n) + 0.5
    objective = ZILNObjective(y, w)
    for shift in (0.0, 0.7):
        raw = np.column_stack([rng.normal(size=n), rng.normal(2, 1, size=n), rng.normal(-0.2, 0.3, size=n)]) + shift
        g, h = objective(raw)
        eps = 1e-6
        for j in range(3):
            e = np.zeros_like(raw)
            e[:, j] = eps
            num = w * (ziln_loss(y, raw + e) - ziln_loss(y, raw - e)) / (2 * eps)
            np.testing.assert_allclose(g[:, j], num, rtol=1e-5, atol=1e-7)
        p = 1 / (1 + np.exp(-raw[:, 0]))
        np.testing.assert_allclose(h[:, 0], w * p * (1 - p), rtol=1e-12)
