"""Calendar inputs of the learned models: the calendar of an example's label window, known in advance.

Every training example (label window ``[c, c + L)``) and every prediction
row (the horizon ``[C, C + H)``) carries, as the same value for all its
customers:

* ``cal_month_01`` … ``cal_month_12`` — the share of the window's ``L``
  days that fall in each calendar month (they sum to 1) [fraction];
* ``cal_events`` — the number of declared shop events (a user calendar,
  :func:`load_calendar`) whose days overlap the window [count], and
  ``cal_event_day_share`` — the share of the window's days covered by at
  least one event [fraction]; both only when a calendar is given;
* ``cal_season_index`` — the shop's own seasonal index measured on the
  history *before* ``c``: aggregate revenue in the same calendar window a
  year before, ``[c − 364, c − 364 + L)``, divided by the revenue of the
  trailing window ``[c − L, c)`` [ratio]; NaN with less than a year of
  history before ``c`` (the data start after ``c − 364``), when
  ``L > 364``, or when the trailing revenue is not positive.

They are computed from dates and from the transactions strictly before
``c`` only, never from the label window (the test changes the label
window's transactions and finds the inputs identical).

The shop calendar (``calendar.yaml``) is a YAML list of events::

    - {name: Black Friday, start: 2023-11-24, end: 2023-11-27}
    - {name: Summer sale, start: 2024-07-01, end: 2024-07-14}

``start`` and ``end`` are calendar days, both inclusive (``end`` defaults to
``start``); none is declared by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ltvcast.errors import DataError
from ltvcast.timeutil import to_day
from ltvcast.yamlfile import read_yaml

__all__ = [
    "CALENDAR_DOCS",
    "CalendarEvent",
    "calendar_columns",
    "calendar_inputs",
    "calendar_wanted",
    "load_calendar",
]

#: Days in the "year" of the seasonal index (52 weeks, as the same-season windows).
SEASON_DAYS = 364

MONTH_COLUMNS: tuple[str, ...] = tuple(f"cal_month_{m:02d}" for m in range(1, 13))

#: Documentation of the calendar inputs (name -> definition [unit]).
CALENDAR_DOCS: dict[str, str] = {
    **{col: f"share of the label window's days in month {i + 1} [fraction]" for i, col in enumerate(MONTH_COLUMNS)},
    "cal_events": "declared shop events (calendar.yaml) overlapping the label window [count]",
    "cal_event_day_share": "share of the label window's days inside a declared event [fraction]",
    "cal_season_index": "revenue in the same window a year (364 days) before / revenue in the trailing window of the "
    "same length, from the history before the cutoff (NaN with less than a year of history) [ratio]",
}


@dataclass(frozen=True)
class CalendarEvent:
    """One declared shop event: days ``start`` .. ``end`` (both inclusive, UTC-naive calendar days)."""

    name: str
    start: pd.Timestamp
    end: pd.Timestamp


def _day(value, what: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(to_day(value).date())
    except Exception as exc:  # noqa: BLE001 - any unparsable date is a config error
        raise DataError(f"calendar: {what} {value!r} is not a date (YYYY-MM-DD)") from exc


def parse_calendar(entries) -> tuple[CalendarEvent, ...]:
    """Events from the parsed YAML (a list of mappings ``{name, start, end}``; events already parsed pass through).

    Raises:
        DataError: not a list, an entry without ``name`` or ``start``, a
            date that does not parse, or ``end`` before ``start``.
    """
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise DataError("calendar: expected a list of events {name, start, end}")
    out = []
    for i, entry in enumerate(entries):
        if isinstance(entry, CalendarEvent):
            out.append(entry)
            continue
        if not isinstance(entry, dict) or "name" not in entry or "start" not in entry:
            raise DataError(f"calendar: event {i + 1} needs 'name' and 'start' (and optionally 'end'), got {entry!r}")
        start = _day(entry["start"], f"event {entry['name']!r} start")
        end = _day(entry.get("end", entry["start"]), f"event {entry['name']!r} end")
        if end < start:
            raise DataError(f"calendar: event {entry['name']!r} ends ({end.date()}) before it starts ({start.date()})")
        out.append(CalendarEvent(str(entry["name"]), start, end))
    return tuple(out)


def load_calendar(path) -> tuple[CalendarEvent, ...]:
    """Read a shop calendar (``calendar.yaml``, see the module docstring).

    Raises:
        DataError: the file is missing, is not YAML, or an event is malformed.
    """
    if not Path(path).is_file():
        raise DataError(f"calendar: no file {path}")
    return parse_calendar(read_yaml(path, "calendar"))


def calendar_columns(events: Sequence[CalendarEvent] | None) -> list[str]:
    """The calendar input names, in order (the event columns only when ``events`` is not None)."""
    cols = list(MONTH_COLUMNS)
    if events is not None:
        cols += ["cal_events", "cal_event_day_share"]
    return cols + ["cal_season_index"]


def _daily_revenue(tx: pd.DataFrame, timezone: str, revenue_basis: str) -> pd.Series:
    if tx.empty:
        return pd.Series(dtype=float)
    stamps = tx["timestamp"]
    stamps = stamps.dt.tz_localize("UTC") if getattr(stamps.dt, "tz", None) is None else stamps
    days = stamps.dt.tz_convert(timezone).dt.tz_localize(None).dt.normalize()
    amount = pd.to_numeric(tx["amount"], errors="coerce").astype(float)
    if revenue_basis == "gross":
        sale = tx["kind"].astype("string").fillna("sale") == "sale" if "kind" in tx.columns else amount >= 0
        amount = amount.where(sale, 0.0)
    return amount.groupby(days.to_numpy()).sum()


def calendar_inputs(
    history: pd.DataFrame,
    cutoff,
    label_days: float,
    *,
    events: Sequence[CalendarEvent] | None = None,
    timezone: str = "UTC",
    revenue_basis: str = "net",
) -> dict[str, float]:
    """The calendar of the label window ``[cutoff, cutoff + label_days)`` (see the module docstring).

    Args:
        history: canonical transactions strictly before ``cutoff`` (the
            caller cuts them; rows at or after ``cutoff`` are ignored all the same).
        cutoff: the window's first day.
        label_days: window length ``L`` in days (rounded to whole days, >= 1).
        events: the declared events, or None (no event columns).
        timezone, revenue_basis: the shop's settings (local days of the
            revenue; ``gross`` counts sale rows only).

    Returns:
        ``{column: value}`` for :func:`calendar_columns` ``(events)``.

    Raises:
        DataError: ``label_days`` < 1.
    """
    n = int(round(float(label_days)))
    if n < 1:
        raise DataError(f"calendar: label window of {label_days} days")
    c = pd.Timestamp(to_day(cutoff).date())
    days = pd.date_range(c, periods=n, freq="D")
    months = np.bincount(days.month.to_numpy() - 1, minlength=12) / float(n)
    out = {col: float(v) for col, v in zip(MONTH_COLUMNS, months)}
    if events is not None:
        end = days[-1]
        overlapping = [e for e in events if e.start <= end and e.end >= c]
        covered = np.zeros(n, dtype=bool)
        for e in overlapping:
            covered |= (days >= e.start) & (days <= e.end)
        out["cal_events"] = float(len(overlapping))
        out["cal_event_day_share"] = float(covered.mean())
    index = np.nan
    if n <= SEASON_DAYS and not history.empty:
        daily = _daily_revenue(history, timezone, revenue_basis)
        daily = daily[daily.index < c]
        year_start = c - pd.Timedelta(days=SEASON_DAYS)
        if len(daily) and daily.index.min() <= year_start:
            ago = float(daily[(daily.index >= year_start) & (daily.index < year_start + pd.Timedelta(days=n))].sum())
            trailing = float(daily[daily.index >= c - pd.Timedelta(days=n)].sum())
            if trailing > 0:
                index = ago / trailing
    out["cal_season_index"] = float(index)
    return out


def calendar_wanted(mode, first_day, cutoff, horizon_days: float) -> tuple[bool, str]:
    """Whether a learned model uses the calendar inputs, with the reason.

    ``mode``: ``True``/``"on"`` always, ``False``/``"off"`` never,
    ``"auto"`` when the history before the prediction cutoff ``C`` spans at
    least ``364 + 2H`` days, i.e. the seasonal index is defined at the
    latest full training window ``C − 2H`` (with less history the month
    shares of the training windows never reach the horizon's months and the
    index is NaN everywhere: the inputs could only add noise; CDNOW
    1998-01-01 / 26 weeks is such a case).

    Raises:
        DataError: an unknown mode.
    """
    if mode in (True, "on"):
        return True, "calendar inputs on"
    if mode in (False, "off", None):
        return False, "calendar inputs off"
    if mode != "auto":
        raise DataError(f"calendar_inputs must be 'auto', 'on' or 'off', got {mode!r}")
    c = pd.Timestamp(to_day(cutoff).date())
    first = pd.Timestamp(to_day(first_day).date())
    need = SEASON_DAYS + 2 * int(round(float(horizon_days)))
    span = (c - first).days
    if span >= need:
        return True, f"calendar inputs on: {span} days of history before the cutoff (>= 364 + 2H = {need})"
    return False, (
        f"calendar inputs left out: {span} days of history before the cutoff, less than 364 + 2H = {need} "
        "(the seasonal index would be undefined at the training windows)"
    )
