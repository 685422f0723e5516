"""Parse raw text columns into ids, numbers and UTC timestamps (vectorised).

Every function takes a pandas Series of raw text (as produced by
:func:`ltvcast.ingest.readers.read_table`) and returns a Series on the same
index; values that cannot be parsed become NaN / NaT, so the caller can tell
*missing* (see :func:`missing_mask`) from *unparseable*.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from ltvcast.errors import DataError
from ltvcast.schema import UTC_US

#: Text read as "no value" in id, timestamp and number columns (after stripping).
NULL_TOKENS: frozenset[str] = frozenset(
    {"", "nan", "NaN", "NAN", "null", "NULL", "Null", "None", "NA", "N/A", "n/a", "#N/A", "NaT"}
)

_FLOAT_ID = r"^[+-]?\d+\.0+$"
_COMPACT_DATE = r"\d{8}"
_ISO_START = re.compile(r"^\d{4}-\d{2}-\d{2}")
#: A trailing zone in timestamp text: ``Z``, or an offset / ``UTC`` / ``GMT`` after a
#: clock time (``10:00+01:00``, ``10:00:00 -0500``, ``10:00 UTC``). A date alone
#: (``2024-01-01``) has no zone.
_ZONE_SUFFIX = r"(?:[Zz]|\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[+-]\d{2}(?::?\d{2})?|UTC|GMT))$"
_MAX_FORMAT_ROUNDS = 20
#: Numbers at or above this magnitude do not fit the store's DECIMAL(18,4) money.
MAX_ABS_NUMBER = 1e14
#: Plausible purchase times: outside [EARLIEST, LATEST) a timestamp is a placeholder.
EARLIEST = pd.Timestamp("1900-01-01", tz="UTC")
LATEST = pd.Timestamp("2200-01-01", tz="UTC")


def as_text(values: pd.Series) -> pd.Series:
    """Return ``values`` as stripped text (dtype ``str``); NaN/None become ``""``."""
    if not pd.api.types.is_string_dtype(values.dtype) or values.isna().any():
        values = values.astype(object).where(values.notna(), "").astype(str)
    return values.str.strip()


def missing_mask(values: pd.Series) -> np.ndarray:
    """Boolean array: True where the value is empty or a null token (:data:`NULL_TOKENS`).

    Datetime series (from Parquet) are missing where NaT.
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.isna().to_numpy()
    return as_text(values).isin(NULL_TOKENS).to_numpy()


def normalise_ids(values: pd.Series) -> tuple[pd.Series, int]:
    """Normalise an id column to text.

    Strips whitespace and turns float spellings of whole numbers into the
    integer text (``"17850.0"`` -> ``"17850"``, ``"12.00"`` -> ``"12"``);
    leading zeros are kept (``"00012"`` stays), other text is untouched
    (``"17850.5"``, ``"C536365"``). Missing values (null tokens) become NaN.

    Returns:
        (ids as dtype ``str`` with NaN for missing, number of values changed
        by the float-to-integer rule).
    """
    text = as_text(values)
    floaty = text.str.match(_FLOAT_ID)
    count = int(floaty.sum())
    if count:
        text = text.where(~floaty, text.str.replace(r"\.0+$", "", regex=True))
    return text.where(~text.isin(NULL_TOKENS)), count


def parse_text(values: pd.Series) -> pd.Series:
    """Strip free text (category, brand, ...); only the empty string becomes NaN."""
    text = as_text(values)
    return text.where(text != "")


#: Decimal marks a source may declare (``--decimal`` / ``decimal:`` in ``sources.yaml``).
DECIMAL_MARKS: tuple[str, ...] = (".", ",")
_DECIMAL: ContextVar[str] = ContextVar("ltvcast_decimal_mark", default=".")
#: A decimal-comma number: optional sign, digits (grouped by 3 with one of ``.``, space, no-break
#: space, narrow no-break space or ``'`` used throughout), optional ``,`` and decimals.
_COMMA_NUMBER = (
    r"^(?P<sign>[+-]?)(?P<int>\d{1,3}(?P<sep>[. \u00a0\u202f'])\d{3}(?:(?P=sep)\d{3})*|\d+)"
    r"(?:,(?P<frac>\d+))?$"
)


def check_decimal(mark: str | None, what: str = "decimal") -> str:
    """Return the decimal mark ``mark`` (None: ``"."``).

    Raises:
        DataError: ``mark`` is not ``"."`` or ``","``.
    """
    if mark is None:
        return "."
    if mark not in DECIMAL_MARKS:
        raise DataError(f"{what} {mark!r} is not a decimal mark; use '.' (1234.56) or ',' (1.234,56)")
    return mark


