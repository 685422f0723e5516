"""A top-down level: the shop's total revenue in the horizon from its daily aggregate series.

Customer-level models rank customers well but can miss the *level* of the
total when the horizon holds a season their training windows did not. This
module forecasts the total directly from the shop's daily revenue series
``R(d)`` (net or gross as the store says, all customers), with candidates
chosen by a backtest on the series itself:

* ``trailing`` — the mean daily revenue of the last 91 days × ``H``
  (no season);
* ``seasonal_naive`` — the revenue in the same calendar window a year
  before (364 days, so weekdays align) × the growth of the trailing 91 days
  over the same 91 days a year before: ``R[C−364, C−364+H) · R[C−91, C) /
  R[C−455, C−364)`` (the seasonal naive method with drift as a ratio;
  Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*, 3rd ed.,
  §5.2);
* ``holt_winters`` — additive-trend (damped), multiplicative-season
  exponential smoothing on weekly totals, 52-week season (Holt 1957,
  Winters 1960; statsmodels ``ExponentialSmoothing``), with at least two
  years of weeks before the cutoff.

Backtest on the series: origins ``o_k = C − H − k·28`` (``k = 0 .. 3``, the
windows of the learned models' protocol, each ending on or before ``C``);
a method's score is its mean absolute percentage error of the window total
over the origins where it applies (at least two). The best method makes the
forecast; the stated interval is ± 1.64 × the root mean squared percentage
error of the chosen method (at least 5 %), doubled with less than a year of
history.

The customer-level predictions cover the customers seen before ``C`` only;
the part of the total they make is estimated by the *existing share*: the
share of ``R`` in the same-season window a year before (else in the most
recent full window ``[C−H, C)``) made by customers with a transaction before
that window's start. ``existing_total = total × existing_share`` is the
level the bottom-up predictions are reconciled to (a single factor: the
ranking is unchanged).

The **seasonal index** of the horizon: ``(R[C−364, C−364+H) / H) /
(R[C−455, C−364) / 91)`` — last year's revenue per day in the horizon's
calendar window relative to the 91 days before it (1 = no season, > 1 a
peak); NaN with less than a year and 91 days of history.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ltvcast.errors import DataError
from ltvcast.timeutil import horizon_window, local_midnight, to_day

__all__ = ["LevelForecast", "METHODS", "daily_revenue", "forecast_total", "seasonal_index", "top_down_level"]

METHODS: tuple[str, ...] = ("trailing", "seasonal_naive", "holt_winters")
YEAR = 364
TRAILING = 91
ORIGINS = 4
ORIGIN_STRIDE = 28
MIN_REL_ERROR = 0.05


@dataclass
class LevelForecast:
    """The top-down level of one horizon.

    Attributes:
        total: forecast revenue of the whole shop in ``[C, C + H)`` (currency).
        low, high: the stated interval of ``total`` (currency).
        existing_share: share of the total made by customers seen before ``C`` (fraction).
        existing_total: ``total × existing_share`` (currency): the level of the
            customer-level predictions.
        method: the chosen method (:data:`METHODS`).
        errors: method -> mean absolute percentage error on the series backtest (fraction).
        seasonal_index: see the module docstring (NaN when the history is too short).
        history_days: days of history before ``C``.
        short_history: less than a year (364 + 91 days) of history: no seasonal method.
        notes: remarks (choice, short history).
    """

    total: float
    low: float
    high: float
    existing_share: float
    existing_total: float
    method: str
    errors: dict[str, float] = field(default_factory=dict)
    seasonal_index: float = float("nan")
    history_days: int = 0
    short_history: bool = True
    notes: list[str] = field(default_factory=list)


def _utc(stamps: pd.Series) -> pd.Series:
    return stamps.dt.tz_localize("UTC") if getattr(stamps.dt, "tz", None) is None else stamps.dt.tz_convert("UTC")


def daily_revenue(tx: pd.DataFrame, cutoff, timezone: str = "UTC") -> tuple[pd.Series, pd.Series]:
    """The daily revenue series before the cutoff and the first day of each customer.

    Args:
        tx: canonical transactions (``customer_id``, ``timestamp`` UTC, ``amount``
            in currency, net of returns as the store's basis says).
        cutoff: the cutoff day; only rows before 00:00 of it in ``timezone`` are read.
        timezone: the shop's IANA time zone (days are local days).

    Returns:
        ``(revenue, first_day)``: revenue per local day (index of every day
        from the first transaction to the day before the cutoff, zeros
        filled; currency) and each customer's first local day.

    Raises:
        DataError: no transaction before the cutoff.
    """
    stamps = _utc(tx["timestamp"])
    keep = stamps < local_midnight(cutoff, timezone)
    if not keep.any():
        raise DataError(f"no transaction before {to_day(cutoff).date()}: no revenue series")
    local = stamps[keep].dt.tz_convert(timezone).dt.tz_localize(None).dt.normalize()
    frame = pd.DataFrame(
        {
            "day": local.to_numpy(),
            "amount": tx.loc[keep, "amount"].to_numpy(float),
            "customer_id": tx.loc[keep, "customer_id"].to_numpy(),
        }
    )
    stop = to_day(cutoff).tz_localize(None) if to_day(cutoff).tzinfo else to_day(cutoff)
    days = pd.date_range(frame["day"].min(), stop - pd.Timedelta(days=1), freq="D")
    revenue = frame.groupby("day")["amount"].sum().reindex(days, fill_value=0.0)
    first = frame.groupby("customer_id")["day"].min()
    return revenue, first


def _window_sum(revenue: pd.Series, start: pd.Timestamp, days: int) -> float | None:
    """Revenue in ``[start, start + days)``; None when the window is not fully inside the series."""
    if start < revenue.index[0] or start + pd.Timedelta(days=days) > revenue.index[-1] + pd.Timedelta(days=1):
        return None
    return float(revenue.loc[start : start + pd.Timedelta(days=days - 1)].sum())


def seasonal_index(revenue: pd.Series, cutoff, horizon_days: int) -> float:
    """Last year's revenue per day in the horizon's calendar window over the 91 days before it.

    Returns:
        The index (no unit; NaN when the series does not reach 364 + 91 days
        before ``cutoff`` or the trailing revenue is not positive).
    """
    c = _naive(cutoff)
    last = _window_sum(revenue, c - pd.Timedelta(days=YEAR), horizon_days)
    trail = _window_sum(revenue, c - pd.Timedelta(days=YEAR + TRAILING), TRAILING)
    if last is None or trail is None or trail <= 0:
        return float("nan")
    return (last / horizon_days) / (trail / TRAILING)


def _naive(day) -> pd.Timestamp:
    d = to_day(day)
    return d.tz_localize(None) if d.tzinfo is not None else d


def forecast_total(revenue: pd.Series, cutoff, horizon_days: int, method: str) -> float | None:
    """One method's forecast of the revenue in ``[cutoff, cutoff + horizon_days)`` from the series before it.

    Args:
        revenue: daily revenue (:func:`daily_revenue`); only days before
            ``cutoff`` are read.
        cutoff: the forecast origin (day).
        horizon_days: window length (days, > 0).
        method: one of :data:`METHODS`.

    Returns:
        The forecast total (currency, >= 0), or None when the method does
        not apply (too little history).

    Raises:
        ValueError: unknown method.
    """
    c = _naive(cutoff)
    series = revenue.loc[: c - pd.Timedelta(days=1)]
    if series.empty:
        return None
    h = int(horizon_days)
    if method == "trailing":
        trail = _window_sum(series, c - pd.Timedelta(days=TRAILING), TRAILING)
        return None if trail is None else max(trail, 0.0) / TRAILING * h
    if method == "seasonal_naive":
        last = _window_sum(series, c - pd.Timedelta(days=YEAR), h) if h <= YEAR else None
        trail = _window_sum(series, c - pd.Timedelta(days=TRAILING), TRAILING)
        before = _window_sum(series, c - pd.Timedelta(days=YEAR + TRAILING), TRAILING)
        if last is None or trail is None or before is None or before <= 0:
            return None
        return max(last, 0.0) * max(trail, 0.0) / before
    if method == "holt_winters":
        return _holt_winters(series, c, h)
    raise ValueError(f"unknown top-down method {method!r}; one of {METHODS}")


def _holt_winters(series: pd.Series, c: pd.Timestamp, h: int) -> float | None:
    """Damped additive trend, multiplicative 52-week season on weekly totals ending the day before ``c``."""
    n_weeks = len(series) // 7
    if n_weeks < 2 * 52 + 4:
        return None
    try:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing
    except ImportError:  # pragma: no cover - a dependency of the package
        return None
    tail = series.iloc[len(series) - n_weeks * 7 :].to_numpy(float)
    weekly = np.maximum(tail.reshape(n_weeks, 7).sum(axis=1), 1e-6)
    steps = int(np.ceil(h / 7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = ExponentialSmoothing(
                weekly,
                trend="add",
                damped_trend=True,
                seasonal="mul",
                seasonal_periods=52,
                initialization_method="heuristic",
            ).fit(use_brute=False)
            path = np.asarray(fit.forecast(steps), dtype=float)
        except (ValueError, np.linalg.LinAlgError):
            return None
    if not np.all(np.isfinite(path)):
        return None
    path = np.maximum(path, 0.0)
    return float(path[: h // 7].sum() + (path[h // 7] * (h % 7) / 7 if h % 7 else 0.0))


def _existing_share(revenue_frame: tuple[pd.Series, pd.Series], tx_days: pd.DataFrame, start: pd.Timestamp, h: int):
    """Share of revenue in ``[start, start + h)`` from customers first seen before ``start``."""
    stop = start + pd.Timedelta(days=h)
    inside = tx_days[(tx_days["day"] >= start) & (tx_days["day"] < stop)]
    total = float(inside["amount"].sum())
    if total <= 0:
        return None
    old = inside["first"] < start
    return float(np.clip(inside.loc[old, "amount"].sum() / total, 0.0, 1.0))


def top_down_level(tx: pd.DataFrame, cutoff, horizon_days: float, timezone: str = "UTC") -> LevelForecast:
    """Forecast the shop's total revenue in the horizon, the part of it from existing customers, and its interval.

    Args:
        tx: canonical transactions (rows at or after the cutoff day are ignored).
        cutoff: prediction cutoff ``C`` (day).
        horizon_days: ``H`` in days (rounded as :func:`ltvcast.timeutil.horizon_window`).
        timezone: the shop's IANA time zone.

    Returns:
        A :class:`LevelForecast` (module docstring: methods, backtest,
        interval, existing share, seasonal index).

    Raises:
        DataError: no transaction before the cutoff, or no method applies
            (less than 91 days of history).
    """
    start, end = horizon_window(cutoff, horizon_days)
    h = (end - start).days
    c = _naive(start)
    revenue, first = daily_revenue(tx, start, timezone)
    history_days = int((c - revenue.index[0]).days)
    errors: dict[str, list[float]] = {m: [] for m in METHODS}
    for k in range(ORIGINS):
        o = c - pd.Timedelta(days=h + k * ORIGIN_STRIDE)
        actual = _window_sum(revenue, o, h)
        if actual is None or actual <= 0:
            continue
        for m in METHODS:
            f = forecast_total(revenue, o, h, m)
            if f is not None:
                errors[m].append((f - actual) / actual)
    scores = {m: float(np.mean(np.abs(e))) for m, e in errors.items() if len(e) >= 2}
    notes: list[str] = []
    candidates = [m for m in METHODS if forecast_total(revenue, c, h, m) is not None]
    scored = [m for m in candidates if m in scores]
    if scored:
        method = min(scored, key=lambda m: scores[m])
    elif candidates:
        method = candidates[0]
        notes.append(
            f"top-down level: too little history to backtest the methods on the series; {method} used untested"
        )
    else:
        raise DataError(
            f"top-down level: {history_days} days of history before {c.date()}: at least {TRAILING} are needed"
        )
    total = float(forecast_total(revenue, c, h, method))
    rel = errors.get(method) or []
    spread = max(float(np.sqrt(np.mean(np.square(rel)))) if rel else 0.25, MIN_REL_ERROR) * 1.64
    short = history_days < YEAR + TRAILING
    if short:
        spread *= 2.0
        notes.append(
            f"top-down level: only {history_days} days of history (< {YEAR + TRAILING}: a year and a quarter): "
            "no seasonal method applies; the interval of the total is doubled"
        )
    # existing share: same-season window a year before, else the most recent full window
    stamps = _utc(tx["timestamp"])
    keep = stamps < local_midnight(start, timezone)
    tx_days = pd.DataFrame(
        {
            "day": stamps[keep].dt.tz_convert(timezone).dt.tz_localize(None).dt.normalize().to_numpy(),
            "amount": tx.loc[keep, "amount"].to_numpy(float),
            "customer_id": tx.loc[keep, "customer_id"].to_numpy(),
        }
    )
    tx_days["first"] = tx_days["customer_id"].map(first).to_numpy()
    share = None
    for s0 in (c - pd.Timedelta(days=YEAR), c - pd.Timedelta(days=h)):
        if s0 > revenue.index[0] + pd.Timedelta(days=28) and s0 + pd.Timedelta(days=h) <= c:
            share = _existing_share((revenue, first), tx_days, s0, h)
            if share is not None:
                where = (
                    "the same-season window a year before"
                    if s0 == c - pd.Timedelta(days=YEAR)
                    else "the most recent full window"
                )
                notes.append(f"top-down level: existing customers' share {share:.3f} measured in {where} ({s0.date()})")
                break
    if share is None:
        share = 1.0
        notes.append("top-down level: no full window to measure the existing customers' share in; 1 used")
    notes.insert(
        0,
        f"top-down level: {method} chosen by a backtest on the daily revenue series ("
        + ", ".join(f"{m} MAPE {scores[m]:.1%}" for m in METHODS if m in scores)
        + f"); total {total:,.0f}, existing customers {total * share:,.0f}",
    )
    return LevelForecast(
        total=total,
        low=max(total * (1.0 - spread), 0.0),
        high=total * (1.0 + spread),
        existing_share=share,
        existing_total=total * share,
        method=method,
        errors=scores,
        seasonal_index=seasonal_index(revenue, c, h),
        history_days=history_days,
        short_history=short,
        notes=notes,
    )


@dataclass
class Reconciliation:
    """The outcome of :func:`reconcile`.

    Attributes:
        factor: the multiplier of the bottom-up spend (1.0 when not reconciled).
        reconciled: whether the top-down level was taken.
        forecast: the :class:`LevelForecast` at the cutoff (None when none could be made).
        bottom_up_total: Σ of the bottom-up spend predictions at the cutoff (currency).
        notes: the comparison, for ``notes_``.
    """

    factor: float
    reconciled: bool
    forecast: LevelForecast | None
    bottom_up_total: float
    notes: list[str]


def reconcile(
    tx: pd.DataFrame,
    timezone: str,
    cutoff,
    horizon_days: float,
    bottom_up: float,
    *,
    val_cutoff=None,
    val_bottom_up: float = float("nan"),
    val_actual: float = float("nan"),
    max_factor: float = 3.0,
) -> Reconciliation:
    """Reconcile a bottom-up spend total to the top-down level where the top-down level was better on validation.

    The rule: with at least a year and a quarter of history, the top-down
    existing-customer total at the validation cutoff ``val_cutoff`` (same
    horizon) is compared with the bottom-up validation total
    ``val_bottom_up`` (out of sample) against ``val_actual``; when its
    absolute percentage error is the smaller, ``factor = existing_total /
    bottom_up`` clipped to ``[1/max_factor, max_factor]`` (one factor: the
    ranking is unchanged). Otherwise ``factor = 1``.

    Args:
        tx: transactions (only rows before ``cutoff`` are read).
        timezone: the shop's time zone.
        cutoff, horizon_days: the prediction.
        bottom_up: Σ pred_spend at the cutoff (currency, >= 0).
        val_cutoff: the validation window's cutoff (None: no validation, not reconciled).
        val_bottom_up, val_actual: the validation window's bottom-up and actual totals (currency).
        max_factor: clip of the factor (> 1).

    Returns:
        A :class:`Reconciliation`.
    """
    try:
        lf = top_down_level(tx, cutoff, horizon_days, timezone)
    except DataError as exc:
        return Reconciliation(1.0, False, None, bottom_up, [f"no top-down level ({exc})"])
    notes = list(lf.notes)
    text = (
        f"totals of the horizon, existing customers: bottom-up {bottom_up:,.0f}, top-down {lf.existing_total:,.0f} "
        f"[{lf.low * lf.existing_share:,.0f}, {lf.high * lf.existing_share:,.0f}]"
        + (f" (seasonal index {lf.seasonal_index:.2f})" if np.isfinite(lf.seasonal_index) else " (no year-ago window)")
    )
    if lf.short_history or val_cutoff is None or not (val_actual > 0) or not np.isfinite(val_bottom_up):
        notes.append(text + "; not reconciled (less than a year and a quarter of history, or no validation window)")
        return Reconciliation(1.0, False, lf, bottom_up, notes)
    try:
        td_val = top_down_level(tx, val_cutoff, horizon_days, timezone).existing_total
    except DataError:
        notes.append(text + "; not reconciled (no top-down level on the validation window)")
        return Reconciliation(1.0, False, lf, bottom_up, notes)
    bu_err, td_err = val_bottom_up / val_actual - 1.0, td_val / val_actual - 1.0
    text += f"; validation window total error bottom-up {bu_err:+.1%}, top-down {td_err:+.1%}"
    if abs(td_err) < abs(bu_err) and bottom_up > 0:
        factor = float(np.clip(lf.existing_total / bottom_up, 1.0 / max_factor, max_factor))
        notes.append(text + f": reconciled to the top-down level (spend × {factor:.3f})")
        return Reconciliation(factor, True, lf, bottom_up, notes)
    notes.append(text + ": bottom-up kept")
    return Reconciliation(1.0, False, lf, bottom_up, notes)
