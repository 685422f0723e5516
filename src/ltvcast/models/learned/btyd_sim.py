"""Spend quantiles and next-purchase days of a fitted BTYD model, by posterior simulation.

For every customer, ``n_draws`` futures of the horizon ``(T, T + t]`` are
drawn from the fitted model *given the customer's history* (frequency x,
recency t_x, age T):

* **Pareto/NBD** (Schmittlein, Morrison & Colombo 1987; posterior as in
  Fader & Hardie 2005, note 009): alive at T with probability P(alive);
  given alive, λ ~ Gamma(r + x, α + T) and μ ~ Gamma(s, β + T) independently
  (the "alive" term of the likelihood is λ^x e^{−(λ+μ)T}); the remaining
  lifetime is Exp(μ); purchases are Poisson(λ) while alive, so the count in
  the horizon is Poisson(λ · min(lifetime, t)).
* **BG/NBD** (Fader, Hardie & Lee 2005): alive with probability P(alive);
  given alive, λ ~ Gamma(r + x, α + T) and the dropout probability
  p ~ Beta(a, b + x) (survived x repeat purchases); arrivals are
  Poisson(λ t) and after each purchase the customer drops out with
  probability p, so the count is min(K, G) with K ~ Poisson(λ t),
  G ~ Geometric(p) on {1, 2, …}.
* **naive**: Poisson(rate · t) with the customer's own rate; no death.

Spend: Gamma-Gamma (Fader, Hardie & Lee 2005, JMR): the customer's ν has
posterior Gamma(q + p·x, γ + x·z̄) (shape, rate) for a repeat buyer with a
positive mean repeat value z̄, the prior Gamma(q, γ) otherwise; the spend of
N occasions is Gamma(p·N, ν). For ``naive`` each occasion is worth the
customer's own mean value. Quantiles are the draws' inverted-CDF quantiles
(no interpolation, so a customer with more than 90% of futures without a
purchase has p10 = p50 = p90 = 0).

Next purchase: ``E[τ | τ < H]``, the expected days from the cutoff to the
first purchase given one happens in the horizon, averaged over the posterior
draws of (λ, lifetime) in closed form (Rao-Blackwellised): given λ and an
active span A inside the horizon, the first arrival is before A with
probability ``1 − e^{−λA}`` and then has mean ``A · g(λA)``,
``g(u) = 1/u − 1/(e^u − 1)``. T is measured to the last day before the
cutoff, so a purchase τ days (continuous) after T falls on day ``⌈τ⌉ − 1``
counted from the cutoff; the result is ``E[τ | τ < H] − 0.5`` days, clipped
to ``[0, H − 1]``.

Deterministic for a given ``seed``, and per customer: each customer's draws
come from their own stream, a Philox counter-based generator (Salmon et al.
2011, "Parallel random numbers: as easy as 1, 2, 3") keyed by ``(key, seed)``,
``key`` = the first 8 bytes of BLAKE2b of the customer id (UTF-8), so a customer's
result does not depend on which other customers are in the summary (the
online service predicts one customer at a time; batch scoring, many).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from ltvcast.models.bgnbd import BGNBD
from ltvcast.models.gammagamma import GammaGamma
from ltvcast.models.naive import Naive
from ltvcast.models.paretonbd import ParetoNBD

__all__ = ["simulate_btyd", "customer_keys", "DEFAULT_DRAWS"]

DEFAULT_DRAWS = 400
_CHUNK = 2000
DAYS_PER_WEEK = 7.0


def _g(u: np.ndarray) -> np.ndarray:
    """``1/u − 1/(e^u − 1)``: mean of a unit-rate exponential truncated to [0, u], over u."""
    u = np.asarray(u, dtype=float)
    small = u < 1e-3
    safe = np.where(small, 1.0, u)
    big = 1.0 / safe - 1.0 / np.expm1(np.minimum(safe, 700.0))
    return np.where(small, 0.5 - u / 12.0, big)


def customer_keys(customer_ids) -> list[int]:
    """Stable 64-bit key per customer id: the first 8 bytes (little-endian) of BLAKE2b of the id's UTF-8 text.

    Args:
        customer_ids: n ids (any iterable of str-able values).

    Returns:
        n non-negative ints below 2**64, the same in every process and run.
    """
    return [
        int.from_bytes(hashlib.blake2b(str(c).encode("utf-8"), digest_size=8).digest(), "little")
        for c in customer_ids
    ]


def _stream(key: int, seed: int) -> np.random.Generator:
    """The customer's own generator: Philox keyed by (key, seed), counter 0 (independent streams per key)."""
    return np.random.Generator(np.random.Philox(key=np.array([key, seed], dtype=np.uint64)))


