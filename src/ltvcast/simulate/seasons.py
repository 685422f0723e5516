"""The simulated shop's seasons: a yearly cycle with a Q4 peak, promotion days and holiday lulls.

The calendar multiplies the purchase (and browse) intensity of every alive
customer on day ``d`` by

    m(d) = season(d)^strength × weekday(d) × lift(d)

* ``season(d)``: the month factor (:data:`MONTH_FACTOR`: January 0.85 …
  November 1.45, December 1.95 — the **Q4 peak**), with the **holiday lull**
  23–26 December at 0.6 and 27–31 December at 1.0;
* ``strength``: an exponent on the yearly cycle (1 = the default shop,
  0 = no yearly cycle, 2 = twice as strong on the log scale: December
  1.95² ≈ 3.8 × a flat month);
* ``weekday(d)``: :data:`WEEKDAY_FACTOR` (Sunday 1.15, midweek 0.95);
* ``lift(d)``: **promotion days** (each day with probability
  ``promo_day_p``, discount 10/15/20 %, intensity × ``promo_lift``) and
  Black Friday to Cyber Monday (25 % off, × ``black_friday_lift``).

Default settings reproduce the simulator's calendar byte for byte (the same
random draws in the same order). The **true seasonal level** of a window is
known: :func:`true_level` is the mean of ``m(d)`` over its days — the
expected revenue of a fixed, alive customer base in that window relative to
a flat calendar (customers' purchase rates multiply ``m(d)``; spend per
order does not depend on the day except the promotion discount).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["MONTH_FACTOR", "WEEKDAY_FACTOR", "Calendar", "Seasons", "true_level"]

MONTH_FACTOR = np.array([0.85, 0.85, 0.95, 0.95, 0.95, 0.90, 0.88, 0.88, 1.00, 1.05, 1.45, 1.95])
WEEKDAY_FACTOR = np.array([1.05, 1.00, 0.95, 0.95, 0.95, 0.95, 1.15])  # Monday .. Sunday
PROMO_PCTS = np.array([0.10, 0.15, 0.20])
BLACK_FRIDAY_PCT = 0.25


@dataclass(frozen=True)
class Seasons:
    """Settings of the shop's calendar (module docstring).

    Args:
        strength: exponent on the yearly cycle (>= 0; 1 = default, 0 = flat).
        promo_day_p: probability that a day is a promotion day (0 .. 1).
        promo_lift: intensity multiplier of a promotion day (> 0).
        black_friday_lift: intensity multiplier Black Friday .. Cyber Monday (> 0).
        lull: the 23–26 December factor (> 0; subject to ``strength`` too).

    Raises:
        ValueError: a setting out of range.
    """

    strength: float = 1.0
    promo_day_p: float = 0.035
    promo_lift: float = 1.7
    black_friday_lift: float = 2.4
    lull: float = 0.6

    def __post_init__(self) -> None:
        if not (self.strength >= 0 and np.isfinite(self.strength)):
            raise ValueError(f"strength must be a finite number >= 0, got {self.strength!r}")
        if not 0.0 <= self.promo_day_p <= 1.0:
            raise ValueError(f"promo_day_p must lie in [0, 1], got {self.promo_day_p!r}")
        for name in ("promo_lift", "black_friday_lift", "lull"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")

    def season(self, days: pd.DatetimeIndex) -> np.ndarray:
        """The yearly cycle ``season(d)^strength`` per day, shape (n_days,), no unit (flat = 1)."""
        month = days.month.to_numpy() - 1
        dom = days.day.to_numpy()
        season = MONTH_FACTOR[month].copy()
        december = month == 11
        season[december & (dom >= 23) & (dom <= 26)] = self.lull
        season[december & (dom >= 27)] = 1.0
        if self.strength != 1.0:
            season = season**self.strength
        return season

    def draw(self, rng: np.random.Generator, days: pd.DatetimeIndex) -> "Calendar":
        """Draw the promotion days and build the calendar (two draws from ``rng``, as the simulator always did).

        Returns:
            A :class:`Calendar` for ``days``.
        """
        n_days = len(days)
        month = days.month.to_numpy() - 1
        season = self.season(days)
        weekday = WEEKDAY_FACTOR[days.day_of_week.to_numpy()]
        promo_pct = np.where(rng.random(n_days) < self.promo_day_p, rng.choice(PROMO_PCTS, n_days), 0.0)
        lift = np.where(promo_pct > 0, self.promo_lift, 1.0)
        # Black Friday (4th Friday of November) to Cyber Monday
        fridays = (month == 10) & (days.day_of_week.to_numpy() == 4)
        years = days.year.to_numpy()
        black = np.zeros(n_days, dtype=bool)
        for year in np.unique(years):
            idx = np.flatnonzero(fridays & (years == year))
            if idx.size >= 4:
                bf = idx[3]
                black[bf : min(bf + 4, n_days)] = True
        promo_pct[black] = BLACK_FRIDAY_PCT
        lift[black] = self.black_friday_lift
        return Calendar(days, season, weekday, lift, promo_pct)


@dataclass(frozen=True)
class Calendar:
    """One drawn calendar: per-day factors, each shape (n_days,).

    Attributes:
        days: the days (UTC midnight).
        season, weekday, lift: the three factors of ``m(d)``.
        promo_pct: discount share per day (0 = no promotion).
    """

    days: pd.DatetimeIndex
    season: np.ndarray
    weekday: np.ndarray
    lift: np.ndarray
    promo_pct: np.ndarray

    @property
    def day_mult(self) -> np.ndarray:
        """``m(d) = season × weekday × lift``, shape (n_days,)."""
        return self.season * self.weekday * self.lift


def true_level(day_mult: np.ndarray, days: pd.DatetimeIndex, start, n_days: int) -> float:
    """The true seasonal level of the window ``[start, start + n_days)``: the mean of ``m(d)`` over it.

    Args:
        day_mult: ``m(d)`` per day (e.g. ``truth_calendar.parquet``'s
            ``intensity``), shape (n,).
        days: the matching days, shape (n,).
        start: first day of the window.
        n_days: window length in days (> 0).

    Returns:
        Mean intensity (no unit; a flat calendar gives the mean weekday factor ≈ 1).

    Raises:
        ValueError: the window is not inside ``days`` or ``n_days`` < 1.
    """
    if n_days < 1:
        raise ValueError(f"n_days must be >= 1, got {n_days}")
    first = pd.Timestamp(start).normalize()
    pos = int(np.searchsorted(days.values, np.datetime64(first.tz_localize(None) if first.tzinfo else first)))
    if pos + n_days > len(days) or pos >= len(days) or days[pos] != first.tz_localize(None):
        raise ValueError(f"the window {first.date()} + {n_days} days is not inside the simulated calendar")
    return float(np.mean(np.asarray(day_mult, dtype=float)[pos : pos + n_days]))
