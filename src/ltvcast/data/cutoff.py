"""Observation end of a data set and the check that a cutoff fits inside it.

The *observation end* is the last calendar day the data covers (00:00 UTC of
that day; the whole day is observed). It is the last day with a transaction
unless the shop declares a later one (``data_end``: "we exported on
1998-06-30; nobody bought in the last week"). Cutoffs after the day following
the observation end are refused: customers would look alive for days nobody
observed, inflating T.
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd

from ltvcast.errors import CutoffError, DataError
from ltvcast.timeutil import to_day

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