@contextmanager
def number_format(decimal: str | None = ".") -> Iterator[None]:
    """Within the block, :func:`parse_numbers` reads numbers with ``decimal`` as the decimal mark.

    ``","`` (German, French, ... exports): ``1.234,56`` and ``1234,56`` are
    1234.56; ``.``, spaces or ``'`` group thousands (by 3, one kind per
    number); a number with a ``.`` that is not such a grouping (``1.5``) is
    unparseable, not silently read as one and a half. Scoped to the current
    thread / task (a context variable).

    Raises:
        DataError: ``decimal`` is not ``"."`` or ``","``.
    """
    token = _DECIMAL.set(check_decimal(decimal))
    try:
        yield
    finally:
        _DECIMAL.reset(token)


def comma_to_dot(text: pd.Series) -> pd.Series:
    """Rewrite decimal-comma numbers as plain ones (``"1.234,56"`` -> ``"1234.56"``, ``"-3,5"`` -> ``"-3.5"``).

    Text that is not a decimal-comma number (see :func:`number_format`) becomes
    ``"x"`` (unparseable); null tokens stay as they are.
    """
    text = as_text(text)
    parts = text.str.extract(_COMMA_NUMBER)
    ok = parts["int"].notna()
    digits = parts["int"].fillna("").str.replace(r"[. \u00a0\u202f']", "", regex=True)
    frac = parts["frac"].fillna("")
    plain = parts["sign"].fillna("") + digits + np.where(frac != "", "." + frac, "")
    out = text.where(text.isin(NULL_TOKENS), "x")
    return out.where(~ok, plain)


def parse_numbers(values: pd.Series) -> pd.Series:
    """Parse plain decimal numbers (``12``, ``-3.5``, ``1e3``) into float64.

    No currency symbols or thousands separators, except inside
    :func:`number_format` with ``","`` (``1.234,56`` -> 1234.56). Missing,
    unparseable and non-finite values (``inf``), and magnitudes of
    :data:`MAX_ABS_NUMBER` or more (which the store's DECIMAL(18,4) cannot
    hold), become NaN.
    """
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        out = values.astype(np.float64)
    else:
        text = comma_to_dot(values) if _DECIMAL.get() == "," else as_text(values)
        out = pd.to_numeric(text, errors="coerce").astype(np.float64)
    return out.where(np.isfinite(out) & (out.abs() < MAX_ABS_NUMBER))


def _to_utc(text: pd.Series, fmt: str) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(text, format=fmt, utc=True, errors="coerce")
    return parsed.dt.as_unit("us")


def _day_month_order(fmt: str) -> str | None:
    day, month = fmt.find("%d"), fmt.find("%m")
    if day < 0 or month < 0 or fmt.startswith("%Y"):
        return None
    return "day-first" if day < month else "month-first"


def check_timezone(name: str, what: str = "timezone") -> str:
    """Return ``name`` if it is an IANA time zone (``Europe/Berlin``, ``UTC``).

    Raises:
        DataError: unknown zone (the message names ``what`` and the value).
    """
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"{what} must be an IANA time zone name such as Europe/Berlin, got {name!r}")
    try:
        ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise DataError(
            f"{what} {name!r} is not a known IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)"
        ) from None
    return name.strip()


def localize_naive(wall: pd.Series, tz: str) -> pd.Series:
    """Read naive wall-clock times as local times of ``tz``; return ``datetime64[us, UTC]``.

    DST follows :mod:`zoneinfo` with ``fold=0``: a repeated wall time (the
    hour after clocks go back) is its first occurrence (summer time); a
    wall time that does not exist (the hour skipped when clocks go forward)
    is read with the offset in force before the change (02:30 in
    Europe/Berlin on 2024-03-31 is 01:30 UTC). NaT stays NaT.

    Raises:
        DataError: ``tz`` is not a known zone.
    """
    check_timezone(tz)
    wall = pd.Series(wall, copy=False)
    if wall.dt.tz is not None:
        raise ValueError("localize_naive expects naive wall-clock times")
    if tz in ("UTC", "Etc/UTC"):
        return wall.dt.tz_localize("UTC").dt.as_unit("us")
    n = len(wall)
    local = wall.dt.tz_localize(tz, ambiguous=np.ones(n, dtype=bool), nonexistent="NaT")
    out = local.dt.tz_convert("UTC").dt.as_unit("us")
    gap = out.isna() & wall.notna()
    if gap.any():
        zone = ZoneInfo(tz)
        fixed = [
            pd.Timestamp(ts.to_pydatetime().replace(tzinfo=zone, fold=0)).tz_convert("UTC")
            for ts in wall[gap]
        ]
        out[gap] = pd.Series(fixed, index=wall.index[gap]).dt.as_unit("us")
    return out


