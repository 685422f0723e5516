"""Currency conversion with the ``fx_rates`` source: as-of lookup of daily rates.

A rate is *shop currency per 1 unit* of a currency on a calendar day. The
rate used for an amount is the latest one on or before the amount's day (the
shop-time-zone day of the order), per currency (``pandas.merge_asof``).
The shop currency's own rate is exactly 1 and needs no rows. A currency
with no rate on or before that day has no rate (NaN): the row is quarantined
as ``unknown_currency``, never converted with a guess.

The multiplication itself happens in the store, in DECIMAL arithmetic
(amount DECIMAL(18,4) x rate DECIMAL(18,8), rounded half away from zero to
4 decimals), so that it is exact.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RATE_DECIMALS = 8


def empty_rates() -> pd.DataFrame:
    """A zero-row rates frame: ``day`` (datetime64 naive, 00:00), ``currency`` (str), ``rate`` (float64)."""
    return pd.DataFrame(
        {
            "day": pd.Series(dtype="datetime64[us]"),
            "currency": pd.Series(dtype=object),
            "rate": pd.Series(dtype=np.float64),
        }
    )


def local_day(timestamps: pd.Series, tz: str) -> pd.Series:
    """Calendar day in zone ``tz`` of UTC timestamps, as naive ``datetime64[us]`` at 00:00.

    ``2024-03-31 22:30 UTC`` is ``2024-04-01`` in Europe/Berlin.
    """
    ts = pd.to_datetime(timestamps, utc=True)
    return ts.dt.tz_convert(tz).dt.tz_localize(None).dt.normalize().dt.as_unit("us")


def combine_rates(*frames: pd.DataFrame) -> pd.DataFrame:
    """Concatenate rate frames (``day``, ``currency``, ``rate``), rounded to 8 decimals, sorted by day."""
    parts = [f[["day", "currency", "rate"]] for f in frames if len(f)]
    if not parts:
        return empty_rates()
    out = pd.concat(parts, ignore_index=True)
    out["day"] = pd.to_datetime(out["day"]).dt.as_unit("us")
    out["currency"] = out["currency"].astype(object)
    out["rate"] = out["rate"].astype(np.float64).round(RATE_DECIMALS)
    return out.sort_values(["day", "currency"], kind="mergesort").reset_index(drop=True)


def lookup_rates(days: pd.Series, currencies: pd.Series, rates: pd.DataFrame, shop_currency: str) -> pd.Series:
    """Rate of each (day, currency): the latest rate on or before that day.

    Args:
        days: naive calendar days (``datetime64``), shape (n,).
        currencies: ISO codes, shape (n,), same index as ``days``.
        rates: :func:`combine_rates` output.
        shop_currency: its rate is 1.0 on every day.

    Returns:
        float64 Series on the index of ``days``; NaN where no rate exists
        on or before the day (or the day / currency is missing).
    """
    out = pd.Series(np.nan, index=days.index, dtype=np.float64)
    shop = (currencies == shop_currency).fillna(False).to_numpy()
    out[shop] = 1.0
    todo = ~shop & days.notna().to_numpy() & currencies.notna().to_numpy()
    if not todo.any() or rates.empty:
        return out
    left = pd.DataFrame(
        {
            "day": pd.to_datetime(days[todo]).dt.as_unit("us"),
            "currency": currencies[todo].astype(object),
            "_i": np.flatnonzero(todo),
        }
    ).sort_values("day", kind="mergesort")
    right = rates.sort_values("day", kind="mergesort")
    merged = pd.merge_asof(left, right, on="day", by="currency", direction="backward")
    out.iloc[merged["_i"].to_numpy()] = merged["rate"].to_numpy()
    return out


def latest_rates(rates: pd.DataFrame, shop_currency: str) -> dict[str, float]:
    """The most recent rate of every currency (shop currency: 1.0); used for product list prices."""
    out = {shop_currency: 1.0}
    if len(rates):
        last = rates.sort_values("day", kind="mergesort").groupby("currency")["rate"].last()
        out.update({str(k): float(v) for k, v in last.items()})
    return out
