"""Horizons, cutoffs and time units.

Conventions (DESIGN.md): a *cutoff* is a calendar day at 00:00 UTC; history
is everything strictly before it. A *horizon* is a length of time written
``<number><unit>`` with unit ``d`` (days), ``w`` (weeks, 7 d) or ``m``
(months, 30.4375 d = 365.25 / 12).

One meaning everywhere: a horizon is a whole number of days, the number
times the unit's days rounded to the nearest day (halves up), once, in
:func:`parse_horizon`; every command, the API and the stored manifests and
reports use that number. So ``12m`` = round(365.25) = **365 days**, ``6m`` =
round(182.625) = 183, ``1m`` = 30, ``26w`` = 182. (A month as a *unit* of
BTYD summaries or of monthly periods, :data:`SUMMARY_UNIT_DAYS`, stays
30.4375 days; it is not a horizon.)

Observation end of a data set and the check that a cutoff fits inside it.

The *observation end* is the last calendar day the data covers (00:00 UTC of
that day; the whole day is observed). It is the last day with a transaction
unless the shop declares a later one (``data_end``: "we exported on
1998-06-30; nobody bought in the last week"). Cutoffs after the day following
the observation end are refused: customers would look alive for days nobody
observed, inflating T.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime

import pandas as pd

from ltvcast.errors import CutoffError, DataError

DAYS_PER_UNIT = {"d": 1.0, "w": 7.0, "m": 30.4375}
MAX_HORIZON_DAYS = 36525.0
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ][\d:.+\-Z]*)?$")
_HORIZON = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dwmDWM])\s*$")


def parse_horizon(text: str | float) -> float:
    """Return the horizon in days.

    Args:
        text: ``"26w"``, ``"180d"``, ``"12m"`` (case-insensitive); a bare
            number is taken as days.

    Returns:
        Length in whole days (a float): number × unit days rounded to the
        nearest day, halves up (``"12m"`` is 365, ``"6m"`` 183, ``"1.5d"`` 2).

    Raises:
        CutoffError: the text is not a number followed by d, w or m, or the
            horizon is shorter than 1 day or longer than 100 years.
    """
    if isinstance(text, (int, float)):
        days = float(text)
    else:
        match = _HORIZON.match(str(text))
        if match is None:
            raise CutoffError(
                f"horizon {text!r} is not understood: write a number and a unit, "
                "e.g. 26w (weeks), 180d (days) or 12m (months of 30.4375 days)"
            )
        days = float(match.group(1)) * DAYS_PER_UNIT[match.group(2).lower()]
    days = float(math.floor(days + 0.5)) if math.isfinite(days) else days
    if not 1 <= days <= MAX_HORIZON_DAYS:
        raise CutoffError(f"horizon {text!r} must be between 1 day and 100 years ({MAX_HORIZON_DAYS:g} days)")
    return days


def to_day(value: str | date | datetime | pd.Timestamp) -> pd.Timestamp:
    """Return ``value`` as a tz-aware UTC timestamp at 00:00 of its calendar day.

    Raises:
        CutoffError: the value is not a date (strings must be ISO 8601,
            ``YYYY-MM-DD``: ``01/02/2024`` is ambiguous and refused).
    """
    if isinstance(value, str) and not _ISO_DATE.match(value.strip()):
        raise CutoffError(f"{value!r} is not a date; write it as YYYY-MM-DD")
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise CutoffError(f"{value!r} is not a date; write it as YYYY-MM-DD") from exc
    if ts is pd.NaT:
        raise CutoffError(f"{value!r} is not a date; write it as YYYY-MM-DD")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.normalize()


def horizon_window(cutoff, horizon_days: float) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Return the horizon window ``[start, end)`` after ``cutoff`` in whole days.

    ``end = cutoff + round(horizon_days)`` days (a horizon from
    :func:`parse_horizon` is already whole: ``12m`` is a 365-day window);
    models predict for ``(end - start).days`` days.

    Raises:
        CutoffError: ``cutoff`` is not a date.
    """
    start = to_day(cutoff)
    return start, start + pd.Timedelta(days=round(horizon_days))


DateLike = str | date | datetime | pd.Timestamp