def parse_timestamps(
    values: pd.Series,
    date_format: str | None = None,
    dayfirst: bool | None = None,
    tz: str | None = None,
    orders: dict[str, str] | None = None,
) -> pd.Series:
    """Parse timestamps into ``datetime64[us, UTC]``; unparseable/missing -> NaT.

    Args:
        values: raw text (or, from Parquet/Excel/SQL, datetimes: naive ones
            are local times of ``tz``, aware ones converted).
        date_format: ``strptime`` format; when given it is the only one tried.
        dayfirst: read ``01/02/2020`` as 1 February.
        tz: IANA zone of values written without a zone or offset (see
            :func:`localize_naive` for DST); None means UTC. Values with an
            offset (``+01:00``, ``Z``) keep it.
        orders: day/month order seen so far (``"day-first"`` -> first value read
            so), updated in place: pass one dict for every batch of a column read
            in pieces, so that a mix across batches is refused too.

    Recognised without a format: ISO 8601 (``2020-01-31``,
    ``2020-01-31 10:00``, ``2020-01-31T10:00:00+01:00``, ``...Z``), compact
    ``YYYYMMDD`` (``19970101``), and the formats pandas can guess from a
    value (``12/1/2010 8:26``, ``31.01.2020``, ``Jan 5 2020``). The format
    is guessed from the first value, applied to the whole column at once,
    and guessed again from the first value that did not fit (at most 20
    formats). Values without a zone are local times of ``tz`` (UTC when
    None); values with an offset are converted to UTC. Sub-microsecond
    digits are truncated.

    Timestamps before 1900-01-01 or from 2200-01-01 on are placeholders
    (``0001-01-01``, ``9999-12-31``), not purchases: they become NaT too, so
    the row is quarantined as ``bad_timestamp`` instead of stretching the
    observation period.

    Raises:
        DataError: the column mixes day-first and month-first dates
            (e.g. ``01/02/2020`` and ``13/02/2020`` without ``dayfirst``),
            which would be read inconsistently; the message shows both values;
            or ``tz`` is unknown.
    """
    out = _parse_any_timestamps(values, date_format, dayfirst, tz, {} if orders is None else orders)
    return out.where((out >= EARLIEST) & (out < LATEST))


def _parse_any_timestamps(
    values: pd.Series, date_format: str | None, dayfirst: bool | None, tz: str | None, orders: dict[str, str]
) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        if values.dt.tz is not None:
            return values.dt.tz_convert("UTC").dt.as_unit("us")
        return localize_naive(values, tz or "UTC")
    out = _parse_text_timestamps(values, date_format, dayfirst, orders)
    if tz is None or tz in ("UTC", "Etc/UTC"):
        return out
    naive = ~as_text(values).str.contains(_ZONE_SUFFIX, regex=True) & out.notna()
    if naive.any():
        wall = out[naive].dt.tz_localize(None)
        out[naive] = localize_naive(wall, tz)
    return out


def _parse_text_timestamps(
    values: pd.Series, date_format: str | None, dayfirst: bool | None, orders: dict[str, str]
) -> pd.Series:
    """Text -> UTC timestamps, naive values read as UTC (see :func:`parse_timestamps`)."""
    text = as_text(values)
    out = pd.Series(pd.NaT, index=text.index, dtype=UTC_US)
    todo = ~text.isin(NULL_TOKENS)
    if date_format:
        out[todo] = _to_utc(text[todo], date_format)
        return out
    compact = todo & text.str.fullmatch(_COMPACT_DATE)
    if compact.any():
        out[compact] = _to_utc(text[compact], "%Y%m%d")
        todo &= ~compact
    for _ in range(_MAX_FORMAT_ROUNDS):
        if not todo.any():
            break
        first = text[todo].iloc[0]
        if _ISO_START.match(first):
            fmt = "ISO8601"
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                fmt = guess_datetime_format(first, dayfirst=bool(dayfirst))
        if fmt is not None:
            order = _day_month_order(fmt)
            if order is not None:
                orders.setdefault(order, first)
                if len(orders) > 1:
                    md, dm = orders.get("month-first"), orders.get("day-first")
                    raise DataError(
                        f"dates are read both month-first ({md!r}) and day-first ({dm!r}); "
                        "pass dayfirst (--dayfirst) or an explicit date format (--date-format) "
                        "so that every date is read the same way"
                    )
            parsed = _to_utc(text[todo], fmt)
            ok = parsed.notna()
            out[ok.index[ok]] = parsed[ok]
            todo[ok.index[ok]] = False
        todo &= text != first
    return out