def simulate_btyd(
    count_model,
    spend_model: GammaGamma | None,
    summary: pd.DataFrame,
    horizon_days: float,
    *,
    n_draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9),
    value: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Posterior-simulated spend quantiles and next-purchase days for every customer.

    Args:
        count_model: a fitted :class:`ParetoNBD`, :class:`BGNBD` or
            :class:`Naive` (time unit: weeks).
        spend_model: the fitted :class:`GammaGamma` (``None`` for naive).
        summary: RFM summary in weeks (``frequency``, ``recency``, ``T``,
            ``monetary_value``, ``total_spend``), n rows.
        horizon_days: horizon H in days.
        n_draws: futures drawn per customer.
        seed: random seed.
        quantiles: spend quantile levels in (0, 1).
        value: (n,) value per occasion for ``naive`` (currency; default
            ``count_model.expected_value(summary)``), and for BG/NBD or
            Pareto/NBD without a spend model (``spend_model=None``).

    Each customer's futures are drawn from :func:`_stream` keyed by
    ``customer_keys([customer_id])`` and ``seed`` (the row position where the
    summary has no ``customer_id``), so row i's result depends only on row i.

    Returns:
        Dict with ``pred_spend_p<100q>`` for each level (currency) and
        ``pred_next_purchase_days`` (days), each of shape (n,).

    Raises:
        TypeError: an unsupported count model.
    """
    if not isinstance(count_model, (ParetoNBD, BGNBD, Naive)):
        raise TypeError(f"cannot simulate {type(count_model).__name__}")
    t = float(horizon_days) / DAYS_PER_WEEK
    x = summary["frequency"].to_numpy(float)
    T = summary["T"].to_numpy(float)
    n = len(summary)
    keys = customer_keys(summary["customer_id"]) if "customer_id" in summary.columns else list(range(n))
    keys_q = [f"pred_spend_p{int(round(q * 100))}" for q in quantiles]
    out = {k: np.zeros(n) for k in keys_q}
    out["pred_next_purchase_days"] = np.zeros(n)
    if n == 0:
        return out

    if isinstance(count_model, Naive):
        rate = np.asarray(count_model.rate(summary), dtype=float)
        value = np.asarray(count_model.expected_value(summary) if value is None else value, dtype=float)
        for lo in range(0, n, _CHUNK):
            hi = min(lo + _CHUNK, n)
            spend = np.empty((hi - lo, n_draws))
            for j, i in enumerate(range(lo, hi)):
                rng = _stream(keys[i], seed)
                spend[j] = rng.poisson(rate[i] * t, size=n_draws) * value[i]
            qv = np.quantile(spend, quantiles, axis=1, method="inverted_cdf")
            for k, row in zip(keys_q, qv):
                out[k][lo:hi] = row
        weeks = t * _g(rate * t)
        out["pred_next_purchase_days"] = np.clip(weeks * DAYS_PER_WEEK - 0.5, 0.0, horizon_days - 1.0)
        return out

    pa = np.asarray(count_model.p_alive(summary), dtype=float)
    par = count_model.params_
    pareto = isinstance(count_model, ParetoNBD)
    # Gamma-Gamma posterior of nu (shape, rate) per customer
    gg = spend_model.params_ if spend_model is not None else None
    if gg is not None:
        z = summary["monetary_value"].to_numpy(float)
        usable = (x > 0) & (z > 0)
        nu_shape = gg["q"] + np.where(usable, gg["p"] * x, 0.0)
        nu_rate = gg["gamma"] + np.where(usable, x * z, 0.0)
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        shape = (hi - lo, n_draws)
        lam, span, spend = np.empty(shape), np.full(shape, t), np.zeros(shape)
        for j, i in enumerate(range(lo, hi)):
            rng = _stream(keys[i], seed)
            lam[j] = rng.gamma(par["r"] + x[i], 1.0 / (par["alpha"] + T[i]), size=n_draws)
            alive = rng.random(n_draws) < pa[i]
            if pareto:
                # s = 0 is the NBD limit (no dropout): mu = 0, the lifetime outlasts the horizon
                mu = rng.gamma(par["s"], 1.0 / (par["beta"] + T[i]), size=n_draws) if par["s"] > 0 else 0.0
                with np.errstate(divide="ignore"):
                    span[j] = np.minimum(rng.exponential(1.0, size=n_draws) / mu, t)
                counts = np.where(alive, rng.poisson(lam[j] * span[j]), 0)
            else:
                # a = 0 is the NBD limit (no dropout): p = 0
                p_drop = rng.beta(par["a"], par["b"] + x[i], size=n_draws) if par["a"] > 0 else np.zeros(n_draws)
                arrivals = rng.poisson(lam[j] * t)
                survive = rng.geometric(np.clip(p_drop, 1e-12, 1.0))
                counts = np.where(alive, np.minimum(arrivals, survive), 0)
            if gg is not None:
                nu = rng.gamma(nu_shape[i], 1.0 / nu_rate[i], size=n_draws)
                spend[j] = np.where(counts > 0, rng.gamma(np.maximum(gg["p"] * counts, 1e-12), 1.0) / nu, 0.0)
            elif value is not None:  # no spend model: a fixed value per occasion
                spend[j] = counts * value[i]
        qv = np.quantile(spend, quantiles, axis=1, method="inverted_cdf")
        for k, row in zip(keys_q, qv):
            out[k][lo:hi] = row
        # E[tau | tau < H], Rao-Blackwellised over the draws of (lambda, span)
        u = lam * span
        w = -np.expm1(-u)
        mean_first = span * _g(u)
        wsum = w.sum(axis=1)
        weeks = np.where(wsum > 0, (w * mean_first).sum(axis=1) / np.where(wsum > 0, wsum, 1.0), t / 2.0)
        out["pred_next_purchase_days"][lo:hi] = np.clip(weeks * DAYS_PER_WEEK - 0.5, 0.0, horizon_days - 1.0)
    return out
