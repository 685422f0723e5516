"""Regime changes of the simulated shop on a date: purchase rates drop, a new acquisition channel, prices rise.

A :class:`Regime` is switched on from its ``day`` (a calendar day, UTC) to
the end of the simulation. Give regimes through
``ShopParams(regimes=(Regime(...), ...))`` (:class:`ltvcast.simulate.process.ShopParams`);
the default ``regimes=()`` leaves the output byte-identical to a shop
without this module.

Effects (each a factor; 1.0 / 0.0 = no change):

* ``purchase_rate``: every repeat order at or after ``day`` is kept with
  probability ``purchase_rate`` (independent thinning of the Poisson order
  process, so the intensity becomes ``λ · m(d) · purchase_rate`` from
  ``day`` on: Lewis & Shedler 1979, thinning). The first order at sign-up
  is kept (new customers still buy once).
* ``channel_share`` > 0: a *new acquisition channel*. Each customer who
  signs up at or after ``day`` comes through it with probability
  ``channel_share``; such a customer's purchase rate is multiplied by
  ``channel_lambda``, dropout rate by ``channel_mu`` (the lifetime draw
  ``τ = E/μ`` with ``E ~ Exp(1)`` is rescaled, so the other draws are
  unchanged), spend level by ``channel_spend``, and the customer is
  recorded under the channel name ``channel_label`` (one of
  :data:`ltvcast.simulate.process.CHANNELS`; the written files keep the
  seven known channel names).
* ``price``: list prices of every line ordered at or after ``day`` are
  multiplied by ``price`` (before rounding to cents).

Randomness: the regime draws come from their own stream
``SeedSequence(seed, spawn_key=(7, chunk))``, so a regime changes nothing
but its own effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ltvcast.errors import LtvcastError

REGIME_STREAM = 7

__all__ = ["REGIME_STREAM", "Regime", "acquisition", "orders_kept", "prices"]


@dataclass(frozen=True)
class Regime:
    """One change of the shop from ``day`` on (see the module doc for each effect).

    Raises:
        LtvcastError: a factor out of range (``purchase_rate`` not in (0, 1],
            ``price`` ≤ 0, ``channel_share`` not in [0, 1], a channel factor
            ≤ 0) or an unreadable day.
    """

    day: str
    purchase_rate: float = 1.0
    price: float = 1.0
    channel_share: float = 0.0
    channel_lambda: float = 1.0
    channel_mu: float = 1.0
    channel_spend: float = 1.0
    channel_label: str = "paid_social"

    def __post_init__(self) -> None:
        try:
            pd.Timestamp(self.day)
        except (ValueError, TypeError):
            raise LtvcastError(f"regime day {self.day!r} is not a date (YYYY-MM-DD)") from None
        if not 0.0 < self.purchase_rate <= 1.0:
            raise LtvcastError(f"regime purchase_rate must be in (0, 1], got {self.purchase_rate}")
        if self.price <= 0.0:
            raise LtvcastError(f"regime price factor must be > 0, got {self.price}")
        if not 0.0 <= self.channel_share <= 1.0:
            raise LtvcastError(f"regime channel_share must be in [0, 1], got {self.channel_share}")
        if min(self.channel_lambda, self.channel_mu, self.channel_spend) <= 0.0:
            raise LtvcastError("regime channel factors must be > 0")

    def start_day(self, world_start: pd.Timestamp) -> float:
        """Days from the simulation start (naive UTC midnight) to ``day`` (float)."""
        return float((pd.Timestamp(self.day).tz_localize(None) - world_start).days)


def _rng(seed: int, chunk_index: int, which: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(REGIME_STREAM, chunk_index, which)))


def acquisition(
    regimes, world_start: pd.Timestamp, seed: int, chunk_index: int, t_sign: np.ndarray,
    channel: np.ndarray, lam: np.ndarray, mu: np.ndarray, tau: np.ndarray, spend: np.ndarray, channel_names,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Apply the new-channel regimes to the customers of one chunk.

    Args:
        regimes: the :class:`Regime` objects.
        world_start: the simulation start (naive UTC midnight).
        seed, chunk_index: the simulation seed and chunk (for the own stream).
        t_sign: sign-up times, days since start, shape (n,).
        channel, lam, mu, tau, spend: channel index, purchase rate (1/day),
            dropout rate (1/day), lifetime (days), spend level; shape (n,).
        channel_names: the channel names in index order.

    Returns:
        New ``(channel, lam, mu, tau, spend)`` (copies; unchanged customers keep their values).
    """
    channel, lam, mu, tau, spend = channel.copy(), lam.copy(), mu.copy(), tau.copy(), spend.copy()
    for k, reg in enumerate(regimes):
        if reg.channel_share <= 0.0:
            continue
        if reg.channel_label not in channel_names:
            raise LtvcastError(f"regime channel_label {reg.channel_label!r} is not one of {list(channel_names)}")
        u = _rng(seed, chunk_index, 2 * k).random(t_sign.size)
        sel = (t_sign >= reg.start_day(world_start)) & (u < reg.channel_share)
        channel[sel] = list(channel_names).index(reg.channel_label)
        lam[sel] *= reg.channel_lambda
        tau[sel] /= reg.channel_mu
        mu[sel] *= reg.channel_mu
        spend[sel] *= reg.channel_spend
    return channel, lam, mu, tau, spend


def orders_kept(regimes, world_start: pd.Timestamp, seed: int, chunk_index: int, t: np.ndarray) -> np.ndarray:
    """Boolean mask of the repeat orders (times ``t``, days since start, shape (m,)) the rate drops keep."""
    keep = np.ones(t.size, dtype=bool)
    for k, reg in enumerate(regimes):
        if reg.purchase_rate >= 1.0:
            continue
        u = _rng(seed, chunk_index, 2 * k + 1).random(t.size)
        keep &= ~((t >= reg.start_day(world_start)) & (u >= reg.purchase_rate))
    return keep


def prices(regimes, world_start: pd.Timestamp, line_day: np.ndarray, list_price: np.ndarray) -> np.ndarray:
    """List prices (EUR) of lines ordered on ``line_day`` (days since start, shape (m,)) after the price rises."""
    out = np.asarray(list_price, dtype=np.float64).copy()
    for reg in regimes:
        if reg.price != 1.0:
            out[line_day >= reg.start_day(world_start)] *= reg.price
    return out
