"""Horizons, cutoffs and time units.

Conventions (DESIGN.md): a *cutoff* is a calendar day at 00:00 UTC; history
is everything strictly before it. A *horizon* is a length of time written
``<number><unit>`` with unit ``d`` (days), ``w`` (weeks, 7 d) or ``m``
(months, 30.4375 d = 365.25 / 12).
"""

from __future__ import annotations

import re
from datetime import date, datetime

import pandas as pd

from ltvcast.errors import CutoffError

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
        Length in days (float; ``"12m"`` is 365.25).

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

    ``end = cutoff + round(horizon_days)`` days, so ``12m`` (365.25 d) is a
    365-day window; models predict for ``(end - start).days`` days.

    Raises:
        CutoffError: ``cutoff`` is not a date.
    """
    start = to_day(cutoff)
    return start, start + pd.Timedelta(days=round(horizon_days))