def declared_day(value: DateLike, what: str = "data_end") -> pd.Timestamp:
    """Parse a declared date (``YYYY-MM-DD``) into a day at 00:00 UTC.

    Raises:
        DataError: ``value`` is not a date (the message names ``what``).
    """
    try:
        return to_day(value)
    except CutoffError:
        raise DataError(f"{what} {value!r} is not a date; write it as YYYY-MM-DD") from None


def observation_end(
    transactions: pd.DataFrame, data_end: DateLike | None = None
) -> pd.Timestamp:
    """Return the observation end of a transactions frame.

    Args:
        transactions: canonical transactions (needs ``timestamp``, UTC).
        data_end: declared last observed day, or None.

    Returns:
        tz-aware UTC timestamp at 00:00: ``data_end`` when declared, else the
        day of the last transaction.

    Raises:
        DataError: no transactions and no ``data_end``; ``data_end`` is not a
            date; or ``data_end`` is before the last transaction day (the
            message names both dates).
    """
    last = transactions["timestamp"].max() if len(transactions) else pd.NaT
    last_day = None if pd.isna(last) else to_day(last)
    if data_end is None:
        if last_day is None:
            raise DataError("no transactions: the observation end is unknown (declare data_end)")
        return last_day
    declared = declared_day(data_end)
    if last_day is not None and declared < last_day:
        raise DataError(
            f"data_end {declared.date()} is before the last transaction day {last_day.date()}; "
            "declare a data_end on or after the last transaction day"
        )
    return declared


def check_cutoff(
    cutoff: DateLike, observation_end: DateLike, allow_future: bool = False
) -> pd.Timestamp:
    """Check that ``cutoff`` is at most the day after ``observation_end``.

    Args:
        cutoff: the prediction cutoff (a day; history is strictly before it).
        observation_end: last observed day (:func:`observation_end`).
        allow_future: accept later cutoffs (scoring "as of" a future day).

    Returns:
        The cutoff as a tz-aware UTC day (00:00).

    Raises:
        CutoffError: ``cutoff`` is later than ``observation_end`` + 1 day and
            ``allow_future`` is False (the message names both dates), or a
            value is not a date.
    """
    cut = to_day(cutoff)
    end = to_day(observation_end)
    latest = end + pd.Timedelta(days=1)
    if cut > latest and not allow_future:
        raise CutoffError(
            f"cutoff {cut.date()} is after the end of the data (observation end {end.date()}; "
            f"the latest cutoff is {latest.date()}): customers would look alive through days "
            "nobody observed, inflating T. Choose an earlier cutoff, declare a later data end "
            "(--data-end), or pass --allow-future-cutoff"
        )
    return cut


def local_midnight(cutoff, timezone: str = "UTC") -> pd.Timestamp:
    """00:00 of the calendar day ``cutoff`` in ``timezone``, as a UTC timestamp.

    Where 00:00 does not exist (a DST jump at midnight) the first instant of
    the day is used; where it occurs twice, the first (the convention of
    :func:`ltvcast.features.build`).
    """
    day = to_day(cutoff).tz_localize(None)
    return day.tz_localize(timezone, nonexistent="shift_forward", ambiguous=True).tz_convert("UTC")


#: Time units of BTYD summaries (recency, T): days per unit. ``h`` hours
#: (1/24 d) for fast-moving shops, ``d`` days, ``w`` weeks, ``m`` months of
#: 30.4375 d. (Horizons, :func:`parse_horizon`, stay whole days or more.)
SUMMARY_UNIT_DAYS: dict[str, float] = {"h": 1.0 / 24.0, "d": 1.0, "w": 7.0, "m": 30.4375}


def unit_days(unit: str) -> float:
    """Days per ``unit`` (``"h"``, ``"d"``, ``"w"``, ``"m"``, case-insensitive).

    Raises:
        DataError: an unknown unit (the message lists the known ones).
    """
    key = unit.lower() if isinstance(unit, str) else unit
    if key not in SUMMARY_UNIT_DAYS:
        raise DataError(
            f"unit {unit!r} is not one of 'H' (hours), 'D' (days), 'W' (weeks), 'M' (months of 30.4375 days)"
        )
    return SUMMARY_UNIT_DAYS[key]
